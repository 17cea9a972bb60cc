"""The ``imgstats`` command as users run it: compute/show/history, configs, exit codes, help.

Real files and real processes: the CLI runs as ``python -m pipeline`` (the ``imgstats``
fixture) or as the installed console script, against the shared LocalCluster.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import load_stats
from pipeline.cli.main import _parser, main
from pipeline.config import JobConfig, load_config_file
from pipeline.errors import UsageError

from conftest import ROOT, one_error_line, run_imgstats

CONSOLE_SCRIPT = Path(sys.executable).parent / "imgstats"
NORMALIZE_RE = re.compile(r"^transforms\.Normalize\(mean=(\[[^\]]*\]),\s+std=(\[[^\]]*\])\)$", re.M)


def make_images(folder: Path, count: int = 20, seed: int = 0, size=(16, 12)) -> list[np.ndarray]:
    """``count`` random RGB PNGs (lossless, so the exact sums are known) under ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(sub / f"img{seed}_{i:03d}.png")
        arrays.append(pixels)
    return arrays


def exact_sums(arrays: list[np.ndarray]) -> tuple[list[int], list[int]]:
    flat = np.concatenate([a.reshape(-1, a.shape[-1]) for a in arrays]).astype(np.int64)
    return [int(v) for v in flat.sum(0)], [int(v) for v in (flat * flat).sum(0)]


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.fixture
def keep_logging():
    """``main()`` run in this process configures the ``pipeline`` logger: put it back after."""
    log = logging.getLogger("pipeline")
    saved = (log.handlers[:], log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved


# --- compute, show, history on one store -------------------------------------------------------


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, cluster):
    """A store with two versions of one source (an image added in between)."""
    root = tmp_path_factory.mktemp("cli")
    source, store = root / "images", root / "stats"
    arrays = make_images(source, 20)
    first = ok(run_imgstats("compute", str(source), "--out", str(store),
                            "--scheduler", cluster.scheduler_address))
    arrays += make_images(source / "more", 1, seed=1)
    second = ok(run_imgstats("compute", str(source), "--out", str(store),
                             "--scheduler", cluster.scheduler_address))
    return {"source": source, "store": store, "arrays": arrays, "runs": (first, second)}


def test_compute_prints_the_version_url_last(two_versions):
    store = two_versions["store"]
    first, second = two_versions["runs"]
    assert last_line(first.stdout) == str(store / "v000001.json")
    assert last_line(second.stdout) == str(store / "v000002.json")
    doc = json.loads((store / "v000002.json").read_text())
    assert doc["image_count"] == 21
    assert doc["channels"] == ["R", "G", "B"] and doc["scale"] == 255
    assert (doc["sum"], doc["sum_sq"]) == exact_sums(two_versions["arrays"])


def test_show_table_and_normalize_line_round_trip(two_versions, imgstats):
    store = two_versions["store"]
    doc = json.loads((store / "latest.json").read_text())
    shown = ok(imgstats("show", str(store)))
    lines = shown.stdout.splitlines()
    first = next(i for i, line in enumerate(lines)
                 if line.split()[:3] == ["channel", "mean", "std"])
    rows = [line.split() for line in lines[first + 1 : first + 4]]
    assert [row[0] for row in rows] == ["R", "G", "B"]
    [(mean_text, std_text)] = NORMALIZE_RE.findall(shown.stdout)
    mean, std = ast.literal_eval(mean_text), ast.literal_eval(std_text)
    # Exactly the stats file's floats, not rounded copies.
    assert mean == doc["mean"] and std == doc["std"]
    assert all(type(v) is float for v in mean + std)
    # The table prints the same digits as the Normalize call.
    table = {row[0]: row[1:3] for row in rows}
    assert [table[c] for c in "RGB"] == [[repr(m), repr(s)] for m, s in zip(mean, std, strict=True)]
    # The distribution: raw p1, p50, p99 and the shares at 0 and 255, per channel.
    spread = next(i for i, line in enumerate(lines) if line.split()[:4] == ["channel", "p1", "p50",
                                                                             "p99"])
    assert lines[spread].split()[4:] == ["at", "0", "at", "255"]
    stats = load_stats(str(store))
    for c, line in enumerate(lines[spread + 1 : spread + 4]):
        cells = line.split()
        assert cells[0] == "RGB"[c]
        assert [int(v) for v in cells[1:4]] == [stats.quantile(q)[c] for q in (0.01, 0.5, 0.99)]
        assert cells[4] == f"{100 * stats.share_at(0)[c]:.4g}%"
        assert cells[5] == f"{100 * stats.share_at(255)[c]:.4g}%"
    assert max(len(line) for line in shown.stdout.splitlines()) <= 100


def test_show_json_version_and_single_file(two_versions, imgstats):
    store = two_versions["store"]
    v1 = json.loads((store / "v000001.json").read_text())
    v2 = json.loads((store / "v000002.json").read_text())
    assert v1 != v2
    with ThreadPoolExecutor(2) as pool:
        latest, by_number, by_file, missing = pool.map(
            lambda args: imgstats(*args),
            [
                ("show", str(store), "--json"),
                ("show", str(store), "--version", "1", "--json"),
                ("show", str(store / "v000001.json")),
                ("show", str(store), "--version", "9"),
            ],
        )
    for done in (latest, by_number, by_file):
        ok(done)
    assert json.loads(latest.stdout) == v2
    assert json.loads(by_number.stdout) == v1
    assert by_file.stdout.startswith("version 1 ")
    [(mean_text, _)] = NORMALIZE_RE.findall(by_file.stdout)
    assert ast.literal_eval(mean_text) == v1["mean"]
    assert missing.returncode != 0 and missing.stdout == ""  # no such version
    assert "9" in one_error_line(missing, missing.returncode)


def test_history_one_line_per_version(two_versions, imgstats):
    history = ok(imgstats("history", str(two_versions["store"])))
    header, *lines = history.stdout.strip().splitlines()
    assert header.split() == ["version", "created", "(UTC)", "parent", "run", "images", "read",
                              "reused", "skipped"]
    assert [line.split()[0] for line in lines] == ["v000001.json", "v000002.json"]
    first, second = (line.split()[3:] for line in lines)
    assert first == ["-", "full", "20", "20", "0", "0"]  # parent, run, images, read, reused...
    assert second == ["1", "incremental", "21", "1", "20", "0"]


# --- quiet, debug, entry points ------------------------------------------------------------------


def test_quiet_prints_nothing_but_one_line_for_skipped_files(tmp_path, imgstats, scheduler):
    make_images(tmp_path / "images", 4)
    clean = ok(imgstats("compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                        "--scheduler", scheduler, "--quiet"))
    assert clean.stdout == "" and clean.stderr == ""
    for name in ("broken.jpg", "also broken.png"):
        (tmp_path / "images" / name).write_text("not an image")
    done = ok(imgstats("compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                       "--scheduler", scheduler, "--quiet"))
    assert done.stdout == ""
    assert done.stderr == (
        "imgstats: warning: 2 files skipped in version 2 (first: 'also broken.png': not an "
        f"image Pillow can identify); `imgstats show {str(tmp_path / 'stats')!r} --skipped` lists "
        "them\n"
    )
    doc = json.loads((tmp_path / "stats" / "v000002.json").read_text())
    assert [s["path"] for s in doc["skipped"]] == ["also broken.png", "broken.jpg"]


def test_console_script_computes(tmp_path, scheduler):
    assert CONSOLE_SCRIPT.exists()
    make_images(tmp_path / "images", 3)
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    done = ok(subprocess.run(
        [str(CONSOLE_SCRIPT), "compute", str(tmp_path / "images"), "--out",
         str(tmp_path / "stats"), "--scheduler", scheduler],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    ))
    assert last_line(done.stdout) == str(tmp_path / "stats" / "v000001.json")
    assert json.loads((tmp_path / "stats" / "latest.json").read_text())["image_count"] == 3


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """``main(args)`` in this process: exit status, stdout, stderr (``--help`` exits)."""
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_debug_shows_a_traceback(tmp_path, imgstats, capsys, keep_logging):
    missing = tmp_path / "missing.yaml"
    code, _, plain = run_main(capsys, "compute", "--config", str(missing))
    assert code == 2 and plain.count("\n") == 1 and str(missing) in plain
    debug = imgstats("compute", "--config", str(missing), "--debug")
    assert debug.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr
    assert last_line(debug.stderr) == plain.strip()
    code, _, verbose = run_main(capsys, "compute", "--config", str(missing), "-v")
    assert code == 2 and "Traceback (most recent call last)" in verbose
    assert last_line(verbose) == plain.strip()


def subparsers() -> dict:
    [action] = [a for a in _parser()._actions if a.dest == "command"]
    return dict(action.choices)


def subcommands() -> list[str]:
    return sorted(subparsers())


def test_every_subcommand_has_help(capsys, keep_logging):
    names = subcommands()
    assert {"compute", "show", "history"} <= set(names)
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    top = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert top.returncode == 0 and top.stdout.startswith("usage: imgstats"), top.stderr
    for name in names:  # each subcommand is listed with a one-line description
        assert re.search(rf"^\s+{name}\s+\S", top.stdout, re.M), name
        code, out, _ = run_main(capsys, name, "--help")
        assert code == 0 and out.startswith(f"usage: imgstats {name}"), name
    for name, sub in subparsers().items():  # and every option of every subcommand
        undocumented = [a.option_strings or a.dest for a in sub._actions if not a.help]
        assert not undocumented, (name, undocumented)


def test_readme_mentions_every_subcommand():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in subcommands() if not re.search(rf"imgstats {name}\b", readme)]
    assert not missing, f"README.md never shows: {', '.join('imgstats ' + m for m in missing)}"


# --- configs -------------------------------------------------------------------------------------


def test_shipped_configs_load():
    local = JobConfig.from_mapping(load_config_file(str(ROOT / "configs" / "local.yaml")))
    assert local.scheduler is None and local.workers == 2 and local.threads_per_worker == 1
    assert local.mode == "rgb" and local.on_error == "skip" and local.max_errors == 50
    assert local.decode_timeout == 60.0
    assert "*_mask.png" in local.exclude and "*.png" in local.include
    cluster = JobConfig.from_mapping(load_config_file(str(ROOT / "configs" / "cluster.yaml")))
    assert cluster.scheduler == "tcp://dask-scheduler.internal:8786"
    assert cluster.source.startswith("s3://") and cluster.out.startswith("s3://")
    assert cluster.segment_files == 64 and cluster.workers is None
    assert cluster.decode_timeout == 120.0
    assert cluster.source_options["anon"] is False
    assert cluster.store_options["endpoint_url"].startswith("https://")


def make_local_layout(root: Path) -> None:
    """What configs/local.yaml's include/exclude must sort out."""
    make_images(root, 6)
    make_images(root / "thumbnails", 2, seed=2)
    make_images(root / "a" / "thumbnails", 2, seed=3)
    for name in ("x_mask.png", "y.bmp"):
        Image.new("RGB", (16, 12), (255, 0, 0)).save(root / name)


def test_local_config_with_command_line_winning(tmp_path, imgstats):
    """configs/local.yaml starts its own 2-worker cluster; the command line overrides the
    file's source, out and threads_per_worker; its include/exclude still apply."""
    make_local_layout(tmp_path / "images")
    done = ok(imgstats(
        "compute", "--config", str(ROOT / "configs" / "local.yaml"), str(tmp_path / "images"),
        "--out", str(tmp_path / "stats"), "--threads-per-worker", "2",
    ))
    doc = json.loads((tmp_path / "stats" / "v000001.json").read_text())
    assert last_line(done.stdout) == str(tmp_path / "stats" / "v000001.json")
    assert doc["source"] == str(tmp_path / "images")
    assert doc["image_count"] == 6  # not thumbnails/, not *_mask.png, not .bmp
    assert doc["run"]["worker_threads"] == 4  # 2 workers (file) x 2 threads (command line)
    assert doc["provenance"]["exclude"] == ["thumbnails/*", "*/thumbnails/*", "*_mask.png"]
    assert not (ROOT / "stats" / "train").exists()


def test_cluster_config_with_command_line_winning(tmp_path, imgstats, scheduler):
    make_images(tmp_path / "images", 5)
    done = ok(imgstats(
        "compute", "--config", str(ROOT / "configs" / "cluster.yaml"), str(tmp_path / "images"),
        "--out", str(tmp_path / "stats"), "--scheduler", scheduler,
        "--source-options", "{}", "--store-options", "{}", "--mode", "gray",
    ))
    assert last_line(done.stdout) == str(tmp_path / "stats" / "v000001.json")
    doc = json.loads((tmp_path / "stats" / "v000001.json").read_text())
    assert doc["source"] == str(tmp_path / "images")
    assert doc["mode"] == "gray" and doc["channels"] == ["L"] and doc["image_count"] == 5


def test_config_file_values_used_when_not_on_command_line(tmp_path, imgstats, scheduler):
    make_images(tmp_path / "images", 4)
    (tmp_path / "images" / "b" / "keep.txt").write_text("not an image")
    config = tmp_path / "job.yaml"
    config.write_text(
        f"source: {tmp_path / 'images'}\nout: {tmp_path / 'stats'}\nmode: gray\n"
        f"scheduler: {scheduler}\nexclude: ['a/*']\n"
    )
    done = ok(imgstats("compute", "--config", str(config)))
    doc = json.loads((tmp_path / "stats" / "v000001.json").read_text())
    assert last_line(done.stdout) == str(tmp_path / "stats" / "v000001.json")
    assert doc["mode"] == "gray" and doc["image_count"] == 2  # b/ only


BAD_CONFIGS = {
    "unknown key": ("source: /data\nout: /stats\nbogus: 1\n", "bogus"),
    "misspelt key": ("source: /data\nout: /stats\non-error: fail\n", "on-error"),
    "int as text": ("source: /data\nout: /stats\nworkers: two\n", "workers"),
    "bool as int": ("source: /data\nout: /stats\nworkers: true\n", "workers"),
    "float for int": ("source: /data\nout: /stats\nmax_errors: 2.5\n", "max_errors"),
    "text for bool": ("source: /data\nout: /stats\nfull: 'yes'\n", "full"),
    "number for source": ("source: 12\nout: /stats\n", "source"),
    "include not globs": ("source: /data\nout: /stats\ninclude: [1, 2]\n", "include"),
    "options not a mapping": ("source: /data\nout: /stats\nsource_options: [anon]\n",
                              "source_options"),
    "bad mode": ("source: /data\nout: /stats\nmode: RGB\n", "mode"),
    "bad on_error": ("source: /data\nout: /stats\non_error: ignore\n", "on_error"),
    "negative max_errors": ("source: /data\nout: /stats\nmax_errors: -1\n", "max_errors"),
    "segment_files 0": ("source: /data\nout: /stats\nsegment_files: 0\n", "segment_files"),
    "decode_timeout as text": ("source: /data\nout: /stats\ndecode_timeout: 1m\n",
                               "decode_timeout"),
    "negative decode_timeout": ("source: /data\nout: /stats\ndecode_timeout: -1\n",
                                "decode_timeout"),
    "infinite decode_timeout": ("source: /data\nout: /stats\ndecode_timeout: .inf\n",
                                "decode_timeout"),
    "no source": ("out: /stats\n", "source"),
    "not a mapping": ("- source\n- out\n", "mapping"),
    "invalid YAML": ("source: [/data\nout: /stats\n", "YAML"),
    "python object": ("source: !!python/object/apply:os.getcwd []\nout: /stats\n", "python"),
    "python name": ("source: /data\nout: !!python/name:os.system\n", "python"),
}


@pytest.mark.parametrize("text,key", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_is_one_usage_line(tmp_path, capsys, keep_logging, text, key):
    config = tmp_path / "job.yaml"
    config.write_text(text)
    assert main(["compute", "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("imgstats: error: ")
    assert str(config) in err and key in err, err
    with pytest.raises(UsageError):
        JobConfig.from_mapping(load_config_file(str(config)), str(config))


def test_unreadable_configs(tmp_path, capsys, keep_logging):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"source: /data\nout: /stats\n\xff\xfe\x00: 1\n")
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 5_000)
    for path in (tmp_path / "missing.yaml", tmp_path, binary, deep):
        assert main(["compute", "--config", str(path)]) == 2, path
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, err
        assert err.startswith("imgstats: error: ") and str(path) in err
        assert "unexpected" not in err


def test_yaml_python_tags_are_never_executed(tmp_path, imgstats):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(
        f"source: !!python/object/apply:os.mkdir [{str(marker)!r}]\nout: {tmp_path / 'stats'}\n"
    )
    line = one_error_line(imgstats("compute", "--config", str(config)), 2)
    assert str(config) in line
    assert not marker.exists()
    assert not (tmp_path / "stats").exists()


def test_bad_json_options_and_missing_source(tmp_path, capsys, keep_logging):
    store = str(tmp_path / "s")
    for args, named in [
        (("compute", str(tmp_path), "--out", store, "--source-options", "{anon"),
         "--source-options"),
        (("compute", str(tmp_path), "--out", store, "--store-options", "[1]"), "--store-options"),
        (("compute", "--out", store), "SOURCE is required"),
        (("compute", str(tmp_path)), "--out is required"),
    ]:
        code, out, err = run_main(capsys, *args)
        assert code == 2 and out == "", args
        assert err.count("\n") == 1 and err.startswith("imgstats: error: ") and named in err
    assert not (tmp_path / "s").exists()


# --- clear failures --------------------------------------------------------------------------


def test_config_errors_point_at_the_mistake(tmp_path, capsys, keep_logging):
    config = tmp_path / "job.yaml"
    cases = {
        "source: /data\nout: /stats\nworkrs: 2\n": "unknown key 'workrs' (did you mean 'workers'?)",
        "source: /data\nout: /stats\non-error: fail\n":
            "unknown key 'on-error' (did you mean 'on_error'?)",
        "source: /data\nout: /stats\nzzz: 1\n": "unknown key 'zzz'\n",
        "source: [/data\nout: /stats\n":
            "is not valid YAML at line 2, column 4: expected ',' or ']'",
        "out: /stats\n": f"SOURCE is required (or `source:` in config {str(config)!r})",
        "source: /data\n": f"--out is required (or `out:` in config {str(config)!r})",
    }
    for text, message in cases.items():
        config.write_text(text)
        code, out, err = run_main(capsys, "compute", "--config", str(config))
        assert (code, out) == (2, ""), text
        assert err.startswith("imgstats: error: ") and message in err, (text, err)


def test_help_shows_every_default(capsys, keep_logging):
    code, out, _ = run_main(capsys, "compute", "--help")
    assert code == 0
    text = " ".join(out.split())
    for option, default in [("--mode", "rgb"), ("--on-error", "skip"),
                            ("--decode-timeout", "60.0"), ("--scheduler-timeout", "10.0"),
                            ("--max-image-pixels", "89478485"), ("--workers", "none")]:
        assert re.search(rf"{option} \S+ .*?\(default: {re.escape(default)}\)", text), option


@pytest.mark.parametrize("address,words", [
    ("garbage", "is not a Dask scheduler address"),
    ("tcp://[:::", "is not a Dask scheduler address"),
    ("tcp://:8786", "is not a Dask scheduler address: no host"),
    ("inproc://x", "attaches over tcp, tls, ws, wss only"),  # used to wait 30 s, then 9 lines
    (None, "connection refused"),  # a closed port
    ("silent", "did not answer as a Dask scheduler within 1 s"),  # used to wait forever
])
def test_a_bad_scheduler_fails_at_once_with_one_line(tmp_path, imgstats, address, words):
    import socket

    with contextlib.ExitStack() as stack:
        if address is None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
        elif address == "silent":  # another service: accepts, reads, never answers
            server = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
            address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        make_images(tmp_path / "images", 1)
        started = time.monotonic()
        done = imgstats("compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                        "--scheduler", address, "--scheduler-timeout", "1", timeout=60)
        seconds = time.monotonic() - started
    line = one_error_line(done, 2, empty_stdout=True)
    assert words in line and address in line, line
    assert "Exception ignored" not in done.stderr
    assert seconds < 15, seconds  # generous: 1-4 s here, imports included (a loaded machine)
    assert not (tmp_path / "stats").exists()


def test_a_failed_run_leaves_no_store_folder_it_made(tmp_path, imgstats, scheduler):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    deep = tmp_path / "new" / "deeper" / "stats"
    done = imgstats("compute", str(tmp_path / "images"), "--out", str(deep),
                    "--scheduler", scheduler)
    one_error_line(done, 2, empty_stdout=True)
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()  # a folder the user made is theirs: left as it was
    done = imgstats("compute", str(tmp_path / "images"), "--out", str(mine),
                    "--scheduler", scheduler)
    one_error_line(done, 2, empty_stdout=True)
    assert mine.is_dir() and list(mine.iterdir()) == []


def test_show_names_skipped_files_and_lists_them_all(tmp_path, imgstats, scheduler):
    make_images(tmp_path / "images", 3)
    names = [f"bad {i}\nname.png" for i in range(8)]  # a newline must not cut a line
    for name in names:
        (tmp_path / "images" / name).write_bytes(b"not a png")
    store = tmp_path / "stats"
    ok(imgstats("compute", str(tmp_path / "images"), "--out", str(store), "--scheduler",
                scheduler))
    shown = ok(imgstats("show", str(store))).stdout
    assert "8 files skipped" in shown
    for name in sorted(names)[:5]:
        assert f"  {name!r}: not an image" in shown
    assert f"  ... and 3 more (`imgstats show {str(store)!r} --skipped` lists them all)" in shown
    listed = ok(imgstats("show", str(store), "--skipped")).stdout.splitlines()
    assert listed == [f"{name!r}: not an image Pillow can identify" for name in sorted(names)]


def test_a_retired_key_is_a_warning_not_an_error(tmp_path, caplog):
    config = tmp_path / "old.yaml"
    config.write_text("source: /data\nout: /stats\nsplit_every: 16\n")
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        loaded = JobConfig.from_mapping(load_config_file(str(config)), f"config {config}")
    assert loaded.source == "/data"
    assert "'split_every' has no effect any more" in caplog.text
