"""A real remote Dask cluster: ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, reached through ``--scheduler`` and ``DASK_SCHEDULER_ADDRESS``. The numbers must be
identical to a run on a LocalCluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from distributed import Client
from PIL import Image

DASK = Path(sys.executable).parent / "dask"
SAME = ("channels", "dtype", "scale", "image_count", "pixel_count", "sum", "sum_sq", "min", "max",
        "mean", "std", "skipped", "files")


def stop(procs: list[subprocess.Popen]) -> None:
    """Terminate, then kill whatever is still running after 10 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def remote(tmp_path_factory) -> Iterator[tuple[str, Client]]:
    """The address of a scheduler with two single-threaded workers, and a client on it."""
    root = tmp_path_factory.mktemp("remote")
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    scheduler_file = root / "scheduler.json"
    procs: list[subprocess.Popen] = []
    logs = []

    def start(name: str, *args: str) -> None:
        log = open(root / f"{name}.log", "wb")  # noqa: SIM115 - closed at teardown
        logs.append(log)
        procs.append(subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT,
                                      env=env, cwd=root))

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(scheduler_file))
        deadline = time.monotonic() + 30
        address = None
        while address is None:
            assert procs[0].poll() is None, (root / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start in 30 s"
            try:
                address = json.loads(scheduler_file.read_text())["address"]
            except (FileNotFoundError, ValueError, KeyError):
                time.sleep(0.05)
        for n in range(2):
            start(f"worker{n}", "worker", address, "--nthreads", "1", "--no-nanny",
                  "--no-dashboard", "--host", "127.0.0.1", "--name", f"remote-{n}",
                  "--local-directory", str(root / f"worker{n}"))
        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
            yield address, client
    finally:
        stop(procs[1:])  # workers first, so the scheduler does not wait for them
        stop(procs[:1])
        for log in logs:
            log.close()
        assert all(proc.returncode is not None for proc in procs)


def transitions(client: Client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)


@pytest.mark.slow  # ~13 s: a dask scheduler and workers as processes
def test_remote_cluster_matches_local_cluster(remote, tmp_path, imgstats):
    address, client = remote
    assert {w["name"] for w in client.scheduler_info()["workers"].values()} == {
        "remote-0", "remote-1"}
    source = tmp_path / "images"
    rng = np.random.default_rng(5)
    for i in range(20):
        sub = source / f"part{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
    (source / "part0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")

    before = transitions(client)
    by_flag = imgstats("compute", str(source), "--out", str(tmp_path / "flag"),
                       "--scheduler", address)
    middle = transitions(client)
    by_env = imgstats("compute", str(source), "--out", str(tmp_path / "env"),
                      env={"DASK_SCHEDULER_ADDRESS": address})
    after = transitions(client)
    local = imgstats("compute", str(source), "--out", str(tmp_path / "local"),
                     "--workers", "1", "--threads-per-worker", "2")
    for done in (by_flag, by_env, local):
        assert done.returncode == 0, done.stderr
    # Both remote runs ran their tasks on the remote scheduler, the local one did not.
    assert before < middle < after == transitions(client)

    docs = {name: json.loads((tmp_path / name / "v000001.json").read_text())
            for name in ("flag", "env", "local")}
    for name, done in (("flag", by_flag), ("env", by_env)):
        assert done.stdout.strip().splitlines()[-1] == str(tmp_path / name / "v000001.json")
        assert docs[name]["run"]["worker_threads"] == 2
        assert {key: docs[name][key] for key in SAME} == {key: docs["local"][key] for key in SAME}
    assert docs["local"]["image_count"] == 20
    assert [s["path"] for s in docs["local"]["skipped"]] == ["part0/broken.png"]
    assert all(isinstance(v, int) for v in docs["local"]["sum"] + docs["local"]["sum_sq"])
