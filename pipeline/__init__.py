"""imgstats: exact per-channel mean and std of image collections, with Dask and fsspec.

The public names load on first use, so ``import pipeline.scan`` (a decode sandbox, a Dask
worker) does not pay for Dask and the job machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api import load_stats
    from .config import JobConfig
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
    from .job import ComputeResult, compute_stats
    from .stats import Stats

_EXPORTS = {
    "ComputeResult": "job",
    "DecodeError": "errors",
    "ImgstatsError": "errors",
    "InputError": "errors",
    "JobConfig": "config",
    "LayoutError": "errors",
    "Stats": "stats",
    "StatsFileError": "errors",
    "StoreConflictError": "errors",
    "StoreError": "errors",
    "UsageError": "errors",
    "compute_stats": "job",
    "load_stats": "api",
}

__all__ = [
    "ComputeResult",
    "DecodeError",
    "ImgstatsError",
    "InputError",
    "JobConfig",
    "LayoutError",
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
