"""The CLI where a person meets it: in a real pseudo-terminal (pexpect), in pipes, from cron.

Each test starts the installed ``imgstats`` console script as a user would. Ctrl-C is typed
into the terminal (the kernel sends SIGINT to the whole foreground process group: client,
workers, sandboxes), and what is left afterwards is read from ``/proc``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pexpect
import pytest
from PIL import Image

from conftest import ROOT

IMGSTATS = Path(sys.executable).parent / "imgstats"
COLUMNS = 100
ESCAPES = re.compile(r"[\r\x1b]")


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    env["COLUMNS"] = str(COLUMNS)
    return env


def copies(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> None:
    """``count`` hard links of one photo-like JPEG: a corpus that takes real decoding work and
    no time to make."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    original = folder / "original.jpg"
    folder.mkdir(parents=True)
    original.write_bytes(buffer.getvalue())
    for i in range(count - 1):
        sub = folder / f"part{i % 8}"
        sub.mkdir(exist_ok=True)
        os.link(original, sub / f"{i:05d}.jpg")


def spawn(*args: str, cwd: Path) -> pexpect.spawn:
    return pexpect.spawn(str(IMGSTATS), list(args), cwd=str(cwd), env=environment(),
                         dimensions=(40, COLUMNS), timeout=120)


def finish(child: pexpect.spawn) -> str:
    """Everything the terminal showed until the program ended."""
    child.expect(pexpect.EOF)
    child.close()
    return child.before.decode(errors="replace")


def live_processes_in_session(session: int) -> list[str]:
    """Processes of ``session`` still alive (zombies, already dead, aside)."""
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, sid = fields[0], int(fields[3])
        if sid == session and state != "Z":
            alive.append(f"{pid} {state} {command[:120]}")
    return alive


def wait_until_gone(session: int, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := live_processes_in_session(session)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


# --- compute in a terminal -------------------------------------------------------------------


def test_compute_in_a_terminal_shows_progress_then_one_summary_line(tmp_path):
    copies(tmp_path / "images", 120, (320, 240))
    child = spawn("compute", "images", "--out", "stats", "--workers", "2", cwd=tmp_path)
    child.expect(r"imgstats:\s+\d+%.*\d+/120", timeout=120)  # tqdm's bar: done/total
    screen = finish(child)
    assert child.exitstatus == 0, screen
    assert "Traceback" not in screen
    assert "files/s" in screen or "s/ files" in screen  # a rate
    lines = [line for line in screen.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1] == str(tmp_path / "stats" / "v000001.json")
    assert re.fullmatch(
        r"imgstats: version 1 written: 120 images counted, 0 files skipped, 120 files read, "
        r"0 reused, \d+\.\d s",
        lines[-2],
    ), lines[-2]
    assert json.loads((tmp_path / "stats" / "v000001.json").read_text())["image_count"] == 120


def test_no_progress_bar_and_no_escape_codes_outside_a_terminal(tmp_path, imgstats):
    copies(tmp_path / "images", 20, (64, 48))
    done = imgstats("compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                    "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert not ESCAPES.search(done.stdout + done.stderr)
    assert done.stderr.startswith("imgstats: version 1 written: 20 images counted")
    assert done.stderr.count("\n") == 1
    assert done.stdout == str(tmp_path / "stats" / "v000001.json") + "\n"


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory) -> Path:
    """A corpus that takes several seconds on two workers (3,000 1024x768 JPEGs)."""
    folder = tmp_path_factory.mktemp("long") / "images"
    copies(folder, 3000, (1024, 768), seed=1)
    return folder


def interrupt_when_running(child: pexpect.spawn) -> float:
    """Wait until the bar shows files done, then type Ctrl-C; the time it was typed."""
    child.expect(r"imgstats:\s+\d+%.*\|\s*[1-9]\d*/3000", timeout=120)
    child.sendcontrol("c")
    return time.monotonic()


def test_ctrl_c_stops_everything_at_once_and_writes_nothing(tmp_path, long_corpus):
    child = spawn("compute", str(long_corpus), "--out", "stats", "--workers", "2", cwd=tmp_path)
    typed = interrupt_when_running(child)
    screen = finish(child)
    seconds = time.monotonic() - typed
    assert child.exitstatus == 130, screen
    assert seconds < 10, seconds  # generous: about 0.2 s here
    assert "Traceback" not in screen and "KeyboardInterrupt" not in screen, screen
    after = screen.rsplit("^C", 1)[-1]
    lines = [line.strip() for line in after.replace("\r", "\n").splitlines() if line.strip()]
    assert lines == ["imgstats: error: interrupted"], screen[-2000:]
    assert not (tmp_path / "stats").exists()
    assert wait_until_gone(child.pid, 10) == []


def test_ctrl_c_with_stderr_in_a_file_leaves_no_traceback(tmp_path, long_corpus):
    """The terminal's Ctrl-C still reaches every process of the run; with stderr in a file
    there is no progress bar, so wait for the run to be decoding (a while) instead."""
    log = tmp_path / "err.txt"
    child = pexpect.spawn(
        "/bin/bash", ["-c", f"'{IMGSTATS}' compute '{long_corpus}' --out stats --workers 2 "
                            f"2>'{log}'; echo status=$?"],
        cwd=str(tmp_path), env=environment(), dimensions=(40, COLUMNS), timeout=120,
    )
    deadline = time.monotonic() + 60
    while not any("pipeline.run.sandbox" in p for p in live_processes_in_session(child.pid)):
        assert time.monotonic() < deadline, "no decode sandbox started"
        time.sleep(0.05)
    time.sleep(0.5)
    child.sendcontrol("c")
    screen = finish(child)
    assert "status=130" in screen, screen
    assert log.read_text() == "imgstats: error: interrupted\n", log.read_text()
    assert not (tmp_path / "stats").exists()
    assert wait_until_gone(child.pid, 10) == []


def test_local_cluster_workers_ignore_the_terminals_ctrl_c(tmp_path):
    """Workers that multiprocessing spawns start with an empty signal mask, so blocking SIGINT
    in the thread that starts them does not reach them: they ignore it themselves, whether
    the CLI started them (from their first moments) or a program using the library did (once
    started). Read from each worker process's /proc status, not from a race with Ctrl-C."""
    sigint = 1 << (2 - 1)  # SIGINT's bit in /proc/PID/status masks
    script = (
        "import json, os, sys\n"
        "from pipeline.run.cluster import dask_client\n"
        "def masks():\n"
        "    with open('/proc/self/status') as status:\n"
        "        return {k: int(v, 16) for k, v in (line.split(':') for line in status)\n"
        "                if k == 'SigIgn'}\n"
        "if __name__ == '__main__':\n"
        "    with dask_client(workers=2) as client:\n"
        "        print(json.dumps(list(client.run(masks).values())))\n"
    )
    (tmp_path / "probe.py").write_text(script)
    done = subprocess.run([sys.executable, str(tmp_path / "probe.py")], capture_output=True,
                          text=True, timeout=120, env=environment(), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    workers = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(workers) == 2
    assert all(masks["SigIgn"] & sigint for masks in workers), workers


@pytest.mark.slow  # ~26 s: a shared cluster started, a run interrupted, the cluster checked
def test_ctrl_c_on_a_shared_cluster_cancels_the_run_and_keeps_the_cluster(
    tmp_path, long_corpus, cluster
):
    from distributed import Client

    child = spawn("compute", str(long_corpus), "--out", "stats", "--scheduler",
                  cluster.scheduler_address, cwd=tmp_path)
    interrupt_when_running(child)
    screen = finish(child)
    assert child.exitstatus == 130, screen
    assert "Traceback" not in screen
    assert not (tmp_path / "stats").exists()
    with Client(cluster, set_as_default=False) as client:  # the cluster forgets the run's tasks
        deadline = time.monotonic() + 30
        while True:
            keys = client.run_on_scheduler(
                lambda dask_scheduler: [k for k in dask_scheduler.tasks if "imgstats" in str(k)])
            if not keys or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert keys == []
        assert client.submit(sum, [1, 2]).result() == 3


# --- pipes -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store_with_versions(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("versions")
    images = root / "images"
    copies(images, 4, (32, 24))
    for i in range(3):
        if i:
            shutil.copy(images / "original.jpg", images / f"more{i}.jpg")
        done = subprocess.run([str(IMGSTATS), "compute", str(images), "--out", str(root / "st"),
                               "--workers", "1"], capture_output=True, text=True,
                              env=environment(), timeout=120)
        assert done.returncode == 0, done.stderr
    return root / "st"


@pytest.mark.parametrize("command,reader", [
    ("history", "head -1"), ("show", "head -3"), ("show --json", "head -1"),
    ("history", "true"), ("show", "true"),  # a reader gone before anything is written
])
def test_a_closed_pipe_ends_quietly(store_with_versions, command, reader):
    script = f"'{IMGSTATS}' {command} '{store_with_versions}' | {reader}; " \
             "echo status=${PIPESTATUS[0]} >&2"
    done = subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True,
                          env=environment(), timeout=60)
    status = int(done.stderr.rsplit("status=", 1)[1])
    assert done.stderr.startswith("status="), done.stderr  # nothing else on stderr
    assert status in (0, 141)  # 141: stopped by the closed pipe, as `cat | head` is
    if reader.startswith("head"):
        assert len(done.stdout.splitlines()) == int(reader.split("-")[1])


# --- show and history read well in 100 columns ------------------------------------------------


def test_show_and_history_fit_in_100_columns(store_with_versions, imgstats):
    shown = imgstats("show", str(store_with_versions))
    history = imgstats("history", str(store_with_versions))
    for done in (shown, history):
        assert done.returncode == 0, done.stderr
        assert max(len(line) for line in done.stdout.splitlines()) <= COLUMNS, done.stdout
    lines = history.stdout.splitlines()
    assert lines[0].split() == ["version", "created", "(UTC)", "parent", "run", "images",
                                "read", "reused", "skipped"]
    assert [line.split()[0] for line in lines[1:]] == ["v000001.json", "v000002.json",
                                                       "v000003.json"]
    assert lines[1].split()[3:] == ["-", "full", "4", "4", "0", "0"]
    assert lines[2].split()[3:] == ["1", "incremental", "5", "1", "4", "0"]
    assert lines[3].split()[3:] == ["2", "incremental", "6", "1", "5", "0"]


def test_a_missing_store_is_named_as_missing(tmp_path, imgstats):
    for command in ("show", "history"):
        done = imgstats(command, str(tmp_path / "nowhere"))
        assert done.returncode == 2
        missing = str(tmp_path / "nowhere")
        assert done.stderr == f"imgstats: error: no stats store at {missing!r}: it does not exist\n"


# --- cron ------------------------------------------------------------------------------------

CRON = ROOT / "scripts" / "cron_imgstats.sh"
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ imgstats: ")


def cron(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The wrapper as cron runs it: cron's own PATH, no virtual environment activated."""
    base = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return subprocess.run([str(CRON), str(config)], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=180)


@pytest.fixture
def cron_env() -> dict[str, str]:
    """As written in the README when the checkout has its .venv (CI's), else through
    ``IMGSTATS`` (documented for other installs)."""
    if (ROOT / ".venv" / "bin" / "imgstats").exists():
        return {}
    return {"IMGSTATS": str(IMGSTATS)}


def test_cron_wrapper_quiet_when_clean_one_stamped_line_otherwise(tmp_path, cron_env):
    images = tmp_path / "images"
    copies(images, 3, (32, 24))
    config = tmp_path / "job.yaml"
    config.write_text(f"source: {images}\nout: {tmp_path / 'stats'}\nworkers: 1\n")
    clean = cron(config, cron_env)
    assert (clean.returncode, clean.stdout, clean.stderr) == (0, "", "")

    (images / "broken.jpg").write_bytes(b"not a jpeg")
    skipped = cron(config, cron_env)
    assert skipped.returncode == 0
    [line] = (skipped.stdout + skipped.stderr).splitlines()
    assert STAMPED.match(line) and "1 file skipped" in line and "'broken.jpg'" in line, line

    config.write_text(f"source: {images}\nout: {tmp_path / 'stats'}\nworkrs: 1\n")
    failed = cron(config, cron_env)
    assert failed.returncode == 2
    [line] = (failed.stdout + failed.stderr).splitlines()
    assert STAMPED.match(line) and "did you mean 'workers'?" in line, line


def test_cron_wrapper_refuses_a_second_run_with_a_stamped_line(tmp_path, cron_env):
    config = tmp_path / "job.yaml"
    config.write_text("source: /nowhere\nout: /nowhere\n")
    lock = tmp_path / "lock"
    with open(lock, "w") as held:
        import fcntl

        fcntl.flock(held, fcntl.LOCK_EX)
        done = cron(config, {**cron_env, "IMGSTATS_LOCK": str(lock)})
    assert done.returncode == 75
    [line] = (done.stdout + done.stderr).splitlines()
    assert STAMPED.match(line) and "another run holds" in line, line
