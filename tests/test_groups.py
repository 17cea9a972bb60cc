"""Per-group statistics in the same pass: each group equals a run over its files alone, the
groups add up to the totals, and incremental runs keep every group exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import JobConfig, compute_stats, load_stats
from pipeline.core.groups import GroupBy
from pipeline.errors import UsageError

from reference import decoded_histogram

#: The statistics keys a group holds, as the top level does.
STAT_KEYS = ("image_count", "pixel_count", "sum", "sum_sq", "min", "max", "mean", "std",
             "variance", "histogram", "quantiles", "files")


# --- the spec, pure ----------------------------------------------------------------------------


@pytest.mark.parametrize("spec,path,group", [
    ("dir", "cats/a.png", "cats"),
    ("dir", "cats/young/a.png", "cats"),
    ("dir", "a.png", "."),
    ("dir:2", "cats/young/a.png", "cats/young"),
    ("dir:2", "cats/a.png", "."),
    ("re:^(train|val)/", "train/x/a.png", "train"),
    ("re:^(train|val)/", "test/a.png", "."),
    ("re:_(\\d+)\\.png$", "x/img_0042.png", "0042"),
    ("re:[a-z]+", "123/abc.png", "abc"),  # no capture group: the whole match
])
def test_group_by_names_the_group(spec, path, group):
    assert GroupBy.parse(spec)(path) == group


@pytest.mark.parametrize("spec,words", [
    ("folder", "dir, dir:N or re:PATTERN"),
    ("dir:0", "N >= 1"),
    ("dir:x", "N >= 1"),
    ("re:(", "regular expression"),
])
def test_bad_group_by_is_one_usage_error(spec, words):
    with pytest.raises(UsageError, match=words):
        JobConfig(source="/data", out="/stats", group_by=spec)


# --- runs --------------------------------------------------------------------------------------


def save(path: Path, seed: int, size=(9, 13)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def classes(tmp_path) -> Path:
    """Three class folders of different sizes and brightness, and two files at the top."""
    root = tmp_path / "images"
    for i in range(14):
        cls = ("cats", "dogs", "birds")[i % 3]
        save(root / cls / f"{i:02d}.png", seed=i, size=(6 + i, 9 + 2 * (i % 3)))
    (root / "birds" / "young").mkdir()
    save(root / "birds" / "young" / "chick.png", seed=99)
    save(root / "top.png", seed=100)
    save(root / "other.png", seed=101)
    return root


def compute(root: Path, out: Path, scheduler: str, **options) -> dict:
    result = compute_stats(JobConfig(source=str(root), out=str(out), scheduler=scheduler,
                                     **options))
    return dict(result.stats.document)


def test_each_group_equals_a_run_over_its_files_and_they_add_up(classes, tmp_path, scheduler):
    doc = compute(classes, tmp_path / "grouped", scheduler, group_by="dir")
    assert doc["group_by"] == "dir" and set(doc["groups"]) == {"cats", "dogs", "birds", "."}
    for name, files in {"cats": ["cats/*"], "dogs": ["dogs/*"], "birds": ["birds/*"]}.items():
        alone = compute(classes, tmp_path / f"alone-{name}", scheduler, include=tuple(files))
        assert {k: doc["groups"][name][k] for k in STAT_KEYS} == {k: alone[k] for k in STAT_KEYS}
    top = compute(classes, tmp_path / "alone-top", scheduler, exclude=("*/*",))
    assert {k: doc["groups"]["."][k] for k in STAT_KEYS} == {k: top[k] for k in STAT_KEYS}
    # the groups add up to the totals, which are what a run without groups gives
    plain = compute(classes, tmp_path / "plain", scheduler)
    assert {k: doc[k] for k in STAT_KEYS} == {k: plain[k] for k in STAT_KEYS}
    groups = doc["groups"].values()
    for key in ("image_count", "pixel_count"):
        assert sum(g[key] for g in groups) == doc[key]
    assert [sum(g["sum"][c] for g in groups) for c in range(3)] == doc["sum"]
    added = [sum((decoded_histogram(g["histogram"])[c] for g in groups), start=type(
        decoded_histogram(doc["histogram"])[c])()) for c in range(3)]
    assert added == decoded_histogram(doc["histogram"])
    assert sum(g["files"]["count"] for g in groups) == doc["files"]["count"] == 17
    # one read per file, however many groups
    assert doc["run"]["files_read"] == 17
    assert doc["run"]["bytes_read"] == sum(p.stat().st_size for p in classes.rglob("*.png"))


def test_deeper_and_pattern_groups(classes, tmp_path, scheduler):
    deep = compute(classes, tmp_path / "deep", scheduler, group_by="dir:2")
    assert set(deep["groups"]) == {"birds/young", "."}
    assert deep["groups"]["birds/young"]["image_count"] == 1
    pattern = compute(classes, tmp_path / "pattern", scheduler, group_by=r"re:^(cats|dogs)/")
    assert {n: g["image_count"] for n, g in pattern["groups"].items()} == {
        "cats": 5, "dogs": 5, ".": 7}


def test_groups_through_the_api_and_show(classes, tmp_path, scheduler, imgstats):
    compute(classes, tmp_path / "st", scheduler, group_by="dir")
    stats = load_stats(str(tmp_path / "st"))
    cats = stats.groups["cats"]
    doc = json.loads((tmp_path / "st" / "latest.json").read_text())
    assert cats.normalize_kwargs() == {"mean": doc["groups"]["cats"]["mean"],
                                       "std": doc["groups"]["cats"]["std"]}
    assert cats.quantile(0.5) == tuple(doc["groups"]["cats"]["quantiles"]["raw"][4])
    assert cats.histogram.shape == (3, 256) and cats.variance == tuple(
        doc["groups"]["cats"]["variance"])
    shown = imgstats("show", str(tmp_path / "st"))
    assert shown.returncode == 0, shown.stderr
    assert max(len(line) for line in shown.stdout.splitlines()) <= 100
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines() if line}
    for name in ("cats", "dogs", "birds", "."):
        group = stats.groups[name]
        assert rows[name][1] == str(group.image_count)
        assert rows[name][2:5] == [f"{m:.4f}" for m in group.mean]
    one = imgstats("show", str(tmp_path / "st"), "--group", "cats")
    assert one.returncode == 0 and "group 'cats'" in one.stdout
    assert f"transforms.Normalize(mean={list(cats.mean)}".replace(" ", "") in \
        one.stdout.replace(" ", "").replace("\n", "")
    missing = imgstats("show", str(tmp_path / "st"), "--group", "cows")
    assert missing.returncode == 1 and "has no group 'cows'" in missing.stderr


def content(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in {"version", "parent", "created", "run",
                                                       "record"}}


def test_incremental_sequence_keeps_every_group_exact(classes, tmp_path, scheduler):
    """Add, remove, modify, rename, corrupt, fix, empty a group: after each step the new
    version equals a full run over the current files, groups and histograms included."""
    out = tmp_path / "st"
    steps = [
        lambda: save(classes / "cats" / "new.png", seed=500),
        lambda: (classes / "dogs" / "01.png").unlink(),
        lambda: save(classes / "birds" / "02.png", seed=501, size=(20, 5)),
        lambda: (classes / "cats" / "00.png").rename(classes / "dogs" / "was-a-cat.png"),
        lambda: (classes / "birds" / "bad.png").write_bytes(b"\x89PNG broken"),
        lambda: save(classes / "birds" / "bad.png", seed=502),
        lambda: [p.unlink() for p in (classes / "birds").rglob("*.png")],  # a group empties
        lambda: save(classes / "fish" / "nemo.png", seed=503),  # a group appears
    ]
    compute(classes, out, scheduler, group_by="dir")
    for number, step in enumerate(steps, 2):
        step()
        result = compute_stats(JobConfig(source=str(classes), out=str(out), scheduler=scheduler,
                                         group_by="dir"))
        assert result.written and result.stats.version == number
        doc = dict(result.stats.document)
        assert doc["run"]["incremental"] is True
        fresh = compute(classes, tmp_path / f"fresh-{number}", scheduler, group_by="dir", full=True)
        assert content(doc) == content(fresh), number
    assert "birds" not in doc["groups"] and "fish" in doc["groups"]


def test_a_change_of_groups_is_a_full_run(classes, tmp_path, scheduler):
    out = tmp_path / "st"
    compute(classes, out, scheduler)
    grouped = compute(classes, out, scheduler, group_by="dir")
    assert grouped["run"]["incremental"] is False and grouped["run"]["files_read"] == 17
    again = compute(classes, out, scheduler, group_by="dir:2")
    assert again["run"]["incremental"] is False
