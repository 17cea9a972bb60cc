"""The summary protocol: what a task computes over its pixels, merged as results arrive.

A summary has an identity (:meth:`Summary.empty`), an associative and commutative
:meth:`Summary.merge`, its :meth:`Summary.moments` (count, sums, sums of squares, min, max) and
a :meth:`Summary.finalize` that turns the merged whole into the statistics a stats file holds.
:class:`~pipeline.core.histogram.Histogram` (integer samples, exact) and
:class:`~pipeline.core.moments.FloatMoments` (float samples) implement it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, Self

__all__ = ["Finalized", "MomentsLike", "Summary"]


class Finalized(NamedTuple):
    """Per-channel statistics on the [0, 1] scale."""

    mean: tuple[float, ...]
    std: tuple[float, ...]  # population (ddof 0)
    variance: tuple[float, ...]


class MomentsLike(Protocol):
    """Count and per-channel sums, sums of squares, min and max."""

    @property
    def count(self) -> int: ...

    @property
    def sum(self) -> Sequence[float]: ...

    @property
    def sum_sq(self) -> Sequence[float]: ...

    @property
    def min(self) -> Sequence[float]: ...

    @property
    def max(self) -> Sequence[float]: ...


class Summary(Protocol):
    """A mergeable partial statistic of a set of pixels, per channel."""

    @classmethod
    def empty(cls) -> Self:
        """The identity of :meth:`merge`: no pixels."""
        ...

    @property
    def count(self) -> int:
        """Pixels per channel."""
        ...

    def merge(self, other: Self) -> Self:
        """The summary of both pixel sets."""
        ...

    def moments(self) -> MomentsLike:
        """Count, per-channel sums, sums of squares, min and max."""
        ...

    def finalize(self, scale: float) -> Finalized:
        """The statistics of the summarised pixels, ``scale`` mapping raw samples to [0, 1]."""
        ...
