"""Dask clusters for a run: attach to a scheduler, or start a LocalCluster and close it after.

A refused connection fails at once; the LocalCluster's processes do not see the terminal's
Ctrl-C (see :mod:`pipeline.run.signals`) and are killed, not waited for, when the run ends
with an exception.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

import dask
from distributed import Client, LocalCluster
from distributed.comm.addressing import parse_address, parse_host_port

from ..config import DEFAULT_SCHEDULER_TIMEOUT
from ..errors import SchedulerError
from .signals import sigint_blocked

__all__ = ["LOCAL_WORKER_ENVIRON", "dask_client"]

log = logging.getLogger(__name__)

#: Worker environment of the LocalCluster imgstats starts itself (its nannies set it before
#: spawning each worker). Dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` makes glibc hand
#: freed memory back at once and mmap every buffer over 128 KB, so each image's buffers land
#: on fresh, zeroed pages: measured scan_shard CPU per JPEG file in one process, 1.5x on the
#: fast path and 2.5x on Pillow's; in a 4,000-JPEG run, +21% worker decode CPU. Buffers up to
#: 32 MB now come from the heap and up to 64 MB of free heap is kept; larger images are still
#: mmapped and returned. Left alone when either variable is in the environment (the nannies
#: pass it on) or the configuration has another trim threshold.
LOCAL_WORKER_ENVIRON = {
    "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20),
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
}
_DASK_DEFAULT_TRIM = "65536"
@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    processes: bool = True,
    timeout: float = DEFAULT_SCHEDULER_TIMEOUT,
) -> Iterator[Client]:
    """A client on ``scheduler``, or on a LocalCluster started for the block and closed after.

    A refused connection fails at once; a scheduler that does not answer, after ``timeout``
    seconds. The LocalCluster's processes do not see the terminal's Ctrl-C (see
    :mod:`pipeline.signals`); when the block ends with an exception (Ctrl-C among them) its
    workers are killed rather than waited for.
    """
    if scheduler:
        _check_reachable(scheduler, timeout)
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise SchedulerError(f"cannot reach Dask scheduler at {scheduler}: {exc}") from exc
        with client:
            log.info(
                "attached to Dask scheduler %s (dashboard %s)", scheduler, client.dashboard_link
            )
            yield client
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            dask.config.set(
                {
                    "distributed.nanny.pre-spawn-environ": _worker_environ(),
                    # The workers' statistical profiler takes the GIL every 10 ms: 1-6% of a
                    # worker's CPU samples in py-spy profiles of JPEG and PNG runs.
                    "distributed.worker.profile.enabled": False,
                }
            )
        )
        with sigint_blocked():  # see pipeline.signals
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=threads_per_worker or 1,
                    processes=processes,
                    dashboard_address="127.0.0.1:0",
                    silence_logs=logging.CRITICAL,  # task errors are reported once, by the CLI
                )
            )
        client = stack.enter_context(Client(cluster, set_as_default=False))
        log.info(
            "started local Dask cluster: %d workers (dashboard %s)",
            len(cluster.workers),
            client.dashboard_link,
        )
        try:
            yield client
        except BaseException:
            _kill_workers(cluster)  # their results are not wanted: do not wait for them
            raise
        pids = _worker_pids(cluster)  # the nannies forget them while closing
        try:
            stack.close()
        except BaseException:
            _kill(pids)  # a cluster that fails to close leaves no process behind
            raise


def _check_reachable(address: str, timeout: float) -> None:
    """Fail fast, with one line, on an address that cannot be a scheduler or that refuses."""
    try:
        scheme, where = parse_address(address)
        host, port = parse_host_port(where) if scheme in ("tcp", "tls") else ("", 0)
    except (ValueError, TypeError) as exc:
        raise SchedulerError(f"{address!r} is not a Dask scheduler address: {exc}") from None
    if not host:
        return  # another transport: the client says what goes wrong
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except ConnectionRefusedError:
        raise SchedulerError(
            f"cannot reach Dask scheduler at {address}: connection refused"
        ) from None
    except TimeoutError:
        raise SchedulerError(
            f"cannot reach Dask scheduler at {address}: no answer within {timeout:g} s "
            "(--scheduler-timeout)"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SchedulerError(f"cannot reach Dask scheduler at {address}: {reason}") from None


def _worker_pids(cluster: LocalCluster) -> list[int]:
    pids = (getattr(getattr(n, "process", None), "pid", None) for n in cluster.workers.values())
    return [pid for pid in pids if pid]


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _kill_workers(cluster: LocalCluster) -> None:
    """SIGKILL the cluster's worker processes (their sandboxes die with them)."""
    _kill(_worker_pids(cluster))


def _worker_environ() -> dict[str, Any]:
    """Dask's pre-spawn environment with :data:`LOCAL_WORKER_ENVIRON` where not configured."""
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    configured = str(environ.get("MALLOC_TRIM_THRESHOLD_", _DASK_DEFAULT_TRIM))
    if configured == _DASK_DEFAULT_TRIM and not any(k in os.environ for k in LOCAL_WORKER_ENVIRON):
        environ.update(LOCAL_WORKER_ENVIRON)
    return environ
