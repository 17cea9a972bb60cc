"""What imgstats needs to know of dask-jobqueue's batch clusters, beyond Dask's cluster API.

Its commands on ``PATH`` (``sbatch``/``scancel``, ``qsub``/``qdel``...), checked before the
cluster starts; every job it submits, and every submission the queue refused (dask-jobqueue
only logs those), recorded by a subclass of the cluster's job class (its ``job_cls``
argument); the shape of a job; and cancelling jobs directly, without the event loop.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from distributed.core import Status

from ..errors import ClusterUnavailableError
from .sizing import JobShape

if TYPE_CHECKING:
    from dask_jobqueue.core import Job, JobQueueCluster

__all__ = ["Submissions", "cancel", "check_commands", "job_shape", "refusal"]

log = logging.getLogger(__name__)

#: Seconds the cancel command may take.
CANCEL_TIMEOUT = 30.0


def check_commands(kind: str, cls: type[JobQueueCluster]) -> None:
    """Fail with one line when the batch system's submit or cancel command is not on PATH."""
    job: Any = getattr(cls, "job_cls", None)
    for command in (job.submit_command, job.cancel_command):
        program = shlex.split(command)[0]
        if shutil.which(program) is None:
            raise ClusterUnavailableError(
                f"cannot start the {kind} cluster: {program} is not on PATH "
                f"(run imgstats where {kind} jobs can be submitted)"
            )


class Submissions:
    """The jobs a cluster submitted and the submissions its queue refused (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.job_ids: list[str] = []
        self.refused: list[BaseException] = []

    def job_class(self, base: type[Job]) -> type[Job]:
        """``base`` recording each job id, and each refused submission, here."""
        submissions = self

        class Watched(base):  # type: ignore[misc,valid-type]
            async def start(self) -> None:
                try:
                    await super().start()
                except Exception as exc:
                    with submissions._lock:
                        submissions.refused.append(exc)
                    self.status = Status.failed  # so that closing the cluster accepts it
                    raise
                with submissions._lock:
                    submissions.job_ids.append(str(self.job_id))

        Watched.__name__ = Watched.__qualname__ = base.__name__
        return Watched

    def submitted(self) -> list[str]:
        with self._lock:
            return list(self.job_ids)

    def first_refusal(self) -> BaseException | None:
        with self._lock:
            return self.refused[0] if self.refused else None


def refusal(exc: BaseException) -> str:
    """The batch system's own reason in dask-jobqueue's error for a failed submission: what
    its command printed on stderr, on one line."""
    text = str(exc)
    _, found, stderr = text.rpartition("stderr:\n")
    lines = [line.strip() for line in (stderr if found else text).splitlines() if line.strip()]
    return "; ".join(dict.fromkeys(lines)) or type(exc).__name__


def job_shape(cluster: Any) -> JobShape:
    """Workers per job and threads per worker of a dask-jobqueue cluster (from the job it
    would submit: ``cluster._dummy_job``, which ``job_script()`` also uses)."""
    job = cluster._dummy_job
    return JobShape(int(job.worker_processes), int(job.worker_process_threads))


def cancel(cluster: Any, job_ids: Iterable[str]) -> None:
    """Cancel ``job_ids`` with the batch system's cancel command (jobs already gone are
    fine); never raises."""
    ids = list(job_ids)
    if not ids:
        return
    command = [*shlex.split(cluster.job_cls.cancel_command), *ids]
    try:
        subprocess.run(command, capture_output=True, timeout=CANCEL_TIMEOUT, check=False,
                       stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not cancel jobs %s: %s", " ".join(ids), exc)
    else:
        log.info("cancelled jobs %s", " ".join(ids))
