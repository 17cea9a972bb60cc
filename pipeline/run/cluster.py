"""The Dask cluster of a run: attach to a scheduler, start a LocalCluster, or start the
cluster manager ``--cluster`` names (:mod:`pipeline.run.managed`); closed after, always.

:func:`open_cluster` yields a :class:`Cluster`: how many worker threads to make shards for,
and :meth:`Cluster.ready`, the client once the cluster is sized for the shards. A refused
connection fails at once; the LocalCluster's processes do not see the terminal's Ctrl-C (see
:mod:`pipeline.run.signals`) and are killed, not waited for, when the run ends with an
exception. :func:`describe` is ``--dry-run``'s text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

import dask
from distributed import Client, LocalCluster, performance_report
from distributed.comm.addressing import parse_address, parse_host_port

from ..config import DEFAULT_SCHEDULER_TIMEOUT, JobConfig
from ..errors import SchedulerError, UsageError
from ..fs.location import describe_error
from .managed import managed_cluster, start_cluster
from .prestart import PRESTART_SANDBOXES
from .signals import sigint_blocked
from .sizing import size_for

if TYPE_CHECKING:
    from .early import EarlyCluster

__all__ = ["LOCAL_WORKER_ENVIRON", "Cluster", "dask_client", "describe", "open_cluster"]

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


class Cluster(Protocol):
    """The run's cluster, started or attached to."""

    @property
    def threads(self) -> int:
        """Worker threads to make shards for (planned, for a cluster not yet sized)."""

    def ready(self, shards: int | None) -> Client:
        """The client, once the cluster is sized for ``shards`` shards (None: more than any
        size keeps busy)."""


class _Running:
    """A scheduler attached to, or the local cluster: already the size it will be."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.threads = sum(client.nthreads().values()) or 1

    def ready(self, shards: int | None) -> Client:
        return self.client


@contextlib.contextmanager
def open_cluster(
    config: JobConfig, processes: bool = True, early: EarlyCluster | None = None
) -> Iterator[Cluster]:
    """The cluster ``config`` asks for (``--scheduler``, ``--cluster``), for the block, and
    Dask's performance report of the block in ``config.performance_report`` if it succeeds;
    the LocalCluster ``early`` started, if it did. Once the block has succeeded, a failure
    to close the cluster is a warning: the block's result stands."""
    spec = config.cluster_spec
    if spec is not None and not processes:
        raise UsageError(f"{config.source} lives in this process: only the local cluster sees it")
    if config.performance_report:
        _check_report_needs()
    finished = False
    try:
        with contextlib.ExitStack() as stack:
            cluster: Cluster
            started = early.client() if early is not None else None
            if early is not None and started is not None:
                stack.push(early.close)
                client, cluster = started, _Running(started)
            elif spec is None:
                client = stack.enter_context(dask_client(
                    config.scheduler_address, config.workers, config.threads_per_worker,
                    processes=processes, timeout=config.scheduler_timeout,
                    sandboxes=bool(config.decode_timeout),
                ))
                cluster = _Running(client)
            else:
                managed = stack.enter_context(managed_cluster(spec, config.cluster_timeout))
                client, cluster = managed.client, managed
            if config.performance_report:
                stack.enter_context(_report(client, config.performance_report))
            yield cluster
            finished = True
    except Exception as exc:
        if not finished:
            raise
        # The block's work is done: a cluster that fails to close must not lose it.
        log.warning("closing the Dask cluster failed after the scan (%s); the result is kept",
                    describe_error(exc))


def _check_report_needs() -> None:
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:
        raise UsageError("--performance-report needs bokeh: pip install 'imgstats[diagnostics]'")


@contextlib.contextmanager
def _report(client: Client, filename: str) -> Iterator[None]:
    """Dask's performance report of the block, written to ``filename`` if the block succeeds
    (a failed or interrupted run does not wait for it)."""
    report = performance_report(filename=filename)
    with client.as_current():
        report.__enter__()
    yield
    try:
        with client.as_current():
            report.__exit__(None, None, None)
    except OSError as exc:  # the statistics matter more than their report
        log.warning("cannot write the performance report %s: %s", filename, exc)
    else:
        log.info("wrote Dask's performance report to %s", filename)


def describe(config: JobConfig) -> str:
    """What ``compute`` would start, for ``--dry-run``: a dask-jobqueue cluster's job script
    (as it would submit it), another manager's spec, or the local cluster or scheduler."""
    spec = config.cluster_spec
    if spec is None:
        address = config.scheduler_address
        if address:
            return f"# the Dask scheduler at {address}"
        workers = config.workers or "one per core"
        threads = config.threads_per_worker or 1
        return f"# a local Dask cluster: {workers} workers x {threads} thread(s)"
    lines = [
        f"# cluster {spec.name!r}: {spec.module}.{spec.cls}",
        f"# arguments: {', '.join(f'{k}={v!r}' for k, v in spec.kwargs.items()) or 'none'}",
    ]
    if not spec.is_jobqueue:
        return "\n".join(lines)
    # A script to read needs no batch system, and its scheduler only an address to print.
    options = {**spec.kwargs.get("scheduler_options", {}), "host": "127.0.0.1",
               "dashboard_address": ":0"}
    local = dataclasses.replace(spec, kwargs={**spec.kwargs, "scheduler_options": options})
    created = _missing_folders(spec.kwargs.get("log_directory"))
    with sigint_blocked():
        cluster = start_cluster(local, check=False)
    try:
        from .jobqueue import job_shape

        shape = job_shape(cluster)
        sizing = size_for(spec.scale, spec.adapt, shape, None)
        lines.append(f"# size: {sizing.describe(shape)} at most (fewer for fewer shards)")
        lines.append(f"# the script of each job ({cluster.job_cls.submit_command} SCRIPT):")
        script = cluster.job_script().replace(cluster.scheduler_address, "tcp://SCHEDULER:PORT")
        return "\n".join([*lines, script.rstrip("\n")])
    finally:
        with contextlib.suppress(Exception):
            cluster.close()
        for folder in created:  # dask-jobqueue makes the log folder; a dry run leaves none
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def _missing_folders(path: Any) -> list[str]:
    """``path`` and its parents that do not exist yet, deepest first."""
    missing: list[str] = []
    folder = os.path.abspath(os.path.expandvars(str(path))) if path else ""
    while folder and not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    processes: bool = True,
    timeout: float = DEFAULT_SCHEDULER_TIMEOUT,
    sandboxes: bool = False,
    dashboard: bool | None = None,
) -> Iterator[Client]:
    """A client on ``scheduler``, or on a LocalCluster started for the block and closed after.

    With ``sandboxes`` (tasks that decode in sandboxes), the LocalCluster's workers start
    theirs as they start; its worker processes ignore the terminal's Ctrl-C
    (:mod:`pipeline.run.prestart`). The LocalCluster serves its
    dashboard when ``dashboard`` is true, or (None) when its link is logged (``-v``): on a
    port of its own choosing, nobody could find it otherwise, and starting it (importing
    Bokeh) cost ~0.8 s of a one-image run's start.

    A refused connection fails at once; a scheduler that does not answer, after ``timeout``
    seconds. The LocalCluster's processes do not see the terminal's Ctrl-C (see
    :mod:`pipeline.signals`); when the block ends with an exception (Ctrl-C among them) its
    workers are killed rather than waited for.
    """
    if scheduler:
        _check_reachable(scheduler, timeout)
        with _attach(scheduler, timeout) as client:
            log.info(
                "attached to Dask scheduler %s (dashboard %s)", scheduler, client.dashboard_link
            )
            yield client
        return
    if dashboard is None:
        dashboard = log.isEnabledFor(logging.INFO)
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            dask.config.set(
                {
                    "distributed.nanny.pre-spawn-environ": _worker_environ(),
                    # The workers' statistical profiler takes the GIL every 10 ms: 1-6% of a
                    # worker's CPU samples in py-spy profiles of JPEG and PNG runs.
                    "distributed.worker.profile.enabled": False,
                    "distributed.worker.preload": _worker_preload(processes),
                    PRESTART_SANDBOXES: sandboxes,
                }
            )
        )
        with sigint_blocked():  # see pipeline.signals
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=threads_per_worker or 1,
                    processes=processes,
                    # the HTTP server (health, metrics) on a free loopback port, always;
                    # the dashboard's pages on it only when wanted
                    dashboard_address="127.0.0.1:0",
                    scheduler_kwargs={"dashboard": dashboard},
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


def _attach(address: str, timeout: float) -> Client:
    """A client on the scheduler at ``address``, within about ``timeout`` seconds.

    Dask's own timeout does not cover a peer that accepts the connection and then never
    answers (another service on that port: the client waits forever), so the client is made
    in a thread and waited for with a deadline."""
    made: Future[Client] = Future()

    def connect() -> None:
        try:
            made.set_result(Client(address, timeout=timeout, set_as_default=False))
        except BaseException as exc:  # handed to the waiting thread
            made.set_exception(exc)

    threading.Thread(target=connect, name="imgstats-attach", daemon=True).start()
    try:
        return made.result(timeout + _ATTACH_GRACE)
    except (OSError, TimeoutError, ValueError) as exc:
        if not made.done():
            raise SchedulerError(
                f"cannot reach Dask scheduler at {address}: it accepts connections but did not "
                f"answer as a Dask scheduler within {timeout:g} s (--scheduler-timeout)"
            ) from None
        raise SchedulerError(f"cannot reach Dask scheduler at {address}: {exc}") from exc


def _check_reachable(address: str, timeout: float) -> None:
    """Fail fast, with one line, on an address that cannot be a scheduler or that refuses.

    Only the network transports with a host and port are attached to: ``inproc://`` names a
    scheduler inside this very process, and a transport the client cannot start (``ucx://``
    without its package) would fail only after its timeout, with noise from the half-made
    client."""
    try:
        scheme, where = parse_address(address)
        if scheme not in _NETWORK_SCHEMES:
            raise ValueError(f"imgstats attaches over {', '.join(_NETWORK_SCHEMES)} only")
        host, port = parse_host_port(where)
        if not host:
            raise ValueError("no host")
    except (ValueError, TypeError) as exc:
        raise SchedulerError(f"{address!r} is not a Dask scheduler address: {exc}") from None
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


#: Seconds past ``--scheduler-timeout`` that attaching may take before it is given up.
_ATTACH_GRACE = 2.0
#: Schemes of the scheduler addresses attached to (the transports of host:port addresses).
_NETWORK_SCHEMES = ("tcp", "tls", "ws", "wss")


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


def _worker_preload(processes: bool) -> list[str]:
    """The configured worker preloads, and :mod:`pipeline.run.prestart` for worker processes."""
    preload = dask.config.get("distributed.worker.preload", default=[]) or []
    preload = [preload] if isinstance(preload, str) else list(preload)
    return [*preload, "pipeline.run.prestart"] if processes else preload


def _worker_environ() -> dict[str, Any]:
    """Dask's pre-spawn environment with :data:`LOCAL_WORKER_ENVIRON` where not configured."""
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    configured = str(environ.get("MALLOC_TRIM_THRESHOLD_", _DASK_DEFAULT_TRIM))
    if configured == _DASK_DEFAULT_TRIM and not any(k in os.environ for k in LOCAL_WORKER_ENVIRON):
        environ.update(LOCAL_WORKER_ENVIRON)
    return environ
