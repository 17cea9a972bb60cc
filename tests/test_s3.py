"""S3 as SOURCE and STORE, against a real moto server over HTTP (no mocks of s3fs)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipeline import JobConfig, compute_stats, load_stats

from conftest import ROOT
from s3_proxy import ProxyBehaviour, s3_proxy

BUCKET = "imgstats-test"
COMPARED = ("channels", "dtype", "scale", "image_count", "pixel_count", "sum", "sum_sq",
            "min", "max", "mean", "std", "skipped")
SECRET_KEY = "AKIAIMGSTATSLEAKCHECK"
SECRET = "imgstats/Secret+Value/NeverShow"


def write_images(folder, count=12):
    """Real encoded images of several formats, one corrupt file, one non-image, one hidden."""
    rng = np.random.default_rng(7)
    for i in range(count):
        pixels = rng.integers(0, 256, (8 + i, 11, 3), dtype=np.uint8)
        fmt, ext = [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp")][i % 4]
        sub = folder / f"part{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(sub / f"image {i}.{ext}", fmt)
    (folder / "part0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes((folder / "part0" / "image 0.png").read_bytes())


def upload(fs, folder, prefix):
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{prefix}/{path.relative_to(folder).as_posix()}")
    fs.pipe_file(f"{prefix}/part1/", b"")  # an S3 console "folder" marker


def cli_env(options):
    return ["--source-options", json.dumps(options), "--store-options", json.dumps(options)]


@pytest.fixture
def dataset(tmp_path, s3):
    fs, options = s3
    folder = tmp_path / "images"
    write_images(folder)
    upload(fs, folder, f"{BUCKET}/images")
    return folder, fs, options


def test_s3_to_s3_equals_local_folder(dataset, tmp_path, imgstats, scheduler):
    folder, fs, options = dataset
    done = imgstats("compute", f"s3://{BUCKET}/images", "--out", f"s3://{BUCKET}/stats",
                    "--workers", "2", *cli_env(options))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"s3://{BUCKET}/stats/v000001.json"
    remote = json.loads(fs.cat_file(f"{BUCKET}/stats/v000001.json"))
    local = compute_stats(JobConfig(source=str(folder), out=str(tmp_path / "st"),
                                    scheduler=scheduler)).stats.document
    assert remote["image_count"] == 12
    assert [skip["path"] for skip in remote["skipped"]] == ["part0/broken.png"]
    for key in COMPARED:
        assert remote[key] == local[key], key
    assert remote["files"]["count"] == local["files"]["count"]
    assert remote["files"]["bytes"] == local["files"]["bytes"]
    assert remote["source"] == f"s3://{BUCKET}/images"


def test_load_show_history_on_s3(dataset, imgstats, scheduler):
    _, _, options = dataset
    for extra in ([], ["--full"]):  # the second run would find nothing changed without --full
        done = imgstats("compute", f"s3://{BUCKET}/images", "--out", f"s3://{BUCKET}/stats",
                        "--scheduler", scheduler, *cli_env(options), *extra)
        assert done.returncode == 0, done.stderr
    latest = load_stats(f"s3://{BUCKET}/stats", storage_options=options)
    first = load_stats(f"s3://{BUCKET}/stats", version=1, storage_options=options)
    assert (latest.version, latest.parent, first.version) == (2, 1, 1)
    assert latest.mean == first.mean and latest.std == first.std
    single = load_stats(f"s3://{BUCKET}/stats/v000001.json", storage_options=options)
    assert single.document == first.document
    store_options = ["--store-options", json.dumps(options)]
    shown = imgstats("show", f"s3://{BUCKET}/stats", *store_options)
    assert shown.returncode == 0, shown.stderr
    assert f"std={list(latest.std)}" in shown.stdout
    history = imgstats("history", f"s3://{BUCKET}/stats", *store_options)
    assert [line.split()[0] for line in history.stdout.splitlines()[1:]] == ["v000001.json",
                                                                             "v000002.json"]


def test_two_racing_runs_get_distinct_versions(dataset, scheduler):
    _, fs, options = dataset
    command = [sys.executable, "-m", "pipeline", "compute", f"s3://{BUCKET}/images", "--out",
               f"s3://{BUCKET}/stats", "--full", "--scheduler", scheduler, *cli_env(options)]
    runs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    urls = sorted(out.splitlines()[-1] for out, _ in outputs)
    assert urls == [f"s3://{BUCKET}/stats/v000001.json", f"s3://{BUCKET}/stats/v000002.json"]
    docs = [json.loads(fs.cat_file(url.removeprefix("s3://"))) for url in urls]
    assert [d["version"] for d in docs] == [1, 2]
    assert docs[0]["sum"] == docs[1]["sum"]
    latest = json.loads(fs.cat_file(f"{BUCKET}/stats/latest.json"))
    assert latest["version"] == 2


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("side", ["source", "store"])
def test_missing_bucket_is_exit_2_naming_the_url(dataset, tmp_path, imgstats, side):
    folder, fs, options = dataset
    source = "s3://no-such-bucket/images" if side == "source" else str(folder)
    out = "s3://no-such-bucket/stats" if side == "store" else str(tmp_path / "st")
    done = imgstats("compute", source, "--out", out, *cli_env(options))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "s3://no-such-bucket" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not fs.exists("no-such-bucket")  # never created as a side effect
    assert not (tmp_path / "st").exists()


@pytest.mark.parametrize("debug", [False, True])
def test_unreachable_endpoint_and_secrets_never_shown(tmp_path, dataset, imgstats, debug):
    folder, _, _ = dataset
    options = {"endpoint_url": f"http://127.0.0.1:{closed_port()}", "key": SECRET_KEY,
               "secret": SECRET, "config_kwargs": {"retries": {"max_attempts": 1},
                                                  "connect_timeout": 1}}
    done = imgstats("compute", str(folder), "--out", f"s3://{BUCKET}/stats",
                    "--store-options", json.dumps(options), *(["--debug"] if debug else []))
    assert done.returncode == 2
    assert f"s3://{BUCKET}/stats" in done.stderr.strip().splitlines()[-1]
    assert ("Traceback" in done.stderr) == debug
    for text in (done.stdout, done.stderr):
        assert SECRET not in text and SECRET_KEY not in text


def test_explicit_secrets_never_reach_output_or_stats_file(dataset, imgstats, scheduler):
    _, fs, options = dataset
    secret_options = {**options, "key": SECRET_KEY, "secret": SECRET}
    done = imgstats("compute", f"s3://{BUCKET}/images", "--out", f"s3://{BUCKET}/stats",
                    "--scheduler", scheduler, "--debug", *cli_env(secret_options))
    assert done.returncode == 0, done.stderr
    shown = imgstats("show", f"s3://{BUCKET}/stats", "--json", "--store-options",
                     json.dumps(secret_options))
    stats_file = fs.cat_file(f"{BUCKET}/stats/v000001.json").decode()
    for text in (done.stdout, done.stderr, shown.stdout, shown.stderr, stats_file):
        assert SECRET not in text and SECRET_KEY not in text


def test_store_ignoring_conditional_writes_is_refused(dataset, s3_endpoint, imgstats, scheduler):
    _, fs, options = dataset
    behaviour = ProxyBehaviour(drop_headers=frozenset({"if-none-match", "if-match"}))
    with s3_proxy(s3_endpoint, behaviour) as proxy:
        proxied = {"endpoint_url": proxy}
        args = ["compute", f"s3://{BUCKET}/images", "--out", f"s3://{BUCKET}/stats",
                "--scheduler", scheduler, "--source-options", json.dumps(options),
                "--store-options", json.dumps(proxied)]
        refused = imgstats(*args)
        assert refused.returncode == 2
        assert "does not honour conditional writes" in refused.stderr
        assert not fs.exists(f"{BUCKET}/stats/v000001.json")
        forced = imgstats(*args, "--unsafe-store")
        assert forced.returncode == 0, forced.stderr
        assert "ignores conditional writes" in forced.stderr
    assert behaviour.counts["forwarded"] > 0
    assert json.loads(fs.cat_file(f"{BUCKET}/stats/latest.json"))["version"] == 1
