"""The Dask worker preload of the LocalCluster imgstats starts: its worker processes ignore
the terminal's Ctrl-C, and start their decode sandboxes as they start.

Ctrl-C reaches every process of the terminal's foreground group; the client acts on it and
kills the workers (:mod:`pipeline.run.signals`). A worker process's main thread does not keep
the blocked SIGINT of the thread that started it (multiprocessing's spawn gives the child an
empty mask: ``SigBlk`` is 0 in ``/proc/PID/status``), so asyncio's handler in the worker used
to catch it and, when it won the race against the client's SIGKILL (on a loaded machine, 2
runs in 8), print a ``KeyboardInterrupt`` traceback per worker on the run's stderr.

With ``imgstats.prestart-sandboxes`` set in the Dask config that the workers inherit (tasks
that decode in sandboxes), each worker starts one sandbox child per thread while it registers
with the scheduler, instead of when its first task arrives, so the child's imports and warm-up
(~0.5 s of CPU) overlap the cluster's start and the client's listing.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any

import dask

__all__ = ["PRESTART_SANDBOXES", "dask_setup"]

#: The Dask config key that asks the workers to start their sandboxes as they start.
PRESTART_SANDBOXES = "imgstats.prestart-sandboxes"


def dask_setup(worker: Any) -> None:
    """Ignore SIGINT, and start a sandbox child for each of ``worker``'s threads when asked
    (Dask calls this in the worker's event loop thread, its main thread, which lives as long
    as the worker)."""
    with contextlib.suppress(ValueError):  # not the main thread: nothing to ignore here
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if dask.config.get(PRESTART_SANDBOXES, default=False):
        from .sandbox import prestart_children

        prestart_children(int(worker.state.nthreads))
