"""Incremental runs, pure: diff a listing against the previous record, carry totals over.

Integers make it exact: the previous version's histograms minus those of removed and changed
files are, bit for bit, the histograms of the files that stayed; adding what was read now gives
what a full run over the current files gives, group by group. Every other statistic (sums,
min, max, quantiles) follows from the histograms.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import ScanOptions
from ..core.files import FileEntry, FileSet
from ..core.groups import NO_GROUP
from ..core.histogram import AnySummary, Histogram
from ..core.keys import ResultKey
from ..core.result import ScanResult
from ..store.document import Basis
from ..store.record import FileRecord

__all__ = ["Plan", "carry_over", "plan"]


@dataclass(frozen=True)
class Plan:
    """What a run reads and what it keeps from the previous record."""

    to_read: list[FileEntry]  # new and changed files (files skipped last time are new)
    reused: list[int]  # record rows kept as they are
    dropped: list[int]  # record rows of changed and removed files: taken out
    removed: int  # how many of ``dropped`` are gone from the listing
    #: with digests (--verify): per file of ``to_read``, the digest to check (None: count it)
    expected: list[bytes | None] = field(default_factory=list)

    @classmethod
    def full(cls, entries: list[FileEntry]) -> Plan:
        """Read every file, keep nothing."""
        return cls(entries, [], [], 0)


def plan(
    entries: Sequence[FileEntry],
    previous: Sequence[FileEntry],
    digests: Sequence[bytes | None] | None = None,
) -> Plan:
    """Diff the listing against the previous record's entries: linear, one dict lookup each.

    A file is unchanged when its path, size and token (ETag or mtime) are all the same. With
    ``digests`` (of the previous rows: ``--verify``), an unchanged file is read all the same,
    to check its digest: its row is kept for now (``reused``) and it is in ``to_read`` with
    its digest in ``expected``; a row without a digest cannot be checked: its file is counted
    again.
    """
    index = {entry.path: i for i, entry in enumerate(previous)}
    to_read: list[FileEntry] = []
    expected: list[bytes | None] = []
    reused: list[int] = []
    dropped: list[int] = []
    for entry in entries:
        i = index.pop(entry.path, None)
        if i is not None and previous[i] == entry:
            if digests is None:
                reused.append(i)
                continue
            if digests[i] is not None:
                reused.append(i)
                to_read.append(entry)
                expected.append(digests[i])
                continue
        to_read.append(entry)
        if digests is not None:
            expected.append(None)
        if i is not None:
            dropped.append(i)
    removed = sorted(index.values())
    return Plan(to_read, reused, sorted(dropped + removed), len(removed), expected)


def carry_over(
    basis: Basis, record: FileRecord, planned: Plan, options: ScanOptions
) -> ScanResult:
    """What the files that stayed unchanged hold: the previous version's groups with the
    dropped rows taken out exactly."""
    group_of = options.group_by or (lambda path: NO_GROUP)
    gone = record.take(planned.dropped).totals(group_of)
    summaries: dict[ResultKey, AnySummary] = {}
    images: Counter[ResultKey] = Counter()
    files: dict[str, FileSet] = {}
    high = basis.high_bit_depth_images
    for name, part in basis.parts.items():
        histogram, count, kept = part.summary, part.images, part.files
        assert isinstance(histogram, Histogram)  # a basis holds integer samples only
        if name in gone:
            histogram = histogram.subtract(gone[name].histogram)
            count -= gone[name].images
            kept = kept.subtract(gone[name].files)
            high -= gone[name].high_bit_depth
        if count:
            key = ResultKey(name, basis.layout)
            summaries[key] = histogram
            images[key] = count
            files[name] = kept
    return ScanResult(summaries=summaries, images=images, high_bit_depth=high, files=files)
