"""One ``compute`` run, end to end: config -> listing -> scan on Dask -> stats file in the store.

When the store's latest version was built from the same source, mode and filters and has a
per-file record, only new and changed files are read (see :mod:`pipeline.incremental`).
"""

from __future__ import annotations

import datetime
import logging
import platform
import time
from dataclasses import dataclass
from typing import Any, Protocol

import dask
import distributed

from . import __version__, incremental
from .config import JobConfig
from .decode import CONVERSIONS, decoder_versions
from .errors import (
    InputError,
    LayoutError,
    ResultNotStoredError,
    SourceUnreachableError,
    StatsFileError,
    StoreError,
    TooManyErrorsError,
)
from .graph import dask_client, run_scan
from .listing import FileEntry, list_images, make_shards
from .location import Location, resolve, storage_errors
from .moments import Moments
from .record import FileRecord, record_name
from .retries import retry_count
from .scan import ScanResult, Skip
from .stats import Stats, build_document, dumps
from .store import StatsStore, open_store, version_name

__all__ = ["ComputeResult", "Progress", "compute_stats"]

log = logging.getLogger(__name__)

#: Shards per worker thread at least, so large images still spread over every worker.
SHARDS_PER_THREAD = 4
#: Skipped files named one by one in the run's warnings (the stats file lists them all).
SKIPS_LOGGED = 10
#: Keys that say when and how a version was made, not what it holds.
_RUN_KEYS = frozenset({"version", "parent", "created", "run", "record"})


@dataclass(frozen=True)
class ComputeResult:
    """What a run did: the stats it wrote (or found unchanged) and where they are."""

    stats: Stats
    url: str
    written: bool


class Progress(Protocol):
    """Where a run reports how far it got (the CLI draws a progress bar from it)."""

    def begin(self, files: int) -> None:
        """``files`` are to be read."""

    def advance(self, files: int) -> None:
        """``files`` more were read."""


@dataclass(frozen=True)
class _Previous:
    """The latest version and its record, when an incremental run can build on them."""

    stats: Stats
    record: FileRecord


def compute_stats(config: JobConfig, progress: Progress | None = None) -> ComputeResult:
    """Compute the exact per-channel statistics of ``config.source`` and store a new version.

    Reads only new and changed files when the latest version allows it (unless
    ``config.full``); writes nothing when the result equals the latest version. A run that
    fails leaves no store folder that it created.
    """
    store = open_store(resolve(config.out, config.store_options), config.unsafe_store)
    try:
        return _compute(config, store, progress)
    except BaseException:
        store.remove_created_folders()
        raise


def _compute(config: JobConfig, store: StatsStore, progress: Progress | None) -> ComputeResult:
    started = time.perf_counter()
    source = resolve(config.source, config.source_options)
    with storage_errors(source, "list source", SourceUnreachableError):
        source_fs = source.filesystem()
        client_retries = {retry_count(source_fs)}  # one count per client: a set adds each once
        unlisted: list[Skip] = []
        entries = list_images(
            source_fs,
            source.path,
            config.include,
            config.exclude,
            url=source.url,
            on_unlisted=lambda folder, reason: unlisted.append(Skip(folder, reason)),
        )
    log.info("listed %d image files (%d bytes) under %s", len(entries), _bytes(entries), source.url)
    client_retries.add(retry_count(store.fs))
    store.check_writable()
    parent = max(store.versions(), default=None)
    previous = None if config.full or parent is None else _previous(store, parent, source, config)
    if previous is None:
        planned = incremental.Plan(entries, [], [], 0)
        carried = ScanResult()
    else:
        planned = incremental.plan(entries, previous.record.entries())
        carried = incremental.carry_over(previous.stats.document, previous.record, planned)
        log.info(
            "incremental run on version %d: %d files to read, %d unchanged, %d removed",
            parent,
            len(planned.to_read),
            len(planned.reused),
            planned.removed,
        )
    scanned, shards, threads = _scan(planned.to_read, source, config, progress)
    result = carried.merge(scanned).merge(ScanResult(skipped=tuple(unlisted)))
    _check_errors(result, config, len(entries), store.url)
    layout_key, moments = _single_layout(result)
    if result.high_bit_depth and config.mode != "native":
        log.warning(
            "%d images store more than 8 bits per sample; %s mode follows Pillow's conversion, "
            "which clips them: use --mode native to count every bit",
            result.high_bit_depth,
            config.mode,
        )
    keeps_record = isinstance(moments, Moments)
    run = {
        "files_read": len(planned.to_read),
        "files_reused": len(planned.reused),
        "files_removed": planned.removed,
        "incremental": previous is not None,
        "bytes_read": scanned.bytes_read,
        "shards": shards,
        "worker_threads": threads,
        "task_seconds": round(scanned.seconds, 3),
    }

    def retries() -> dict[str, int]:
        requests = scanned.retries + sum(count.value for count in client_retries)
        return {"storage_requests": requests, "tasks": scanned.task_retries}

    def build(version: int | None, parent: int | None) -> dict[str, Any]:
        layout, dtype = layout_key.split(" ")
        return build_document(
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
                **run,
                "retries": retries(),
                "seconds": round(time.perf_counter() - started, 3),
            },
            provenance=_provenance(config, result),
            tool_version=__version__,
            record=record_name(version) if keeps_record and version is not None else None,
        )

    if previous is not None and _same_content(build(0, None), previous.stats.document):
        url = store.url_of(version_name(previous.stats.version))
        log.info("nothing changed since version %d: no new version written", parent)
        return ComputeResult(previous.stats, url, written=False)

    written: dict[str, Any] = {}

    def serialise(number: int, parent: int | None) -> bytes:
        written.update(build(number, parent))  # the last call is the version that was created
        return dumps(written)

    try:
        version = store.write(serialise, parent)
    except StoreError as exc:
        raise ResultNotStoredError(
            f"{exc} (the computed statistics are printed on stdout)", build(None, parent)
        ) from exc
    url = store.url_of(version_name(version))
    _report_retries(retries())
    if keeps_record:
        kept = [previous.record.take(planned.reused)] if previous else []
        record = FileRecord.concat([*kept, FileRecord.from_blocks(scanned.rows)])
        try:
            store.write_file(record_name(version), record.to_bytes())
        except StoreError as exc:  # the stats are stored; only the next run's shortcut is lost
            log.warning("%s; the next run will read every file", exc)
    log.info("wrote %s", url)
    return ComputeResult(Stats.from_document(written), url, written=True)


def _scan(
    files: list[FileEntry], source: Location, config: JobConfig, progress: Progress | None
) -> tuple[ScanResult, int, int]:
    """Decode ``files`` on the cluster: the merged result, the number of shards and threads."""
    if not files:
        return ScanResult(), 0, 0
    decode_timeout = config.decode_timeout
    if source.is_process_local and decode_timeout:
        log.info("%s lives in this process: decoding without a sandbox or time limit", source.url)
        decode_timeout = 0
    with dask_client(
        config.scheduler_address,
        config.workers,
        config.threads_per_worker,
        processes=not source.is_process_local,
        timeout=config.scheduler_timeout,
    ) as client:
        threads = sum(client.nthreads().values()) or 1
        shards = make_shards(
            files, config.shard_bytes, config.shard_files, min_shards=threads * SHARDS_PER_THREAD
        )
        log.info("decoding %d files in %d shards on %d worker threads", len(files), len(shards),
                 threads)
        if progress is not None:
            progress.begin(len(files))
        result = run_scan(
            client,
            source,
            shards,
            config.mode,
            split_every=config.split_every,
            max_image_pixels=config.max_image_pixels,
            decode_timeout=decode_timeout,
            keep_rows=True,
            on_files_done=progress.advance if progress is not None else None,
        )
    return result, len(shards), threads


def _previous(
    store: StatsStore, version: int, source: Location, config: JobConfig
) -> _Previous | None:
    """The latest version and its record if this run can build on them, else None."""
    try:
        stats = store.load(version)
    except StatsFileError as exc:
        log.warning("full run: version %d cannot be read (%s)", version, exc)
        return None
    doc = stats.document
    provenance = doc.get("provenance") or {}
    same = (
        doc.get("source") == source.url
        and doc.get("mode") == config.mode
        and provenance.get("include") == list(config.include)
        and provenance.get("exclude") == list(config.exclude)
        and provenance.get("max_image_pixels") == config.max_image_pixels
    )
    if not same:
        log.info("full run: version %d was built from another source, mode or filters", version)
        return None
    name = doc.get("record")
    if not isinstance(name, str):
        log.info("full run: version %d has no per-file record", version)
        return None
    try:
        record = FileRecord.from_bytes(store.read_bytes(name), store.url_of(name))
    except (FileNotFoundError, StatsFileError) as exc:
        log.warning("full run: the record of version %d cannot be read (%s)", version, exc)
        return None
    if len(record) != doc["files"]["count"]:
        log.warning("full run: the record of version %d does not match its stats", version)
        return None
    return _Previous(stats, record)


def _same_content(new: dict[str, Any], old: Any) -> bool:
    def content(doc: Any) -> dict[str, Any]:
        return {k: v for k, v in dict(doc).items() if k not in _RUN_KEYS}

    return content(new) == content(old)


def _report_retries(retries: dict[str, int]) -> None:
    """One warning line when storage requests or tasks had to be retried."""
    if any(retries.values()):
        log.warning(
            "the run needed retries: %d storage requests, %d tasks (transient faults)",
            retries["storage_requests"],
            retries["tasks"],
        )


def _bytes(entries: list[FileEntry]) -> int:
    return sum(e.size for e in entries)


def _check_errors(result: ScanResult, config: JobConfig, listed: int, store: str) -> None:
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
    if not result.moments:
        first = f" (first: {skipped[0].path!r}: {skipped[0].error})" if skipped else ""
        raise InputError(f"none of the {listed} image files could be decoded{first}")
    for skip in skipped[:SKIPS_LOGGED]:
        log.warning("skipped %r: %s", skip.path, skip.error)
    if len(skipped) > SKIPS_LOGGED:
        log.warning("skipped %d more files (`imgstats show %s --skipped` lists them all)",
                    len(skipped) - SKIPS_LOGGED, store)


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
        "decode_timeout": config.decode_timeout,
        "python": platform.python_version(),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
    }
