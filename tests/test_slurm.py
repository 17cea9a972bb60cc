"""``--cluster slurm`` on a real single-node Slurm (munged, slurmctld, slurmd on 127.0.0.1):
the run exact on two jobs, a job cancelled mid-run, workers reaching their lifetime and
replaced, adaptive scaling from zero, Ctrl-C and SIGTERM, a queue that does not exist, jobs
that never start. After every test the queue is empty and no job process is left.

Slurm comes from ``SLURM_CONF`` (``.ci/run`` starts it with ``scripts/slurm.sh`` and exports
it); without it, the session starts its own with that script and stops it after. The tests
skip only when neither can run Slurm here, and never in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pexpect
import pytest
import yaml
from PIL import Image

from conftest import ROOT, one_error_line
from reference import Reference, pil_pixels, reference_from_sums, reference_stats

pytestmark = pytest.mark.slow

IMGSTATS = Path(sys.executable).parent / "imgstats"
#: Seconds a cancelled job may take to leave ``squeue`` (state CG, completing).
QUEUE_EMPTY_WITHIN = 30


def _free_port_pair() -> int:
    """A port P with P and P + 1 free (slurmctld, slurmd)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port pair")


def _squeue_works(env: dict[str, str]) -> bool:
    try:
        return subprocess.run(["squeue", "-h"], env=env, capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def slurm() -> Iterator[dict[str, str]]:
    """The environment for Slurm's commands and imgstats runs (``SLURM_CONF`` set)."""
    if os.environ.get("SLURM_CONF") and _squeue_works(dict(os.environ)):
        yield dict(os.environ)
        return
    if os.environ.get("CI"):
        pytest.fail("CI must export SLURM_CONF of a running Slurm (scripts/slurm.sh start)")
    if os.geteuid() != 0 and shutil.which("slurmctld") is None:
        pytest.skip("Slurm is not installed and installing it needs root")
    folder = tempfile.mkdtemp(prefix="imgstats-slurm-")
    script = str(ROOT / "scripts" / "slurm.sh")
    env = {**os.environ, "SLURM_SH_PORT": str(_free_port_pair())}
    started = subprocess.run(["bash", script, "start", folder], env=env, capture_output=True,
                             text=True, timeout=300)
    if started.returncode != 0:
        pytest.skip(f"cannot run Slurm here: {started.stderr.strip().splitlines()[-1:]}")
    try:
        yield {**os.environ, "SLURM_CONF": f"{folder}/slurm.conf"}
    finally:
        subprocess.run(["bash", script, "stop", folder], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def queue(env: dict[str, str]) -> list[tuple[str, str]]:
    """(job id, state) of every job Slurm knows."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=env, capture_output=True,
                         text=True, timeout=10, check=True).stdout
    return [tuple(line.split()) for line in out.splitlines() if line.strip()]  # type: ignore[misc]


def job_processes(jobs: set[str]) -> list[str]:
    """Live processes (zombies aside) that run inside one of ``jobs``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ids = {v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"SLURM_JOB_ID=")}
        if ids & jobs and state != "Z":
            found.append(f"{pid} {command[:100]}")
    return found


class QueueWatch:
    """Every job seen in ``squeue`` while the block runs (polled every 50 ms)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.jobs: set[str] = set()
        self.most_running = 0
        self.first_seen: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            jobs = queue(self.env)
            if jobs and self.first_seen is None:
                self.first_seen = time.monotonic()
            self.jobs |= {job for job, _ in jobs}
            self.most_running = max(self.most_running, sum(s == "RUNNING" for _, s in jobs))

    def __enter__(self) -> QueueWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def empty_queue_after(slurm) -> Iterator[QueueWatch]:
    """Starts empty; after the test, ``squeue`` is empty within QUEUE_EMPTY_WITHIN s and no
    process of the test's jobs is left."""
    assert queue(slurm) == [], "jobs left by an earlier test"
    with QueueWatch(slurm) as watch:
        yield watch
    deadline = time.monotonic() + QUEUE_EMPTY_WITHIN
    while (left := queue(slurm)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"jobs left in the queue: {left}"
    while (processes := job_processes(watch.jobs)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes == [], processes


def slurm_config(tmp_path: Path, **values) -> Path:
    """A config for this Slurm: one core and 1 GB per job, on the loopback interface."""
    options = {"cores": 1, "processes": 1, "memory": "1GB", "walltime": "00:10:00",
               "interface": "lo", "log_directory": str(tmp_path / "slurm-logs"),
               "scheduler_options": {"dashboard_address": ":0"},
               **values.pop("cluster_options", {})}
    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump({"cluster": "slurm", "cluster_options": options, **values}))
    return path


def small_corpus(folder: Path, count: int = 30, seed: int = 11) -> Reference:
    """``count`` random PNGs and JPEGs; their independent reference statistics."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        sub = folder / f"part{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{i:03d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (10 + i % 6, 14 + i % 5, 3), dtype=np.uint8)).save(
            path)
        with Image.open(path) as image:
            images.append(pil_pixels(image.convert("RGB")))
    return reference_stats(images, 255)


def long_corpus(folder: Path, count: int) -> Reference:
    """``count`` files that take real decoding time: hard links of three distinct 640x480
    JPEGs. Their reference: each original's exact sums times its number of links."""
    rng = np.random.default_rng(5)
    folder.mkdir(parents=True)
    originals = []
    for k in range(3):
        y, x = np.mgrid[0:480, 0:640]
        base = np.stack([x * 255 / 640, y * 255 / 480, (x + y + 200 * k) % 256], -1)
        pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"original{k}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        originals.append(path)
    links = [1] * 3
    for i in range(count - 3):
        sub = folder / f"part{i % 8}"
        sub.mkdir(exist_ok=True)
        os.link(originals[i % 3], sub / f"{i:05d}.jpg")
        links[i % 3] += 1
    refs = []
    for path in originals:
        with Image.open(path) as image:
            refs.append(reference_stats([pil_pixels(image.convert("RGB"))], 255))
    sums = [sum(r.sum[c] * n for r, n in zip(refs, links, strict=True)) for c in range(3)]
    sums_sq = [sum(r.sum_sq[c] * n for r, n in zip(refs, links, strict=True)) for c in range(3)]
    pixels = sum(r.pixel_count * n for r, n in zip(refs, links, strict=True))
    mean, std = reference_from_sums(pixels, sums, sums_sq, 255)
    return Reference(count, pixels, tuple(sums), tuple(sums_sq),
                     tuple(min(r.min[c] for r in refs) for c in range(3)),
                     tuple(max(r.max[c] for r in refs) for c in range(3)), mean, std, 255)


@pytest.fixture(scope="module")
def long_images(tmp_path_factory) -> tuple[Path, Reference]:
    """2,400 files that take a two-job run several seconds, and their reference."""
    folder = tmp_path_factory.mktemp("long") / "images"
    return folder, long_corpus(folder, 2400)


def exact(store: Path, reference: Reference) -> dict:
    doc = json.loads((store / "v000001.json").read_text())
    want = reference.as_document()
    assert {key: doc[key] for key in want} == want
    return doc


def run(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(IMGSTATS), *args], env=env, capture_output=True, text=True,
                          timeout=300, **kwargs)


def wait_until_decoding_in_jobs(watch: QueueWatch, jobs: int, timeout: float = 120) -> set[str]:
    """Wait until ``jobs`` jobs run and a decode sandbox runs inside each; their ids."""
    deadline = time.monotonic() + timeout
    while True:
        running = {job for job, state in queue(watch.env) if state == "RUNNING"}
        decoding = {job for job in running
                    if any("pipeline.run.sandbox" in p for p in job_processes({job}))}
        if len(decoding) >= jobs:
            return decoding
        assert time.monotonic() < deadline, f"not {jobs} jobs decoding: {queue(watch.env)}"
        time.sleep(0.1)


# --- the tests -------------------------------------------------------------------------------


def test_two_jobs_give_the_exact_statistics(tmp_path, slurm, empty_queue_after):
    reference = small_corpus(tmp_path / "images")
    cfg = slurm_config(tmp_path, scale={"jobs": 2})
    done = run(["compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                "--config", str(cfg)], slurm)
    assert done.returncode == 0, done.stderr
    doc = exact(tmp_path / "stats", reference)
    assert doc["run"]["worker_threads"] == 2
    assert empty_queue_after.most_running == 2
    assert done.stdout.strip() == str(tmp_path / "stats" / "v000001.json")


def test_a_job_cancelled_mid_run_costs_nothing(tmp_path, slurm, empty_queue_after, long_images):
    images, reference = long_images
    cfg = slurm_config(tmp_path, scale={"jobs": 2})
    proc = subprocess.Popen([str(IMGSTATS), "compute", str(images), "--out",
                             str(tmp_path / "stats"), "--config", str(cfg)], env=slurm,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = min(wait_until_decoding_in_jobs(empty_queue_after, 2))
    subprocess.run(["scancel", victim], env=slurm, check=True)
    assert proc.poll() is None, "the run ended before the job was cancelled"
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    exact(tmp_path / "stats", reference)


def test_jobs_reaching_their_lifetime_are_replaced_and_nothing_is_lost(
    tmp_path, slurm, empty_queue_after, long_images
):
    """Two jobs whose workers live 13 to 17 s (dask-jobqueue's walltime advice:
    ``--lifetime`` with ``--lifetime-stagger``): they retire mid-run, imgstats submits new
    jobs, and the run is exact. A transform that waits 25 ms per image makes the run take at
    least 30 s of both workers' time, however fast the machine decodes, so workers must
    retire; and a worker still gets work done, however slowly a loaded machine starts it and
    its sandbox (a lifetime of 4 s got nowhere with the machine's two cores busy)."""
    images, reference = long_images
    cfg = slurm_config(tmp_path, scale={"jobs": 2}, shard_files=20,
                       transform="user_transforms:slow_identity", cluster_options={
                           "worker_extra_args": ["--lifetime", "15s", "--lifetime-stagger", "2s"]})
    env = {**slurm, "DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT": "1s",
           "PYTHONPATH": str(Path(__file__).parent)}  # the jobs import the transform too
    done = run(["compute", str(images), "--out", str(tmp_path / "stats"),
                "--config", str(cfg)], env)
    assert done.returncode == 0, done.stderr
    exact(tmp_path / "stats", reference)
    assert len(empty_queue_after.jobs) >= 3, (empty_queue_after.jobs, done.stderr)


def test_adaptive_scaling_starts_from_zero_jobs(tmp_path, slurm, empty_queue_after):
    reference = small_corpus(tmp_path / "images")
    cfg = slurm_config(tmp_path, adapt={"minimum": 0, "maximum": 2, "interval": "250ms"})
    proc = subprocess.Popen([str(IMGSTATS), "compute", str(tmp_path / "images"), "--out",
                             str(tmp_path / "stats"), "--config", str(cfg), "-v"], env=slurm,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sized_at = None
    lines = []
    for line in proc.stderr:  # type: ignore[union-attr]
        lines.append(line)
        if "slurm cluster: adaptive, 0 to 2 jobs" in line and sized_at is None:
            sized_at = time.monotonic()
            no_job_yet = empty_queue_after.first_seen is None
    proc.wait(300)
    assert proc.returncode == 0, "".join(lines)
    assert sized_at is not None, "".join(lines)
    assert no_job_yet  # nothing was submitted before the run had work
    assert empty_queue_after.first_seen is not None and empty_queue_after.first_seen > sized_at
    exact(tmp_path / "stats", reference)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_leave_no_job(tmp_path, slurm, empty_queue_after, long_images, how):
    images, _ = long_images
    cfg = slurm_config(tmp_path, scale={"jobs": 2})
    args = ["compute", str(images), "--out", str(tmp_path / "stats"),
            "--config", str(cfg)]
    if how == "ctrl-c":
        child = pexpect.spawn(str(IMGSTATS), args, env=slurm, timeout=120, cwd=str(tmp_path))
        wait_until_decoding_in_jobs(empty_queue_after, 2)
        typed = time.monotonic()
        child.sendcontrol("c")
        child.expect(pexpect.EOF)
        child.close()
        status, text = child.exitstatus, child.before.decode(errors="replace")
        lines = [s.strip() for s in text.rsplit("^C", 1)[-1].splitlines() if s.strip()]
        assert lines == ["imgstats: error: interrupted"], text
        assert status == 130
    else:
        proc = subprocess.Popen([str(IMGSTATS), *args], env=slurm, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        wait_until_decoding_in_jobs(empty_queue_after, 2)
        typed = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, err, out) == (143, "imgstats: error: terminated\n", "")
    assert time.monotonic() - typed < 15
    assert not (tmp_path / "stats").exists()


def test_a_queue_that_does_not_exist_fails_with_one_line(tmp_path, slurm, empty_queue_after):
    small_corpus(tmp_path / "images", count=3)
    cfg = slurm_config(tmp_path, cluster_options={"queue": "nosuchqueue"})
    done = run(["compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                "--config", str(cfg)], slurm)
    assert one_error_line(done, 2, empty_stdout=True) == (
        "imgstats: error: the slurm queue refused the job: sbatch: error: invalid partition "
        "specified: nosuchqueue; sbatch: error: Batch job submission failed: Invalid partition "
        "name specified")
    assert not (tmp_path / "stats").exists()


def test_jobs_that_never_start_fail_after_the_cluster_timeout(tmp_path, slurm, empty_queue_after):
    small_corpus(tmp_path / "images", count=3)
    cfg = slurm_config(tmp_path, scale={"jobs": 2},
                       cluster_options={"job_extra_directives": ["--begin=now+3600"]})
    started = time.monotonic()
    done = run(["compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                "--config", str(cfg), "--cluster-timeout", "3"], slurm)
    assert one_error_line(done, 1, empty_stdout=True) == (
        "imgstats: error: no slurm worker started within 3 s (--cluster-timeout); 2 job(s) "
        "submitted were cancelled")
    assert 3 < time.monotonic() - started < 60
    assert len(empty_queue_after.jobs) == 2  # they were queued, and are gone now
    assert not (tmp_path / "stats").exists()
