"""The fast decode paths give exactly Pillow's pixels, and step aside for anything else.

``rgb``/``gray`` results are compared with torchvision's loader itself
(``np.asarray(Image.open(f).convert("RGB"))``); ``native`` with the Pillow-only path
(fast paths off). Each encoding is also checked to go through the path it is meant to: the
fast decoder for standard JPEGs and 8-bit PNGs, Pillow for CMYK, YCCK, RGB-coded and 12-bit
JPEGs, unusual sampling factors, palette, 16-bit and animated PNGs.
"""

from __future__ import annotations

import io
import random
import struct
import tempfile
import threading
import zlib

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from pipeline import decode as dec
from pipeline.decode import fast
from pipeline.errors import DecodeError

MODES = ["rgb", "gray", "native"]
ODD_SIZES = [(1, 1), (1, 17), (17, 1), (2, 3), (15, 9), (33, 65), (127, 255)]


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Gradients plus noise: every DCT frequency and both chroma channels get exercised."""
    rng = np.random.default_rng([seed, height, width])
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [x * 255 / max(width, 1), y * 255 / max(height, 1), (x + y) * 127 / (width + height)], -1
    )
    return np.clip(base + rng.normal(0, 30, (height, width, 3)), 0, 255).astype(np.uint8)


def encode(array: np.ndarray, fmt: str, **options: object) -> bytes:
    # A real file: Pillow's progressive JPEG writer can fail on BytesIO at high qualities.
    with tempfile.TemporaryFile() as file:
        Image.fromarray(array).save(file, fmt, **options)
        file.seek(0)
        return file.read()


def _orientation_exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # imgstats, like torchvision's loader, does not transpose
    return exif.tobytes()


def torchvision(data: bytes, mode: str) -> np.ndarray | None:
    """torchvision's loader (``convert("RGB")``, or ``"L"``) with a channel axis; None if it
    raises."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB" if mode == "rgb" else "L"))
    except Exception:
        return None
    return pixels[:, :, np.newaxis] if pixels.ndim == 2 else pixels


def pillow_only(data: bytes, mode: str, monkeypatch: pytest.MonkeyPatch) -> dec.Decoded | None:
    with monkeypatch.context() as patch:
        patch.setattr(fast, "_FAST", False)
        try:
            return dec.decode(data, mode)
        except DecodeError:
            return None


def uses_fast_path(data: bytes, mode: str) -> bool:
    if any(path(data, mode, None) is not None
           for path in (fast.jpeg_without_pillow, fast.png_without_pillow)):
        return True
    with Image.open(io.BytesIO(data)) as image:
        return fast.fast_png(image, data, mode) is not None


def assert_like_pillow(
    data: bytes, mode: str, monkeypatch: pytest.MonkeyPatch, label: str = ""
) -> None:
    """decode() agrees with Pillow: same pixels (and layout), or both refuse the file."""
    try:
        got: dec.Decoded | None = dec.decode(data, mode)
    except DecodeError:
        got = None
    reference = pillow_only(data, mode, monkeypatch)
    if mode != "native":
        expected = torchvision(data, mode)
        assert (got is None) == (expected is None), f"{label} {mode}: accepted by one only"
        if got is not None:
            assert got.pixels.dtype == expected.dtype
            assert got.pixels.shape == expected.shape
            assert np.array_equal(got.pixels, expected), f"{label} {mode}: pixels differ"
    assert (got is None) == (reference is None), f"{label} {mode}: accepted by one only"
    if got is not None:
        assert (got.layout, got.high_bit_depth) == (reference.layout, reference.high_bit_depth)
        assert got.pixels.shape == reference.pixels.shape
        assert np.array_equal(got.pixels, reference.pixels)
        assert got.pixels.flags.c_contiguous


# --- JPEG ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ODD_SIZES, ids=str)
@pytest.mark.parametrize("quality", [5, 50, 75, 90, 95, 100])
@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_jpeg_pillow_encodings(size, quality, subsampling, progressive, monkeypatch):
    try:
        data = encode(
            photo(*size), "JPEG", quality=quality, subsampling=subsampling, progressive=progressive
        )
    except OSError:  # Pillow 13 fails to write a few large progressive q100 4:4:4 images
        pytest.skip("Pillow cannot write this combination")
    assert uses_fast_path(data, "rgb")
    for mode in MODES:
        assert_like_pillow(data, mode, monkeypatch)


@pytest.mark.parametrize("size", [(16, 16), *ODD_SIZES], ids=str)
@pytest.mark.parametrize("subsampling", ["444", "422", "420", "440", "411"])
@pytest.mark.parametrize("quality", [30, 85, 100])
def test_jpeg_libjpeg_turbo_subsamplings(size, subsampling, quality, monkeypatch):
    """4:4:0 and 4:1:1 (Pillow cannot write them): simplejpeg's encoder, libjpeg-turbo's."""
    data = simplejpeg.encode_jpeg(photo(*size), quality=quality, colorsubsampling=subsampling)
    assert simplejpeg.decode_jpeg_header(data)[3] == subsampling
    assert uses_fast_path(data, "rgb")
    for mode in MODES:
        assert_like_pillow(data, mode, monkeypatch)


@pytest.mark.parametrize("size", ODD_SIZES, ids=str)
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("quality", [20, 90])
def test_jpeg_gray(size, progressive, quality, monkeypatch):
    """Gray JPEGs: R = G = B = Y in rgb mode, as Pillow's L -> RGB; Y itself in gray mode."""
    data = encode(photo(*size)[..., 1], "JPEG", quality=quality, progressive=progressive)
    for mode in MODES:
        assert uses_fast_path(data, mode)
        assert_like_pillow(data, mode, monkeypatch)


@pytest.mark.parametrize(
    "options",
    [
        {"optimize": True},
        {"restart_marker_blocks": 3},
        {"restart_marker_rows": 1},
        {"quality": 90, "exif": _orientation_exif(6)},
        {"quality": 90, "icc_profile": b"\x00" * 128},
        {"qtables": "web_high"},
    ],
    ids=lambda o: ",".join(o),
)
def test_jpeg_other_options(options, monkeypatch):
    data = encode(photo(48, 64), "JPEG", **options)
    assert uses_fast_path(data, "rgb")
    for mode in MODES:
        assert_like_pillow(data, mode, monkeypatch)


def test_jpeg_mpo_first_frame(monkeypatch):
    frames = [Image.fromarray(photo(40, 56, seed)) for seed in (1, 2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "MPO", save_all=True, append_images=frames[1:])
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    for mode in MODES:
        assert_like_pillow(data, mode, monkeypatch)


def test_jpeg_cmyk_goes_to_pillow(monkeypatch):
    data = encode(photo(24, 40), "JPEG")
    cmyk = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("CMYK").save(cmyk, "JPEG")
    for mode in MODES:
        assert not uses_fast_path(cmyk.getvalue(), mode)
        assert_like_pillow(cmyk.getvalue(), mode, monkeypatch)


def test_jpeg_ycck_and_rgb_coded_go_to_pillow(monkeypatch):
    imagecodecs = pytest.importorskip("imagecodecs")
    array = photo(24, 40)
    ycck = imagecodecs.jpeg8_encode(
        np.dstack([array, array[..., :1]]), colorspace="CMYK", outcolorspace="YCCK"
    )
    rgb_coded = imagecodecs.jpeg8_encode(array, colorspace="RGB", outcolorspace="RGB")
    assert simplejpeg.decode_jpeg_header(ycck)[2] == "YCCK"
    assert simplejpeg.decode_jpeg_header(rgb_coded)[2] == "RGB"
    for data in (ycck, rgb_coded):
        for mode in MODES:
            assert not uses_fast_path(data, mode)
            assert_like_pillow(data, mode, monkeypatch)


def test_jpeg_12_bit_goes_to_pillow(monkeypatch):
    imagecodecs = pytest.importorskip("imagecodecs")
    data = imagecodecs.jpeg8_encode(photo(24, 40).astype(np.uint16) * 16, bitspersample=12)
    for mode in MODES:
        assert_like_pillow(data, mode, monkeypatch)  # Pillow cannot read it: both refuse


def _with_sampling(data: bytes, factors: tuple[int, int, int]) -> bytes:
    """The JPEG with its three components' sampling factors replaced in the SOF0 segment."""
    patched = bytearray(data)
    sof = patched.index(b"\xff\xc0")
    for k, factor in enumerate(factors):
        patched[sof + 11 + 3 * k] = factor
    return bytes(patched)


@pytest.mark.parametrize("factors", [(0x11, 0x22, 0x11), (0x21, 0x11, 0x12), (0x12, 0x21, 0x11)])
def test_jpeg_unusual_sampling_goes_to_pillow(factors, monkeypatch):
    data = _with_sampling(simplejpeg.encode_jpeg(photo(32, 48), colorsubsampling="444"), factors)
    for mode in MODES:
        assert not uses_fast_path(data, mode)
        assert_like_pillow(data, mode, monkeypatch)


def test_jpeg_damaged_files_follow_pillow(monkeypatch):
    good = encode(photo(64, 96), "JPEG", quality=90)
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    cases = {
        "truncated": good[: len(good) * 6 // 10],
        "no EOI": good[:-2],
        "bit flip": bytes(flipped),
        "trailing garbage": good + b"garbage" * 10,
        "bytes before a marker": good[:2] + b"\x00\x00" + good[2:],
        "header only": good[:200],
    }
    for name, data in cases.items():
        for mode in MODES:
            assert_like_pillow(data, mode, monkeypatch, name)


def _mutated(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        at = rng.randrange(len(out))
        kind = rng.choice(["flip", "set", "cut", "insert", "truncate"])
        if kind == "flip":
            out[at] ^= 1 << rng.randrange(8)
        elif kind == "set":
            out[at] = rng.choice([0, 0x7F, 0x80, 0xFF])
        elif kind == "cut":
            del out[at : at + rng.randint(1, 64)]
        elif kind == "insert":
            out[at:at] = rng.randbytes(rng.randint(1, 32))
        else:
            del out[at:]
        out = out or bytearray(b"\0")
    return bytes(out)


def test_jpeg_without_pillow_header_never_counts_what_pillow_refuses(monkeypatch):
    """Mutated JPEGs the headerless fast path decodes: Pillow decodes every one of them, to
    the same pixels, in every mode (Pillow's marker parser is stricter than libjpeg's in
    places; a strict decode must not let such a file through)."""
    seeds = [
        encode(photo(40, 33), "JPEG", **options)
        for options in ({}, {"progressive": True}, {"subsampling": 0}, {"subsampling": 1},
                        {"quality": 50, "optimize": True})
    ]
    seeds.append(encode(photo(40, 33)[..., 0], "JPEG"))
    rng = random.Random(7)
    accepted = 0
    for _ in range(6000):
        data = _mutated(rng.choice(seeds), rng)
        for mode in MODES:
            if fast.jpeg_without_pillow(data, mode, None) is not None:
                accepted += 1
                assert_like_pillow(data, mode, monkeypatch, "mutated")
    assert accepted > 300  # the check above ran on many files


def test_png_without_pillow_header_never_counts_what_pillow_refuses(monkeypatch):
    """The same for mutated 8-bit PNGs (gray, gray+alpha, RGB, RGBA, interlaced RGB)."""
    rgba = np.dstack([photo(21, 30), photo(21, 30, 1)[..., 0]])
    seeds = [encode(rgba[..., :3], "PNG"), encode(rgba, "PNG"), encode(rgba[..., 0], "PNG"),
             encode(rgba[..., [0, 3]], "PNG"), encode(rgba[..., :3], "PNG", interlace=1)]
    rng = random.Random(11)
    accepted = 0
    for _ in range(4000):
        # Mostly edits where this path decides: IHDR fields (checksum made valid again, or
        # not), bytes after IEND; sometimes any edits anywhere.
        data = bytearray(rng.choice(seeds))
        kind = rng.random()
        if kind < 0.6:
            data[rng.randrange(16, 29)] = rng.choice([0, 1, 2, 3, 4, 6, 7, 8, 16, 0x80, 0xFF])
            if rng.random() < 0.9:
                data[29:33] = zlib.crc32(data[12:29]).to_bytes(4, "big")
        elif kind < 0.8:
            data += rng.randbytes(rng.randint(1, 40))
        else:
            data = bytearray(_mutated(bytes(data), rng))
        data = bytes(data)
        for mode in MODES:
            if fast.png_without_pillow(data, mode, None) is not None:
                accepted += 1
                assert_like_pillow(data, mode, monkeypatch, "mutated")
    assert accepted > 100  # the check above ran on many files


def test_jpeg_truncated_is_a_decode_error():
    data = encode(photo(64, 96), "JPEG")
    with pytest.raises(DecodeError):
        dec.decode(data[: len(data) // 2], "rgb")


# --- PNG ----------------------------------------------------------------------------------


def png_of(mode: str, size: tuple[int, int], seed: int = 0, **options: object) -> bytes:
    array = photo(*size, seed)
    if mode == "L":
        image = Image.fromarray(array[..., 0])
    elif mode == "LA":
        image = Image.fromarray(array[..., :2].copy(), "LA")
    elif mode == "RGBA":
        image = Image.fromarray(np.dstack([array, array[..., 2]]), "RGBA")
    else:
        image = Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("image_mode", ["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(32, 32), *ODD_SIZES], ids=str)
@pytest.mark.parametrize(
    "options",
    [{}, {"compress_level": 0}, {"compress_level": 9}, {"interlace": 1}],
    ids=["default", "level0", "level9", "interlaced"],
)
def test_png_8_bit(image_mode, size, options, monkeypatch):
    data = png_of(image_mode, size, **options)
    fast_modes = {"L": MODES, "LA": ["native"], "RGB": ["rgb", "native"], "RGBA": ["rgb", "native"]}
    for mode in MODES:
        assert uses_fast_path(data, mode) == (mode in fast_modes[image_mode])
        assert_like_pillow(data, mode, monkeypatch)


def test_png_ancillary_chunks(monkeypatch):
    """Gamma, colour profile and text chunks change nothing in the samples (no conversion)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "hello")
    info.add_itxt("title", "\u00e9t\u00e9", zip=True)
    cases = [
        png_of("RGB", (20, 30), pnginfo=info),
        png_of("L", (20, 30), pnginfo=info),
        png_of("RGB", (20, 30), icc_profile=b"\x00" * 200),
        _insert_chunk(png_of("RGB", (20, 30)), b"gAMA", struct.pack(">I", 45455)),
        _insert_chunk(png_of("RGB", (20, 30)), b"sRGB", b"\x00"),
        _insert_chunk(png_of("RGB", (20, 30)), b"cHRM", struct.pack(">8I", *range(8))),
    ]
    for data in cases:
        assert uses_fast_path(data, "rgb")
        for mode in MODES:
            assert_like_pillow(data, mode, monkeypatch)


def test_png_transparency_goes_to_pillow(monkeypatch):
    """A tRNS chunk: libpng would expand it to an alpha channel, Pillow keeps the samples."""
    for data in (
        png_of("RGB", (20, 30), transparency=(1, 2, 3)),
        png_of("L", (20, 30), transparency=7),
    ):
        for mode in MODES:
            assert not uses_fast_path(data, mode)
            assert_like_pillow(data, mode, monkeypatch)


def test_png_palette_16_bit_and_animated_go_to_pillow(monkeypatch):
    palette = io.BytesIO()
    Image.fromarray(photo(20, 30)).convert("P").save(palette, "PNG")
    deep = io.BytesIO()
    Image.fromarray(photo(20, 30)[..., 0].astype(np.uint16) * 257).save(deep, "PNG")
    animated = io.BytesIO()
    frames = [Image.fromarray(photo(20, 30, seed)) for seed in (1, 2)]
    frames[0].save(animated, "PNG", save_all=True, append_images=frames[1:])
    for data in (palette.getvalue(), deep.getvalue(), animated.getvalue()):
        for mode in MODES:
            assert not uses_fast_path(data, mode)
            assert_like_pillow(data, mode, monkeypatch)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _insert_chunk(data: bytes, kind: bytes, body: bytes) -> bytes:
    """``data`` with a chunk inserted right after IHDR (8 + 25 bytes in)."""
    return data[:33] + _chunk(kind, body) + data[33:]


def _chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, type, length) of each chunk."""
    found, offset = [], 8
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        found.append((offset, data[offset + 4 : offset + 8], length))
        offset += 12 + length
    return found


def test_png_damaged_files_follow_pillow(monkeypatch):
    good = png_of("RGB", (40, 50), compress_level=1)
    idat = next(offset for offset, kind, _ in _chunks(good) if kind == b"IDAT")
    bad_idat_crc = bytearray(good)
    bad_idat_crc[idat + 8 + struct.unpack(">I", good[idat : idat + 4])[0]] ^= 0xFF
    bad_text_crc = bytearray(_insert_chunk(good, b"tEXt", b"a\x00b"))
    bad_text_crc[33 + 8 + 3] ^= 0xFF
    iend = len(good) - 12
    trailing = good[:iend] + _chunk(b"tEXt", b"k\x00" + b"v" * 50) + good[iend:]
    assert uses_fast_path(good, "rgb") and not uses_fast_path(trailing, "rgb")
    flipped = bytearray(good)
    flipped[idat + 20] ^= 0x55
    cases = {
        "bad IDAT CRC": bytes(bad_idat_crc),
        "bad tEXt CRC before IDAT": bytes(bad_text_crc),
        "truncated in IDAT": good[: idat + 30],
        "no IEND": good[:iend],
        "trailing chunk cut short": trailing[: iend + 20],
        "bit flip in the zlib stream": bytes(flipped),
        "signature only": good[:8],
    }
    for name, data in cases.items():
        for mode in MODES:
            assert_like_pillow(data, mode, monkeypatch, name)


# --- buffers, threads, the switch ---------------------------------------------------------


def test_kept_results_are_never_overwritten():
    first_data = encode(photo(50, 70, 1), "JPEG")
    second_data = encode(photo(50, 70, 2), "JPEG")
    first = dec.decode(first_data, "rgb")
    snapshot = first.pixels.copy()
    second = dec.decode(second_data, "rgb")
    assert not np.shares_memory(first.pixels, second.pixels)
    assert np.array_equal(first.pixels, snapshot)
    third = dec.decode(first_data, "rgb")
    assert np.array_equal(third.pixels, snapshot)
    assert np.array_equal(second.pixels, torchvision(second_data, "rgb"))


def test_buffer_is_reused_once_released():
    data = encode(photo(50, 70), "JPEG")
    pixels = dec.decode(data, "rgb").pixels
    address = pixels.__array_interface__["data"][0]
    del pixels
    again = dec.decode(data, "rgb").pixels
    assert again.__array_interface__["data"][0] == address


def test_threads_decode_independently():
    datas = [encode(photo(40 + i, 60, i), "JPEG") for i in range(8)]
    expected = [torchvision(d, "rgb") for d in datas]
    failures: list[int] = []

    def work(index: int) -> None:
        for _ in range(30):
            for k, data in enumerate(datas):
                if not np.array_equal(dec.decode(data, "rgb").pixels, expected[k]):
                    failures.append(index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_large_images_get_their_own_array(monkeypatch):
    monkeypatch.setattr(fast, "_REUSE_MAX_BYTES", 1000)
    data = encode(photo(30, 40), "JPEG")
    first = dec.decode(data, "rgb").pixels
    second = dec.decode(data, "rgb").pixels
    assert not np.shares_memory(first, second)
    assert np.array_equal(first, second)


def test_switch_turns_fast_paths_off(monkeypatch):
    data = encode(photo(20, 30), "JPEG")
    monkeypatch.setattr(fast, "_FAST", False)
    assert not uses_fast_path(data, "rgb")
    assert np.array_equal(dec.decode(data, "rgb").pixels, torchvision(data, "rgb"))


def test_decompression_bomb_still_refused():
    data = encode(photo(40, 50), "JPEG")
    with pytest.raises(DecodeError, match="decompression bomb"):
        dec.decode(data, "rgb", max_pixels=1000)
