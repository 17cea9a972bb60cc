"""The report's plots, drawn with matplotlib (the ``report`` extra) as PNG bytes.

Figures are made with matplotlib's object API (``Figure``, no pyplot): no global state, no
GUI backend, safe in any thread.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["groups_png", "histogram_png", "versions_png"]

#: Each channel letter's colour.
COLOURS = {"R": "#d62728", "G": "#2ca02c", "B": "#1f77b4", "A": "#7f7f7f", "L": "#222222",
           "C": "#17becf", "M": "#e377c2", "Y": "#bcbd22", "K": "#222222"}
_DPI = 100


def _colour(channel: str) -> str:
    return COLOURS.get(channel, "#9467bd")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def histogram_png(counts: np.ndarray, channels: Sequence[str], log: bool) -> bytes:
    """Each channel's counts per sample value, on a linear or a log axis."""
    figure = Figure(figsize=(9, 3.4), layout="constrained")
    axes = figure.subplots()
    values = np.arange(counts.shape[1])
    for row, channel in zip(counts, channels, strict=True):
        shown = np.where(row > 0, row, np.nan) if log else row
        axes.step(values, shown, where="mid", color=_colour(channel), linewidth=1.0,
                  label=channel, alpha=0.9)
    if log:
        axes.set_yscale("log")
    axes.set_xlim(-0.5, counts.shape[1] - 0.5)
    axes.set_xlabel("sample value (raw)")
    axes.set_ylabel("samples" + (" (log scale)" if log else ""))
    axes.legend(loc="upper right", frameon=False, ncols=len(channels))
    axes.grid(alpha=0.25)
    return _png(figure)


def groups_png(names: Sequence[str], means: np.ndarray, stds: np.ndarray,
               channels: Sequence[str]) -> bytes:
    """Each group's mean per channel, with its std as an error bar ([0, 1] scale)."""
    figure = Figure(figsize=(9, 3.4), layout="constrained")
    axes = figure.subplots()
    spots = np.arange(len(names))
    width = 0.8 / len(channels)
    for c, channel in enumerate(channels):
        offsets = spots - 0.4 + width * (c + 0.5)
        axes.errorbar(offsets, means[:, c], yerr=stds[:, c], fmt="o", color=_colour(channel),
                      markersize=4, capsize=2, label=channel)
    axes.set_xticks(spots, list(names), rotation=45 if len(names) > 8 else 0, ha="right"
                    if len(names) > 8 else "center", fontsize=8)
    axes.set_ylabel("mean ± std, [0, 1]")
    figure.legend(loc="outside right upper", frameon=False)
    axes.grid(alpha=0.25, axis="y")
    return _png(figure)


def versions_png(versions: Sequence[int], means: np.ndarray, stds: np.ndarray,
                 channels: Sequence[str]) -> bytes:
    """Mean and std per channel across the store's versions ([0, 1] scale)."""
    figure = Figure(figsize=(9, 3.4), layout="constrained")
    left, right = figure.subplots(1, 2)
    for c, channel in enumerate(channels):
        left.plot(versions, means[:, c], "o-", color=_colour(channel), label=channel,
                  markersize=4)
        right.plot(versions, stds[:, c], "o-", color=_colour(channel), label=channel,
                   markersize=4)
    for axes, name in ((left, "mean"), (right, "std")):
        axes.set_xlabel("version")
        axes.set_ylabel(f"{name}, [0, 1]")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(alpha=0.25)
    left.legend(frameon=False, ncols=len(channels))
    return _png(figure)
