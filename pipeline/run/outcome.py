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
from ..core.keys import ResultKey
from ..core.moments import AnyMoments
from ..core.result import ScanResult
from ..decode import CONVERSIONS, decoder_versions
from ..errors import InputError, LayoutError, TooManyErrorsError
from ..store.document import build_document
from ..store.names import record_name

__all__ = ["Outcome", "check"]

log = logging.getLogger(__name__)

#: Skipped files named one by one in the run's warnings (the stats file lists them all).
SKIPS_LOGGED = 10


def check(result: ScanResult, config: JobConfig, listed: int, store: str) -> ResultKey:
    """The one key of a result that may become a version; the errors that stop the run
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
    if len(result.summaries) > 1:
        counts = ", ".join(f"{key.layout}: {n}" for key, n in sorted(result.images.items()))
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
    [key] = result.summaries
    return key


@dataclass(frozen=True)
class Outcome:
    """A checked result and what the run did to get it: all a stats document is made of."""

    config: JobConfig
    source: str  # the source's URL
    key: ResultKey
    result: ScanResult
    run: dict[str, Any]  # files read and reused, shards, retries...

    @property
    def summary(self) -> AnyMoments:
        return self.result.summaries[self.key]

    @property
    def keeps_record(self) -> bool:
        """Whether the run keeps a per-file record (integer samples: exact totals)."""
        return self.key.layout.is_integer

    def document(self, version: int | None, parent: int | None, seconds: float) -> dict[str, Any]:
        """The stats file of this outcome as version ``version`` (None: not stored)."""
        result = self.result
        return build_document(
            version=version,
            parent=parent,
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            source=self.source,
            mode=self.config.mode,
            layout=self.key.layout,
            moments=self.summary,
            image_count=result.images[self.key],
            skipped=[{"path": s.path, "error": s.error} for s in sorted(result.skipped)],
            files={
                "count": result.files.count,
                "bytes": result.files.nbytes,
                "fingerprint": result.files.fingerprint,
            },
            run={**self.run, "seconds": round(seconds, 3)},
            provenance=provenance(self.config, result),
            tool_version=__version__,
            record=record_name(version) if self.keeps_record and version is not None else None,
        )


def provenance(config: JobConfig, result: ScanResult) -> dict[str, Any]:
    """What anyone needs to reproduce the numbers."""
    return {
        "decoders": decoder_versions(),
        "conversion": CONVERSIONS[config.mode],
        "ddof": 0,
        "exact": "integer sums and sums of squares; mean and std are the float64 nearest to "
        "the exact values (float samples: pairwise float64 merge, not bit-exact)",
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
