"""Building a version's record and totals as scan results stream in.

The plan (:mod:`pipeline.run.plan`) gives the record's ranges in path order: segments reused
as they are, segments to rewrite (their changed files are being read), and new files (being
read). The :class:`Recorder` keeps one slot per output range, in that order: a reused segment
is ready at once; a new files' shard is ready when its scan returns (its segments, cut on the
worker, are written as they are); a rewritten segment is ready when every shard holding one of
its files has returned (its kept rows and new rows are merged and written). Ready slots are
appended to the manifest in order, so the manifest streams too. Totals start from the previous
version's (or nothing), lose the rows taken out, gain every result.

With ``verify`` (``--verify``) every segment is rewritten: its unchanged files are read again
with the digests of their rows; a row stays while its file's result is pending, and is taken
out (and its file counted afresh) when the bytes did not have the digest. A rewritten segment
that ends up with exactly its old rows is referenced as it is, not written again.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..core.files import FileEntry, FileSet, Shard
from ..core.histogram import Histogram
from ..core.keys import Layout, ResultKey
from ..core.result import RecordPart, ScanResult
from ..errors import StatsFileError, StoreError
from ..store.base import StatsStore
from ..store.names import manifest_name, run_folder, segment_name
from ..store.record import FileRecord
from ..store.segments import ManifestWriter, Segment
from . import incremental

__all__ = ["RecordStats", "Recorder"]

log = logging.getLogger(__name__)

#: Segment files written at once (object stores answer in tens of milliseconds).
WRITERS = 8


@dataclass
class RecordStats:
    """What building the record cost: segments reused, read and written, and their bytes."""

    segments_reused: int = 0
    segments_read: int = 0
    segments_written: int = 0
    bytes_read: int = 0
    bytes_written: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass(eq=False)
class _Slot:
    """One range of the new record, in path order: its segments once they are known."""

    pending: int = 0  # shards still to return
    #: known (reused) or being written (None: the store refused it)
    segments: list[Segment | Future[Segment | None]] = field(default_factory=list)
    ready: bool = False  # every segment of the range is known (and being written)
    # a rewritten segment: its range, the rows kept and the new rows returned so far
    rewrite: bool = False
    sealed: bool = False  # every file it reads is in a shard already
    first: str = ""
    last: str = ""
    old: Segment | None = None  # the segment rewritten
    kept: FileRecord | None = None
    new: list[FileRecord] = field(default_factory=list)


class Recorder:
    """A run's record and totals, assembled from the plan and the scan results."""

    def __init__(
        self,
        store: StatsStore,
        segment_files: int,
        group_of: Callable[[str], str],
        totals: ScanResult,
        layout: Layout | None,
        verify: bool = False,
    ) -> None:
        self.store = store
        self.segment_files = segment_files
        self.group_of = group_of
        self.totals = totals  # the previous version's, or nothing
        self.layout = layout  # the previous version's layout (for the rows taken out)
        self.verify = verify  # check the digest of every file the plan keeps
        self.stats = RecordStats()
        self.reused = 0  # files whose record rows carry over
        self.removed = 0  # files of the previous version no longer listed
        self.verified = 0  # files read whose bytes had their row's digest (not decoded)
        self._slots: deque[_Slot] = deque()
        self._manifest = ManifestWriter()
        self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="imgstats-record")
        self._folder = run_folder()  # this run's segments (deleted if it fails)
        self.failure: Exception | None = None  # the store refused a segment
        self._manifest_name: str | None = None
        self._open: list[_Slot] = []  # rewritten segments waiting for rows, in path order
        self._starts: list[str] = []

    # the plan, in path order -----------------------------------------------------------------
    def reuse(self, segment: Segment) -> None:
        """A segment whose files did not change."""
        self._slots.append(_Slot(segments=[segment], ready=True))
        self.reused += segment.files.count
        self.stats.segments_reused += 1
        self._flush()

    def fresh(self) -> _Slot:
        """A slot for one shard of new files; :meth:`scanned` fills it."""
        slot = _Slot(pending=1)
        self._slots.append(slot)
        return slot

    def rewrite(self, segment: Segment, old: FileRecord, listed: list[FileEntry]) -> tuple[
        _Slot, list[tuple[FileEntry, bytes | None]]
    ]:
        """A segment whose range changed (or to verify), read: its slot and the files to read
        for it, each with the digest to check (None: count it). The rows of changed and
        removed files are taken out of the totals here."""
        self.stats.segments_read += 1
        self.stats.bytes_read += segment.size
        planned = incremental.plan(listed, old.entries(), old.digests() if self.verify else None)
        dropped = old.take(planned.dropped)
        self._take_out(dropped)
        self.reused += len(planned.reused)
        self.removed += planned.removed
        slot = _Slot(rewrite=True, first=segment.first, last=segment.last, old=segment,
                     kept=old.take(planned.reused))
        self._slots.append(slot)
        self._open.append(slot)
        self._starts.append(segment.first)
        expected = planned.expected or [None] * len(planned.to_read)
        return slot, list(zip(planned.to_read, expected, strict=True))

    def shard_planned(self, slots: list[_Slot]) -> None:
        for slot in slots:
            slot.pending += 1

    def seal(self, slot: _Slot) -> None:
        """Every file a rewritten segment reads is in a planned shard (maybe none)."""
        slot.sealed = True
        if not slot.pending:
            self._close(slot)
        self._flush()

    # results, in any order ---------------------------------------------------------------------
    def scanned(self, slots: list[_Slot], result: ScanResult, shard: Shard) -> None:
        """A shard's result: its summaries join the totals, its rows their slots."""
        # the rows go to their slots, the verified files are counted apart
        self.totals = self.totals.merge(dataclasses.replace(result, rows=(), verified=()))
        self.verified += len(result.verified)
        if shard.expected:
            self._unverified(shard, set(result.verified))
        if len(slots) == 1 and not slots[0].rewrite:  # a shard of new files: its own range
            slots[0].segments += [self._write(part) for part in result.rows]
        else:
            self._route(result.rows)
        for slot in slots:
            slot.pending -= 1
            if not slot.pending:
                if not slot.rewrite:
                    slot.ready = True
                elif slot.sealed:
                    self._close(slot)
        self._flush()

    def _route(self, parts: tuple[RecordPart, ...]) -> None:
        """New rows of rewritten segments, to the segment whose range holds them."""
        for part in parts:
            record = FileRecord.from_bytes(part.data)
            paths = [e.path for e in record.entries()]
            start = 0
            while start < len(paths):
                at = bisect.bisect_right(self._starts, paths[start]) - 1
                slot = self._open[at]
                stop = bisect.bisect_right(paths, slot.last, lo=start)
                slot.new.append(FileRecord(record.table.slice(start, stop - start)))
                start = stop

    def _unverified(self, shard: Shard, verified: set[str]) -> None:
        """The files of ``shard`` read to verify whose bytes did not have their row's digest
        (changed, or now unreadable): their rows are taken out (a new row, if any, came with
        the result)."""
        changed: dict[int, set[str]] = {}
        for position, entry in enumerate(shard.files):
            if shard.expected_digest(position) is not None and entry.path not in verified:
                at = bisect.bisect_right(self._starts, entry.path) - 1
                changed.setdefault(at, set()).add(entry.path)
        for at, paths in changed.items():
            slot = self._open[at]
            assert slot.kept is not None
            dropped, slot.kept = slot.kept.without(paths)
            self._take_out(dropped)
            self.reused -= len(dropped)

    def _close(self, slot: _Slot) -> None:
        """A rewritten segment with all its rows: merged, cut, written (or, holding exactly
        its old rows, referenced as it is)."""
        assert slot.kept is not None
        if slot.old is not None and not slot.new and len(slot.kept) == slot.old.files.count:
            slot.segments.append(slot.old)
            self.stats.segments_reused += 1
        else:
            merged = FileRecord.concat([slot.kept, *slot.new])
            slot.segments += [self._write(part) for part in merged.parts(self.segment_files)]
        at = self._open.index(slot)
        del self._open[at], self._starts[at]
        slot.kept, slot.new, slot.ready = None, [], True

    def _take_out(self, dropped: FileRecord) -> None:
        if not len(dropped) or self.layout is None:
            return
        gone = dropped.totals(self.group_of)
        summaries = dict(self.totals.summaries)
        images = Counter(self.totals.images)
        files = dict(self.totals.files)
        high = self.totals.high_bit_depth
        for name, part in gone.items():
            key = ResultKey(name, self.layout)
            summary = summaries.get(key)
            if not isinstance(summary, Histogram):
                raise StatsFileError(f"the record holds rows of group {name!r} the version lacks")
            rest = summary.subtract(part.histogram)
            images[key] -= part.images
            files[name] = files.get(name, FileSet()).subtract(part.files)
            high -= part.high_bit_depth
            if images[key]:
                summaries[key] = rest
            else:
                del summaries[key], images[key], files[name]
        self.totals = dataclasses.replace(  # what was read so far (bytes, seconds...) stays
            self.totals, summaries=summaries, images=images, high_bit_depth=high, files=files
        )

    # output ----------------------------------------------------------------------------------
    def _write(self, part: RecordPart) -> Future[Segment | None]:
        """Write a segment; a store that refuses it costs the record, not the run (the
        statistics can still be stored: the next run then reads every file)."""

        def write() -> Segment | None:
            if self.failure is not None:
                return None
            name = segment_name(self._folder)
            try:
                self.store.write_file(name, part.data, durable=False)
            except StoreError as exc:
                self.failure = exc
                return None
            return Segment(name, part.first, part.last, part.files, len(part.data))

        self.stats.segments_written += 1
        self.stats.bytes_written += len(part.data)
        return self._writers.submit(write)

    def _flush(self) -> None:
        """Append the ready slots at the front to the manifest."""
        while self._slots and self._slots[0].ready:
            slot = self._slots.popleft()
            for known in slot.segments:
                segment = known.result() if isinstance(known, Future) else known
                if segment is not None:
                    self._manifest.add(segment)

    @property
    def backlog(self) -> int:
        """Ranges planned but not yet in the manifest: they wait for the first range that is
        still being read (the manifest is written in path order)."""
        return len(self._slots)

    @property
    def unchanged(self) -> bool:
        """Whether the record is the previous one: no segment written, no file removed."""
        return not self.stats.segments_written and not self.removed

    def finish(self) -> str | None:
        """Every segment written and on stable storage, then the manifest: its name (None:
        the store refused a segment or the manifest, and the version keeps no record)."""
        self._flush()
        if self._slots:
            raise AssertionError("the record has ranges that never completed")
        self._writers.shutdown(wait=True)
        if self.failure is None:
            try:
                self.store.sync()
                name = manifest_name()
                data = self._manifest.finish()
                self.store.write_file(name, data)
            except (OSError, StoreError) as exc:
                self.failure = exc
            else:
                self._manifest_name = name
                self.stats.bytes_written += len(data)
                return name
        self.abandon()
        return None

    def abandon(self) -> None:
        """A run that failed: stop writing and delete the segments it wrote (no manifest
        references them)."""
        self._writers.shutdown(wait=True, cancel_futures=True)
        if self.stats.segments_written:
            self.store.discard(self._folder)
        if self._manifest_name is not None:
            self.store.discard(self._manifest_name)
