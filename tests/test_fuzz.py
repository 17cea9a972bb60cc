"""Fuzzing the decode path: mutated JPEG/PNG/GIF/TIFF/WebP bytes are counted or skipped, never
a crash. Bounded and seeded (hypothesis, derandomized), with a regression corpus in tests/corpus.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.config import ScanOptions
from pipeline.core.files import FileEntry, Shard
from pipeline.core.keys import MODES
from pipeline.decode import decode
from pipeline.fs.location import resolve
from pipeline.run.scan import scan_shard

CORPUS = Path(__file__).parent / "corpus"
FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "TIFF": "tif", "WEBP": "webp"}


def seed_image(fmt: str) -> bytes:
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (12, 17, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    if fmt == "GIF":
        frames = [image, Image.fromarray(rng.integers(0, 256, (12, 17, 3), dtype=np.uint8))]
        frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()


SEEDS = {fmt: seed_image(fmt) for fmt in FORMATS}


@st.composite
def mutations(draw, fmt: str) -> bytes:
    data = bytearray(SEEDS[fmt])
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "truncate"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80]))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            del data[at:]
        if not data:
            data = bytearray(b"\0")
    return bytes(data)


def outcome(data: bytes) -> None:
    """Every mode either decodes to a sane array or raises DecodeError (nothing else)."""
    from pipeline.errors import DecodeError

    for mode in MODES:
        try:
            decoded = decode(data, mode)
        except DecodeError as exc:
            assert str(exc)
            continue
        assert decoded.pixels.ndim == 3 and decoded.pixels.size > 0


def fuzz(fmt: str, examples: int) -> None:
    @settings(max_examples=examples, derandomize=True, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(mutations(fmt))
    def check(data: bytes) -> None:
        outcome(data)

    check()


# Pillow warns (UserWarning) about some corrupt metadata it can read past; that is not a crash.
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_files_are_decoded_or_refused(fmt):
    fuzz(fmt, examples=120)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("fmt", FORMATS)
def test_many_mutated_files_are_decoded_or_refused(fmt):
    fuzz(fmt, examples=1000)  # 5,000 files in all, each in 3 modes


def test_regression_corpus_is_counted_or_skipped_with_a_reason(tmp_path):
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    assert files, "the regression corpus is empty"
    for path in files:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    entries = tuple(FileEntry(p.name, p.stat().st_size, "") for p in files)
    result = scan_shard(resolve(str(tmp_path)), Shard(0, entries), ScanOptions("rgb"))
    counted = sum(result.images.values())
    assert counted + len(result.skipped) == len(files)
    assert all(skip.error for skip in result.skipped)
