"""A cluster manager started for the run: imported from its spec, sized for the run's shards,
watched while it works, and always closed, with its batch jobs cancelled.

Any Dask cluster manager (dask-jobqueue's ``SLURMCluster``..., dask-kubernetes'
``KubeCluster``, Coiled...) is built from a :class:`~pipeline.config.ClusterSpec`. The run asks
for a client once it knows its shards (:meth:`Managed.ready`); from then on a watcher thread
fails the run when the queue refuses a job or when no worker has been there for
``timeout`` seconds, and, for a fixed size, resubmits jobs that ended (walltime, ``scancel``)
so the size holds. The shards of a worker that goes are run again elsewhere by Dask itself.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from distributed import Client
from distributed.utils import silence_logging_cmgr

from ..config import ClusterSpec
from ..errors import ClusterError, ClusterUnavailableError
from . import jobqueue
from .signals import sigint_blocked
from .sizing import JobShape, planned_threads, size_for

__all__ = ["Managed", "managed_cluster", "start_cluster"]

log = logging.getLogger(__name__)

#: Seconds between two looks of the watcher, and between two resubmissions of ended jobs.
WATCH_INTERVAL = 0.2
RESUBMIT_INTERVAL = 2.0
#: Seconds a cluster manager may take to close.
CLOSE_TIMEOUT = 60.0


def start_cluster(
    spec: ClusterSpec, submissions: jobqueue.Submissions | None = None, check: bool = True
) -> Any:
    """``spec.module.spec.cls(*spec.args, **spec.kwargs)``; for dask-jobqueue, its commands are
    checked first (if ``check``) and its jobs recorded in ``submissions``."""
    try:
        cls = getattr(_import(spec.module), spec.cls)
    except ImportError as exc:
        extra = " (pip install 'imgstats[jobqueue]')" if spec.is_jobqueue else ""
        raise ClusterUnavailableError(
            f"cannot start cluster {spec.name!r}: cannot import {spec.module}{extra}: {exc}"
        ) from exc
    except AttributeError as exc:
        raise ClusterUnavailableError(
            f"cannot start cluster {spec.name!r}: {spec.module} has no {spec.cls}"
        ) from exc
    kwargs = dict(spec.kwargs)
    if spec.is_jobqueue:
        if check:
            jobqueue.check_commands(spec.name, cls)
        if submissions is not None:
            kwargs["job_cls"] = submissions.job_class(cls.job_cls)
        # dask-jobqueue logs a refused submission itself; imgstats reports it in one line.
        kwargs.setdefault("silence_logs", logging.CRITICAL)
    try:
        return cls(*spec.args, **kwargs)
    except (TypeError, ValueError, RuntimeError, OSError) as exc:  # cores missing, bad interface
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        where = " (cluster_options, or dask's jobqueue configuration)"
        raise ClusterUnavailableError(
            f"cannot start cluster {spec.name!r}: {reason or type(exc).__name__}"
            f"{where if spec.is_jobqueue else ''}"
        ) from exc


def _import(module: str) -> Any:
    """``module``, imported without letting it change this process's SIGINT handler:
    ``dask_jobqueue`` sets one that calls ``sys.exit()`` (exit 0, no clean-up message)."""
    previous = signal.getsignal(signal.SIGINT)
    try:
        return importlib.import_module(module)
    finally:
        main = threading.current_thread() is threading.main_thread()
        if main and previous is not None and signal.getsignal(signal.SIGINT) is not previous:
            signal.signal(signal.SIGINT, previous)


class Managed:
    """A started cluster, its client, and the watcher over its workers."""

    def __init__(
        self,
        spec: ClusterSpec,
        cluster: Any,
        submissions: jobqueue.Submissions | None,
        timeout: float,
    ) -> None:
        self.spec = spec
        self.cluster = cluster
        self.submissions = submissions
        self.timeout = timeout
        self.shape = jobqueue.job_shape(cluster) if spec.is_jobqueue else JobShape()
        #: Worker threads to make shards for: what the config asks, until :meth:`ready`.
        self.threads = planned_threads(spec.scale, spec.adapt, self.shape)
        self.client = Client(cluster, set_as_default=False)
        #: Why the watcher stopped the run, if it did.
        self.error: ClusterError | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def ready(self, shards: int | None) -> Client:
        """Size the cluster for ``shards`` shards (None: more than it needs); for a fixed
        size, wait for its first worker. The client, watched until the cluster closes."""
        sizing = size_for(self.spec.scale, self.spec.adapt, self.shape, shards)
        log.info("%s cluster: %s for %s shards (dashboard %s)", self.spec.name,
                 sizing.describe(self.shape), "many" if shards is None else shards,
                 self.client.dashboard_link)
        if sizing.jobs is not None:  # else (an unbounded adapt) the planned count stays
            self.threads = sizing.jobs * self.shape.threads_per_job
        if sizing.adapt is not None:
            self.cluster.adapt(**sizing.adapt)
        else:
            self.cluster.scale(sizing.workers)
            deadline = time.monotonic() + self.timeout
            while not self._workers():
                self._check_refusals()
                if time.monotonic() > deadline:
                    raise self._no_workers("started")
                time.sleep(WATCH_INTERVAL)
            log.info("%s cluster: first worker joined", self.spec.name)
        self._watcher = threading.Thread(
            target=self._watch, args=(sizing.workers,), name="imgstats-cluster-watch",
            daemon=True,
        )
        self._watcher.start()
        return self.client

    def _workers(self) -> int:
        return len(self.cluster.scheduler_info.get("workers", {}))

    def _check_refusals(self) -> None:
        refused = self.submissions.first_refusal() if self.submissions else None
        if refused is not None:
            raise ClusterUnavailableError(
                f"the {self.spec.name} queue refused the job: {jobqueue.refusal(refused)}"
            ) from refused

    def _no_workers(self, what: str) -> ClusterError:
        jobs = len(self.submissions.submitted()) if self.submissions else 0
        queued = f"; {jobs} job(s) submitted were cancelled" if jobs else ""
        return ClusterError(
            f"no {self.spec.name} worker {what} within {self.timeout:g} s "
            f"(--cluster-timeout){queued}"
        )

    def _watch(self, workers: int | None) -> None:
        """Until :meth:`close`: stop the run (by closing its client) on a refused job or when
        no worker has been there for ``timeout`` s; keep a fixed size by resubmitting."""
        seen = resubmitted = time.monotonic()
        while not self._stop.wait(WATCH_INTERVAL):
            now = time.monotonic()
            try:
                self._check_refusals()
                if self._workers():
                    seen = now
                elif now - seen > self.timeout:
                    raise self._no_workers("running")
            except ClusterError as exc:
                self.error = exc
                log.debug("stopping the run: %s", exc)
                self.client.close()  # the run's wait for results ends at once
                return
            if workers is not None and now - resubmitted > RESUBMIT_INTERVAL:
                resubmitted = now
                self.cluster.scale(workers)  # jobs that ended are submitted again

    def close(self, failed: bool) -> None:
        """Stop the watcher, cancel the jobs (at once when the run ``failed``), close the
        cluster; cancel whatever job dask-jobqueue still missed. Never raises."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        try:
            if failed and self.submissions is not None:
                jobqueue.cancel(self.cluster, self.submissions.submitted())
            with contextlib.suppress(Exception):
                self.client.close()
            try:
                self.cluster.close(timeout=CLOSE_TIMEOUT)
            except Exception as exc:  # closing must not hide the run's outcome
                log.warning("closing the %s cluster: %s: %s", self.spec.name,
                            type(exc).__name__, exc)
        finally:  # even when Ctrl-C or SIGTERM interrupts the closing
            if self.submissions is not None:
                jobqueue.cancel(self.cluster, self.submissions.submitted())


@contextlib.contextmanager
def managed_cluster(spec: ClusterSpec, timeout: float) -> Iterator[Managed]:
    """The cluster ``spec`` describes, started for the block and closed after, whatever ends
    the block (its jobs are cancelled at once on failures, Ctrl-C and SIGTERM)."""
    submissions = jobqueue.Submissions() if spec.is_jobqueue else None
    cluster: Any = None
    managed: Managed | None = None
    failed = True
    # The scheduler runs in this process: its log lines (a worker's comm closing as its job is
    # cancelled...) must not reach stderr, until it is closed too (a failure is one line).
    with silence_logging_cmgr(logging.CRITICAL):
        try:
            with sigint_blocked():  # its threads must not see the terminal's Ctrl-C
                cluster = start_cluster(spec, submissions)
                managed = Managed(spec, cluster, submissions, timeout)
            yield managed
            failed = False
        except Exception as exc:
            if managed is not None and managed.error is not None:
                raise managed.error from exc  # the watcher stopped the run: say why
            raise
        finally:
            if managed is not None:
                managed.close(failed)
            elif cluster is not None:
                _close_quietly(cluster)


def _close_quietly(cluster: Any) -> None:
    with contextlib.suppress(Exception):
        cluster.close(timeout=CLOSE_TIMEOUT)
