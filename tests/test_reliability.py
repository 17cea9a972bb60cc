"""Faults: killed workers, flaky and dead storage, a full disk, odd names. Real processes and
servers, bounded in time; the result is exact or the failure is one clear line with the store
untouched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from distributed import Client, LocalCluster
from PIL import Image

from pipeline import JobConfig, compute_stats
from pipeline.config import ScanOptions
from pipeline.fs.listing import iter_images
from pipeline.fs.location import resolve
from pipeline.store.record import FileRecord

from s3_proxy import ProxyBehaviour, s3_proxy

BUCKET = "imgstats-test"
RUN_KEYS = {"version", "parent", "created", "run", "record", "source", "files", "provenance"}
ODD_NAMES = ["with space.png", "ünïcødé.png", "hash#1.png", "what?.png", "100%.png",
             "-leading-dash.png", "dir with space/x.png", "a" * 200 + ".png"]


def content(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in RUN_KEYS}


def write_images(folder, count, size=(24, 32), names=None):
    rng = np.random.default_rng(11)
    names = names or [f"d{i % 4}/img{i:04d}.png" for i in range(count)]
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path, "PNG")


@pytest.fixture
def reference(tmp_path, scheduler):
    """The statistics of a folder, computed on the healthy shared cluster."""

    def compute(folder):
        config = JobConfig(source=str(folder), out=str(tmp_path / f"ref-{time.monotonic_ns()}"),
                           scheduler=scheduler)
        return compute_stats(config).stats.document

    return compute


@pytest.mark.slow  # ~9 s: a worker SIGKILLed mid-run and replaced
def test_worker_killed_mid_run_is_exact(tmp_path, reference):
    folder = tmp_path / "images"
    write_images(folder, 160, size=(300, 240))
    expected = reference(folder)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        pids = client.run(os.getpid)
        outcome: dict = {}

        def run() -> None:
            config = JobConfig(source=str(folder), out=str(tmp_path / "stats"),
                               scheduler=cluster.scheduler_address, shard_files=4)
            try:
                outcome["result"] = compute_stats(config)
            except BaseException as exc:  # reported by the assertion below
                outcome["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(client.processing().values()):
            time.sleep(0.05)
        time.sleep(0.3)  # let tasks get going on both workers
        assert thread.is_alive(), "the run ended before the kill: nothing was tested"
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        thread.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert content(outcome["result"].stats.document) == content(expected)


@pytest.fixture
def s3_images(tmp_path, s3):
    fs, options = s3
    folder = tmp_path / "images"
    write_images(folder, 24)
    for path in sorted(folder.rglob("*.png")):
        fs.put_file(str(path), f"{BUCKET}/images/{path.relative_to(folder).as_posix()}")
    return folder, fs, options


def test_transient_storage_faults_are_retried_exactly(s3_images, s3_endpoint, tmp_path,
                                                      reference, scheduler, caplog):
    folder, _, _ = s3_images
    behaviour = ProxyBehaviour(fault_rate=0.15, seed=5)
    with s3_proxy(s3_endpoint, behaviour) as proxy:
        options = {"endpoint_url": proxy, "config_kwargs": {"retries": {"max_attempts": 10}}}
        result = compute_stats(JobConfig(source=f"s3://{BUCKET}/images", out=str(tmp_path / "st"),
                                         source_options=options, scheduler=scheduler))
    faults = sum(behaviour.counts[kind] for kind in behaviour.faults)
    assert faults > 0, behaviour.counts  # the faults did happen
    assert content(result.stats.document) == content(reference(folder))
    # Each 500/503 cost one request sent again by botocore, counted; a dropped connection is
    # too, unless aiohttp silently reopened a kept-alive one (not visible to botocore).
    retries = result.stats.document["run"]["retries"]
    assert faults - behaviour.counts["drop"] <= retries["storage_requests"] <= faults, retries
    assert retries["tasks"] == 0
    assert f"the run needed retries: {retries['storage_requests']} storage requests, 0 tasks" \
        in caplog.text


@pytest.mark.parametrize("fault,retries", [
    ("500", {"storage_requests": 0, "tasks": 1}),  # no client retries it: the task fails
    ("503", {"storage_requests": 1, "tasks": 0}),  # SlowDown: s3fs calls again
])
def test_retries_past_botocore_are_counted(s3_images, s3_endpoint, tmp_path, reference,
                                           scheduler, caplog, fault, retries):
    """One object read fails with botocore's retries off: s3fs or Dask runs it again."""
    folder, _, _ = s3_images
    behaviour = ProxyBehaviour(fail_first=1, faults=(fault,), objects_only=True)
    with s3_proxy(s3_endpoint, behaviour) as proxy:
        options = {"endpoint_url": proxy, "config_kwargs": {"retries": {"total_max_attempts": 1}}}
        result = compute_stats(JobConfig(source=f"s3://{BUCKET}/images", out=str(tmp_path / "st"),
                                         source_options=options, scheduler=scheduler))
    assert behaviour.counts[fault] == 1
    assert content(result.stats.document) == content(reference(folder))
    assert result.stats.document["run"]["retries"] == retries
    assert "the run needed retries: {storage_requests} storage requests, {tasks} tasks".format(
        **retries) in caplog.text


@pytest.mark.slow  # ~30 s: every request is retried by botocore and s3fs, every task by Dask
def test_permanent_storage_faults_fail_with_one_line(s3_images, s3_endpoint, tmp_path, imgstats,
                                                     scheduler):
    behaviour = ProxyBehaviour(fault_rate=1.0, objects_only=True, faults=("503",))
    with s3_proxy(s3_endpoint, behaviour) as proxy:
        options = {"endpoint_url": proxy, "config_kwargs": {"retries": {"max_attempts": 1}}}
        done = imgstats("compute", f"s3://{BUCKET}/images", "--out", str(tmp_path / "st"),
                        "--scheduler", scheduler, "--source-options", json.dumps(options))
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("imgstats: error: run failed")
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "st").exists() or not any((tmp_path / "st").iterdir())


@pytest.mark.slow  # ~30 s: a bucket removed under a run through the fault proxy
def test_bucket_deleted_mid_run_fails_with_one_line(s3_images, s3_endpoint, tmp_path, scheduler):
    _, fs, _ = s3_images
    behaviour = ProxyBehaviour(latency=0.2)  # object reads last long enough to delete mid-run
    try:
        with s3_proxy(s3_endpoint, behaviour) as proxy:
            command = [sys.executable, "-m", "pipeline", "compute", f"s3://{BUCKET}/images",
                       "--out", str(tmp_path / "st"), "--scheduler", scheduler,
                       "--source-options", json.dumps({"endpoint_url": proxy})]
            run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
            deadline = time.monotonic() + 60
            while behaviour.counts["object reads"] < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            fs.rm(BUCKET, recursive=True)  # the objects, then the bucket
            reads_before = behaviour.counts["object reads"]
            stdout, stderr = run.communicate(timeout=120)
    finally:
        if not fs.exists(BUCKET):
            fs.mkdir(BUCKET)  # for the fixture's clean-up
    assert reads_before < 24  # the deletion landed mid-run
    assert run.returncode == 1, stderr
    assert stderr.strip().splitlines() == [
        f"imgstats: error: cannot read 's3://{BUCKET}/images': its bucket no longer exists"
    ]
    assert stdout == ""
    assert not (tmp_path / "st").exists() or not any((tmp_path / "st").iterdir())


@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 KiB tmpfs: a store on a full disk (needs root and mount; skipped elsewhere)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    (mount / "filler").write_bytes(b"\0" * 14 * 1024)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow  # ~12 s: a tiny tmpfs filled by the run
def test_full_disk_fails_cleanly_and_prints_the_figures(tmp_path, tiny_disk, imgstats, scheduler):
    folder = tmp_path / "images"
    write_images(folder, 8)
    done = imgstats("compute", str(folder), "--out", str(tiny_disk / "stats"),
                    "--scheduler", scheduler)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert "No space left on device" in done.stderr
    printed = json.loads(done.stdout)
    assert printed["image_count"] == 8 and len(printed["mean"]) == 3
    assert not (tiny_disk / "stats").exists()  # no version, no temp file, no folder it made


def test_odd_names_local_and_s3(tmp_path, s3, reference, scheduler):
    fs, options = s3
    folder = tmp_path / "odd"
    write_images(folder, 0, names=ODD_NAMES)
    local = reference(folder)
    assert local["image_count"] == len(ODD_NAMES)
    for path in sorted(folder.rglob("*.png")):
        fs.put_file(str(path), f"{BUCKET}/odd/{path.relative_to(folder).as_posix()}")
    fs.pipe_file(f"{BUCKET}/odd/../escape.png", fs.cat_file(f"{BUCKET}/odd/hash#1.png"))
    remote = compute_stats(JobConfig(source=f"s3://{BUCKET}/odd", out=f"s3://{BUCKET}/st",
                                     source_options=options, store_options=options,
                                     scheduler=scheduler))
    assert content(remote.stats.document) == content(local)
    written = fs.find(f"{BUCKET}/st")
    assert all(path.startswith(f"{BUCKET}/st/") for path in written)


def test_symlinks_and_vanished_files_are_skipped_with_a_reason(tmp_path, scheduler):
    folder = tmp_path / "images"
    write_images(folder, 4)
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")
    (folder / "d0" / "loop").symlink_to(folder)  # a folder symlink that loops back
    result = compute_stats(JobConfig(source=str(folder), out=str(tmp_path / "st"),
                                     scheduler=scheduler))
    assert result.stats.image_count == 4
    assert result.stats.skipped == [
        {"path": "d0/loop/", "error": "symlink loop: the link leads back to a folder above it"},
        {"path": "dangling.png", "error": "cannot read: FileNotFoundError"},
    ]


def test_symlinked_folders_are_followed_once_as_torchvision_does(tmp_path, reference):
    """ImageFolder walks with os.walk(followlinks=True): so does imgstats, minus the loops."""
    real = tmp_path / "elsewhere"
    write_images(real, 4)  # d0..d3/img*.png
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "cats").symlink_to(real / "d0")
    (folder / "dogs").symlink_to(real / "d1")
    (real / "d1" / "back").symlink_to(real / "d0")  # a sibling: followed (as torchvision)
    (real / "d0" / "up").symlink_to(folder)  # leads back above itself: a loop
    location = resolve(str(folder))
    problems = []
    entries = list(iter_images(location.filesystem(), location.path,
                          on_unlisted=lambda path, reason: problems.append(path)))
    assert [e.path for e in entries] == [
        "cats/img0000.png", "dogs/back/img0000.png", "dogs/img0001.png"
    ]
    assert problems == ["cats/up/", "dogs/back/up/"]


def test_file_vanishing_between_listing_and_reading_is_skipped(tmp_path):
    from pipeline.core.files import Shard
    from pipeline.fs.listing import iter_images
    from pipeline.fs.location import resolve
    from pipeline.run.scan import scan_shard

    folder = tmp_path / "images"
    write_images(folder, 3)
    location = resolve(str(folder))
    entries = list(iter_images(location.filesystem(), location.path))
    (folder / entries[1].path).unlink()
    result = scan_shard(location, Shard(0, tuple(entries)), ScanOptions("rgb"))
    assert sum(result.images.values()) == 2
    assert [s.path for s in result.skipped] == [entries[1].path]


def test_file_rewritten_between_listing_and_reading_is_counted_as_it_is_now(tmp_path):
    from pipeline.core.files import Shard
    from pipeline.fs.listing import iter_images
    from pipeline.fs.location import resolve
    from pipeline.run.scan import scan_shard

    folder = tmp_path / "images"
    write_images(folder, 3)
    location = resolve(str(folder))
    listed = list(iter_images(location.filesystem(), location.path))
    write_images(folder, 1, size=(50, 70), names=[listed[1].path])  # bigger, other pixels
    result = scan_shard(location, Shard(0, tuple(listed)), ScanOptions("rgb"))
    now = scan_shard(location, Shard(0, tuple(list(iter_images(location.filesystem(),
                                                          location.path)))), ScanOptions("rgb"))
    assert result.summaries == now.summaries and result.images == now.images
    assert (result.all_files.count, result.all_files.nbytes) == (3, now.all_files.nbytes)
    [row] = [r for r in FileRecord.from_parts(result.rows).entries() if r.path == listed[1].path]
    assert row.size == (folder / listed[1].path).stat().st_size != listed[1].size
    assert row.token == ""  # unknown: the next incremental run reads it again


SETPRIV = shutil.which("setpriv")


@pytest.mark.skipif(SETPRIV is None, reason="needs util-linux setpriv to drop root's file access")
def test_unreadable_files_and_folders_are_skipped_with_a_reason(tmp_path, reference):
    """Tests run as root, who reads anything: the run drops the capabilities that let it."""
    folder = tmp_path / "images"
    write_images(folder, 6)
    os.makedirs(folder / "locked")
    (folder / "d0" / "img0000.png").rename(folder / "locked" / "moved.png")
    (folder / "d1" / "img0001.png").chmod(0)
    (folder / "locked").chmod(0)
    readable = tmp_path / "readable"
    write_images(readable, 6)
    (readable / "d0" / "img0000.png").unlink()
    (readable / "d1" / "img0001.png").unlink()
    expected = reference(readable)
    unprivileged = [SETPRIV, "--bounding-set", "-dac_override,-dac_read_search"]
    command = [*unprivileged, sys.executable, "-m", "pipeline", "compute", str(folder),
               "--out", str(tmp_path / "st"), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    try:
        first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    finally:
        (folder / "locked").chmod(0o755)
    assert first.returncode == 0, first.stderr
    doc = json.loads((tmp_path / "st" / "v000001.json").read_text())
    assert doc["skipped"] == [
        {"path": "d1/img0001.png", "error": "cannot read: PermissionError"},
        {"path": "locked/", "error": "cannot list folder: permission denied"},
    ]
    assert content(doc) | {"skipped": []} == content(expected)
    assert "skipped 'locked/': cannot list folder: permission denied" in first.stderr
    # The incremental run sees the same files and the same problems: nothing changed.
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stderr
    assert not (tmp_path / "st" / "v000002.json").exists()


@pytest.mark.skipif(SETPRIV is None, reason="needs util-linux setpriv to drop root's file access")
def test_read_only_store_fails_cleanly_and_prints_the_figures(tmp_path, reference):
    folder = tmp_path / "images"
    write_images(folder, 4)
    expected = reference(folder)
    store = tmp_path / "st"
    store.mkdir()
    store.chmod(0o555)
    command = [SETPRIV, "--bounding-set", "-dac_override,-dac_read_search", sys.executable,
               "-m", "pipeline", "compute", str(folder), "--out", str(store), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    finally:
        store.chmod(0o755)
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("imgstats: error: ") and "printed on stdout" in line, line
    assert content(json.loads(done.stdout)) == content(expected)  # the work is not lost
    assert list(store.iterdir()) == []  # nothing half-written


def test_secrets_never_in_task_names(cluster):
    """What the dashboard shows of a run (task keys and their prefixes) holds no secret, in
    either decode mode."""
    from pipeline.core.files import FileEntry, Shard
    from pipeline.fs.location import Location
    from pipeline.run.graph import stream_scans

    secret = "SECRET-VALUE-1234567890"
    location = Location("memory", "/nowhere", {"key": "AKIA-" + secret, "secret": secret,
                                               "client_kwargs": {"token": secret}})
    shards = [(i, Shard(i, (FileEntry(f"f{i}.png", 10, "t"),))) for i in range(3)]
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        for timeout in (60.0, 0.0):
            shown: list[str] = []
            for _tag, _result in stream_scans(client, location, ScanOptions("rgb", None, timeout),
                                              shards, window=3):
                shown += client.run_on_scheduler(
                    lambda dask_scheduler: [f"{key} {ts.prefix.name} {ts.group.name}"
                                            for key, ts in dask_scheduler.tasks.items()]
                )  # every file missing: skipped, the run itself fine
            assert any("imgstats-scan" in line for line in shown)
            assert not any(secret in line for line in shown), shown
