"""The names of a store's files, in one place: versions, ``latest.json``, the per-file
record's manifests and segments. A name read from a stats file is followed only if it is one
of these shapes (never a path elsewhere)."""

from __future__ import annotations

import re
import uuid

__all__ = [
    "LATEST",
    "is_manifest_name",
    "is_segment_name",
    "manifest_name",
    "parse_version_name",
    "run_folder",
    "segment_name",
    "version_name",
]

LATEST = "latest.json"
_VERSION_RE = re.compile(r"^v(\d{6,})\.json$")
_SEGMENT_RE = re.compile(r"^segments/[0-9a-f]{32}/[0-9a-f]{32}\.(?:arrow|parquet)$")
_MANIFEST_RE = re.compile(r"^manifests/[0-9a-f]{32}\.parquet$")


def version_name(version: int) -> str:
    """``v000001.json`` for version 1."""
    return f"v{version:06d}.json"


def parse_version_name(name: str) -> int | None:
    """1 for ``v000001.json``; None for any other name."""
    match = _VERSION_RE.match(name)
    return int(match.group(1)) if match else None


def run_folder() -> str:
    """A new run's folder of record segments (random: two runs never pick the same one)."""
    return f"segments/{uuid.uuid4().hex}"


def segment_name(folder: str) -> str:
    """A new record segment's name in a run's folder (``.arrow``: an Arrow IPC file; older
    segments are ``.parquet`` files)."""
    return f"{folder}/{uuid.uuid4().hex}.arrow"


def manifest_name() -> str:
    """A new record manifest's name."""
    return f"manifests/{uuid.uuid4().hex}.parquet"


def is_segment_name(name: str) -> bool:
    return bool(_SEGMENT_RE.match(name))


def is_manifest_name(name: str) -> bool:
    return bool(_MANIFEST_RE.match(name))
