"""imgstats: exact per-channel mean and std of image collections, with Dask and fsspec."""

from __future__ import annotations

__version__ = "0.1.0"

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
