"""The names of a store's files, in one place: versions, ``latest.json``, per-file records."""

from __future__ import annotations

import re

__all__ = ["LATEST", "is_record_name", "parse_version_name", "record_name", "version_name"]

LATEST = "latest.json"
_VERSION_RE = re.compile(r"^v(\d{6,})\.json$")
_RECORD_RE = re.compile(r"^v\d{6,}\.files\.parquet$")


def version_name(version: int) -> str:
    """``v000001.json`` for version 1."""
    return f"v{version:06d}.json"


def parse_version_name(name: str) -> int | None:
    """1 for ``v000001.json``; None for any other name."""
    match = _VERSION_RE.match(name)
    return int(match.group(1)) if match else None


def record_name(version: int) -> str:
    """``v000002.files.parquet``: the per-file record of version 2."""
    return f"v{version:06d}.files.parquet"


def is_record_name(name: str) -> bool:
    """Whether ``name`` is one :func:`record_name` makes (never a path elsewhere)."""
    return bool(_RECORD_RE.match(name))
