"""imgstats: exact per-channel mean and std of image collections, with Dask and fsspec.

The public names load on first use, so ``import pipeline.run.scan`` (a decode sandbox, a
Dask worker) does not pay for Dask and the job machinery.

The package is layered, each layer importing only from those below it (``tests/
test_architecture.py`` checks it): ``errors`` and ``_version``; ``core`` (pure values and
maths); ``config``; ``fs`` (storage access); ``decode``; ``store`` (the stats store, the stats
document, the per-file record); ``api`` (``load_stats``); ``run`` (scan, sandbox, Dask graph
and cluster, incremental planning, the job: the only layer that imports Dask); ``cli``; and
``testing`` (the store conformance suite).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api import load_stats
    from .config import JobConfig, ScanOptions
    from .errors import (
        DecodeError,
        ImgstatsError,
        InputError,
        LayoutError,
        StatsFileError,
        StoreConflictError,
        StoreError,
        UsageError,
    )
    from .run.job import ComputeResult, compute_stats
    from .store.document import Stats

_EXPORTS = {
    "ComputeResult": "run.job",
    "DecodeError": "errors",
    "ImgstatsError": "errors",
    "InputError": "errors",
    "JobConfig": "config",
    "LayoutError": "errors",
    "ScanOptions": "config",
    "Stats": "store.document",
    "StatsFileError": "errors",
    "StoreConflictError": "errors",
    "StoreError": "errors",
    "UsageError": "errors",
    "compute_stats": "run.job",
    "load_stats": "api",
}

__all__ = [
    "ComputeResult",
    "DecodeError",
    "ImgstatsError",
    "InputError",
    "JobConfig",
    "LayoutError",
    "ScanOptions",
    "Stats",
    "StatsFileError",
    "StoreConflictError",
    "StoreError",
    "UsageError",
    "__version__",
    "compute_stats",
    "load_stats",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
