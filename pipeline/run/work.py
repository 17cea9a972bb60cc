"""From the plan to shards, streaming: the files to read, cut into shards as the plan goes.

New files are cut into shards of their own (each shard's record segments are then written as
the worker cut them); the changed files of consecutive rewritten segments share shards (their
rows go back to their segments on the client). Segments the plan reuses or rewrites are
handed to the :class:`~pipeline.run.recorder.Recorder` in path order, rewritten ones read
ahead, a few at once. Nothing is cut until the plan has shown either enough files for full
shards or all of them: a small collection is cut into smaller shards, at least ``min_shards``,
so that large images still spread over every worker.

Back-pressure: the manifest is written in path order, so every range planned after one still
being read waits in the recorder. When more than :data:`MAX_BACKLOG` ranges wait, the files
held back for a shard are sent as one and :data:`PAUSE` is yielded: the caller lets a result
arrive before it asks for more, so the planning never runs far ahead of the results.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, count

from ..core.files import FileEntry, Shard
from ..store.record import FileRecord
from ..store.segments import Segment
from .plan import Changed, Fresh, Reused, Unit
from .recorder import Recorder, _Slot

__all__ = ["MAX_BACKLOG", "PAUSE", "Limits", "Pause", "Work", "shards"]

#: Rewritten segments read ahead of the plan, at once.
READ_AHEAD = 16
#: Ranges waiting for the manifest (see the module) before the plan pauses.
MAX_BACKLOG = 4096


@dataclass(frozen=True)
class Limits:
    """The most files and bytes a shard holds."""

    bytes: int
    files: int

    def lowered(self, files: int, nbytes: int, min_shards: int) -> Limits:
        """Limits that cut ``files`` files of ``nbytes`` bytes into ``min_shards`` shards at
        least (when there are that many files)."""
        return Limits(
            max(1, min(self.bytes, math.ceil(nbytes / min_shards))),
            max(1, min(self.files, files // min_shards)),
        )


@dataclass(frozen=True)
class Work:
    """A shard to scan and the record slots its rows belong to."""

    shard: Shard
    slots: list[_Slot]


class Pause:
    """The plan waits for results (see the module)."""

    def __repr__(self) -> str:
        return "PAUSE"


PAUSE = Pause()


def shards(
    units: Iterable[Unit],
    recorder: Recorder,
    read: Callable[[Segment], FileRecord],
    limits: Limits,
    min_shards: int,
) -> Iterator[Work | Pause]:
    """The shards of the plan's files to read, in path order, and pauses."""
    ahead = _read_ahead(units, read)
    first: list[tuple[Unit, Future[FileRecord] | None]] = []
    listed = nbytes = 0
    for item in ahead:  # enough to tell whether the collection is small
        first.append(item)
        unit = item[0]
        if isinstance(unit, Fresh | Changed):
            listed += len(unit.listed)
            nbytes += sum(e.size for e in unit.listed)
        if listed >= limits.files * min_shards:
            break
    else:
        limits = limits.lowered(listed, nbytes, min_shards)
    cutter = _Cutter(recorder, limits)
    for unit, old in chain(first, ahead):
        if isinstance(unit, Reused):
            yield from cutter.fresh_out(everything=True)
            recorder.reuse(unit.segment)
            if recorder.backlog > MAX_BACKLOG:
                yield from cutter.changed_out(everything=True)
                yield PAUSE
        elif isinstance(unit, Fresh):
            yield from cutter.changed_out(everything=True)
            cutter.fresh += unit.listed
            yield from cutter.fresh_out()
        else:
            yield from cutter.fresh_out(everything=True)
            assert old is not None
            slot, to_read = recorder.rewrite(unit.segment, old.result(), unit.listed)
            if to_read:
                cutter.changed += [(slot, entry, digest) for entry, digest in to_read]
                yield from cutter.changed_out()
            else:
                recorder.seal(slot)
    yield from cutter.fresh_out(everything=True)
    yield from cutter.changed_out(everything=True)


class _Cutter:
    """Files waiting for a shard: new ones, and changed ones with their segment's slot (and
    the digest to verify, if any)."""

    def __init__(self, recorder: Recorder, limits: Limits) -> None:
        self.recorder = recorder
        self.limits = limits
        self.fresh: list[FileEntry] = []
        self.changed: list[tuple[_Slot, FileEntry, bytes | None]] = []
        self._index = count()

    def _cut(self, files: list[FileEntry], everything: bool) -> int:
        """How many of ``files`` the next shard takes (0: wait for more)."""
        size = 0
        for taken, entry in enumerate(files):
            if taken and (size + entry.size > self.limits.bytes or taken >= self.limits.files):
                return taken
            size += entry.size
        return len(files) if everything else 0

    def fresh_out(self, everything: bool = False) -> Iterator[Work]:
        while self.fresh and (taken := self._cut(self.fresh, everything)):
            files, self.fresh = self.fresh[:taken], self.fresh[taken:]
            yield Work(Shard(next(self._index), tuple(files)), [self.recorder.fresh()])

    def changed_out(self, everything: bool = False) -> Iterator[Work]:
        while self.changed and (taken := self._cut([e for _, e, _ in self.changed], everything)):
            part, self.changed = self.changed[:taken], self.changed[taken:]
            slots = list(dict.fromkeys(slot for slot, _, _ in part))
            self.recorder.shard_planned(slots)
            waiting = {slot for slot, _, _ in self.changed}
            for slot in slots:
                if slot not in waiting:  # none of its files is left behind: all are planned
                    self.recorder.seal(slot)
            expected = tuple(d for _, _, d in part)
            shard = Shard(next(self._index), tuple(e for _, e, _ in part),
                          expected if any(d is not None for d in expected) else ())
            yield Work(shard, slots)


def _read_ahead(
    units: Iterable[Unit], read: Callable[[Segment], FileRecord]
) -> Iterator[tuple[Unit, Future[FileRecord] | None]]:
    """The units, each rewritten segment's record being read a little ahead (object stores
    answer each read in tens of milliseconds)."""
    queue: deque[tuple[Unit, Future[FileRecord] | None]] = deque()
    with ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="imgstats-read") as pool:
        for unit in units:
            future = pool.submit(read, unit.segment) if isinstance(unit, Changed) else None
            queue.append((unit, future))
            if len(queue) > READ_AHEAD:
                yield queue.popleft()
        while queue:
            yield queue.popleft()
