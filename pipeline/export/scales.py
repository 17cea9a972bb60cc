"""A set of images' normalization constants on a framework's scale, each the float64 nearest
to the exact value.

From the exact integer sums in the stats file: on the [0, 1] scale (torchvision, timm, HF,
albumentations, fastai) ``sum / (n * scale)``, ``sqrt(n * sum_sq - sum**2) / (n * scale)``;
on the raw scale (DALI, Keras) ``sum / n``, ``sqrt(n * sum_sq - sum**2) / n`` and the variance
``(n * sum_sq - sum**2) / n**2``, each rounded once (not ``mean * 255`` or ``std**2``). Float
samples have scale 1 and float moments only: both scales are their stored values.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..store.document import GroupStats

__all__ = ["Normalization", "raw_scale", "unit_scale"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean, population std (ddof 0) and variance on one scale."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    variance: tuple[float, ...]


def unit_scale(part: GroupStats) -> Normalization:
    """On the [0, 1] scale: raw samples divided by the stats file's ``scale``."""
    return _on(part, part.scale)


def raw_scale(part: GroupStats) -> Normalization:
    """On the raw scale of the samples (0-255 for 8-bit, 0-65535 for 16-bit)."""
    return _on(part, 1)


def _on(part: GroupStats, divisor: float) -> Normalization:
    moments = part.exact_moments()
    if moments is None:  # float samples: scale 1, float moments as stored
        return Normalization(part.mean, part.std, part.variance)
    final = moments.finalize(divisor)
    return Normalization(final.mean, final.std, final.variance)
