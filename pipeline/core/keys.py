"""Typed keys: pixel modes, channel layouts and the key each partial result is merged under."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MODES", "Layout", "Mode", "ResultKey"]

Mode = Literal["rgb", "gray", "native"]
MODES: tuple[Mode, ...] = ("rgb", "gray", "native")

_SCALES = {"uint8": 255, "uint16": 65535}


@dataclass(frozen=True, order=True)
class Layout:
    """What every image of one run must share: channel letters (``"RGB"``, ``"LA"``,
    ``"CMYK"``) and sample type (``"uint8"``, ``"uint16"``, ``"float32"``...)."""

    channels: str
    dtype: str

    @property
    def channel_names(self) -> list[str]:
        """``"RGBA"`` -> ``["R", "G", "B", "A"]``: one letter a channel."""
        return list(self.channels)

    @property
    def scale(self) -> int:
        """The divisor that maps raw samples to [0, 1]: 255, 65535, or 1 for floats."""
        return _SCALES.get(self.dtype, 1)

    @property
    def is_integer(self) -> bool:
        return self.dtype in _SCALES

    def __str__(self) -> str:
        return f"{self.channels} {self.dtype}"

    @classmethod
    def parse(cls, text: str) -> Layout:
        """The inverse of ``str(layout)``: ``"RGB uint8"`` -> ``Layout("RGB", "uint8")``."""
        channels, _, dtype = text.partition(" ")
        if not channels or not dtype or " " in dtype:
            raise ValueError(f"not a layout: {text!r}")
        return cls(channels, dtype)


@dataclass(frozen=True, order=True)
class ResultKey:
    """What a partial result is merged under: the file's group (``""`` when the run has no
    groups) and its layout. Layouts are kept apart so that a mixed native run is reported
    with counts, never merged."""

    group: str
    layout: Layout
