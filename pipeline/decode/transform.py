"""Transforms: the pixels as the model sees them, by torchvision's rules on PIL images.

:func:`apply` turns decoded pixels back into the PIL image the mode's conversion gives
(``Image.fromarray`` of the same samples), then does what torchvision does to a PIL image:

- ``Resize(N)``: the shorter side to N, the longer to ``int(N * long / short)``; an image
  already that size is left as it is; otherwise ``image.resize((w, h), filter)`` with the
  Pillow filter of ``--interpolation``;
- ``CenterCrop((h, w))``: zero padding on the sides where the crop is larger (left/top
  ``(crop - size) // 2``, right/bottom the rest), then the crop at top-left
  ``int(round((size - crop) / 2))`` (Python's round: halves to even);
- the user's function, called with that PIL image; it returns a PIL image (L, LA, RGB, RGBA,
  I;16) or an array of uint8/uint16 samples, (H, W) or (H, W, 1 to 4).

Pillow holds 16-bit and float samples one channel to an image, so an image with several such
channels is resized and cropped channel by channel (8-bit RGB resized channel by channel is
bit-identical to Pillow's RGB resize); a function gets one PIL image, so it needs 8-bit
samples or one channel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from ..config import JobConfig
from ..core.transform import Transform
from ..errors import DecodeError, UsageError
from .decoded import Decoded

__all__ = ["apply", "center_crop", "load_function", "pin_function", "resize", "source_sha256"]

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
#: PIL modes a function may return, with their channel letters.
_RETURNED_MODES = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "I;16": "L"}
#: Channel letters of a returned array, by its number of channels.
_ARRAY_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def apply(decoded: Decoded, transform: Transform) -> Decoded:
    """``decoded`` resized, cropped and passed through the function, as ``transform`` says."""
    planes = _images(decoded)
    if transform.resize is not None:
        assert transform.interpolation is not None
        planes = [resize(p, transform.resize, transform.interpolation) for p in planes]
    if transform.crop is not None:
        planes = [center_crop(p, transform.crop) for p in planes]
    if transform.function is None:
        arrays = [_as_hwc(np.asarray(p)) for p in planes]
        pixels = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=-1)
        return Decoded(pixels, decoded.channels, decoded.high_bit_depth)
    if len(planes) > 1:
        raise DecodeError(
            f"--transform {transform.function} takes one PIL image, and Pillow has no mode for "
            f"{decoded.channels} {decoded.dtype} samples"
        )
    return _returned(_call(transform, planes[0]), transform.function, decoded.high_bit_depth)


def resize(image: Image.Image, size: int, interpolation: str) -> Image.Image:
    """torchvision's ``Resize(size, interpolation)`` of a PIL image."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_width, new_height) == (width, height):
        return image
    return image.resize((new_width, new_height), FILTERS[interpolation])


def center_crop(image: Image.Image, crop: tuple[int, int]) -> Image.Image:
    """torchvision's ``CenterCrop((height, width))`` of a PIL image (zero padding when the
    crop is larger)."""
    crop_height, crop_width = crop
    width, height = image.size
    if crop_width > width or crop_height > height:
        left = (crop_width - width) // 2 if crop_width > width else 0
        top = (crop_height - height) // 2 if crop_height > height else 0
        right = (crop_width - width + 1) // 2 if crop_width > width else 0
        bottom = (crop_height - height + 1) // 2 if crop_height > height else 0
        padded = Image.new(image.mode, (width + left + right, height + top + bottom), 0)
        padded.paste(image, (left, top))
        image, (width, height) = padded, padded.size
        if (crop_width, crop_height) == (width, height):
            return image
    top = round((height - crop_height) / 2.0)  # torchvision's int(round(...)): half to even
    left = round((width - crop_width) / 2.0)
    return image.crop((left, top, left + crop_width, top + crop_height))


def _images(decoded: Decoded) -> list[Image.Image]:
    """The PIL image the mode's conversion gave (8-bit samples), or one a channel."""
    pixels = decoded.pixels
    if pixels.dtype == np.uint8 and pixels.shape[2] <= 4:
        return [Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)]
    return [Image.fromarray(np.ascontiguousarray(pixels[:, :, c])) for c in
            range(pixels.shape[2])]


def _as_hwc(pixels: np.ndarray) -> np.ndarray:
    return pixels[:, :, np.newaxis] if pixels.ndim == 2 else pixels


def _call(transform: Transform, image: Image.Image) -> Any:
    name = transform.function
    assert name is not None
    try:
        function = load_function(name, transform.function_sha256)
    except UsageError as exc:  # on a worker: every file says why
        raise DecodeError(str(exc)) from None
    try:
        return function(image)
    except Exception as exc:  # the user's code: one skipped file with the reason
        raise DecodeError(f"--transform {name} failed: {type(exc).__name__}: {exc}") from exc


def _returned(value: Any, name: str, high_bit_depth: bool) -> Decoded:
    """What the user's function returned, as counted pixels; :class:`DecodeError` if it is
    not an image of integer samples."""
    if isinstance(value, Image.Image):
        if value.mode not in _RETURNED_MODES:
            raise DecodeError(f"--transform {name} returned a PIL image of mode {value.mode}; "
                              f"return one of {', '.join(_RETURNED_MODES)}")
        pixels = _as_hwc(np.asarray(value))
        channels = _RETURNED_MODES[value.mode]
    elif isinstance(value, np.ndarray):
        if value.dtype.kind != "u" or value.dtype.itemsize not in (1, 2):
            raise DecodeError(f"--transform {name} returned {value.dtype} samples; return "
                              "uint8 or uint16")
        pixels = _as_hwc(value.astype(value.dtype.newbyteorder("="), copy=False))
        if pixels.ndim != 3 or pixels.shape[2] not in _ARRAY_CHANNELS:
            raise DecodeError(f"--transform {name} returned an array shaped {value.shape}; "
                              "return (H, W) or (H, W, C) with 1 to 4 channels")
        channels = _ARRAY_CHANNELS[pixels.shape[2]]
    else:
        raise DecodeError(f"--transform {name} returned {type(value).__name__}, not a PIL "
                          "image or an array")
    if not pixels.size:
        raise DecodeError(f"--transform {name} returned an empty image")
    return Decoded(pixels, channels, high_bit_depth)


def load_function(name: str, sha256: str | None = None) -> Callable[[Image.Image], Any]:
    """The callable ``MODULE:NAME`` (the current folder is searched too, as uvicorn does),
    imported once per process; with ``sha256``, its module's source must have that digest (a
    module imported from older source is imported again). :class:`UsageError` if it cannot be
    imported, is not callable or is other code."""
    with _lock:
        known = _loaded.get(name)
        if known is None or (sha256 is not None and known[1] != sha256):
            known = _loaded[name] = _load(name)
    function, digest = known
    if sha256 is not None and digest != sha256:
        raise UsageError(
            f"--transform {name}: its module's source here (sha256 {str(digest)[:12]}...) is "
            f"not the client's ({sha256[:12]}...): every worker needs the same code"
        )
    return function


_loaded: dict[str, tuple[Callable[[Image.Image], Any], str | None]] = {}
_lock = threading.Lock()


def _load(name: str) -> tuple[Callable[[Image.Image], Any], str | None]:
    """Import (or import again: a module imported before may be older code) and digest."""
    module_name, _, attribute = name.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        known = sys.modules.get(module_name)
        module = importlib.reload(known) if known else importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(
            f"--transform {name}: cannot import {module_name} ({type(exc).__name__}: {exc})"
        ) from exc
    digest = source_sha256(module)
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(f"--transform {name}: module {module_name} has no {attribute}")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"--transform {name} is not callable")
    return target, digest


def source_sha256(module: ModuleType) -> str | None:
    """The SHA-256 of a module's source file (None: it has none, a built-in module)."""
    origin = getattr(module, "__file__", None)
    if origin is None or not os.path.isfile(origin):
        return None
    with open(origin, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()


def pin_function(config: JobConfig) -> JobConfig:
    """``config`` with its ``--transform`` function's source digest pinned (imported here
    first: :class:`UsageError` now, not a skipped file per image, when it cannot be)."""
    if config.transform is None:
        return config
    with _lock:
        _, digest = _loaded[config.transform] = _load(config.transform)
    if digest is None:
        raise UsageError(f"--transform {config.transform}: its module has no source file to "
                         "pin (a built-in or compiled module)")
    return dataclasses.replace(config, transform_sha256=digest)
