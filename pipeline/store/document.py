"""The stats file, its one owner: the document's keys and schema, building it, reading it back.

A stats file is JSON read as data only. :meth:`Stats.from_json` checks every key a reader
relies on and raises :class:`~pipeline.errors.StatsFileError` naming the key otherwise;
:meth:`Stats.basis` checks, in the same way, what an incremental run takes from a version.
Nothing else reads the document's keys.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.files import FileSet
from ..core.keys import Layout
from ..core.moments import AnyMoments, Moments
from ..errors import StatsFileError
from .names import is_record_name

__all__ = ["MAX_FILE_BYTES", "SCHEMA", "Basis", "Stats", "build_document", "dumps"]

SCHEMA = "imgstats.stats/1"
#: The largest stats file :meth:`Stats.from_json` will parse (a hostile 1 GB file is refused).
MAX_FILE_BYTES = 256 * 2**20


def build_document(
    *,
    version: int | None,
    parent: int | None,
    created: str,
    source: str,
    mode: str,
    layout: Layout,
    moments: AnyMoments,
    image_count: int,
    skipped: Sequence[Mapping[str, str]],
    files: Mapping[str, Any],
    run: Mapping[str, Any],
    provenance: Mapping[str, Any],
    tool_version: str,
    record: str | None = None,
) -> dict[str, Any]:
    """The stats file's content, in the contract's key order."""
    scale = layout.scale
    mean, std = moments.finalize(scale)
    return {
        "schema": SCHEMA,
        "version": version,
        "parent": parent,
        "created": created,
        "source": source,
        "mode": mode,
        "channels": layout.channel_names,
        "dtype": layout.dtype,
        "scale": scale,
        "image_count": image_count,
        "pixel_count": moments.count,
        "sum": list(moments.sum),
        "sum_sq": list(moments.sum_sq),
        "min": list(moments.min),
        "max": list(moments.max),
        "mean": list(mean),
        "std": list(std),
        "skipped": [dict(s) for s in skipped],
        "files": dict(files),
        "record": record,
        "run": dict(run),
        "provenance": dict(provenance),
        "tool": {"name": "imgstats", "version": tool_version},
    }


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
    layout: Layout
    moments: Moments
    files: FileSet
    high_bit_depth_images: int
    record: str | None  # the per-file record's name in the store


@dataclass(frozen=True)
class Stats:
    """One version of a dataset's statistics, as read from its stats file."""

    version: int
    parent: int | None
    source: str
    mode: str
    channels: tuple[str, ...]
    dtype: str
    scale: float
    image_count: int
    pixel_count: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]
    document: Mapping[str, Any] = field(repr=False, compare=False)

    def normalize_kwargs(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}`` for ``transforms.Normalize(**kwargs)``."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @property
    def created(self) -> str:
        return str(self.document.get("created", ""))

    @property
    def layout(self) -> Layout:
        return Layout("".join(self.channels), self.dtype)

    def basis(self) -> Basis:
        """What an incremental run needs of this version; :class:`StatsFileError` naming the
        key when the file cannot serve (hand-edited, older, damaged)."""
        doc = self.document
        n = len(self.channels)
        files = _require(doc, "files", dict)
        provenance = _require(doc, "provenance", dict)
        fingerprint = _require(files, "fingerprint", str)
        try:
            digest = int(fingerprint, 16)
        except ValueError:
            raise StatsFileError("stats file key 'fingerprint' is not hexadecimal") from None
        record = doc.get("record")
        if record is not None and (not isinstance(record, str) or not is_record_name(record)):
            raise StatsFileError("stats file key 'record' is not a record name of this store")
        if not self.layout.is_integer:
            raise StatsFileError(f"{self.dtype} samples keep no exact totals")
        return Basis(
            source=self.source,
            mode=self.mode,
            include=_strings(provenance, "include"),
            exclude=_strings(provenance, "exclude"),
            max_image_pixels=_optional_int(provenance, "max_image_pixels"),
            max_file_bytes=_optional_int(provenance, "max_file_bytes"),
            conversion=str(provenance.get("conversion", "")),
            layout=self.layout,
            moments=Moments(
                self.pixel_count,
                _integers(doc, "sum", n),
                _integers(doc, "sum_sq", n),
                _integers(doc, "min", n),
                _integers(doc, "max", n),
            ),
            files=FileSet(_require(files, "count", int), _require(files, "bytes", int), digest),
            high_bit_depth_images=_require(provenance, "high_bit_depth_images", int),
            record=record,
        )

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self.document.get("skipped", []))

    @classmethod
    def from_document(cls, doc: Any) -> Stats:
        """Check a parsed stats file and wrap it; :class:`StatsFileError` names the bad key."""
        if not isinstance(doc, dict):
            raise StatsFileError("stats file is not a JSON object")
        if doc.get("schema") != SCHEMA:
            raise StatsFileError(f"stats file schema is not {SCHEMA!r}")
        version = _require(doc, "version", int)
        parent = doc.get("parent")
        if parent is not None and (not isinstance(parent, int) or isinstance(parent, bool)):
            raise StatsFileError("stats file key 'parent' has the wrong type")
        channels = _require(doc, "channels", list)
        if not channels or not all(isinstance(c, str) for c in channels):
            raise StatsFileError("stats file key 'channels' must list channel names")
        n = len(channels)
        scale = _finite("scale", _require(doc, "scale", (int, float)))
        if scale <= 0:
            raise StatsFileError("stats file key 'scale' must be positive")
        skipped = doc.get("skipped", [])
        if not isinstance(skipped, list) or not all(isinstance(s, dict) for s in skipped):
            raise StatsFileError("stats file key 'skipped' must be a list of objects")
        return cls(
            version=version,
            parent=parent,
            source=_require(doc, "source", str),
            mode=_require(doc, "mode", str),
            channels=tuple(channels),
            dtype=_require(doc, "dtype", str),
            scale=scale,
            image_count=_require(doc, "image_count", int),
            pixel_count=_require(doc, "pixel_count", int),
            mean=_numbers(doc, "mean", n),
            std=_numbers(doc, "std", n),
            min=_numbers(doc, "min", n),
            max=_numbers(doc, "max", n),
            document=doc,
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
    """Stats file bytes: indented JSON, integers kept exact, a final newline."""
    return (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode()
