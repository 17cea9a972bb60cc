"""The summary protocol: what a task computes over its pixels and a tree reduction merges.

A summary has an identity (:meth:`Summary.empty`), an associative and commutative
:meth:`Summary.merge`, and a :meth:`Summary.finalize` that turns the merged whole into the
statistics a stats file holds. :class:`~pipeline.core.moments.Moments` (exact, integer
samples) and :class:`~pipeline.core.moments.FloatMoments` implement it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol, Self, TypeVar

__all__ = ["Finalized", "Summary", "merge_all"]


class Finalized(NamedTuple):
    """Per-channel statistics on the [0, 1] scale."""

    mean: tuple[float, ...]
    std: tuple[float, ...]  # population (ddof 0)


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

    def finalize(self, scale: float) -> Finalized:
        """The statistics of the summarised pixels, ``scale`` mapping raw samples to [0, 1]."""
        ...


S = TypeVar("S", bound=Summary)


def merge_all(summaries: Iterable[S], empty: S) -> S:
    """``empty`` merged with every summary, in order."""
    total = empty
    for summary in summaries:
        total = total.merge(summary)
    return total
