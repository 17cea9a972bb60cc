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


def one_error_line(
    done: subprocess.CompletedProcess, code: int, empty_stdout: bool = False
) -> str:
    """The run failed with ``code`` and printed exactly one error line, no traceback."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("imgstats: error: "), lines[0]
    if empty_stdout:
        assert done.stdout == ""
    return lines[0]


@pytest.fixture
def imgstats():
    """The CLI runner (see :func:`run_imgstats`)."""
    return run_imgstats


# --- S3: a real moto server over HTTP on 127.0.0.1 -------------------------------------------

# Ambient credentials for every process the tests start (Dask workers, CLI subprocesses), set
# before any of them: imgstats never needs explicit keys, as on a real cluster with roles.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto S3 server process, for the whole session."""
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "s3_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def s3(s3_endpoint: str) -> Iterator[tuple[object, dict]]:
    """An s3fs filesystem on the moto server with a fresh bucket ``imgstats-test``, and the
    storage options that reach it. The bucket and fsspec's instance cache are cleaned after."""
    import s3fs

    options = {"endpoint_url": s3_endpoint}
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    if fs.exists("imgstats-test"):
        fs.rm("imgstats-test", recursive=True)
    fs.mkdir("imgstats-test")
    yield fs, options
    fs.rm("imgstats-test", recursive=True)
    s3fs.S3FileSystem.clear_instance_cache()
