"""Decoding: encoded bytes to the pixels a mode counts (the only layer that knows image
formats)."""

from .decoded import Decoded
from .image import decode, warm_up_decoders
from .provenance import CONVERSIONS, decoder_versions

__all__ = ["CONVERSIONS", "Decoded", "decode", "decoder_versions", "warm_up_decoders"]
