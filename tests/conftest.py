"""Shared fixtures: a real Dask cluster, the CLI as a subprocess, a clean memory filesystem."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from distributed import LocalCluster
from fsspec.implementations.memory import MemoryFileSystem

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """One real LocalCluster (2 worker processes x 1 thread) shared by the session."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as local:
        yield local


@pytest.fixture
def scheduler(cluster: LocalCluster) -> str:
    """The shared cluster's scheduler address, for ``JobConfig(scheduler=...)``/``--scheduler``."""
    return cluster.scheduler_address


@pytest.fixture
def memfs() -> Iterator[MemoryFileSystem]:
    """fsspec's memory filesystem, emptied before and after the test."""
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield fs
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")


def run_imgstats(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """``python -m pipeline ARGS`` in a subprocess: the real CLI, exit code and streams."""
    full_env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture
def imgstats():
    """The CLI runner (see :func:`run_imgstats`)."""
    return run_imgstats
