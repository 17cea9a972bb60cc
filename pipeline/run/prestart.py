"""The Dask worker preload of the LocalCluster imgstats starts: its worker processes ignore
the terminal's Ctrl-C (the client's to act on: :mod:`pipeline.run.signals` says why they
must do it themselves), and start their decode sandboxes as they start.

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
