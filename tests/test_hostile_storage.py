"""What hostile storage does to a run (issue 17): special files under image names, files larger
than memory, names that are not UTF-8, deep trees, S3 key shapes, crash windows, planted links,
secrets in URLs, names that break lines, CMYK, the cluster's network exposure, absurd sizes.

Every fault is real: FIFOs, sockets, devices, sparse files and non-UTF-8 names on disk, keys on
a moto server, processes killed (SIGKILL, or syscall fault injection with strace) at the crash
point. Every run that could hang or explode is a subprocess bounded in address space (prlimit,
inherited by the workers and sandboxes it starts) and in time, so a regression fails fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from pipeline import JobConfig, compute_stats, load_stats
from pipeline.decode import decode
from pipeline.errors import DecodeError, UsageError
from pipeline.fs.listing import iter_images
from pipeline.fs.location import resolve
from pipeline.run.capacity import check_local_cluster
from pipeline.store import S3Store, open_store
from pipeline.store.local import TEMP_PREFIX
from pipeline.store.record import FileRecord
from pipeline.store.segments import read_record

from conftest import ROOT, one_error_line, run_imgstats
from s3_proxy import ProxyBehaviour, s3_proxy

BUCKET = "imgstats-test"
GiB = 2**30
#: Address space of every process of a bounded run (the client, its workers, their sandboxes):
#: a run reading /dev/zero or a 30 GB file into memory fails at once instead of swapping.
MEMORY_BOUND = 3 * GiB
PRLIMIT = shutil.which("prlimit")
STRACE = shutil.which("strace")
#: Keys that say when and how a version was made, or name the files, not what they hold.
RUN_KEYS = {"version", "parent", "created", "run", "record", "source", "files", "provenance"}

needs_prlimit = pytest.mark.skipif(PRLIMIT is None, reason="needs util-linux prlimit")


def content(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in RUN_KEYS}


def env_without_scheduler() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}


def bounded(*args: str | bytes, seconds: float = 90, memory: int = MEMORY_BOUND,
            text: bool = True) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` with every process it starts limited to ``memory`` bytes of
    address space, killed after ``seconds``; ``returncode`` and ``seconds`` are what it took."""
    started = time.monotonic()
    done = subprocess.run([PRLIMIT, f"--as={memory}", sys.executable, "-m", "pipeline", *args],
                          capture_output=True, text=text, env=env_without_scheduler(),
                          timeout=seconds, cwd=ROOT)
    done.seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return done


def png(path: Path, seed: int = 0, size: tuple[int, int] = (12, 10)) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "PNG")
    return pixels


def sums(arrays: list[np.ndarray]) -> list[int]:
    flat = np.concatenate([a.reshape(-1, a.shape[-1]) for a in arrays]).astype(np.int64)
    return [int(v) for v in flat.sum(0)]


def skipped(store: Path, version: int = 1) -> dict[str, str]:
    doc = json.loads((store / f"v{version:06d}.json").read_text())
    return {s["path"]: s["error"] for s in doc["skipped"]}


# --- 4. special files under image names ---------------------------------------------------------

def special_files(folder: Path) -> dict[str, str]:
    """A FIFO, a UNIX socket, a character device (when this process may make one), links to
    /dev/zero, /dev/urandom and to themselves, under image names: name -> expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {
        "fifo.png": "not a regular file: a FIFO",
        "socket.png": "not a regular file: a socket",
        "zero.png": "not a regular file: a link to a character device",
        "urandom.jpg": "not a regular file: a link to a character device",
        "loop.png": "cannot read: Too many levels of symbolic links",
        "proc.png": "cannot read: it yields more than its size (0 bytes) when read (still being "
                    "written, or not a plain file)",
    }
    os.mkfifo(folder / "fifo.png")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "socket.png"))
    server.close()  # the socket file stays
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "urandom.jpg").symlink_to("/dev/urandom")
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "proc.png").symlink_to("/proc/self/pagemap")  # regular, size 0, megabytes long
    try:
        os.mknod(folder / "device.png", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero's
        expected["device.png"] = "not a regular file: a character device"
    except PermissionError:
        pass
    return expected


@needs_prlimit
@pytest.mark.parametrize("decode_timeout", [
    pytest.param("60", id="sandbox"),
    pytest.param("0", id="in-worker", marks=pytest.mark.slow),
])
def test_special_files_are_skipped_with_a_reason_never_read(tmp_path, decode_timeout):
    """A FIFO used to hang the run for minutes, /dev/zero to grow it to 5.9 GB in 12 s."""
    images = tmp_path / "images"
    arrays = [png(images / "ok.png", 1), png(images / "sub" / "ok.png", 2)]
    expected = special_files(images)
    store = tmp_path / "stats"
    done = bounded("compute", str(images), "--out", str(store), "--workers", "1",
                   "--decode-timeout", decode_timeout, seconds=60)
    assert done.returncode == 0, done.stderr
    assert skipped(store) == expected
    doc = json.loads((store / "v000001.json").read_text())
    assert doc["image_count"] == 2 and doc["sum"] == sums(arrays)
    assert done.seconds < 45, done.seconds  # ~4 s here: a process start and two tiny images


def test_a_file_turned_into_a_fifo_after_listing_is_not_waited_on(tmp_path):
    """The reader checks what it opens, not what was listed: nothing may block on a FIFO (in a
    subprocess with a time limit, so that a regression fails instead of hanging)."""
    folder = tmp_path / "images"
    png(folder / "a.png")
    script = (
        "import os, sys\n"
        "from pipeline.fs.listing import iter_images\n"
        "from pipeline.fs.location import resolve\n"
        "from pipeline.fs.reading import read_files\n"
        "location = resolve(sys.argv[1])\n"
        "[entry] = iter_images(location.filesystem(), location.path)\n"
        "path = os.path.join(sys.argv[1], 'a.png')\n"
        "os.unlink(path)\n"
        "os.mkfifo(path)\n"
        "[(_, result)] = read_files(location.filesystem(), location, [entry])\n"
        "print(result.error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True,
                          text=True, timeout=30, cwd=ROOT)
    assert done.stdout == "not a regular file: a FIFO\n", done.stderr


@pytest.mark.slow  # a read that stalls until the limit
@needs_prlimit
def test_a_slow_read_is_stopped_by_the_time_limit(tmp_path):
    """The sandbox watches each read as it watches each decode: a read that outlasts
    --decode-timeout (256 MiB of a sparse file with a 0.02 s limit) costs that file."""
    images = tmp_path / "images"
    arrays = [png(images / "a.png", 1), png(images / "c.png", 2)]
    with open(images / "b-slow.png", "wb") as handle:
        handle.truncate(256 * 2**20)
    store = tmp_path / "stats"
    done = bounded("compute", str(images), "--out", str(store), "--workers", "1",
                   "--decode-timeout", "0.02", seconds=60)
    assert done.returncode == 0, done.stderr
    assert skipped(store) == {"b-slow.png": "reading took longer than 0.02 s"}
    assert json.loads((store / "v000001.json").read_text())["sum"] == sums(arrays)


# --- 5. a file larger than memory ---------------------------------------------------------------

@pytest.mark.slow  # a 30 GB sparse file under a memory limit
@needs_prlimit
def test_a_file_larger_than_memory_costs_that_file_only(tmp_path):
    """A 30 GB sparse huge.png used to fail the run with ``MemoryError: `` naming nothing."""
    images = tmp_path / "images"
    arrays = [png(images / "ok.png", 3)]
    with open(images / "huge.png", "wb") as handle:
        handle.truncate(30 * 10**9)  # sparse: 30 GB long, nothing on disk
    store = tmp_path / "stats"
    done = bounded("compute", str(images), "--out", str(store), "--workers", "1", seconds=60)
    assert done.returncode == 0, done.stderr
    assert skipped(store) == {"huge.png": "too large to read: 30,000,000,000 bytes, more than "
                                          "the 2,147,483,648 bytes allowed (--max-file-bytes)"}
    assert "skipped 'huge.png': too large to read: 30,000,000,000 bytes" in done.stderr
    # Without the size limit, running out of memory for it still costs that file alone.
    config = tmp_path / "no-limit.yaml"
    config.write_text("max_file_bytes: null\n")
    unlimited = tmp_path / "unlimited"
    done = bounded("compute", str(images), "--out", str(unlimited), "--workers", "1",
                   "--config", str(config), seconds=60)
    assert done.returncode == 0, done.stderr
    assert skipped(unlimited) == {
        "huge.png": "too large to read: out of memory for its 30,000,000,000 bytes"
    }
    for folder in (store, unlimited):
        assert json.loads((folder / "v000001.json").read_text())["sum"] == sums(arrays)


# --- 6. names that are not UTF-8 ----------------------------------------------------------------

def test_names_that_are_not_utf8_are_counted_and_round_trip(tmp_path, scheduler):
    """``bad\\xffname.png`` used to fail the run with ``UnicodeEncodeError: `` (fingerprint)."""
    images = tmp_path / "images"
    arrays = [png(images / "plain.png", 4)]
    raw = os.fsencode(images)
    good, junk = raw + b"/bad\xffname.png", raw + b"/\xe9t\xe9/junk\xfe.png"  # latin-1 names
    os.mkdir(os.path.dirname(junk))
    with open(good, "wb") as handle:
        arrays.append(np.asarray(Image.open(images / "plain.png")))
        handle.write((images / "plain.png").read_bytes())
    with open(junk, "wb") as handle:
        handle.write(b"not an image")
    store = os.fsencode(tmp_path) + b"/st\xe4ts"  # the store's own name is not UTF-8 either
    command = [sys.executable, "-m", "pipeline", "compute", raw, "--out", store,
               "--scheduler", scheduler]
    done = subprocess.run(command, capture_output=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == store + b"/v000001.json"  # the bytes of the name
    junk_name = os.fsdecode(b"\xe9t\xe9/junk\xfe.png")
    assert f"skipped {junk_name!r}: not an image".encode() in done.stderr  # quoted, one line
    doc = json.loads(Path(os.fsdecode(store), "v000001.json").read_text())
    assert doc["image_count"] == 2 and doc["sum"] == sums(arrays)
    assert [os.fsencode(s["path"]) for s in doc["skipped"]] == [b"\xe9t\xe9/junk\xfe.png"]
    record = FileRecord.concat(list(read_record(open_store(resolve(os.fsdecode(store))),
                                                doc["record"])))
    assert record.table.column("path").to_pylist() == [b"bad\xffname.png", b"plain.png"]
    assert [os.fsencode(e.path) for e in record.entries()] == [b"bad\xffname.png", b"plain.png"]
    # The record's names match the listing's: an incremental run finds nothing changed.
    again = subprocess.run(command, capture_output=True, timeout=120, cwd=ROOT)
    assert again.returncode == 0 and b"nothing changed" in again.stderr, again.stderr
    shown = subprocess.run([sys.executable, "-m", "pipeline", "show", store, "--skipped"],
                           capture_output=True, timeout=60, cwd=ROOT)
    assert shown.stdout == f"{junk_name!r}: not an image Pillow can identify\n".encode()


# --- 7. deep trees ------------------------------------------------------------------------------

def make_deep_tree(root: Path, depth: int, every: int, data: bytes) -> list[str]:
    """``depth`` nested folders under ``root`` (made level by level with folder descriptors:
    ``os.makedirs`` recurses once per level), an image every ``every`` levels."""
    root.mkdir(parents=True)
    placed = []
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(1, depth + 1):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
            if level % every == 0:
                out = os.open("x.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
                os.write(out, data)
                os.close(out)
                placed.append("d/" * level + "x.png")
    finally:
        os.close(fd)
    return placed


def remove_deep_tree(root: Path) -> None:
    """``shutil.rmtree`` recurses once per level too: remove bottom-up with a loop."""
    folders = [root]
    while (folders[-1] / "d").is_dir():
        folders.append(folders[-1] / "d")
    for folder in reversed(folders[1:]):
        for item in folder.iterdir():
            if not item.is_dir():
                item.unlink()
        folder.rmdir()


def test_a_1200_deep_tree_lists_whatever_the_recursion_limit(tmp_path, scheduler):
    """1,000 nested folders used to fail with RecursionError from fsspec's recursive walk."""
    root = tmp_path / "deep"
    png(tmp_path / "one.png", 5)
    data = (tmp_path / "one.png").read_bytes()
    placed = make_deep_tree(root, 1200, 400, data)
    try:
        assert len(str(root / placed[-1])) > 2400  # legal: under PATH_MAX (4,096)
        location = resolve(str(root))
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(100)  # far below the depth: the walk must not use recursion
        try:
            entries = list(iter_images(location.filesystem(), location.path))
        finally:
            sys.setrecursionlimit(limit)
        assert [e.path for e in entries] == sorted(placed)
        result = compute_stats(JobConfig(source=str(root), out=str(tmp_path / "st"),
                                         scheduler=scheduler))
        assert result.stats.image_count == 3 and result.stats.skipped == []
    finally:
        remove_deep_tree(root)


# --- 1, 2. S3 key shapes ------------------------------------------------------------------------

def put(fs, key: str, data: bytes) -> None:
    """One object, exactly this key (s3fs would strip a trailing ``/``)."""
    fs.call_s3("put_object", Bucket=BUCKET, Key=key, Body=data)


def test_s3_keys_that_are_prefixes_count_and_folder_markers_are_not_files(tmp_path, s3,
                                                                          scheduler):
    """``a.png`` beside ``a.png/inner.png`` used to be left out without a word; the markers the
    console's "Create folder" makes used to be skipped as unlistable folders."""
    fs, options = s3
    keys = {"a.png": 1, "a.png/inner.png": 2, "val/b.png": 3, "c.jpg/d.png": 4, "e.png": 5}
    arrays = []
    for key, seed in keys.items():
        size = (40, 30) if key == "a.png/inner.png" else (12, 10)  # the largest
        arrays.append(png(tmp_path / "local" / f"{seed}.png", seed, size))
        put(fs, f"images/{key}", (tmp_path / "local" / f"{seed}.png").read_bytes())
    for marker in ("images/", "images/val/", "images/empty/", "images/a.png/"):
        put(fs, marker, b"")
    location = resolve(f"s3://{BUCKET}/images", options)
    entries = list(iter_images(location.filesystem(), location.path))
    assert [e.path for e in entries] == sorted(keys)  # c.jpg is a prefix only: not a file
    result = compute_stats(JobConfig(source=f"s3://{BUCKET}/images", out=str(tmp_path / "st"),
                                     source_options=options, scheduler=scheduler,
                                     on_error="fail", max_errors=0))
    assert result.stats.image_count == len(keys) and result.stats.skipped == []
    assert result.stats.document["sum"] == sums(arrays)
    # An object over --max-file-bytes is skipped with its listed size, never fetched.
    big = next(e for e in entries if e.path == "a.png/inner.png")
    small = JobConfig(source=f"s3://{BUCKET}/images", out=str(tmp_path / "st2"),
                      source_options=options, scheduler=scheduler, max_file_bytes=big.size - 1)
    skips = {s["path"]: s["error"] for s in compute_stats(small).stats.skipped}
    assert skips["a.png/inner.png"] == (f"too large to read: {big.size:,} bytes, more than the "
                                        f"{big.size - 1:,} bytes allowed (--max-file-bytes)")


# --- 10. crash windows --------------------------------------------------------------------------

def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done


def latest_version(store: Path) -> int:
    return json.loads((store / "latest.json").read_text())["version"]


@pytest.mark.slow  # a run killed at a syscall, then readers and a run
def test_killed_after_creating_a_version_readers_find_it_and_the_next_run_publishes_it(
        tmp_path, scheduler):
    images, store = tmp_path / "images", tmp_path / "st"
    png(images / "a.png", 1)
    compute = ("compute", str(images), "--out", str(store), "--scheduler", scheduler)
    ok(run_imgstats(*compute))
    png(images / "b.png", 2)
    # The writer publishes latest.json under this lock: held here, the run stops right after
    # creating version 2, and is killed there.
    lock = os.open(store / ".latest.lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        writer = subprocess.Popen(cli_command(*compute), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env_without_scheduler(), cwd=ROOT)
        deadline = time.monotonic() + 60
        while not (store / "v000002.json").exists() and time.monotonic() < deadline:
            assert writer.poll() is None, writer.communicate()
            time.sleep(0.01)
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=30)
    finally:
        os.close(lock)
    assert writer.returncode == -signal.SIGKILL
    assert latest_version(store) == 1  # the crash window
    assert json.loads((store / "v000002.json").read_text())["image_count"] == 2  # complete
    assert load_stats(str(store)).version == 2  # readers find the newest complete version
    assert ok(run_imgstats("show", str(store))).stdout.startswith("version 2 of ")
    again = ok(run_imgstats(*compute))
    assert "'latest.json' held an older version than 2" in again.stderr
    newest = max(int(p.name[1:7]) for p in store.glob("v*.json"))
    assert latest_version(store) == newest >= 2


@pytest.mark.skipif(STRACE is None, reason="needs strace to kill the run at a syscall")
def test_temp_files_of_killed_runs_are_removed_never_a_live_writers(tmp_path, scheduler):
    images, store = tmp_path / "images", tmp_path / "st"
    png(images / "a.png", 1)
    compute = ("compute", str(images), "--out", str(store), "--scheduler", scheduler)
    # SIGKILL at the first link(2): a temp file (the run's first record segment) is written,
    # not linked.
    killer = [STRACE, "-f", "-qq", "-o", "/dev/null", "-e", "trace=link,linkat",
              "-e", "inject=link,linkat:signal=SIGKILL"]
    killed = subprocess.run([*killer, *cli_command(*compute)], capture_output=True, text=True,
                            timeout=120, env=env_without_scheduler(), cwd=ROOT)
    assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), killed.stderr
    [left] = store.glob(f"{TEMP_PREFIX}*")
    assert left.stat().st_size > 0 and not (store / "v000001.json").exists()
    ok(run_imgstats(*compute))  # young: it could be a live run's, it stays
    assert left.exists() and (store / "v000001.json").exists()
    hour_ago = time.time() - 3600
    os.utime(left, (hour_ago, hour_ago))
    held = store / f"{TEMP_PREFIX}held"  # as old, but a live process holds its lock
    held.write_bytes(b"partial")
    os.utime(held, (hour_ago, hour_ago))
    young = store / f"{TEMP_PREFIX}young"
    young.write_bytes(b"partial")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'rb'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)",
         str(held)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        ok(run_imgstats(*compute))
    finally:
        holder.kill()
        holder.wait()
    assert not left.exists() and held.exists() and young.exists()


def test_a_probe_left_on_s3_by_a_killed_run_is_removed_once_old(tmp_path, s3, s3_endpoint,
                                                                 scheduler):
    fs, options = s3
    images = tmp_path / "images"
    png(images / "a.png", 1)
    behaviour = ProxyBehaviour(latency=0.5)  # the probe lives ~1 s: killed in that window
    with s3_proxy(s3_endpoint, behaviour) as proxy:
        writer = subprocess.Popen(
            cli_command("compute", str(images), "--out", f"s3://{BUCKET}/st", "--scheduler",
                        scheduler, "--store-options", json.dumps({"endpoint_url": proxy})),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_without_scheduler(), cwd=ROOT)
        deadline = time.monotonic() + 60
        probes: list[str] = []
        while not probes and time.monotonic() < deadline:
            assert writer.poll() is None, writer.communicate()
            with contextlib.suppress(FileNotFoundError):
                probes = [p for p in fs.ls(f"{BUCKET}/st", refresh=True) if ".imgstats-probe-" in p]
            time.sleep(0.01)
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=30)
    assert len(probes) == 1
    store = S3Store(resolve(f"s3://{BUCKET}/st", options))
    store.clean_up()  # young: a live run's probe lasts a few requests, but it might be one
    fs.invalidate_cache()
    assert fs.exists(probes[0])
    store.clean_up(max_age=0)
    fs.invalidate_cache()
    assert not fs.exists(probes[0])


# --- 11. store names are never paths ------------------------------------------------------------

@pytest.mark.slow  # six runs against planted links and FIFOs
@needs_prlimit
def test_store_files_are_never_followed_or_read_without_bound(tmp_path, scheduler):
    """A ``record`` key ``../../dev/zero`` used to make the next run read 3 GB in 7 s."""
    images, store = tmp_path / "images", tmp_path / "st"
    png(images / "a.png", 1)
    compute = ("compute", str(images), "--out", str(store), "--scheduler", scheduler)
    ok(run_imgstats(*compute))

    def next_run(seed: int) -> str:
        png(images / f"new{seed}.png", seed)  # so that every run writes a version
        done = bounded(*compute, seconds=60)
        assert done.returncode == 0, done.stderr
        return done.stderr

    for name in ("v000001.json", "latest.json"):  # a hand-edited record key
        doc = json.loads((store / name).read_text())
        (store / name).write_text(json.dumps({**doc, "record": "../../../../../../dev/zero"}))
    assert "'record' is not a record manifest of this store" in next_run(2)

    def manifest(version: int) -> str:
        return json.loads((store / f"v{version:06d}.json").read_text())["record"]

    (store / manifest(2)).unlink()
    (store / manifest(2)).symlink_to("/dev/zero")  # a planted link
    assert f"{manifest(2)}' is a symbolic link: store files are never followed" in next_run(3)
    (store / manifest(3)).unlink()
    os.mkfifo(store / manifest(3))  # a planted FIFO: never waited on
    assert f"{manifest(3)}' is not a regular file" in next_run(4)
    (store / "latest.json").unlink()
    (store / "latest.json").symlink_to("/dev/zero")
    shown = bounded("show", str(store), seconds=60)
    assert shown.returncode == 0 and shown.stdout.startswith("version 4 of "), shown.stderr
    next_run(5)  # replaces the link with the file, never writes through it
    assert not (store / "latest.json").is_symlink() and latest_version(store) == 5
    planted = tmp_path / "planted"
    (store / ".latest.lock").unlink()
    (store / ".latest.lock").symlink_to(planted)
    png(images / "new6.png", 6)
    line = one_error_line(run_imgstats(*compute), 2, empty_stdout=True)
    assert "'.latest.lock'" in line and "never follows it" in line, line
    assert not planted.exists() and not (store / "v000006.json").exists()


# --- 12. secrets in URLs ------------------------------------------------------------------------

@pytest.mark.parametrize("debug", [
    pytest.param(False, id="plain"),
    pytest.param(True, id="debug", marks=pytest.mark.slow),
])
def test_a_secret_in_a_url_is_never_printed(tmp_path, debug):
    key, secret = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI-K7MDENG-SECRET"
    images = tmp_path / "images"
    png(images / "a.png")
    url = f"s3://{key}:{secret}@{BUCKET}/images"
    flags = ("-v",) if debug else ()
    for args in (("compute", url, "--out", str(tmp_path / "st")),
                 ("compute", str(images), "--out", url),
                 ("show", url),
                 ("compute", f"http://127.0.0.1:9/images?X-Amz-Signature={secret}&n=1",
                  "--out", str(tmp_path / "st"))):
        done = run_imgstats(*args, *flags, timeout=60)
        assert done.returncode == 2, done.stderr
        shown = done.stdout + done.stderr
        assert secret not in shown and key not in shown, shown
        if not debug:
            line = one_error_line(done, 2)
            assert f"s3://***@{BUCKET}/images" in line or "X-Amz-Signature=***" in line, line
    assert not (tmp_path / "st").exists()


# --- 13. names that would cut a line ------------------------------------------------------------

@pytest.mark.slow  # three runs and show
def test_a_newline_in_a_name_never_cuts_a_message(tmp_path, scheduler):
    images, store = tmp_path / "images", tmp_path / "st"
    png(images / "ok.png")
    (images / "bad\nname.png").write_bytes(b"not an image")
    quoted = "'bad\\nname.png'"
    missing = tmp_path / "no\nsuch"
    cases = [
        (("compute", str(missing), "--out", str(store)), 2, repr(str(missing))),
        (("compute", "--config", str(missing)), 2, repr(str(missing))),
        (("show", str(missing)), 2, repr(str(missing))),
        (("compute", str(images), "--out", str(store), "--scheduler", scheduler,
          "--on-error", "fail"), 1, quoted),
    ]
    for args, code, name in cases:
        assert name in one_error_line(run_imgstats(*args), code), args
    quiet = ok(run_imgstats("compute", str(images), "--out", str(store), "--scheduler",
                            scheduler, "--quiet"))
    [line] = quiet.stderr.splitlines()  # cron mails exactly one line
    assert line.startswith("imgstats: warning: 1 file skipped") and quoted in line, line
    full = ok(run_imgstats("compute", str(images), "--out", str(store), "--scheduler",
                           scheduler, "--full"))
    assert all(line.startswith(("20", "imgstats: ")) for line in full.stderr.splitlines())
    assert f"WARNING skipped {quoted}: not an image" in full.stderr


# --- 14. native CMYK ----------------------------------------------------------------------------

def test_native_cmyk_is_four_stored_channels(tmp_path, scheduler):
    import imagecodecs

    rng = np.random.default_rng(14)
    cmyk8 = rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)
    cmyk16 = rng.integers(0, 65536, (9, 11, 4), dtype=np.uint16)  # stored samples, 16-bit
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(cmyk8, "CMYK").save(images / "a.tif")
    Image.fromarray(cmyk8, "CMYK").save(images / "b.jpg", quality=90)  # Adobe, inverted
    from_jpeg = np.asarray(Image.open(images / "b.jpg"))  # Pillow's CMYK: ink amounts
    for name, expected in {"a.tif": cmyk8, "b.jpg": from_jpeg}.items():
        data = (images / name).read_bytes()
        decoded = decode(data, "native")
        assert decoded.channels == "CMYK" and decoded.pixels.dtype == expected.dtype, name
        assert np.array_equal(decoded.pixels, expected), name
        assert decode(data, "rgb").channels == "RGB"  # torchvision's loader converts
    # Pillow reads 16-bit CMYK TIFF as 8-bit and libtiff (imagecodecs) not at all: never
    # counted with its bits lost, it is skipped with the reason.
    sixteen = imagecodecs.tiff_encode(cmyk16, photometric="separated")
    with pytest.raises(DecodeError, match=r"cannot decode this TIFF \(photometric 5\) at its bit"):
        decode(sixteen, "native")
    result = compute_stats(JobConfig(source=str(images), out=str(tmp_path / "st"), mode="native",
                                     scheduler=scheduler))
    assert result.stats.channels == ("C", "M", "Y", "K") and result.stats.dtype == "uint8"
    assert result.stats.document["sum"] == sums([cmyk8, from_jpeg])


# --- 15. the local cluster on the network -------------------------------------------------------

def test_the_local_cluster_listens_on_loopback_only(tmp_path):
    """Every socket the run's local cluster listens on (scheduler, dashboard, workers,
    nannies) is on 127.0.0.1: file paths and the scheduler are not on the network."""
    script = (
        "import json, os, psutil\n"
        "from pipeline.run.cluster import dask_client\n"
        "if __name__ == '__main__':\n"
        "    with dask_client(workers=1, dashboard=True) as client:\n"
        "        pids = [os.getpid(), *client.run(os.getpid).values()]\n"
        "        listening = [(c.laddr.ip, c.laddr.port) for pid in pids\n"
        "                     for c in psutil.Process(pid).net_connections('inet')\n"
        "                     if c.status == psutil.CONN_LISTEN]\n"
        "        print(json.dumps({'listening': listening, 'dashboard': client.dashboard_link}))\n"
    )
    (tmp_path / "probe.py").write_text(script)
    done = subprocess.run([sys.executable, str(tmp_path / "probe.py")], capture_output=True,
                          text=True, timeout=120, env=env_without_scheduler(), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    hosts = {ip for ip, _ in found["listening"]}
    assert hosts == {"127.0.0.1"}, found
    assert found["dashboard"].startswith("http://127.0.0.1:")
    dashboard = int(found["dashboard"].split(":")[2].split("/")[0])
    assert dashboard in {port for _, port in found["listening"]}


# --- 8. absurd cluster sizes, and a cluster that fails to close ---------------------------------

def test_absurd_cluster_sizes_are_refused_at_once(tmp_path):
    images, store = tmp_path / "images", tmp_path / "st"
    png(images / "a.png")
    for size in (("--threads-per-worker", "2000"), ("--workers", "100000"),
                 ("--threads-per-worker", "1000000", "--decode-timeout", "0")):
        started = time.monotonic()
        done = run_imgstats("compute", str(images), "--out", str(store), *size, timeout=60)
        line = one_error_line(done, 2, empty_stdout=True)
        assert "would need about" in line and "more than the" in line, line
        assert time.monotonic() - started < 20  # no cluster was started (1-2 s here)
    assert not store.exists()
    check_local_cluster(2, 8, sandboxed=True, memory=16 * GiB)  # 2.9 GB: fine
    sizes = "2 worker processes at 110 MB, 400 decode sandboxes at 180 MB"
    with pytest.raises(UsageError, match=sizes):
        check_local_cluster(2, 200, sandboxed=True, memory=16 * GiB)  # the 200 threads


PTRACE_SEIZE = 0x4206
TRACER = (
    "import ctypes, sys, time\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "for pid in map(int, sys.argv[1:]):\n"
    f"    if libc.ptrace({PTRACE_SEIZE}, pid, None, None):\n"
    "        raise OSError(ctypes.get_errno(), 'PTRACE_SEIZE')\n"
    "print('seized', flush=True)\n"
    "time.sleep(300)\n"
)


@pytest.mark.slow  # ~15 s: distributed waits 9 s for the worker it cannot reap
def test_a_cluster_that_fails_to_close_keeps_the_result(tmp_path):
    """A worker process that cannot be reaped (a tracer that never waits for it holds its
    exit, as a process stuck in uninterruptible I/O would) makes the LocalCluster's close
    raise TimeoutError: that used to lose the finished run."""
    images = tmp_path / "images"
    arrays = [png(images / "a.png", 1), png(images / "b.png", 2)]
    tracers: list[subprocess.Popen] = []

    class SeizeWorkers:
        def begin(self, files: int) -> None:  # called for each shard: seize once
            if tracers:
                return
            workers = [p.pid for p in psutil.Process().children()
                       if "multiprocessing" in " ".join(p.cmdline())]
            tracer = subprocess.Popen([sys.executable, "-c", TRACER, *map(str, workers)],
                                      stdout=subprocess.PIPE, text=True)
            tracers.append(tracer)
            assert tracer.stdout.readline() == "seized\n"

        def advance(self, files: int) -> None:
            pass

    try:
        result = compute_stats(JobConfig(source=str(images), out=str(tmp_path / "st"),
                                         workers=1), progress=SeizeWorkers())
    finally:
        for tracer in tracers:
            tracer.kill()
            tracer.wait()
    assert tracers, "the workers were never seized: nothing was tested"
    assert result.written and result.stats.document["sum"] == sums(arrays)


def test_the_local_cluster_serves_a_dashboard_only_when_its_link_is_logged(tmp_path):
    """Without ``-v`` nobody sees the dashboard's link (a port of its own choosing): it is not
    started, nor Bokeh imported (every socket still on 127.0.0.1); with ``-v`` it is, and its
    link is logged."""
    script = (
        "import json, logging, os, sys, psutil\n"
        "from pipeline.run.cluster import dask_client\n"
        "if __name__ == '__main__':\n"
        "    if sys.argv[1] == 'verbose':\n"
        "        logging.basicConfig(level=logging.INFO)\n"
        "    with dask_client(workers=1) as client:\n"
        "        pids = [os.getpid(), *client.run(os.getpid).values()]\n"
        "        hosts = {c.laddr.ip for pid in pids\n"
        "                 for c in psutil.Process(pid).net_connections('inet')\n"
        "                 if c.status == psutil.CONN_LISTEN}\n"
        "        print(json.dumps({'hosts': sorted(hosts), 'bokeh': 'bokeh' in sys.modules}))\n"
    )
    (tmp_path / "probe.py").write_text(script)
    found = {}
    with contextlib.ExitStack() as stack:  # Dask's default port taken: no fixed port is used
        taken = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # (in use already: as good)
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        for how in ("quiet", "verbose"):
            done = subprocess.run([sys.executable, str(tmp_path / "probe.py"), how],
                                  capture_output=True, text=True, timeout=120,
                                  env=env_without_scheduler(), cwd=ROOT)
            assert done.returncode == 0, done.stderr
            found[how] = json.loads(done.stdout.strip().splitlines()[-1]), done.stderr
    assert found["quiet"][0] == {"hosts": ["127.0.0.1"], "bokeh": False}
    assert found["quiet"][1] == ""  # not a word (a fixed port in use once warned)
    assert found["verbose"][0] == {"hosts": ["127.0.0.1"], "bokeh": True}
    assert "(dashboard http://127.0.0.1:" in found["verbose"][1]
