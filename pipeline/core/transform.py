"""The transform spec: what is done to each image after the mode's conversion, before it is
counted (a plain value: it travels to every task and decode sandbox).

torchvision's ``Resize(resize, interpolation)``, then ``CenterCrop(crop)``, then a
deterministic function of the user's (``MODULE:NAME``), each optional. Applying it is the
decode layer's job (:mod:`pipeline.decode.transform`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_INTERPOLATION", "INTERPOLATIONS", "Transform", "record_of"]

#: torchvision's interpolation modes for PIL images, as Pillow's resampling filters.
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "lanczos", "box", "hamming")
#: torchvision's default for ``Resize``.
DEFAULT_INTERPOLATION = "bilinear"

_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class Transform:
    """Resize the shorter side to ``resize``, center-crop to ``crop`` (height, width), then
    call ``function``; ``interpolation`` is None when there is no resize (it means nothing
    then). ``function_sha256`` pins the function's module source: every task checks that the
    code it runs is the code the client saw."""

    resize: int | None = None
    crop: tuple[int, int] | None = None
    interpolation: str | None = None
    function: str | None = None  # MODULE:NAME
    function_sha256: str | None = None  # of the module's source file

    @classmethod
    def parse(
        cls,
        resize: int | None = None,
        center_crop: str | int | None = None,
        interpolation: str = DEFAULT_INTERPOLATION,
        function: str | None = None,
        function_sha256: str | None = None,
    ) -> Transform | None:
        """The spec of the ``--resize``, ``--center-crop``, ``--interpolation`` and
        ``--transform`` options (None: no transform); :class:`ValueError` saying why not."""
        if resize is not None and (isinstance(resize, bool) or resize < 1):
            raise ValueError(f"resize must be a positive number of pixels, not {resize}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, not {interpolation!r}"
            )
        if function is not None and not _FUNCTION.match(function):
            raise ValueError(f"transform must be MODULE:NAME (a dotted module path and a "
                             f"callable in it), not {function!r}")
        crop = None if center_crop is None else _crop_size(center_crop)
        if resize is None and crop is None and function is None:
            return None
        return cls(
            resize,
            crop,
            interpolation if resize is not None else None,
            function,
            function_sha256 if function is not None else None,
        )

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Transform:
        """The spec a stats file's ``transform`` key records (:meth:`record`'s inverse)."""
        crop = record.get("center_crop")
        return cls(
            record.get("resize"),
            (int(crop[0]), int(crop[1])) if isinstance(crop, list) and len(crop) == 2 else None,
            record.get("interpolation"),
            record.get("function"),
            record.get("function_sha256"),
        )

    def record(self) -> dict[str, Any]:
        """The stats file's ``transform`` key (JSON values)."""
        return {
            "resize": self.resize,
            "center_crop": list(self.crop) if self.crop is not None else None,
            "interpolation": self.interpolation,
            "function": self.function,
            "function_sha256": self.function_sha256,
        }

    def describe(self) -> str:
        """As torchvision code reads: ``Resize(256, interpolation=bilinear), CenterCrop((224,
        224)), module:name``."""
        steps = []
        if self.resize is not None:
            steps.append(f"Resize({self.resize}, interpolation={self.interpolation})")
        if self.crop is not None:
            steps.append(f"CenterCrop(({self.crop[0]}, {self.crop[1]}))")
        if self.function is not None:
            steps.append(self.function)
        return ", ".join(steps)


def record_of(transform: Transform | None) -> dict[str, Any] | None:
    """The stats file's ``transform`` key: the spec's record, or None (no transform)."""
    return transform.record() if transform is not None else None


def _crop_size(value: str | int) -> tuple[int, int]:
    """``224`` or ``"224"`` -> (224, 224); ``"224x200"`` -> (224, 200): (height, width)."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError(f"center crop must be N or HxW, not {value!r}")
    match = re.fullmatch(r"(\d+)(?:[xX](\d+))?", text)
    if match is None:
        raise ValueError(f"center crop must be N or HxW (pixels), not {value!r}")
    height = int(match.group(1))
    width = int(match.group(2)) if match.group(2) is not None else height
    if height < 1 or width < 1:
        raise ValueError(f"center crop must be at least 1x1, not {value!r}")
    return height, width
