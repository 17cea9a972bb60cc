"""Decoding: encoded bytes to the pixels a mode counts (the only layer that knows image
formats)."""

from .decoded import Decoded
from .image import decode, warm_up_decoders
from .provenance import CONVERSIONS, decoder_versions
from .transform import apply as apply_transform
from .transform import pin_function

__all__ = [
    "CONVERSIONS",
    "Decoded",
    "apply_transform",
    "decode",
    "decoder_versions",
    "pin_function",
    "warm_up_decoders",
]
