"""``show --format``: what each framework takes, on its own scale and convention, ready to
paste. Each number is the float64 nearest to the exact value on that scale
(:mod:`pipeline.export.scales`), printed as the shortest text that reads back as it."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from ..store.document import GroupStats, dumps
from .scales import raw_scale, unit_scale

__all__ = ["FORMATS", "export"]


def _list(values: Sequence[float]) -> str:
    return repr(list(values))


def _tuple(values: Sequence[float]) -> str:
    return repr(tuple(values))


def torchvision(part: GroupStats) -> str:
    """``transforms.Normalize`` on [0, 1] (after ``ToTensor``)."""
    unit = unit_scale(part)
    return f"transforms.Normalize(mean={_list(unit.mean)}, std={_list(unit.std)})"


def albumentations(part: GroupStats) -> str:
    """``A.Normalize``: mean and std on [0, 1], times ``max_pixel_value`` (the raw maximum)."""
    unit = unit_scale(part)
    return (f"A.Normalize(mean={_tuple(unit.mean)}, std={_tuple(unit.std)}, "
            f"max_pixel_value={float(part.scale)!r})")


def timm(part: GroupStats) -> str:
    """A ``pretrained_cfg`` overlay (``timm.create_model(..., pretrained_cfg_overlay=...)``)."""
    unit = unit_scale(part)
    return f"pretrained_cfg_overlay=dict(mean={_tuple(unit.mean)}, std={_tuple(unit.std)})"


def hf(part: GroupStats) -> str:
    """The ``image_mean`` and ``image_std`` keys of a ``preprocessor_config.json`` (after
    ``do_rescale``: [0, 1])."""
    unit = unit_scale(part)
    return json.dumps({"image_mean": list(unit.mean), "image_std": list(unit.std)}, indent=2)


def dali(part: GroupStats) -> str:
    """``fn.crop_mirror_normalize`` on the raw scale (0-255 for 8-bit samples)."""
    raw = raw_scale(part)
    return f"fn.crop_mirror_normalize(images, mean={_list(raw.mean)}, std={_list(raw.std)})"


def keras(part: GroupStats) -> str:
    """``layers.Normalization`` on the raw scale, with the exact variance."""
    raw = raw_scale(part)
    return f"layers.Normalization(mean={_list(raw.mean)}, variance={_list(raw.variance)})"


def fastai(part: GroupStats) -> str:
    """``Normalize.from_stats`` on [0, 1] (after ``IntToFloatTensor``)."""
    unit = unit_scale(part)
    return f"Normalize.from_stats({_list(unit.mean)}, {_list(unit.std)})"


def stats_file(part: GroupStats) -> str:
    """The stats file itself (one group's entry with ``--group``)."""
    return dumps(part.entry).decode().rstrip("\n")


#: ``show --format`` names and what they print.
FORMATS: dict[str, Callable[[GroupStats], str]] = {
    "torchvision": torchvision,
    "albumentations": albumentations,
    "timm": timm,
    "hf": hf,
    "dali": dali,
    "keras": keras,
    "fastai": fastai,
    "json": stats_file,
}


def export(part: GroupStats, format: str) -> str:
    """``part`` (a version, or one of its groups) in ``format``."""
    try:
        render = FORMATS[format]
    except KeyError:
        raise ValueError(f"unknown format {format!r}; one of {', '.join(FORMATS)}") from None
    return render(part)
