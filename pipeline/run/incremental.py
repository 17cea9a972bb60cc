"""Incremental runs, pure: diff a listing against the previous record, carry totals over.

Integers make it exact: the previous version's sums minus the old contributions of removed
and changed files is, bit for bit, the sum over the files that stayed; adding what was read
now gives what a full run over the current files gives. Min and max cannot be subtracted:
they are recomputed from the per-file rows that stayed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..core.files import FileEntry
from ..core.keys import ResultKey
from ..core.result import ScanResult
from ..store.document import Basis
from ..store.record import FileRecord
from .scan import NO_GROUP

__all__ = ["Plan", "carry_over", "plan"]


@dataclass(frozen=True)
class Plan:
    """What a run reads and what it keeps from the previous record."""

    to_read: list[FileEntry]  # new and changed files (files skipped last time are new)
    reused: list[int]  # record rows kept as they are
    dropped: list[int]  # record rows of changed and removed files: taken out
    removed: int  # how many of ``dropped`` are gone from the listing

    @classmethod
    def full(cls, entries: list[FileEntry]) -> Plan:
        """Read every file, keep nothing."""
        return cls(entries, [], [], 0)


def plan(entries: Sequence[FileEntry], previous: Sequence[FileEntry]) -> Plan:
    """Diff the listing against the previous record's entries: linear, one dict lookup each.

    A file is unchanged when its path, size and token (ETag or mtime) are all the same.
    """
    index = {entry.path: i for i, entry in enumerate(previous)}
    to_read: list[FileEntry] = []
    reused: list[int] = []
    dropped: list[int] = []
    for entry in entries:
        i = index.pop(entry.path, None)
        if i is not None and previous[i] == entry:
            reused.append(i)
            continue
        to_read.append(entry)
        if i is not None:
            dropped.append(i)
    removed = sorted(index.values())
    return Plan(to_read, reused, sorted(dropped + removed), len(removed))


def carry_over(basis: Basis, record: FileRecord, planned: Plan) -> ScanResult:
    """The totals of the files that stayed unchanged: the previous version's totals with the
    dropped rows taken out exactly, min/max recomputed from the rows that stayed."""
    kept = record.take(planned.reused)
    extremes = kept.extremes()
    if extremes is None:
        return ScanResult()
    moments = basis.moments
    files = basis.files
    high = basis.high_bit_depth_images
    for row in record.take(planned.dropped).rows():
        moments = moments.subtract(row.moments, moments.min, moments.max)
        files = files.remove(row.entry)
        high -= row.high_bit_depth
    moments = replace(moments, min=extremes[0], max=extremes[1])
    key = ResultKey(NO_GROUP, basis.layout)
    return ScanResult(
        summaries={key: moments},
        images=Counter({key: len(kept)}),
        high_bit_depth=high,
        files=files,
        rows=(),
    )
