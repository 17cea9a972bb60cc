"""A Dask worker preload that starts the worker's decode sandboxes as the worker starts.

The LocalCluster imgstats starts names this module in ``distributed.worker.preload`` when
its tasks decode in sandboxes: each worker then starts one sandbox child per thread while it
registers with the scheduler, instead of when its first task arrives, so the child's imports
and warm-up (~0.5 s of CPU) overlap the cluster's start and the client's listing.
"""

from __future__ import annotations

from typing import Any

from .sandbox import prestart_children

__all__ = ["dask_setup"]


def dask_setup(worker: Any) -> None:
    """Start a sandbox child for each of ``worker``'s threads (Dask calls this in the
    worker's event loop thread, which lives as long as the worker)."""
    prestart_children(int(worker.state.nthreads))
