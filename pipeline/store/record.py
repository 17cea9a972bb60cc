"""The per-file record kept beside each version: every counted file and its exact moments.

``v000002.files.parquet`` (:func:`~pipeline.store.names.record_name`) holds one row per
counted file, sorted by path: its listing entry (path, size, ETag/mtime token), layout, whether
it stores more than 8 bits per sample, and its per-channel pixel count, sums and sums of
squares (decimal strings: exact at any size) and min/max. Incremental runs diff the listing
against it and take old contributions out exactly.

Paths are stored as bytes (:func:`~pipeline.core.files.path_bytes`: UTF-8, and a local name
that is not valid UTF-8 as it is on disk), since Parquet strings must be valid UTF-8; records
written with a string path column are read as well.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..core.files import FileEntry, path_bytes, path_text
from ..core.keys import Layout
from ..core.moments import Moments
from ..errors import StatsFileError

__all__ = ["MAX_RECORD_BYTES", "FileRecord", "FileRow"]

#: The largest record read (hundreds of millions of files' rows): a record is read with this
#: bound, never without one.
MAX_RECORD_BYTES = 2**32

_FIELDS: list[pa.Field[Any]] = [
    pa.field("path", pa.binary()),
    pa.field("size", pa.int64()),
    pa.field("token", pa.string()),
    pa.field("layout", pa.string()),
    pa.field("high_bit_depth", pa.bool_()),
    pa.field("count", pa.int64()),
    pa.field("sum", pa.list_(pa.string())),
    pa.field("sum_sq", pa.list_(pa.string())),
    pa.field("min", pa.list_(pa.int64())),
    pa.field("max", pa.list_(pa.int64())),
]
SCHEMA = pa.schema(_FIELDS)
_STRING_PATHS = SCHEMA.set(0, pa.field("path", pa.string()))


@dataclass(frozen=True)
class FileRow:
    """One counted file: its listing entry, layout and exact moments."""

    entry: FileEntry
    layout: Layout
    moments: Moments  # integer samples only: float ones keep no record
    high_bit_depth: bool = False


@dataclass(frozen=True)
class FileRecord:
    """An immutable, path-sorted table of counted files (integer samples only)."""

    table: pa.Table

    @classmethod
    def from_rows(cls, rows: Sequence[FileRow]) -> FileRecord:
        ordered = sorted(rows, key=lambda row: row.entry.path)
        columns = {
            "path": [path_bytes(r.entry.path) for r in ordered],
            "size": [r.entry.size for r in ordered],
            "token": [r.entry.token for r in ordered],
            "layout": [str(r.layout) for r in ordered],
            "high_bit_depth": [r.high_bit_depth for r in ordered],
            "count": [r.moments.count for r in ordered],
            "sum": [[str(v) for v in r.moments.sum] for r in ordered],
            "sum_sq": [[str(v) for v in r.moments.sum_sq] for r in ordered],
            "min": [list(r.moments.min) for r in ordered],
            "max": [list(r.moments.max) for r in ordered],
        }
        return cls(pa.table(columns, schema=SCHEMA))

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "record") -> FileRecord:
        if len(data) > MAX_RECORD_BYTES:
            raise StatsFileError(f"{name} is larger than {MAX_RECORD_BYTES} bytes")
        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowException, OSError) as exc:
            raise StatsFileError(f"{name} is not a readable Parquet file: {exc}") from exc
        if table.schema.equals(_STRING_PATHS):  # written before paths were bytes
            table = table.cast(SCHEMA)
        if not table.schema.equals(SCHEMA):
            raise StatsFileError(f"{name} does not have the record schema")
        return cls(table)

    def to_bytes(self) -> bytes:
        """The Parquet file stored beside a version."""
        buffer = io.BytesIO()
        pq.write_table(self.table, buffer, compression="zstd")
        return buffer.getvalue()

    def to_block(self) -> bytes:
        """A compact Arrow IPC block: how a shard's rows travel through the Dask reduction
        (bytes pickle as a copy, rows as objects would be re-pickled at every merge level)."""
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, SCHEMA) as writer:
            writer.write_table(self.table)
        return sink.getvalue().to_pybytes()

    @classmethod
    def from_blocks(cls, blocks: Sequence[bytes]) -> FileRecord:
        """The rows of several :meth:`to_block` blocks, sorted by path."""
        parts = [cls(pa.ipc.open_stream(block).read_all()) for block in blocks]
        return cls.concat(parts) if parts else cls.from_rows([])

    def __len__(self) -> int:
        return self.table.num_rows

    def entries(self) -> list[FileEntry]:
        """The listing entries, in path order."""
        columns = self.table.select(["path", "size", "token"]).to_pydict()
        return [
            FileEntry(path_text(p), s, t)
            for p, s, t in zip(columns["path"], columns["size"], columns["token"], strict=True)
        ]

    def take(self, indices: Sequence[int]) -> FileRecord:
        return FileRecord(self.table.take(pa.array(indices, type=pa.int64())))

    def rows(self) -> list[FileRow]:
        """Every row as a :class:`FileRow` with exact Python-integer moments."""
        data = self.table.to_pydict()
        return [
            FileRow(
                FileEntry(path_text(data["path"][i]), data["size"][i], data["token"][i]),
                Layout.parse(data["layout"][i]),
                Moments(
                    data["count"][i],
                    tuple(int(v) for v in data["sum"][i]),
                    tuple(int(v) for v in data["sum_sq"][i]),
                    tuple(data["min"][i]),
                    tuple(data["max"][i]),
                ),
                data["high_bit_depth"][i],
            )
            for i in range(self.table.num_rows)
        ]

    def extremes(self) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """Per-channel min and max over every row (vectorised), or None for no rows."""
        if not self.table.num_rows:
            return None
        mins = np.asarray(pc.list_flatten(self.table.column("min")))
        maxs = np.asarray(pc.list_flatten(self.table.column("max")))
        channels = len(mins) // self.table.num_rows
        return (
            tuple(int(v) for v in mins.reshape(-1, channels).min(axis=0)),
            tuple(int(v) for v in maxs.reshape(-1, channels).max(axis=0)),
        )

    @staticmethod
    def concat(parts: Sequence[FileRecord]) -> FileRecord:
        """The rows of every part, sorted by path."""
        if not parts:
            return FileRecord.from_rows([])
        table = pa.concat_tables([part.table for part in parts]).combine_chunks()
        return FileRecord(table.take(pc.sort_indices(table, [("path", "ascending")])))
