"""The shards a full run plans for a listing, through the production path (``plan.align``
and ``work.shards``), for tests that rebuild or check a run's split."""

from __future__ import annotations

import uuid

from pipeline.config import DEFAULT_SHARD_BYTES, DEFAULT_SHARD_FILES
from pipeline.core.files import FileEntry, Shard
from pipeline.core.groups import NO_GROUP
from pipeline.core.result import ScanResult
from pipeline.fs.location import resolve
from pipeline.run.plan import align
from pipeline.run.recorder import Recorder
from pipeline.run.work import Limits, shards
from pipeline.store import open_store

_STORE = open_store(resolve(f"memory://planning-{uuid.uuid4().hex}"))


def planned_shards(
    entries: list[FileEntry],
    max_bytes: int = DEFAULT_SHARD_BYTES,
    max_files: int = DEFAULT_SHARD_FILES,
    min_shards: int = 1,
) -> list[Shard]:
    """The shards a full run over ``entries`` submits, in order (nothing is written)."""
    recorder = Recorder(_STORE, 32, lambda path: NO_GROUP, ScanResult({}), None)
    try:
        work = shards(align(entries, []), recorder, lambda segment: None,
                      Limits(max_bytes, max_files), min_shards)
        return [item.shard for item in work]
    finally:
        recorder.abandon()
