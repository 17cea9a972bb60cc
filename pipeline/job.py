"""One ``compute`` run, end to end: config -> listing -> scan on Dask -> stats file in the store."""

from __future__ import annotations

import datetime
import logging
import platform
import time
from dataclasses import dataclass
from typing import Any

import dask
import distributed

from . import __version__
from .config import JobConfig
from .decode import CONVERSIONS, decoder_versions
from .errors import InputError, LayoutError, SourceUnreachableError, TooManyErrorsError
from .graph import dask_client, run_scan
from .listing import list_images, make_shards
from .location import resolve, storage_errors
from .scan import ScanResult
from .stats import Stats, build_document, dumps
from .store import open_store, version_name

__all__ = ["ComputeResult", "compute_stats"]

log = logging.getLogger(__name__)

#: Shards per worker thread at least, so large images still spread over every worker.
SHARDS_PER_THREAD = 4


@dataclass(frozen=True)
class ComputeResult:
    """What a run did: the stats it wrote (or found unchanged) and where."""

    stats: Stats
    url: str
    written: bool


def compute_stats(config: JobConfig, show_progress: bool = False) -> ComputeResult:
    """Compute the exact per-channel statistics of ``config.source`` and store a new version."""
    started = time.perf_counter()
    source = resolve(config.source, config.source_options)
    store = open_store(resolve(config.out, config.store_options), config.unsafe_store)
    with storage_errors(source, "list source", SourceUnreachableError):
        entries = list_images(
            source.filesystem(), source.path, config.include, config.exclude, url=source.url
        )
    store.check_writable()
    parent = max(store.versions(), default=None)
    log.info("listed %d image files (%d bytes) under %s", len(entries), _total(entries), source.url)
    with dask_client(
        config.scheduler_address,
        config.workers,
        config.threads_per_worker,
        processes=not source.is_process_local,
    ) as client:
        threads = sum(client.nthreads().values()) or 1
        shards = make_shards(
            entries, config.shard_bytes, config.shard_files, min_shards=threads * SHARDS_PER_THREAD
        )
        log.info("decoding in %d shards on %d worker threads", len(shards), threads)
        result = run_scan(
            client,
            source,
            shards,
            config.mode,
            split_every=config.split_every,
            max_image_pixels=config.max_image_pixels,
            show_progress=show_progress,
        )
    _check_errors(result, config, len(entries))
    layout_key, moments = _single_layout(result)
    if result.high_bit_depth and config.mode != "native":
        log.warning(
            "%d images store more than 8 bits per sample; %s mode follows Pillow's conversion, "
            "which clips them: use --mode native to count every bit",
            result.high_bit_depth,
            config.mode,
        )
    layout, dtype = layout_key.split(" ")
    seconds = time.perf_counter() - started

    def build(version: int, parent: int | None) -> bytes:
        return dumps(
            build_document(
                version=version,
                parent=parent,
                created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                source=source.url,
                mode=config.mode,
                layout=layout,
                dtype=dtype,
                moments=moments,
                image_count=result.images[layout_key],
                skipped=[{"path": s.path, "error": s.error} for s in sorted(result.skipped)],
                files={
                    "count": result.files.count,
                    "bytes": result.files.nbytes,
                    "fingerprint": result.files.fingerprint,
                },
                run={
                    "files_read": len(entries),
                    "files_reused": 0,
                    "files_removed": 0,
                    "bytes_read": result.bytes_read,
                    "shards": len(shards),
                    "worker_threads": threads,
                    "seconds": round(seconds, 3),
                    "task_seconds": round(result.seconds, 3),
                },
                provenance=_provenance(config, result),
                tool_version=__version__,
            )
        )

    version = store.write(build, parent)
    url = store.url_of(version_name(version))
    log.info("wrote %s", url)
    return ComputeResult(store.load(version), url, True)


def _total(entries: list[Any]) -> int:
    return sum(e.size for e in entries)


def _check_errors(result: ScanResult, config: JobConfig, listed: int) -> None:
    skipped = sorted(result.skipped)
    if skipped and config.on_error == "fail":
        first = skipped[0]
        raise TooManyErrorsError(
            f"{len(skipped)} files could not be read (first: {first.path}: {first.error}); "
            "no version written (--on-error fail)"
        )
    if config.max_errors is not None and len(skipped) > config.max_errors:
        raise TooManyErrorsError(
            f"{len(skipped)} files could not be read, more than --max-errors "
            f"{config.max_errors}; no version written"
        )
    for skip in skipped:
        log.warning("skipped %s: %s", skip.path, skip.error)
    if not result.moments:
        raise InputError(f"none of the {listed} image files could be decoded")


def _single_layout(result: ScanResult) -> tuple[str, Any]:
    if len(result.moments) > 1:
        counts = ", ".join(f"{key}: {n}" for key, n in sorted(result.images.items()))
        raise LayoutError(
            f"native mode needs one channel layout and sample type per run, found {counts}"
        )
    [(key, moments)] = result.moments.items()
    return key, moments


def _provenance(config: JobConfig, result: ScanResult) -> dict[str, Any]:
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
        "python": platform.python_version(),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
    }

