"""``show --format``: every framework's numbers bit-exact against an independent computation
from the histogram's counts (Python integers, Fractions, decimal); the ``preprocessor_config
.json`` update changes the two values and not one other byte."""

from __future__ import annotations

import ast
import json
import logging
import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core.files import FileSet
from pipeline.core.histogram import Histogram
from pipeline.core.keys import Layout
from pipeline.store.document import Part, build_document, dumps

from reference import decoded_histogram, nearest_float_sqrt_ratio

#: Each format's printed call, the patterns of its two lists of numbers (and which scale).
CALLS = {
    "torchvision": (r"transforms\.Normalize\(mean=(\[.*?\]), std=(\[.*?\])\)", "unit", "std"),
    "albumentations": (r"A\.Normalize\(mean=(\(.*?\)), std=(\(.*?\)), max_pixel_value="
                       r"(\d+\.0)\)", "unit", "std"),
    "timm": (r"pretrained_cfg_overlay=dict\(mean=(\(.*?\)), std=(\(.*?\))\)", "unit", "std"),
    "dali": (r"fn\.crop_mirror_normalize\(images, mean=(\[.*?\]), std=(\[.*?\])\)", "raw", "std"),
    "keras": (r"layers\.Normalization\(mean=(\[.*?\]), variance=(\[.*?\])\)", "raw",
              "variance"),
    "fastai": (r"Normalize\.from_stats\((\[.*?\]), (\[.*?\])\)", "unit", "std"),
}


@pytest.fixture
def keep_logging():
    log = logging.getLogger("pipeline")
    saved = (log.handlers[:], log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def counts(rng: np.random.Generator, channels: int, bins: int, largest: int,
           held: float = 0.7) -> np.ndarray:
    """Per-channel counts, some bins empty, some as large as ``largest`` (billions of
    images' worth of samples: where float shortcuts go wrong); every channel counts the same
    pixels (its counts are a permutation of the first channel's)."""
    first = rng.integers(0, largest, bins, dtype=np.int64)
    first[rng.random(bins) >= held] = 0  # about ``held`` of the values are held
    first[rng.integers(0, bins)] += 1
    return np.stack([first, *(rng.permutation(first) for _ in range(channels - 1))])


def write_stats(path: Path, groups: dict[str, np.ndarray], layout: Layout) -> dict:
    """A stats file of these groups' histograms, as a run writes it (build_document)."""
    parts = {name: Part(Histogram(c), 1 + i, FileSet()) for i, (name, c) in
             enumerate(groups.items())}
    total = Histogram(sum(groups.values()))  # type: ignore[arg-type]
    doc = build_document(
        version=1, parent=None, created="2026-01-01T00:00:00+00:00", source="/data",
        mode="native", layout=layout, total=Part(total, sum(p.images for p in parts.values()),
                                                 FileSet()),
        skipped=[], run={}, provenance={}, tool_version="0", groups=parts, group_by="dir",
    )
    path.write_bytes(dumps(doc))
    return doc


def expected(entry: dict, scale: int) -> dict[str, list[float]]:
    """From the histogram's counts alone: the exact values on both scales, each rounded once."""
    n, sums, squares = 0, [], []
    for histogram in decoded_histogram(entry["histogram"]):
        n = sum(histogram.values())
        sums.append(sum(v * c for v, c in histogram.items()))
        squares.append(sum(v * v * c for v, c in histogram.items()))
    spread = [n * q - s * s for s, q in zip(sums, squares, strict=True)]
    return {
        "unit mean": [float(Fraction(s, n * scale)) for s in sums],
        "unit std": [nearest_float_sqrt_ratio(d, n * scale) for d in spread],
        "raw mean": [float(Fraction(s, n)) for s in sums],
        "raw std": [nearest_float_sqrt_ratio(d, n) for d in spread],
        "raw variance": [float(Fraction(d, n * n)) for d in spread],
    }


def parse(fmt: str, text: str) -> tuple[list[float], list[float]]:
    """The two lists of numbers a format printed."""
    if fmt == "hf":
        values = json.loads(text)
        assert list(values) == ["image_mean", "image_std"]
        return values["image_mean"], values["image_std"]
    pattern, _, _ = CALLS[fmt]
    match = re.fullmatch(pattern, text.strip())
    assert match, (fmt, text)
    first, second = (list(ast.literal_eval(match.group(i))) for i in (1, 2))
    return first, second


CASES = {
    "RGB uint8": (Layout("RGB", "uint8"), 3, 256, 10**12),
    "L uint16": (Layout("L", "uint16"), 1, 65536, 10**9),  # 1,300 values held: sparse
    "RGBA uint8, few samples": (Layout("RGBA", "uint8"), 4, 256, 3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_format_is_the_nearest_float_to_the_exact_value(case, tmp_path, capsys,
                                                               keep_logging):
    layout, channels, bins, largest = CASES[case]
    rng = np.random.default_rng(len(case))
    held = 0.02 if bins > 256 else 0.7
    groups = {name: counts(rng, channels, bins, largest, held) for name in (
        "cats", "dogs", "birds", "fish", "ants", "bees")}
    path = tmp_path / "v000001.json"
    doc = write_stats(path, groups, layout)
    naive_differs = {"dali mean": False, "keras variance": False}
    for group in (None, *groups):
        entry = doc if group is None else doc["groups"][group]
        want = expected(entry, layout.scale)
        for fmt in [*CALLS, "hf"]:
            args = ["show", str(path), "--format", fmt, *(["--group", group] if group else [])]
            code, out, err = run_main(capsys, *args)
            assert code == 0, err
            first, second = parse(fmt, out)
            scale = CALLS[fmt][1] if fmt in CALLS else "unit"
            spread = CALLS[fmt][2] if fmt in CALLS else "std"
            assert first == want[f"{scale} mean"], (fmt, group)
            assert second == want[f"{scale} {spread}"], (fmt, group)
            assert all(type(v) is float for v in (*first, *second))
            if fmt == "albumentations":
                assert out.strip().endswith(f"max_pixel_value={float(layout.scale)!r})")
        naive_differs["dali mean"] |= [m * layout.scale for m in want["unit mean"]] != want[
            "raw mean"]
        naive_differs["keras variance"] |= [s * s for s in want["raw std"]] != want[
            "raw variance"]
        code, out, _ = run_main(capsys, "show", str(path), "--format", "json",
                                *(["--group", group] if group else []))
        assert code == 0 and json.loads(out) == entry
    if largest > 3:  # the shortcuts are wrong here: the checks above can tell
        assert naive_differs == {"dali mean": True, "keras variance": True}


def test_json_format_is_the_stats_file_and_formats_need_a_known_group(tmp_path, capsys,
                                                                     keep_logging):
    path = tmp_path / "v000001.json"
    write_stats(path, {"a": counts(np.random.default_rng(1), 3, 256, 100)}, Layout("RGB",
                                                                                   "uint8"))
    code, out, _ = run_main(capsys, "show", str(path), "--format", "json")
    assert code == 0 and out.encode() == path.read_bytes()
    code, _, err = run_main(capsys, "show", str(path), "--format", "keras", "--group", "b")
    assert code == 1 and "has no group 'b'" in err


# --- preprocessor_config.json -------------------------------------------------------------------

#: As transformers writes one (json.dumps(indent=2, sort_keys=True) + newline), with more.
PREPROCESSOR = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "name": "caf\u00e9 \u2013 \u00fcber",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
}

_VALUE = r'("image_(?:mean|std)":\s*)\[[^\]]*\]'


def _without_the_two_values(text: str) -> str:
    """Everything but the two lists (an independent look: a regular expression)."""
    return re.sub(_VALUE, r"\1<list>", text)


@pytest.mark.parametrize("style", ["transformers", "one line", "crlf", "tabs", "keys missing",
                                   "empty object"])
def test_hf_update_changes_only_the_two_values(style, tmp_path, capsys, keep_logging):
    stats = tmp_path / "v000001.json"
    doc = write_stats(stats, {"a": counts(np.random.default_rng(2), 3, 256, 10**6)},
                      Layout("RGB", "uint8"))
    want = expected(doc, 255)
    config = dict(PREPROCESSOR)
    if style == "keys missing":
        del config["image_mean"], config["image_std"]
    if style == "empty object":
        config = {}
    text = {
        "one line": json.dumps(config, ensure_ascii=False),
        "crlf": json.dumps(config, indent=2, sort_keys=True).replace("\n", "\r\n") + "\r\n",
        "tabs": json.dumps(config, indent="\t") + "\n",
    }.get(style, json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    target = tmp_path / "preprocessor_config.json"
    target.write_bytes(text.encode())
    target.chmod(0o640)
    code, out, err = run_main(capsys, "show", str(stats), "--format", "hf", "--update",
                              str(target))
    assert code == 0, err
    assert json.loads(out) == {"image_mean": want["unit mean"], "image_std": want["unit std"]}
    new = target.read_bytes().decode()
    assert json.loads(new) == {**config, "image_mean": want["unit mean"],
                               "image_std": want["unit std"]}
    if style in ("keys missing", "empty object"):  # added after the last member: the old text
        # is the new one with the added members taken out
        added = re.sub(r'[,\s]*"image_mean":\s*\[[^\]]*\],?\s*"image_std":\s*\[[^\]]*\]', "",
                       new)
        assert re.sub(r"\s", "", added) == re.sub(r"\s", "", text)
        assert new.startswith(text.rstrip().rstrip("}").rstrip())
    else:
        assert _without_the_two_values(new) == _without_the_two_values(text)
        assert new != text
    assert ("\r\n" in new) == (style == "crlf") and ("\t" in new) == (style == "tabs")
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o640)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".imgstats-")] == []


def test_hf_update_refuses_what_it_cannot_update(tmp_path, capsys, keep_logging):
    stats = tmp_path / "v000001.json"
    write_stats(stats, {"a": counts(np.random.default_rng(3), 1, 256, 100)}, Layout("L", "uint8"))
    for name, content, words in (("broken.json", b'{"image_mean": [0.5', "cannot update"),
                                 ("list.json", b"[0.5]", "not a JSON object"),
                                 ("missing.json", None, "no preprocessor config")):
        target = tmp_path / name
        if content is not None:
            target.write_bytes(content)
        code, _, err = run_main(capsys, "show", str(stats), "--format", "hf", "--update",
                                str(target))
        assert code == 2 and words in err and err.count("\n") == 1, err
        assert (target.read_bytes() if content is not None else None) == content
    code, _, err = run_main(capsys, "show", str(stats), "--format", "dali", "--update",
                            str(tmp_path / "list.json"))
    assert code == 2 and "--update FILE goes with --format hf" in err
