"""The README's quick start, end to end: sample generator, CLI compute, show, history."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_quick_start(tmp_path, imgstats, scheduler):
    sample, store = tmp_path / "sample", tmp_path / "stats"
    subprocess.run(
        [sys.executable, ROOT / "scripts" / "make_sample.py", sample, "--count", "25"],
        check=True,
        capture_output=True,
    )
    done = imgstats("compute", str(sample), "--out", str(store), "--scheduler", scheduler)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(store / "v000001.json")
    doc = json.loads((store / "v000001.json").read_text())
    assert doc["image_count"] == 25 and doc["channels"] == ["R", "G", "B"]
    assert json.loads((store / "latest.json").read_text()) == doc
    shown = imgstats("show", str(store))
    assert shown.returncode == 0
    assert "transforms.Normalize(mean=[" in shown.stdout
    history = imgstats("history", str(store))
    assert history.returncode == 0 and history.stdout.splitlines()[1].startswith("v000001.json")
