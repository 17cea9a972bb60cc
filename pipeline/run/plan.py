"""What a run must do, range by range: the sorted listing lined up against the previous
version's record segments, streaming (neither is ever held whole).

Every listed file falls either in a segment's range (its first to its last path) or in a gap
between segments. A segment whose range holds exactly the files it recorded (same count,
bytes and fingerprint of path, size and change token) is reused as it is, unread; a segment
whose range changed must be read and rewritten; files in gaps are new. A full run is one long
gap. With ``verify`` (``--verify``), every segment is read: its files' bytes are checked
against their digests.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..core.files import FileEntry, FileSet
from ..store.segments import Segment

__all__ = ["Changed", "Fresh", "Reused", "Unit", "align"]


@dataclass(frozen=True)
class Reused:
    """A segment whose files did not change: the new version references it as it is."""

    segment: Segment


@dataclass(frozen=True)
class Changed:
    """A segment whose range changed: the files now listed in it (maybe none)."""

    segment: Segment
    listed: list[FileEntry]


@dataclass(frozen=True)
class Fresh:
    """Consecutive listed files in no segment's range: all to read."""

    listed: list[FileEntry] = field(default_factory=list)


Unit = Reused | Changed | Fresh


def align(
    listing: Iterable[FileEntry],
    segments: Iterable[Segment],
    batch: int = 4096,
    verify: bool = False,
) -> Iterator[Unit]:
    """The units of work in path order, from a sorted listing and the previous segments (in
    path order, ranges disjoint). A run of new files is cut into :class:`Fresh` units of at
    most ``batch`` files. With ``verify``, no segment is :class:`Reused` unread."""
    pending = iter(segments)
    segment = next(pending, None)
    inside: list[FileEntry] = []
    seen = FileSet()
    fresh: list[FileEntry] = []

    def close(segment: Segment) -> Unit:
        if seen == segment.files and not verify:
            return Reused(segment)
        return Changed(segment, list(inside))

    for entry in listing:
        while segment is not None and entry.path > segment.last:
            if fresh:
                yield Fresh(fresh)
                fresh = []
            yield close(segment)
            inside, seen = [], FileSet()
            segment = next(pending, None)
        if segment is not None and entry.path >= segment.first:
            inside.append(entry)
            seen = seen.add(entry)
            continue
        fresh.append(entry)
        if len(fresh) >= batch:
            yield Fresh(fresh)
            fresh = []
    if fresh:
        yield Fresh(fresh)
    while segment is not None:
        yield close(segment)
        inside, seen = [], FileSet()
        segment = next(pending, None)
