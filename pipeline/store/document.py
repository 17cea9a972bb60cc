"""The stats file, its one owner: the document's keys and schema, building it, reading it back.

A stats file is JSON read as data only. :meth:`Stats.from_json` checks every key a reader
relies on and raises :class:`~pipeline.errors.StatsFileError` naming the key otherwise;
:meth:`Stats.basis` checks, in the same way, what an incremental run takes from a version.
Nothing else reads the document's keys. Schema 2 (written now) adds, for integer samples, the
exact ``histogram``, ``quantiles`` and ``variance``, and ``groups``; schema 1 files still load.

The histogram's encoding: ``{"bins": 256, "encoding": "dense", "counts": [[...] per
channel]}`` for 8-bit samples (every bin's count); ``{"bins": 65536, "encoding": "sparse",
"values": [[...] per channel], "counts": [[...] per channel]}`` for 16-bit ones (the values
held, ascending, and their counts). Float samples have no histogram (``null``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..core.files import FileSet
from ..core.histogram import AnySummary, Histogram
from ..core.keys import Layout
from ..core.moments import Moments
from ..errors import StatsFileError
from .names import is_manifest_name

__all__ = [
    "MAX_FILE_BYTES",
    "QUANTILES",
    "SCHEMA",
    "Basis",
    "GroupStats",
    "Part",
    "Stats",
    "build_document",
    "dumps",
]

SCHEMA = "imgstats.stats/2"
SCHEMAS = ("imgstats.stats/1", SCHEMA)
#: The largest stats file :meth:`Stats.from_json` will parse (a hostile 1 GB file is refused).
MAX_FILE_BYTES = 256 * 2**20
#: The quantile levels every stats file holds (each read as the decimal written here).
QUANTILES = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)


@dataclass(frozen=True)
class Part:
    """The files of one group (or of the whole run) and what they hold."""

    summary: AnySummary
    images: int
    files: FileSet


def build_document(
    *,
    version: int | None,
    parent: int | None,
    created: str,
    source: str,
    mode: str,
    layout: Layout,
    total: Part,
    skipped: Sequence[Mapping[str, str]],
    run: Mapping[str, Any],
    provenance: Mapping[str, Any],
    tool_version: str,
    groups: Mapping[str, Part] | None = None,
    group_by: str | None = None,
    record: str | None = None,
    transform: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The stats file's content, in the contract's key order (``transform``: what was done
    to the pixels before they were counted, or None)."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "version": version,
        "parent": parent,
        "created": created,
        "source": source,
        "mode": mode,
        "channels": layout.channel_names,
        "dtype": layout.dtype,
        "scale": layout.scale,
        "transform": dict(transform) if transform is not None else None,
        **_statistics(total, layout),
        "skipped": [dict(s) for s in skipped],
    }
    if groups is not None:
        doc["group_by"] = group_by
        doc["groups"] = {name: _statistics(part, layout) for name, part in sorted(groups.items())}
    doc.update(
        record=record,
        run=dict(run),
        provenance=dict(provenance),
        tool={"name": "imgstats", "version": tool_version},
    )
    return doc


def _statistics(part: Part, layout: Layout) -> dict[str, Any]:
    """The statistics keys of a set of files (the whole run, or one group)."""
    summary = part.summary
    moments = summary.moments()
    final = summary.finalize(layout.scale)
    histogram = summary if isinstance(summary, Histogram) else None
    return {
        "image_count": part.images,
        "pixel_count": moments.count,
        "sum": list(moments.sum),
        "sum_sq": list(moments.sum_sq),
        "min": list(moments.min),
        "max": list(moments.max),
        "mean": list(final.mean),
        "std": list(final.std),
        "variance": list(final.variance),
        "histogram": _encode_histogram(histogram) if histogram is not None else None,
        "quantiles": (
            {"q": list(QUANTILES), "raw": [list(histogram.quantile(q)) for q in QUANTILES]}
            if histogram is not None
            else None
        ),
        "files": {
            "count": part.files.count,
            "bytes": part.files.nbytes,
            "fingerprint": part.files.fingerprint,
        },
    }


def _encode_histogram(histogram: Histogram) -> dict[str, Any]:
    if histogram.bins == 256:
        return {"bins": 256, "encoding": "dense", "counts": histogram.counts.tolist()}
    values = [np.flatnonzero(row) for row in histogram.counts]
    return {
        "bins": histogram.bins,
        "encoding": "sparse",
        "values": [v.tolist() for v in values],
        "counts": [row[v].tolist() for row, v in zip(histogram.counts, values, strict=True)],
    }


# --- reading ---------------------------------------------------------------------------------


def _require(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in doc:
        raise StatsFileError(f"stats file has no {key!r} key")
    value = doc[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise StatsFileError(f"stats file key {key!r} has the wrong type")
    return value


def _numbers(doc: Mapping[str, Any], key: str, length: int) -> tuple[float, ...]:
    values = _require(doc, key, list)
    if len(values) != length or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise StatsFileError(f"stats file key {key!r} must hold {length} numbers")
    return tuple(_finite(key, v) for v in values)


def _finite(key: str, value: int | float) -> float:
    try:
        number = float(value)
    except OverflowError:
        raise StatsFileError(f"stats file key {key!r} holds a number too large") from None
    if not math.isfinite(number):
        raise StatsFileError(f"stats file key {key!r} holds a non-finite number")
    return number


def _integers(doc: Mapping[str, Any], key: str, length: int | None = None) -> tuple[int, ...]:
    values = _require(doc, key, list)
    if (length is not None and len(values) != length) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        raise StatsFileError(f"stats file key {key!r} must hold {length or 'some'} integers")
    return tuple(values)


def _strings(doc: Mapping[str, Any], key: str) -> tuple[str, ...]:
    values = _require(doc, key, list)
    if not all(isinstance(v, str) for v in values):
        raise StatsFileError(f"stats file key {key!r} must hold strings")
    return tuple(values)


def _optional_int(doc: Mapping[str, Any], key: str) -> int | None:
    if doc.get(key) is None:
        return None
    return int(_require(doc, key, int))


def _files(doc: Mapping[str, Any]) -> FileSet:
    files = _require(doc, "files", dict)
    fingerprint = _require(files, "fingerprint", str)
    try:
        digest = int(fingerprint, 16)
    except ValueError:
        raise StatsFileError("stats file key 'fingerprint' is not hexadecimal") from None
    return FileSet(_require(files, "count", int), _require(files, "bytes", int), digest)


def _decode_histogram(doc: Mapping[str, Any], channels: int, pixels: int) -> np.ndarray | None:
    """The ``histogram`` key as an int64 (channels, bins) array, checked; None if absent."""
    encoded = doc.get("histogram")
    if encoded is None:
        return None
    if not isinstance(encoded, dict):
        raise StatsFileError("stats file key 'histogram' must be an object")
    bins = _require(encoded, "bins", int)
    if bins not in (256, 65536):
        raise StatsFileError("stats file key 'bins' must be 256 or 65536")
    out = np.zeros((channels, bins), np.int64)
    counts = _require(encoded, "counts", list)
    if len(counts) != channels:
        raise StatsFileError(f"stats file key 'counts' must hold {channels} channels")
    try:
        if encoded.get("encoding") == "dense":
            for c, row in enumerate(counts):
                out[c] = _counts_row(row, bins)
        elif encoded.get("encoding") == "sparse":
            values = _require(encoded, "values", list)
            if len(values) != channels:
                raise StatsFileError(f"stats file key 'values' must hold {channels} channels")
            for c, (index, row) in enumerate(zip(values, counts, strict=True)):
                at = _counts_row(index, len(row))
                if len(at) and (at.min() < 0 or at.max() >= bins or (np.diff(at) <= 0).any()):
                    raise StatsFileError("stats file histogram values must ascend within bins")
                out[c, at] = _counts_row(row, len(index))
        else:
            raise StatsFileError("stats file histogram 'encoding' must be dense or sparse")
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, StatsFileError):
            raise
        raise StatsFileError("stats file histogram holds something other than counts") from None
    if (out < 0).any() or any(int(row.sum()) != pixels for row in out):
        raise StatsFileError("stats file histogram does not count pixel_count samples a channel")
    return out


def _counts_row(row: Any, length: int) -> np.ndarray:
    if (
        not isinstance(row, list)
        or len(row) != length
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in row)
    ):
        raise StatsFileError(f"stats file histogram rows must hold {length} integers")
    return np.array(row, np.int64)


@dataclass(frozen=True)
class Basis:
    """What an incremental run takes from the version it builds on, checked."""

    source: str
    mode: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    max_image_pixels: int | None
    max_file_bytes: int | None  # None also when the version predates the option
    conversion: str  # how the mode turned stored samples into counted ones
    group_by: str | None
    transform: Mapping[str, Any] | None  # the ``transform`` key (None: the pixels as decoded)
    layout: Layout
    parts: dict[str, Part]  # by group ("" for a version without groups)
    high_bit_depth_images: int
    record: str | None  # the per-file record's name in the store


@dataclass(frozen=True)
class GroupStats:
    """The statistics of a set of images: a whole version, or one of its groups."""

    channels: tuple[str, ...]
    dtype: str
    scale: float
    image_count: int
    pixel_count: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    variance: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]
    histogram: np.ndarray | None = field(repr=False, compare=False)
    entry: Mapping[str, Any] = field(repr=False, compare=False)

    def normalize_kwargs(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}`` for ``transforms.Normalize(**kwargs)``."""
        return {"mean": list(self.mean), "std": list(self.std)}

    def quantile(self, q: float | Fraction) -> tuple[int, ...]:
        """Per channel, the smallest sample value v with count(samples <= v) >= q * n, in
        raw units (numpy's ``inverted_cdf``; q read as the decimal its ``repr`` prints)."""
        if self.histogram is None:
            raise StatsFileError("these stats have no histogram (float samples, or schema 1)")
        return Histogram(self.histogram).quantile(q)

    def share_at(self, value: int) -> tuple[float, ...]:
        """Per channel, the share of samples that hold ``value`` (raw units)."""
        if self.histogram is None:
            raise StatsFileError("these stats have no histogram (float samples, or schema 1)")
        return tuple(float(s) for s in Histogram(self.histogram).share_at(value))

    @property
    def files(self) -> FileSet:
        return _files(self.entry)

    def exact_moments(self) -> Moments | None:
        """The exact integer count, sums and sums of squares (integer samples), or None
        (float samples keep float moments only)."""
        n = len(self.channels)
        sums, squares = self.entry.get("sum"), self.entry.get("sum_sq")
        if not (isinstance(sums, list) and isinstance(squares, list)):
            return None
        values = [*sums, *squares]
        if len(sums) != n or len(squares) != n or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ) or self.scale != int(self.scale):
            return None
        if self.pixel_count < 1:
            raise StatsFileError("stats file key 'pixel_count' must be positive")
        return Moments(self.pixel_count, tuple(sums), tuple(squares), (), ())

    @classmethod
    def parse(cls, entry: Mapping[str, Any], channels: tuple[str, ...], dtype: str,
              scale: float) -> GroupStats:
        n = len(channels)
        pixels = _require(entry, "pixel_count", int)
        mean = _numbers(entry, "mean", n)
        std = _numbers(entry, "std", n)
        return cls(
            channels=channels,
            dtype=dtype,
            scale=scale,
            image_count=_require(entry, "image_count", int),
            pixel_count=pixels,
            mean=mean,
            std=std,
            variance=_variance(entry, n, pixels, scale, std),
            min=_numbers(entry, "min", n),
            max=_numbers(entry, "max", n),
            histogram=_decode_histogram(entry, n, pixels),
            entry=entry,
        )


def _variance(
    entry: Mapping[str, Any], n: int, pixels: int, scale: float, std: tuple[float, ...]
) -> tuple[float, ...]:
    """``variance`` (schema 2), else exactly from the integer sums (schema 1), else std**2."""
    if "variance" in entry:
        return _numbers(entry, "variance", n)
    sums, squares = entry.get("sum"), entry.get("sum_sq")
    integer = all(
        isinstance(v, int) and not isinstance(v, bool) for v in [*(sums or []), *(squares or [])]
    )
    if integer and sums and squares and scale == int(scale):
        moments = Moments(pixels, tuple(sums), tuple(squares), (), ())
        return moments.finalize(scale).variance
    return tuple(s * s for s in std)


@dataclass(frozen=True)
class Stats(GroupStats):
    """One version of a dataset's statistics, as read from its stats file."""

    version: int = 0
    parent: int | None = None
    source: str = ""
    mode: str = ""
    groups: dict[str, GroupStats] = field(default_factory=dict, repr=False, compare=False)

    @property
    def document(self) -> Mapping[str, Any]:
        return self.entry

    @property
    def created(self) -> str:
        return str(self.document.get("created", ""))

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self.document.get("skipped", []))

    @property
    def layout(self) -> Layout:
        return Layout("".join(self.channels), self.dtype)

    @property
    def transform(self) -> dict[str, Any] | None:
        """The ``transform`` key: what was done to the pixels before they were counted (None
        for none, and for files written before transforms existed)."""
        transform = self.document.get("transform")
        if transform is not None and not isinstance(transform, dict):
            raise StatsFileError("stats file key 'transform' must be an object or null")
        return transform

    def basis(self) -> Basis:
        """What an incremental run needs of this version; :class:`StatsFileError` naming the
        key when the file cannot serve (hand-edited, older, damaged)."""
        doc = self.document
        provenance = _require(doc, "provenance", dict)
        record = doc.get("record")
        if record is not None and (not isinstance(record, str) or not is_manifest_name(record)):
            raise StatsFileError("stats file key 'record' is not a record manifest of this store")
        if not self.layout.is_integer:
            raise StatsFileError(f"{self.dtype} samples keep no exact totals")
        if self.histogram is None:
            raise StatsFileError("the version has no histogram (schema 1)")
        group_by = doc.get("group_by")
        if group_by is not None and not isinstance(group_by, str):
            raise StatsFileError("stats file key 'group_by' has the wrong type")
        sets = self.groups if "groups" in doc else {"": self}
        parts = {}
        for name, stats in sets.items():
            if stats.histogram is None:
                raise StatsFileError(f"group {name!r} has no histogram")
            parts[name] = Part(Histogram(stats.histogram), stats.image_count, stats.files)
        return Basis(
            source=self.source,
            mode=self.mode,
            include=_strings(provenance, "include"),
            exclude=_strings(provenance, "exclude"),
            max_image_pixels=_optional_int(provenance, "max_image_pixels"),
            max_file_bytes=_optional_int(provenance, "max_file_bytes"),
            conversion=str(provenance.get("conversion", "")),
            group_by=group_by,
            transform=self.transform,
            layout=self.layout,
            parts=parts,
            high_bit_depth_images=_require(provenance, "high_bit_depth_images", int),
            record=record,
        )

    @classmethod
    def from_document(cls, doc: Any) -> Stats:
        """Check a parsed stats file and wrap it; :class:`StatsFileError` names the bad key."""
        if not isinstance(doc, dict):
            raise StatsFileError("stats file is not a JSON object")
        if doc.get("schema") not in SCHEMAS:
            raise StatsFileError(f"stats file schema is not one of {', '.join(SCHEMAS)}")
        version = _require(doc, "version", int)
        parent = doc.get("parent")
        if parent is not None and (not isinstance(parent, int) or isinstance(parent, bool)):
            raise StatsFileError("stats file key 'parent' has the wrong type")
        channels = _require(doc, "channels", list)
        if not channels or not all(isinstance(c, str) for c in channels):
            raise StatsFileError("stats file key 'channels' must list channel names")
        scale = _finite("scale", _require(doc, "scale", (int, float)))
        if scale <= 0:
            raise StatsFileError("stats file key 'scale' must be positive")
        skipped = doc.get("skipped", [])
        if not isinstance(skipped, list) or not all(isinstance(s, dict) for s in skipped):
            raise StatsFileError("stats file key 'skipped' must be a list of objects")
        dtype = _require(doc, "dtype", str)
        names = tuple(channels)
        whole = GroupStats.parse(doc, names, dtype, scale)
        groups = doc.get("groups")
        if groups is not None and (
            not isinstance(groups, dict) or not all(isinstance(g, dict) for g in groups.values())
        ):
            raise StatsFileError("stats file key 'groups' must map names to objects")
        return cls(
            **{f: getattr(whole, f) for f in GroupStats.__dataclass_fields__},
            version=version,
            parent=parent,
            source=_require(doc, "source", str),
            mode=_require(doc, "mode", str),
            groups={
                str(name): GroupStats.parse(entry, names, dtype, scale)
                for name, entry in (groups or {}).items()
            },
        )

    @classmethod
    def from_json(cls, data: bytes | str, name: str = "stats file") -> Stats:
        if len(data) > MAX_FILE_BYTES:
            raise StatsFileError(f"{name} is larger than {MAX_FILE_BYTES} bytes")
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise StatsFileError(f"{name} is not valid JSON: {exc}") from exc
        try:
            return cls.from_document(doc)
        except StatsFileError as exc:
            raise StatsFileError(f"{name}: {exc}") from None


def dumps(doc: Mapping[str, Any]) -> bytes:
    """Stats file bytes: JSON indented by object, each list of numbers on one line (a
    histogram's channel too), integers kept exact, a final newline."""
    return (_dump(doc, 0) + "\n").encode()


def _dump(value: Any, depth: int) -> str:
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, Mapping) and value:
        items = [f"{inner}{json.dumps(str(k))}: {_dump(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value and any(isinstance(v, Mapping | list) for v in value):
        return "[\n" + ",\n".join(f"{inner}{_dump(v, depth + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value, allow_nan=False)
