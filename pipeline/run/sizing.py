"""How big a started cluster gets: the config's ``scale`` or ``adapt``, never more jobs than
the run has shards for. Pure arithmetic on counts; :mod:`pipeline.run.managed` applies it.

A *job* is the unit a cluster manager scales by: one batch job of dask-jobqueue, holding
``processes`` workers of ``threads`` threads each; one worker for any other manager.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import DEFAULT_JOBS, Scale

__all__ = ["JobShape", "Sizing", "planned_threads", "size_for"]


@dataclass(frozen=True)
class JobShape:
    """Workers per job and threads per worker (1 and 1 when the manager cannot say)."""

    processes: int = 1
    threads: int = 1

    @property
    def threads_per_job(self) -> int:
        return self.processes * self.threads


@dataclass(frozen=True)
class Sizing:
    """What to ask the cluster for: ``workers`` (a fixed size, in whole jobs) or ``adapt``
    (keyword arguments of ``cluster.adapt``, bounds in workers); ``jobs`` at most (None: no
    bound)."""

    jobs: int | None
    workers: int | None = None
    adapt: Mapping[str, Any] | None = None

    def describe(self, shape: JobShape) -> str:
        each = f"{shape.processes} worker(s) x {shape.threads} thread(s) each"
        if self.adapt is not None:
            low = int(self.adapt.get("minimum", 0)) // shape.processes
            high = "any number of" if self.jobs is None else self.jobs
            return f"adaptive, {low} to {high} jobs of {each}"
        return f"{self.jobs} jobs of {each}"


def _wanted_jobs(scale: Scale | None, adapt: Mapping[str, Any] | None, shape: JobShape) -> float:
    """Jobs the config asks for at most (infinite for an unbounded ``adapt``)."""
    if adapt is not None:
        if "maximum_jobs" in adapt:
            return float(adapt["maximum_jobs"])
        if "maximum" in adapt:
            return float(math.ceil(adapt["maximum"] / shape.processes))
        return math.inf
    if scale is None:
        return float(DEFAULT_JOBS)
    if scale.unit == "jobs":
        return float(scale.count)
    return float(math.ceil(scale.count / shape.processes))


def planned_threads(scale: Scale | None, adapt: Mapping[str, Any] | None, shape: JobShape) -> int:
    """Worker threads the run is to make shards for (an unbounded ``adapt`` counts as
    :data:`~pipeline.config.DEFAULT_JOBS` jobs)."""
    jobs = _wanted_jobs(scale, adapt, shape)
    return int(min(jobs, DEFAULT_JOBS) if math.isinf(jobs) else jobs) * shape.threads_per_job


def size_for(
    scale: Scale | None, adapt: Mapping[str, Any] | None, shape: JobShape, shards: int | None
) -> Sizing:
    """The sizing for ``shards`` shards (None: more than any size keeps busy): what the config
    asks for (``scale``, ``adapt``, or :data:`~pipeline.config.DEFAULT_JOBS` jobs), with no
    more jobs than it takes to give each worker thread a shard."""
    needed = math.inf if shards is None else max(1, math.ceil(shards / shape.threads_per_job))
    jobs = min(_wanted_jobs(scale, adapt, shape), needed)
    if adapt is None:
        return Sizing(int(jobs), workers=int(jobs) * shape.processes)
    bounds = {k: v for k, v in adapt.items() if k not in ("minimum_jobs", "maximum_jobs")}
    low = int(adapt.get("minimum_jobs", math.ceil(adapt.get("minimum", 0) / shape.processes)))
    if math.isinf(jobs):  # an unbounded adapt for a large run: as Dask's, no maximum
        bounds["minimum"] = low * shape.processes
        bounds.pop("maximum", None)
        return Sizing(None, adapt=bounds)
    bounds["minimum"] = min(low, int(jobs)) * shape.processes
    bounds["maximum"] = int(jobs) * shape.processes
    return Sizing(int(jobs), adapt=bounds)
