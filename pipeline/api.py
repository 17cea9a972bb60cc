"""Reading results: ``load_stats(url)`` for training code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import StatsFileError
from .fs.location import resolve
from .store import open_store
from .store.document import MAX_FILE_BYTES, Stats

__all__ = ["load_stats"]


def load_stats(
    url: str, version: int | None = None, storage_options: Mapping[str, Any] | None = None
) -> Stats:
    """The stats in a store (``latest.json``, or ``version``) or in one stats file.

    >>> stats = load_stats("s3://bucket/stats")                 # doctest: +SKIP
    >>> transforms.Normalize(**stats.normalize_kwargs())         # doctest: +SKIP
    """
    location = resolve(url, storage_options)
    if version is None and location.path.endswith(".json"):
        try:
            data = location.filesystem().cat_file(location.path, start=0, end=MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise StatsFileError(f"no stats file at {location.url!r}") from None
        return Stats.from_json(data, repr(location.url))
    return open_store(location).load(version)
