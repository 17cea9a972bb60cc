"""The decode sandbox: a decode over the time limit or a crashing decoder costs one skipped file,
the rest is counted exactly, and no process is left behind. Real child processes, real signals,
real image files; the slow file is a real 64-megapixel PNG (about 1.5 s to decode here)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import psutil
import pytest
from PIL import Image

from pipeline.config import ScanOptions
from pipeline.core.files import Shard
from pipeline.core.keys import Layout, ResultKey
from pipeline.decode import decode
from pipeline.errors import DecodeError
from pipeline.fs.listing import iter_images
from pipeline.fs.location import resolve
from pipeline.run import sandbox
from pipeline.run.scan import scan_shard

from conftest import ROOT
from reference import reference_stats

SLOW = "m-slow.png"  # in the middle of the listing: files before and after it are counted
LIMIT = 0.25  # seconds: ~100x a small file's decode, ~1/6 of the slow one's


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 small RGB PNGs, a truncated one, and one slow 8,000 x 8,000 PNG."""
    root = tmp_path_factory.mktemp("sandbox")
    rng = np.random.default_rng(5)
    for i in range(12):
        name = f"{'a' if i < 6 else 'z'}{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / name)
    good = (root / "a00.png").read_bytes()
    (root / "b-truncated.png").write_bytes(good[: len(good) // 2])
    Image.new("L", (8000, 8000), 7).save(root / SLOW)
    return root


def small_files_reference(folder):
    names = sorted(p.name for p in folder.glob("[az]*.png"))
    return reference_stats(
        (np.asarray(Image.open(folder / n).convert("RGB")).tolist() for n in names), 255
    )


def shard_of(folder):
    location = resolve(str(folder), {})
    entries = list(iter_images(location.filesystem(), location.path, (), (), url=location.url))
    return location, Shard(0, tuple(entries))


def assert_small_files_exact(result, folder):
    expected = small_files_reference(folder)
    [summary] = result.summaries.values()
    moments = summary.moments()
    assert result.images[ResultKey("", Layout("RGB", "uint8"))] == expected.image_count == 12
    assert moments.count == expected.pixel_count
    assert moments.sum == expected.sum and moments.sum_sq == expected.sum_sq
    assert moments.min == expected.min and moments.max == expected.max


def skip_of(result, name):
    [reason] = [s.error for s in result.skipped if s.path == name]
    return reason


def test_the_sandbox_gives_what_the_worker_process_gives(folder, monkeypatch):
    location, shard = shard_of(folder)
    small = Shard(0, tuple(e for e in shard.files if e.path != SLOW))
    monkeypatch.setattr(sandbox, "CHUNK_FILES", 5)  # three requests, merged
    inside = sandbox.scan_in_sandbox(location, small, ScanOptions("rgb", None))
    outside = scan_shard(location, small, ScanOptions("rgb", None))
    assert inside.summaries == outside.summaries and inside.images == outside.images
    assert inside.skipped == outside.skipped and inside.files == outside.files
    assert inside.bytes_read == outside.bytes_read
    assert len(inside.rows) == 3
    assert_small_files_exact(inside, folder)
    assert "truncated" in skip_of(inside, "b-truncated.png")


def test_a_decode_over_the_time_limit_is_skipped_and_the_rest_counted(folder):
    location, shard = shard_of(folder)
    result = sandbox.scan_in_sandbox(location, shard, ScanOptions("rgb", None, LIMIT))
    assert skip_of(result, SLOW) == f"decoding took longer than {LIMIT:g} s"
    assert_small_files_exact(result, folder)
    assert [s.path for s in sorted(result.skipped)] == ["b-truncated.png", SLOW]


def kill_when_decoding(index, signum):
    """Send ``signum`` to the pooled child as soon as it decodes file ``index``."""
    child = sandbox.current_child()
    seen = threading.Event()

    def watch():
        deadline = time.monotonic() + 30
        while child.busy() != sandbox._Busy(index, "decoding") and time.monotonic() < deadline:
            time.sleep(0.002)
        seen.set()
        os.kill(child.pid, signum)

    threading.Thread(target=watch, daemon=True).start()
    return seen


@pytest.mark.parametrize("signum", [signal.SIGSEGV, signal.SIGKILL])
def test_a_crashing_decoder_costs_one_file(folder, signum):
    location, shard = shard_of(folder)
    warm = Shard(0, shard.files[:1])
    sandbox.scan_in_sandbox(location, warm, ScanOptions("rgb", None))  # one warm child
    slow = [e.path for e in shard.files].index(SLOW)
    seen = kill_when_decoding(slow, signum)
    result = sandbox.scan_in_sandbox(location, shard, ScanOptions("rgb", None))
    assert seen.is_set()
    assert skip_of(result, SLOW) == f"the decoder crashed ({signal.Signals(signum).name})"
    assert_small_files_exact(result, folder)
    child = sandbox.current_child()  # a fresh child finished the shard and waits for the next one
    assert child.alive() and child.busy() is None


def test_a_dead_idle_child_is_replaced(folder):
    location, shard = shard_of(folder)
    small = Shard(0, tuple(e for e in shard.files if e.path != SLOW))
    sandbox.scan_in_sandbox(location, small, ScanOptions("rgb", None))
    child = sandbox.current_child()
    os.kill(child.pid, signal.SIGKILL)
    psutil.Process(child.pid).wait(10)
    result = sandbox.scan_in_sandbox(location, small, ScanOptions("rgb", None))
    assert_small_files_exact(result, folder)
    assert sandbox.current_child().pid != child.pid


def test_the_child_does_not_outlive_a_killed_worker(folder):
    """A Dask worker SIGKILLed (OOM killer...) leaves no sandbox process behind."""
    script = (
        "import sys; from pipeline.run import sandbox; from pipeline.core.files import Shard; "
        "from pipeline.fs.listing import iter_images; from pipeline.fs.location import resolve\n"
        f"loc = resolve({str(folder)!r}, {{}})\n"
        "entries = list(iter_images(loc.filesystem(), loc.path, (), (), url=loc.url))\n"
        "from pipeline.config import ScanOptions\n"
        "sandbox.scan_in_sandbox(loc, Shard(0, tuple(entries[:2])), ScanOptions('rgb', None))\n"
        "print(sandbox.current_child().pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, cwd=ROOT,
    )
    child = psutil.Process(int(worker.stdout.readline()))
    assert "pipeline.run.sandbox" in child.cmdline()
    worker.kill()
    worker.wait()
    child.wait(10)  # raises TimeoutExpired if the child lingers
    assert not child.is_running()


def sandbox_processes(marker):
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "pipeline.run.sandbox" in (process.info["cmdline"] or []) and (
                process.environ().get("IMGSTATS_TEST_MARKER") == marker
            ):
                found.append(process)
        except psutil.Error:
            pass
    return found


@contextlib.contextmanager
def sandboxes_seen(marker):
    """The pids of the sandbox processes (of the run tagged ``marker``) seen while the block
    runs, sampled every 50 ms."""
    seen: set[int] = set()
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.update(p.pid for p in sandbox_processes(marker))
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def test_cli_skips_a_file_over_the_limit_and_leaves_no_process(folder, tmp_path, imgstats):
    marker = uuid.uuid4().hex
    with sandboxes_seen(marker) as seen:
        done = imgstats(
            "compute", str(folder), "--out", str(tmp_path / "stats"), "--workers", "1",
            "--decode-timeout", str(LIMIT), env={"IMGSTATS_TEST_MARKER": marker},
        )
    assert done.returncode == 0, done.stderr
    assert len(seen) >= 2  # the first sandbox, killed over the slow file, and its successor
    with pytest.raises(DecodeError) as truncated:
        decode((folder / "b-truncated.png").read_bytes(), "rgb")
    doc = json.loads((tmp_path / "stats" / "v000001.json").read_text())
    assert doc["skipped"] == [
        {"path": "b-truncated.png", "error": str(truncated.value)},
        {"path": SLOW, "error": f"decoding took longer than {LIMIT:g} s"},
    ]
    expected = small_files_reference(folder).as_document()
    assert {k: doc[k] for k in expected} == expected
    assert doc["provenance"]["decode_timeout"] == LIMIT
    assert f"skipped {SLOW!r}: decoding took longer" in done.stderr
    deadline = time.monotonic() + 10
    while sandbox_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_processes(marker) == []


def test_without_a_limit_decoding_stays_in_the_worker(folder, tmp_path, imgstats):
    marker = uuid.uuid4().hex
    with sandboxes_seen(marker) as seen:
        done = imgstats(
            "compute", str(folder), "--out", str(tmp_path / "stats"), "--workers", "1",
            "--exclude", SLOW, "--decode-timeout", "0", env={"IMGSTATS_TEST_MARKER": marker},
        )
    assert done.returncode == 0, done.stderr
    assert seen == set()
    doc = json.loads((tmp_path / "stats" / "v000001.json").read_text())
    assert doc["provenance"]["decode_timeout"] == 0
    expected = small_files_reference(folder).as_document()
    assert {k: doc[k] for k in expected} == expected



def test_a_sandbox_that_cannot_start_fails_the_task_with_the_reason(folder, monkeypatch):
    """A child that dies before any decode (here: an interpreter that exits at once) is not a
    file's fault: after a second try the task fails, saying why."""
    location, shard = shard_of(folder)
    monkeypatch.setattr(sandbox._threads, "child", None, raising=False)
    monkeypatch.setattr(sys, "executable", shutil.which("false"))
    with pytest.raises(sandbox.SandboxError, match=r"died 2 times outside any decode \(the "
                       r"decode process exited with status 1\)"):
        sandbox.scan_in_sandbox(location, shard, ScanOptions("rgb", None))
