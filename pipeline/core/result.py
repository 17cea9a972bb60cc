"""What scanning a set of files gives, mergeable: summaries per key, skips, file sets."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from .files import FileSet
from .histogram import AnySummary, Histogram
from .keys import ResultKey
from .moments import FloatMoments

__all__ = ["RecordPart", "ScanResult", "Skip", "merge_results", "merge_summaries"]


@dataclass(frozen=True, order=True)
class Skip:
    """A file that could not be counted, and why."""

    path: str
    error: str


@dataclass(frozen=True)
class RecordPart:
    """A contiguous run of a per-file record, encoded (the bytes of one segment file), with
    what the manifest says of it: its first and last path and its files."""

    first: str
    last: str
    files: FileSet
    data: bytes = field(repr=False)


def merge_summaries(a: AnySummary, b: AnySummary) -> AnySummary:
    """``a.merge(b)`` for summaries of one kind (what one layout holds)."""
    if isinstance(a, Histogram) and isinstance(b, Histogram):
        return a.merge(b)
    if isinstance(a, FloatMoments) and isinstance(b, FloatMoments):
        return a.merge(b)
    raise TypeError("cannot merge summaries of integer and float samples")


K = TypeVar("K")


def _merged_files(a: Mapping[K, FileSet], b: Mapping[K, FileSet]) -> dict[K, FileSet]:
    merged = dict(a)
    for key, files in b.items():
        merged[key] = merged[key].merge(files) if key in merged else files
    return merged


@dataclass(frozen=True)
class ScanResult:
    """Merged summaries and image counts per :class:`~pipeline.core.keys.ResultKey`, the
    counted files per group, and what was skipped.

    ``rows`` holds the files' per-file record, cut into segments (:class:`RecordPart`,
    from :meth:`~pipeline.store.record.FileRecord.parts`): incremental runs need them.
    ``verified`` names the files read whose bytes still had the digest they were counted with
    (``--verify``): not decoded, in no summary; ``decoded`` counts the files decoded.
    """

    summaries: dict[ResultKey, AnySummary] = field(default_factory=dict)
    images: Counter[ResultKey] = field(default_factory=Counter)
    high_bit_depth: int = 0
    skipped: tuple[Skip, ...] = ()
    files: dict[str, FileSet] = field(default_factory=dict)  # by group
    rows: tuple[RecordPart, ...] = ()
    bytes_read: int = 0
    seconds: float = 0.0
    retries: int = 0  # storage requests sent again (see :mod:`pipeline.fs.retries`)
    task_retries: int = 0  # scan tasks run again after failing (set by the graph)
    verified: tuple[str, ...] = ()
    decoded: int = 0

    @property
    def all_files(self) -> FileSet:
        """The counted files of every group."""
        total = FileSet()
        for files in self.files.values():
            total = total.merge(files)
        return total

    def merge(self, other: ScanResult) -> ScanResult:
        summaries = dict(self.summaries)
        for key, value in other.summaries.items():
            summaries[key] = merge_summaries(summaries[key], value) if key in summaries else value
        return ScanResult(
            summaries,
            self.images + other.images,
            self.high_bit_depth + other.high_bit_depth,
            self.skipped + other.skipped,
            _merged_files(self.files, other.files),
            self.rows + other.rows,
            self.bytes_read + other.bytes_read,
            self.seconds + other.seconds,
            self.retries + other.retries,
            self.task_retries + other.task_retries,
            self.verified + other.verified,
            self.decoded + other.decoded,
        )


def merge_results(results: Iterable[ScanResult]) -> ScanResult:
    """Merge any number of results, in any order and grouping (merges are associative)."""
    total = ScanResult()
    for result in results:
        total = total.merge(result)
    return total
