"""The per-file record: every counted file and its exact histogram, as Arrow tables.

A table holds one row per counted file, sorted by path: its listing entry (path, size,
ETag/mtime token), layout, whether it stores more than 8 bits per sample, and its histogram,
sparse: ``bins`` lists the flat index ``channel * 2**bits + value`` of every value the file
holds, ``counts`` how many samples hold it; and
``digest``, the SHA-256 of the bytes counted (:mod:`pipeline.core.digest`), which ``--verify``
checks. Records written before digests were kept have no such column: they load with null
digests (such a row cannot be verified, so ``--verify`` counts its file again). A
version's record is a sequence of such tables, its segments (:mod:`pipeline.store.segments`);
incremental runs diff the listing against them and take the old contributions of changed and
removed files out exactly.

Paths are stored as bytes (:func:`~pipeline.core.files.path_bytes`: UTF-8, and a local name
that is not valid UTF-8 as it is on disk), since Parquet strings must be valid UTF-8; records
written with a string path column are read as well.

A table is stored as an Arrow IPC file, zstd-compressed, ``bins`` and ``counts`` in the
narrowest unsigned integers that hold them (uint16 for 8-bit images: half the bytes to
compress); it is read back with the schema above. A segment of 32 rows of 32x32 PNGs
encodes in about half the time Parquet took (30 against 63 us a row: Parquet costs ~1.5 ms a
file even uncompressed), at ~20% more bytes. Records written as Parquet files (before) are
read as well.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..core.digest import DIGEST_BYTES
from ..core.files import FileEntry, FileSet, path_bytes, path_text
from ..core.histogram import Histogram
from ..core.keys import Layout
from ..core.result import RecordPart
from ..errors import StatsFileError

__all__ = ["MAX_RECORD_BYTES", "FileRecord", "FileRow", "GroupTotals", "sparse"]

#: The largest record segment or manifest read: each is read with this bound, never without.
MAX_RECORD_BYTES = 2**32

_FIELDS: list[pa.Field[Any]] = [
    pa.field("path", pa.binary()),
    pa.field("size", pa.int64()),
    pa.field("token", pa.string()),
    pa.field("layout", pa.string()),
    pa.field("high_bit_depth", pa.bool_()),
    pa.field("bins", pa.list_(pa.int32())),
    pa.field("counts", pa.list_(pa.int64())),
    pa.field("digest", pa.binary(DIGEST_BYTES)),  # null: not known (an older record)
]
SCHEMA = pa.schema(_FIELDS)
#: Older record schemas, still read: without digests, with paths as bytes or as strings.
_NO_DIGEST = pa.schema(_FIELDS[:-1])
_OLDER = (_NO_DIGEST, _NO_DIGEST.set(0, pa.field("path", pa.string())))
_IPC = pa.ipc.IpcWriteOptions(compression="zstd")
_PARQUET_MAGIC = b"PAR1"
#: Unsigned types tried, narrowest first, for the stored ``bins`` and ``counts`` values.
_NARROW = ((pa.uint16(), 2**16), (pa.uint32(), 2**32))


@dataclass(frozen=True)
class FileRow:
    """One counted file: its listing entry, layout and exact histogram."""

    entry: FileEntry
    layout: Layout
    histogram: Histogram
    high_bit_depth: bool = False
    digest: bytes | None = None  # SHA-256 of the bytes counted (None: not known)


@dataclass(frozen=True)
class GroupTotals:
    """What some rows of one group add up to: their histogram, files and images."""

    histogram: Histogram
    files: FileSet
    images: int
    high_bit_depth: int


@dataclass(frozen=True)
class FileRecord:
    """An immutable, path-sorted table of counted files (integer samples only)."""

    table: pa.Table

    @classmethod
    def from_columns(
        cls,
        entries: Sequence[FileEntry],
        layouts: Sequence[Layout],
        high_bit_depth: Sequence[bool],
        bins: Sequence[np.ndarray],
        counts: Sequence[np.ndarray],
        digests: Sequence[bytes | None] | None = None,
    ) -> FileRecord:
        """One row per file, in the order given, each histogram sparse (see :func:`sparse`);
        ``digests`` None: none known."""
        lengths = np.zeros(len(bins) + 1, np.int32)
        np.cumsum([len(b) for b in bins], out=lengths[1:])
        return cls.from_flat(
            entries, layouts, high_bit_depth, lengths, _concat(bins, np.int32),
            _concat(counts, np.int64), digests,
        )

    @classmethod
    def from_flat(
        cls,
        entries: Sequence[FileEntry],
        layouts: Sequence[Layout],
        high_bit_depth: Sequence[bool],
        offsets: np.ndarray,
        bins: np.ndarray,
        counts: np.ndarray,
        digests: Sequence[bytes | None] | None = None,
    ) -> FileRecord:
        """As :meth:`from_columns`, every row's sparse bins and counts given end to end
        (int32 and int64), row ``i``'s at ``offsets[i]:offsets[i + 1]`` (int32)."""
        positions = pa.array(offsets, pa.int32())
        columns = {
            "path": pa.array([path_bytes(e.path) for e in entries], pa.binary()),
            "size": pa.array([e.size for e in entries], pa.int64()),
            "token": pa.array([e.token for e in entries], pa.string()),
            "layout": pa.array([str(layout) for layout in layouts], pa.string()),
            "high_bit_depth": pa.array(high_bit_depth, pa.bool_()),
            "bins": pa.ListArray.from_arrays(
                positions, pa.array(bins, pa.int32()), type=pa.list_(pa.int32())
            ),
            "counts": pa.ListArray.from_arrays(
                positions, pa.array(counts, pa.int64()), type=pa.list_(pa.int64())
            ),
            "digest": pa.array(digests if digests is not None else [None] * len(entries),
                               pa.binary(DIGEST_BYTES)),
        }
        return cls(pa.table(columns, schema=SCHEMA))

    @classmethod
    def from_rows(cls, rows: Sequence[FileRow]) -> FileRecord:
        """The rows, sorted by path."""
        ordered = sorted(rows, key=lambda row: row.entry.path)
        pairs = [sparse(r.histogram.counts) for r in ordered]
        return cls.from_columns(
            [r.entry for r in ordered],
            [r.layout for r in ordered],
            [r.high_bit_depth for r in ordered],
            [b for b, _ in pairs],
            [c for _, c in pairs],
            [r.digest for r in ordered],
        )

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "record") -> FileRecord:
        if len(data) > MAX_RECORD_BYTES:
            raise StatsFileError(f"{name} is larger than {MAX_RECORD_BYTES} bytes")
        try:
            if data[:4] == _PARQUET_MAGIC:  # written before records were Arrow files
                table = pq.read_table(io.BytesIO(data))
            else:
                table = _widened(pa.ipc.open_file(pa.py_buffer(data)).read_all())
        except (pa.ArrowException, OSError) as exc:
            raise StatsFileError(f"{name} is not a readable record file: {exc}") from exc
        if any(table.schema.equals(older) for older in _OLDER):
            table = table.cast(_NO_DIGEST).append_column(
                SCHEMA.field("digest"), pa.nulls(table.num_rows, pa.binary(DIGEST_BYTES))
            )
        if not table.schema.equals(SCHEMA):
            raise StatsFileError(f"{name} does not have the record schema")
        return cls(table)

    def to_bytes(self) -> bytes:
        """The Arrow IPC file stored beside a version (see the module)."""
        table = _narrowed(self.table)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema, options=_IPC) as writer:
            writer.write_table(table)
        return bytes(sink.getvalue().to_pybytes())

    def parts(self, rows: int) -> tuple[RecordPart, ...]:
        """The table (sorted by path) cut into segments of at most ``rows`` rows, each
        encoded with what a manifest says of it."""
        entries = self.entries()
        parts = []
        for start in range(0, len(entries), rows):
            mine = entries[start : start + rows]
            files = FileSet()
            for entry in mine:
                files = files.add(entry)
            data = FileRecord(self.table.slice(start, len(mine))).to_bytes()
            parts.append(RecordPart(mine[0].path, mine[-1].path, files, data))
        return tuple(parts)

    @classmethod
    def from_parts(cls, parts: Sequence[RecordPart]) -> FileRecord:
        """The rows of several parts, sorted by path."""
        tables = [cls.from_bytes(part.data) for part in parts]
        return cls.concat(tables) if tables else cls.from_rows([])

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def entries(self) -> list[FileEntry]:
        """The listing entries, in path order."""
        columns = self.table.select(["path", "size", "token"]).to_pydict()
        return [
            FileEntry(path_text(p), s, t)
            for p, s, t in zip(columns["path"], columns["size"], columns["token"], strict=True)
        ]

    def digests(self) -> list[bytes | None]:
        """Each row's content digest (None: not known), in path order."""
        return list(self.table.column("digest").to_pylist())

    def without(self, paths: set[str]) -> tuple[FileRecord, FileRecord]:
        """(the rows of ``paths``, the other rows), both in path order."""
        wanted = pa.array([path_bytes(p) for p in paths], pa.binary())
        mask = pc.is_in(self.table.column("path"), value_set=wanted)
        return FileRecord(self.table.filter(mask)), FileRecord(self.table.filter(pc.invert(mask)))

    def take(self, indices: Sequence[int]) -> FileRecord:
        return FileRecord(self.table.take(pa.array(indices, type=pa.int64())))

    def rows(self) -> list[FileRow]:
        """Every row as a :class:`FileRow` (dense histograms: for tests and small records)."""
        data = self.table.to_pydict()
        rows = []
        for i in range(self.table.num_rows):
            layout = Layout.parse(data["layout"][i])
            counts = np.zeros(len(layout.channels) * _bins(layout), np.int64)
            counts[np.asarray(data["bins"][i], np.int64)] = data["counts"][i]
            rows.append(
                FileRow(
                    FileEntry(path_text(data["path"][i]), data["size"][i], data["token"][i]),
                    layout,
                    Histogram(counts.reshape(len(layout.channels), -1)),
                    data["high_bit_depth"][i],
                    data["digest"][i],
                )
            )
        return rows

    def totals(self, group_of: Callable[[str], str]) -> dict[str, GroupTotals]:
        """What the rows add up to, per group (``group_of`` a row's path): one pass, no
        Python object per row beyond its path."""
        if not self.table.num_rows:
            return {}
        layouts = {str(name) for name in self.table.column("layout").to_pylist()}
        if len(layouts) != 1:
            raise StatsFileError(f"the record mixes layouts: {sorted(layouts)}")
        layout = Layout.parse(layouts.pop())
        entries = self.entries()
        names = [group_of(entry.path) for entry in entries]
        groups = sorted(set(names))
        index = {name: i for i, name in enumerate(groups)}
        row_group = np.array([index[name] for name in names], np.int64)
        bins_column = self.table.column("bins").combine_chunks()
        lengths = np.asarray(pc.list_value_length(bins_column), np.int64)
        bins = np.asarray(pc.list_flatten(bins_column), np.int64)
        counts = np.asarray(pc.list_flatten(self.table.column("counts")), np.int64)
        width = len(layout.channels) * _bins(layout)
        sums = np.zeros((len(groups), width), np.int64)
        np.add.at(sums, (np.repeat(row_group, lengths), bins), counts)  # exact int64 adds
        high = np.asarray(self.table.column("high_bit_depth"), bool)
        totals = {}
        for i, name in enumerate(groups):
            mine = row_group == i
            files = FileSet()
            for entry, member in zip(entries, mine, strict=True):
                if member:
                    files = files.add(entry)
            totals[name] = GroupTotals(
                Histogram(sums[i].reshape(len(layout.channels), -1)),
                files,
                int(mine.sum()),
                int(high[mine].sum()),
            )
        return totals

    @staticmethod
    def concat(parts: Sequence[FileRecord]) -> FileRecord:
        """The rows of every part, sorted by path."""
        if not parts:
            return FileRecord.from_rows([])
        table = pa.concat_tables([part.table for part in parts]).combine_chunks()
        return FileRecord(table.take(pc.sort_indices(table, [("path", "ascending")])))


def sparse(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A dense (channels, bins) histogram as (flat indices of its nonzero bins, int32;
    their counts, int64)."""
    flat = counts.reshape(-1)
    bins = np.flatnonzero(flat)
    return bins.astype(np.int32), flat[bins]


def _narrowed(table: pa.Table) -> pa.Table:
    """``table`` with ``bins`` and ``counts`` in the narrowest unsigned type that holds them."""
    for name in ("bins", "counts"):
        column: pa.ListArray[Any] = table.column(name).combine_chunks()  # type: ignore[assignment]
        values = column.values
        top = pc.max(values).as_py() if len(values) else 0
        kind = next((kind for kind, bound in _NARROW if top < bound), None)
        if kind is not None:
            narrow = pa.ListArray.from_arrays(column.offsets, values.cast(kind))
            table = table.set_column(table.schema.get_field_index(name), name, narrow)
    return table


def _widened(table: pa.Table) -> pa.Table:
    """A stored table with ``bins`` and ``counts`` back in the record's types (the cast is
    checked: a value that does not fit is an error, never a wrapped number)."""
    for name in ("bins", "counts"):
        index = table.schema.get_field_index(name)
        wanted = SCHEMA.field(name).type
        if index >= 0 and table.schema.field(index).type != wanted:
            if table.schema.field(index).type not in (pa.list_(kind) for kind, _ in _NARROW):
                raise StatsFileError(f"the record's {name} column has an unknown type")
            table = table.set_column(index, name, table.column(index).cast(wanted))
    return table


def _bins(layout: Layout) -> int:
    return 256 if layout.dtype == "uint8" else 65536


def _concat(arrays: Sequence[np.ndarray], dtype: type[np.generic]) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)
