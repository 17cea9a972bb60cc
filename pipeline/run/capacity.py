"""What a local cluster may start: a size the machine cannot hold is refused before any work.

Every worker thread decodes in its own sandbox process (:mod:`pipeline.run.sandbox`), so
``--threads-per-worker 200`` starts 200 of them per worker: measured here, a worker process
takes about 105 MB and an idle sandbox 177 MB of its own memory (USS; 226 MB RSS) once its
decoders are loaded. A cluster whose processes would need more than the machine's memory
(:data:`distributed.system.MEMORY_LIMIT`: physical memory, or the cgroup or rlimit bound if
lower) would swap, be killed or fail while closing: it is refused with one line.
"""

from __future__ import annotations

from dask.system import CPU_COUNT
from distributed.system import MEMORY_LIMIT

from ..errors import UsageError

__all__ = ["SANDBOX_BYTES", "THREAD_BYTES", "WORKER_BYTES", "check_local_cluster"]

#: Memory of one worker process with imgstats imported.
WORKER_BYTES = 110 * 2**20
#: Memory of one decode sandbox of its own (USS), decoders loaded.
SANDBOX_BYTES = 180 * 2**20
#: Memory of a worker thread decoding in the worker itself (no sandbox): its buffers.
THREAD_BYTES = 16 * 2**20


def check_local_cluster(
    workers: int | None,
    threads_per_worker: int | None,
    sandboxed: bool,
    processes: bool = True,
    memory: int = MEMORY_LIMIT,
) -> None:
    """:class:`~pipeline.errors.UsageError` (exit 2) when the LocalCluster that
    :func:`~pipeline.run.cluster.dask_client` would start needs more than ``memory`` bytes."""
    threads = threads_per_worker or 1
    count = workers if workers is not None else max(1, CPU_COUNT // threads) if processes else 1
    per_thread = SANDBOX_BYTES if sandboxed else THREAD_BYTES
    need = count * (WORKER_BYTES + threads * per_thread)
    if need <= memory:
        return
    each = "decode sandboxes" if sandboxed else "decoding threads"
    processes_text = f"{count} worker process{'' if count == 1 else 'es'}"
    raise UsageError(
        f"--workers {count} x --threads-per-worker {threads} would need about "
        f"{need / 2**30:.1f} GB for the local cluster ({processes_text} at "
        f"{WORKER_BYTES // 2**20} MB, {count * threads} {each} at {per_thread // 2**20} MB), "
        f"more than the {memory / 2**30:.1f} GB this machine has: use fewer workers or threads"
    )
