"""What a run found, checked and turned into a stats document.

:func:`check` decides whether the merged result may become a version (the ``--on-error`` and
``--max-errors`` rules, at least one image, one layout); :class:`Outcome` builds the document
for any version number it is finally written under.
"""

from __future__ import annotations

import datetime
import logging
import platform
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any

from .._version import __version__
from ..config import JobConfig
from ..core.files import FileSet
from ..core.keys import Layout
from ..core.result import ScanResult, merge_summaries
from ..core.transform import record_of
from ..decode import CONVERSIONS, decoder_versions
from ..errors import InputError, LayoutError, TooManyErrorsError
from ..store.document import Part, build_document

__all__ = ["Outcome", "check"]

log = logging.getLogger(__name__)

#: Skipped files named one by one in the run's warnings (the stats file lists them all).
SKIPS_LOGGED = 10


def check(result: ScanResult, config: JobConfig, listed: int, store: str) -> Layout:
    """The one layout of a result that may become a version; the errors that stop the run
    otherwise. Warns about the files skipped."""
    skipped = sorted(result.skipped)
    if skipped and config.on_error == "fail":
        first = skipped[0]
        raise TooManyErrorsError(
            f"{len(skipped)} files could not be read (first: {first.path!r}: {first.error}); "
            "no version written (--on-error fail)"
        )
    if config.max_errors is not None and len(skipped) > config.max_errors:
        raise TooManyErrorsError(
            f"{len(skipped)} files could not be read, more than --max-errors "
            f"{config.max_errors}; no version written"
        )
    if not result.summaries:
        example = f" (first: {skipped[0].path!r}: {skipped[0].error})" if skipped else ""
        raise InputError(f"none of the {listed} image files could be decoded{example}")
    for skip in skipped[:SKIPS_LOGGED]:
        log.warning("skipped %r: %s", skip.path, skip.error)
    if len(skipped) > SKIPS_LOGGED:
        log.warning("skipped %d more files (`imgstats show %r --skipped` lists them all)",
                    len(skipped) - SKIPS_LOGGED, store)
    layouts = {key.layout for key in result.summaries}
    if len(layouts) > 1:
        per_layout: dict[Layout, int] = {}
        for key, n in result.images.items():
            per_layout[key.layout] = per_layout.get(key.layout, 0) + n
        counts = ", ".join(f"{layout}: {n}" for layout, n in sorted(per_layout.items()))
        raise LayoutError(
            f"native mode needs one channel layout and sample type per run, found {counts}"
        )
    if result.high_bit_depth and config.mode != "native":
        log.warning(
            "%d images store more than 8 bits per sample; %s mode follows Pillow's conversion, "
            "which clips them: use --mode native to count every bit",
            result.high_bit_depth,
            config.mode,
        )
    [layout] = layouts
    return layout


@dataclass(frozen=True)
class Outcome:
    """A checked result and what the run did to get it: all a stats document is made of."""

    config: JobConfig
    source: str  # the source's URL
    layout: Layout
    result: ScanResult
    run: dict[str, Any]  # files read and reused, shards, retries...
    record: str | None = None  # the per-file record's manifest

    @property
    def parts(self) -> dict[str, Part]:
        """What each group holds (a run without groups has the one group ``""``)."""
        result = self.result
        return {
            key.group: Part(summary, result.images[key], result.files.get(key.group, FileSet()))
            for key, summary in sorted(result.summaries.items())
        }

    @property
    def total(self) -> Part:
        parts = list(self.parts.values())
        summary = parts[0].summary
        for part in parts[1:]:
            summary = merge_summaries(summary, part.summary)
        return Part(summary, sum(p.images for p in parts), self.result.all_files)

    @property
    def keeps_record(self) -> bool:
        """Whether the run keeps a per-file record (integer samples: exact totals)."""
        return self.layout.is_integer

    def document(self, version: int | None, parent: int | None, seconds: float) -> dict[str, Any]:
        """The stats file of this outcome as version ``version`` (None: not stored)."""
        result = self.result
        grouped = self.config.group_by is not None
        return build_document(
            version=version,
            parent=parent,
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            source=self.source,
            mode=self.config.mode,
            layout=self.layout,
            total=self.total,
            skipped=[{"path": s.path, "error": s.error} for s in sorted(result.skipped)],
            run={**self.run, "seconds": round(seconds, 3)},
            provenance=provenance(self.config, self.layout, result),
            tool_version=__version__,
            groups=self.parts if grouped else None,
            group_by=self.config.group_by,
            record=self.record if version is not None else None,
            transform=record_of(self.config.transform_spec),
        )


def provenance(config: JobConfig, layout: Layout, result: ScanResult) -> dict[str, Any]:
    """What anyone needs to reproduce the numbers."""
    return {
        "decoders": decoder_versions(),
        "conversion": CONVERSIONS[config.mode],
        "transform": _transform_provenance(config),
        "ddof": 0,
        "exact": "integer histograms of every sample value, and from them integer sums and "
        "sums of squares; mean, std and variance are the float64 nearest to the exact values "
        "(float samples: pairwise float64 merge, not bit-exact)",
        "histogram": (
            "exact counts of every sample value per channel"
            if layout.is_integer
            else "none: float samples keep moments only"
        ),
        "quantiles": "numpy's inverted_cdf: the smallest sample value v with "
        "count(samples <= v) >= q * n",
        "group_by": config.group_by,
        "include": list(config.include),
        "exclude": list(config.exclude),
        "high_bit_depth_images": result.high_bit_depth,
        "max_image_pixels": config.max_image_pixels,
        "max_file_bytes": config.max_file_bytes,
        "decode_timeout": config.decode_timeout,
        "python": platform.python_version(),
        "dask": package_version("dask"),
        "distributed": package_version("distributed"),
    }


def _transform_provenance(config: JobConfig) -> str | None:
    """How the pixels were transformed after the conversion, as torchvision code reads."""
    transform = config.transform_spec
    if transform is None:
        return None
    return (
        f"{transform.describe()}: torchvision's rules on the PIL image of the conversion "
        "(Resize: shorter side to N, longer to int(N * long / short); CenterCrop: zero "
        "padding, top-left int(round((size - crop) / 2))), Pillow's resampling filters"
    )
