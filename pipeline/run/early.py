"""The run's LocalCluster started in the background while the client lists SOURCE and reads
the previous version: the two are independent, and the cluster's start (worker processes
importing Dask, their decode sandboxes importing the decoders) is most of a small run's time.

Only for a LocalCluster imgstats starts itself, and only when the run is likely to read
files: SOURCE exists, and the run is ``--full`` or its store has no version yet. An incremental
run may find nothing changed and start no cluster at all, so it starts its cluster after
planning, as before; a run whose SOURCE is missing fails at once, as before.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import TracebackType

from distributed import Client

from ..config import JobConfig
from ..fs.location import Location, resolve
from ..store.names import LATEST
from .cluster import dask_client

__all__ = ["EarlyCluster", "early_cluster"]

log = logging.getLogger(__name__)


class EarlyCluster:
    """A LocalCluster being started in a background thread; :meth:`client` waits for it."""

    def __init__(self, config: JobConfig, source: Location) -> None:
        self._config = config
        self._source = source
        self._stack = contextlib.ExitStack()
        self._client: Client | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._start, name="imgstats-cluster-start",
                                        daemon=True)
        self._thread.start()

    def _start(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # the main thread's to handle
        config = self._config
        try:
            if not _exists(self._source) or (not config.full and _has_version(config)):
                return  # failing, or likely incremental: started after planning, if at all
            self._client = self._stack.enter_context(dask_client(
                None, config.workers, config.threads_per_worker,
                sandboxes=bool(config.decode_timeout),
            ))
        except BaseException as exc:
            self._error = exc

    def client(self) -> Client | None:
        """The started cluster's client (None: not started early); raises what the start
        raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._client

    def close(
        self,
        kind: type[BaseException] | None = None,
        error: BaseException | None = None,
        trace: TracebackType | None = None,
    ) -> bool:
        """Close the cluster (its workers killed when ``error`` ends the run); idempotent."""
        self._thread.join()
        if not self._closed:
            self._closed = True
            self._stack.__exit__(kind, error, trace)
        return False


def _exists(source: Location) -> bool:
    """Whether SOURCE is there (one cheap request; unknown counts as no)."""
    try:
        return bool(source.filesystem().exists(source.path))
    except Exception:
        return False


def _has_version(config: JobConfig) -> bool:
    """Whether STORE already has a version (one cheap request; unknown counts as yes)."""
    try:
        store = resolve(config.out, config.store_options)
        return bool(store.filesystem().exists(store.join(LATEST)))
    except Exception:
        return True


@contextlib.contextmanager
def early_cluster(config: JobConfig, source: Location) -> Iterator[EarlyCluster | None]:
    """An :class:`EarlyCluster` for the block when the run would start a LocalCluster of
    worker processes, closed when the block ends (if the run has not closed it already)."""
    if config.scheduler_address or config.cluster_spec is not None or source.is_process_local:
        yield None
        return
    early = EarlyCluster(config, source)
    try:
        yield early
    except BaseException as exc:
        early.close(type(exc), exc, exc.__traceback__)
        raise
    early.close()
