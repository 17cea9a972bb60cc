"""``imgstats diff``: drift metrics from the exact histograms against an independent
computation (Fractions for the rational metrics, 200-digit decimals for the square roots and
the logarithms), on identical data (all zero), on a shifted copy (a known Wasserstein
distance), per group, and the exit status 3 that cron alerts on."""

from __future__ import annotations

import json
import math
from collections import Counter
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import JobConfig, compute_stats
from pipeline.core.exact import nearest_sqrt_difference
from pipeline.core.histogram import Histogram
from pipeline.report.drift import METRICS, drift

from conftest import one_error_line
from reference import decoded_histogram


def reference_metrics(a: Counter[int], b: Counter[int], scale: int) -> dict[str, float]:
    """One channel's metrics, B against A, from the two histograms by their definitions."""
    na, nb = sum(a.values()), sum(b.values())
    sa, sb = (sum(v * c for v, c in h.items()) for h in (a, b))
    qa, qb = (sum(v * v * c for v, c in h.items()) for h in (a, b))
    cdf_a = cdf_b = Fraction(0)
    gaps = []
    for v in range(scale + 1):  # F_A(v) - F_B(v) at every sample value
        cdf_a += Fraction(a[v], na)
        cdf_b += Fraction(b[v], nb)
        gaps.append(abs(cdf_a - cdf_b))
    with localcontext() as context:
        context.prec = 200
        std_a = Decimal(na * qa - sa * sa).sqrt() / Decimal(na * scale)
        std_b = Decimal(nb * qb - sb * sb).sqrt() / Decimal(nb * scale)
        divergence = Decimal(0)
        for v in set(a) | set(b):
            p, q = Decimal(a[v]) / na, Decimal(b[v]) / nb
            m = (p + q) / 2
            divergence += sum((x * (x / m).ln() for x in (p, q) if x), Decimal(0)) / 2
        js = (divergence / Decimal(2).ln()).sqrt()
        return {
            "mean_delta": float(Fraction(sb, nb * scale) - Fraction(sa, na * scale)),
            "std_delta": float(std_b - std_a),
            "wasserstein": float(sum(gaps) / scale),
            "ks": float(max(gaps)),
            "js": float(js),
        }


def assert_metrics(got: dict[str, list[float]], a: list[Counter[int]], b: list[Counter[int]],
                   scale: int) -> None:
    for c, (ha, hb) in enumerate(zip(a, b, strict=True)):
        want = reference_metrics(ha, hb, scale)
        for name in ("mean_delta", "std_delta", "wasserstein", "ks"):  # exactly rounded
            assert got[name][c] == want[name], (name, c)
        # float by the contract: to a few ulps
        assert math.isclose(got["js"][c], want["js"], rel_tol=1e-13), (got["js"][c], want["js"])


def random_counts(rng: np.random.Generator, bins: int, held: float, largest: int) -> np.ndarray:
    row = rng.integers(1, largest, bins, dtype=np.int64)
    row[rng.random(bins) >= held] = 0
    row[rng.integers(0, bins)] += 1
    return row


@pytest.mark.parametrize("bins,held,largest", [(256, 0.8, 10**9), (256, 0.1, 5),
                                               (65536, 0.01, 10**6)])
def test_metrics_match_the_definitions(bins, held, largest):
    rng = np.random.default_rng(bins + largest)
    for _ in range(3 if bins == 256 else 1):
        a = np.stack([random_counts(rng, bins, held, largest) for _ in range(2)])
        b = np.stack([random_counts(rng, bins, held, largest) for _ in range(2)])
        a[1] = rng.permutation(a[0])  # every channel counts the same pixels
        b[1] = rng.permutation(b[0])
        got = drift(Histogram(a), Histogram(b), bins - 1)
        assert set(got) == set(METRICS)
        as_counters = [[Counter({v: int(c) for v, c in enumerate(row) if c}) for row in h]
                       for h in (a, b)]
        assert_metrics({k: list(v) for k, v in got.items()}, *as_counters, bins - 1)


def test_a_known_case():
    """A = {0, 255}, B = {0, 0}: F_A = 1/2 below 255, F_B = 1: W1 = KS = 1/2; JSD = 3/2 -
    (3/4) log2 3 (p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4))."""
    a, b = np.zeros((1, 256), np.int64), np.zeros((1, 256), np.int64)
    a[0, 0] = a[0, 255] = 1
    b[0, 0] = 2
    got = drift(Histogram(a), Histogram(b), 255)
    assert got["wasserstein"] == got["ks"] == (0.5,)
    assert got["mean_delta"] == (-0.5,) and got["std_delta"] == (-0.5,)
    assert math.isclose(got["js"][0], math.sqrt(1.5 - 0.75 * math.log2(3)), rel_tol=1e-15)


def test_identical_histograms_drift_by_exactly_zero():
    counts = np.stack([random_counts(np.random.default_rng(1), 256, 0.5, 10**12)])
    got = drift(Histogram(counts), Histogram(counts * 3), 255)  # same distribution, 3x the data
    assert got == {name: (0.0,) for name in METRICS}


def test_nearest_sqrt_difference_is_exactly_rounded():
    rng = np.random.default_rng(7)
    with localcontext() as context:
        context.prec = 200
        for _ in range(300):
            x = Fraction(int(rng.integers(0, 10**15)), int(rng.integers(1, 10**15)) ** 2)
            y = x + Fraction(int(rng.integers(-5, 6)), 10 ** int(rng.integers(3, 40)))
            y = abs(y)
            want = float((Decimal(x.numerator) / x.denominator).sqrt() -
                         (Decimal(y.numerator) / y.denominator).sqrt())
            assert nearest_sqrt_difference(x, y) == want, (x, y)
    assert nearest_sqrt_difference(Fraction(9, 4), Fraction(1, 4)) == 1.0  # 3/2 - 1/2


# --- the command ---------------------------------------------------------------------------------


def write_images(root: Path, shift: int = 0, seed: int = 0) -> None:
    """Two class folders of random RGB PNGs (samples 0..248), each sample + ``shift``."""
    rng = np.random.default_rng(seed)
    for i in range(8):
        pixels = rng.integers(0, 249, (11 + i, 17, 3)).astype(np.uint8) + shift
        path = root / f"class{i % 2}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)


def compute(root: Path, out: Path, scheduler: str, **options) -> dict:
    result = compute_stats(JobConfig(source=str(root), out=str(out), scheduler=scheduler,
                                     group_by="dir", **options))
    return dict(result.stats.document)


def test_diff_of_a_shifted_copy_and_exit_3(tmp_path, scheduler, imgstats):
    """Every sample + 7: the Wasserstein distance and the mean delta are exactly 7/255, the
    std delta exactly 0; KS and JS as defined; per group too; --fail-above exits 3."""
    write_images(tmp_path / "train")
    write_images(tmp_path / "val", shift=7)
    train = compute(tmp_path / "train", tmp_path / "st-train", scheduler)
    val = compute(tmp_path / "val", tmp_path / "st-val", scheduler)
    done = imgstats("diff", str(tmp_path / "st-train"), str(tmp_path / "st-val"), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["channels"] == ["R", "G", "B"] and set(out["metrics"]) == set(METRICS)
    seven = float(Fraction(7, 255))
    assert out["metrics"]["wasserstein"] == out["metrics"]["mean_delta"] == [seven] * 3
    assert out["metrics"]["std_delta"] == [0.0] * 3
    assert_metrics(out["metrics"], decoded_histogram(train["histogram"]),
                   decoded_histogram(val["histogram"]), 255)
    assert set(out["groups"]) == {"class0", "class1"}
    for name, group in out["groups"].items():
        assert group["metrics"]["wasserstein"] == [seven] * 3
        assert_metrics(group["metrics"], decoded_histogram(train["groups"][name]["histogram"]),
                       decoded_histogram(val["groups"][name]["histogram"]), 255)
    # alerts: above a limit exits 3 naming the metric and channel; within the limits, 0
    alert = imgstats("diff", str(tmp_path / "st-train"), str(tmp_path / "st-val"),
                     "--fail-above", "wasserstein=0.02", "--fail-above", "js=1")
    line = one_error_line(alert, 3)
    assert f"wasserstein {seven:.6g} > 0.02 on channel R" in line and "on channel G" in line
    assert alert.stdout.startswith("A: ") and "wasserstein" in alert.stdout  # the table too
    calm = imgstats("diff", str(tmp_path / "st-train"), str(tmp_path / "st-val"),
                    "--fail-above", "wasserstein=0.03", "--fail-above", "mean_delta=0.03")
    assert calm.returncode == 0, calm.stderr
    negative = imgstats("diff", str(tmp_path / "st-val"), str(tmp_path / "st-train"),
                        "--fail-above", "mean_delta=0.02")  # deltas: by absolute value
    assert "mean_delta " + f"{-seven:.6g}" in one_error_line(negative, 3)


def test_diff_between_versions_of_one_store(tmp_path, scheduler, imgstats):
    root, out = tmp_path / "images", tmp_path / "st"
    write_images(root)
    compute(root, out, scheduler)
    compute(root, out, scheduler, full=True)  # the same files again: version 2
    write_images(root, seed=5)  # other pixels: version 3
    third = compute(root, out, scheduler)
    same = imgstats("diff", str(out), "--from", "1", "--to", "2", "--json",
                    "--fail-above", "ks=0", "--fail-above", "std_delta=0")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["metrics"] == {name: [0.0] * 3 for name in METRICS}
    latest = imgstats("diff", str(out), "--json")  # the latest against the one before
    assert latest.returncode == 0, latest.stderr
    second = json.loads((out / "v000002.json").read_text())
    assert_metrics(json.loads(latest.stdout)["metrics"], decoded_histogram(second["histogram"]),
                   decoded_histogram(third["histogram"]), 255)
    text = imgstats("diff", str(out))
    assert text.returncode == 0 and "version 2" in text.stdout and "version 3" in text.stdout
    assert max(len(line) for line in text.stdout.splitlines()) <= 100
    for args, code, words in (
        (["--from", "3", "--to", "1"], 0, None),
        (["--to", "1"], 2, "no version before 1"),
        (["--fail-above", "kl=0.1"], 2, "METRIC one of mean_delta"),
        (["--fail-above", "ks=x"], 2, "is not a number"),
        (["--from", "9"], 1, "has no version 9"),
    ):
        done = imgstats("diff", str(out), *args)
        if words is None:
            assert done.returncode == code, done.stderr
        else:
            assert words in one_error_line(done, code)


def test_diff_refuses_what_cannot_be_compared(tmp_path, scheduler, imgstats):
    write_images(tmp_path / "rgb")
    compute(tmp_path / "rgb", tmp_path / "st-rgb", scheduler)
    compute(tmp_path / "rgb", tmp_path / "st-gray", scheduler, mode="gray")
    done = imgstats("diff", str(tmp_path / "st-rgb"), str(tmp_path / "st-gray"))
    assert "cannot compare R,G,B uint8 samples with L uint8" in one_error_line(done, 2)
