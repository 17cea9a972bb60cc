"""What scanning a set of files gives, mergeable: summaries per key, skips, file sets."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .files import FileSet
from .keys import ResultKey
from .moments import AnyMoments, merge

__all__ = ["ScanResult", "Skip", "merge_results"]


@dataclass(frozen=True, order=True)
class Skip:
    """A file that could not be counted, and why."""

    path: str
    error: str


@dataclass(frozen=True)
class ScanResult:
    """Merged summaries and image counts per :class:`~pipeline.core.keys.ResultKey`, plus what
    was skipped and counted.

    ``rows`` holds each shard's per-file record as an opaque block (Arrow IPC bytes from
    :meth:`~pipeline.store.record.FileRecord.to_block`): incremental runs need them.
    """

    summaries: dict[ResultKey, AnyMoments] = field(default_factory=dict)
    images: Counter[ResultKey] = field(default_factory=Counter)
    high_bit_depth: int = 0
    skipped: tuple[Skip, ...] = ()
    files: FileSet = field(default_factory=FileSet)
    rows: tuple[bytes, ...] = ()
    bytes_read: int = 0
    seconds: float = 0.0
    retries: int = 0  # storage requests sent again (see :mod:`pipeline.fs.retries`)
    task_retries: int = 0  # scan tasks run again after failing (set by the graph)

    def merge(self, other: ScanResult) -> ScanResult:
        merged = dict(self.summaries)
        for key, value in other.summaries.items():
            merged[key] = merge(merged[key], value) if key in merged else value
        return ScanResult(
            merged,
            self.images + other.images,
            self.high_bit_depth + other.high_bit_depth,
            self.skipped + other.skipped,
            self.files.merge(other.files),
            self.rows + other.rows,
            self.bytes_read + other.bytes_read,
            self.seconds + other.seconds,
            self.retries + other.retries,
            self.task_retries + other.task_retries,
        )


def merge_results(results: Iterable[ScanResult]) -> ScanResult:
    """Merge any number of results (the combine step of the tree reduction)."""
    total = ScanResult()
    for result in results:
        total = total.merge(result)
    return total
