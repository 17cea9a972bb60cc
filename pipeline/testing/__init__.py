"""Test tools that ship with the package: the stats-store conformance suite, for backends
written outside it (as zarr ships ``StoreTests``), and ``synth://``, a collection of any size
that needs no disk. The names load on first use (the suite needs pytest)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["StoreTests", "SyntheticFileSystem", "stats_document"]

_EXPORTS = {"StoreTests": "store", "stats_document": "store", "SyntheticFileSystem": "synthetic"}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
