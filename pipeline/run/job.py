"""One ``compute`` run: list, plan, scan, check, publish.

When the store's latest version was built from the same source, mode and filters and has a
per-file record, only new and changed files are read (see :mod:`pipeline.run.incremental`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import JobConfig
from ..core.files import FileEntry, make_shards
from ..core.result import ScanResult, Skip
from ..errors import ResultNotStoredError, SourceUnreachableError, StatsFileError, StoreError
from ..fs.listing import list_images
from ..fs.location import Location, resolve, storage_errors
from ..fs.retries import RetryCount, retry_count
from ..store import StatsStore, open_store, writable_store
from ..store.document import Basis, Stats, dumps
from ..store.names import record_name, version_name
from ..store.record import FileRecord
from . import incremental
from .cluster import open_cluster
from .graph import run_scan
from .outcome import Outcome, check

__all__ = ["ComputeResult", "Progress", "compute_stats"]

log = logging.getLogger(__name__)

#: Shards per worker thread at least, so large images still spread over every worker.
SHARDS_PER_THREAD = 4
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
class Listing:
    """SOURCE's image files, the folders that could not be listed, the retry counts of the
    clients this run uses (one count per client: a set adds each once)."""

    entries: list[FileEntry]
    unlisted: tuple[Skip, ...]
    retries: frozenset[RetryCount]


@dataclass(frozen=True)
class Previous:
    """The latest version and its record, when this run can build on them."""

    stats: Stats
    basis: Basis
    record: FileRecord


@dataclass(frozen=True)
class Scanned:
    """What the cluster read, and how: the merged result, shards and worker threads."""

    result: ScanResult
    shards: int = 0
    threads: int = 0


def compute_stats(config: JobConfig, progress: Progress | None = None) -> ComputeResult:
    """Compute the exact per-channel statistics of ``config.source`` and store a new version.

    Reads only new and changed files when the latest version allows it (unless
    ``config.full``); writes nothing when the result equals the latest version. A run that
    fails leaves no store folder that it created.
    """
    started = time.perf_counter()
    source = resolve(config.source, config.source_options)
    listing = list_source(source, config)
    store = open_store(resolve(config.out, config.store_options))
    retries = {*listing.retries, retry_count(store.fs)}  # counted from the store's first request
    store = writable_store(store, config.unsafe_store)
    try:
        parent = max(store.versions(), default=None)  # the version this run starts from
        previous = None if config.full else find_previous(store, parent, source, config)
        planned = plan(listing, previous)
        scanned = scan(planned.to_read, source, config, progress)
        outcome = combine(config, source, store, listing, previous, planned, scanned, retries)
        return publish(store, outcome, parent, previous, planned, scanned, started)
    except BaseException:
        store.remove_created_folders()
        raise


def list_source(source: Location, config: JobConfig) -> Listing:
    """Step 1: every image file under SOURCE (exit 2 when there is none or it cannot be read)."""
    unlisted: list[Skip] = []
    with storage_errors(source, "list source", SourceUnreachableError):
        fs = source.filesystem()
        entries = list_images(
            fs,
            source.path,
            config.include,
            config.exclude,
            url=source.url,
            on_unlisted=lambda folder, reason: unlisted.append(Skip(folder, reason)),
        )
    log.info("listed %d image files (%d bytes) under %s", len(entries),
             sum(e.size for e in entries), source.url)
    return Listing(entries, tuple(unlisted), frozenset({retry_count(fs)}))


def find_previous(
    store: StatsStore, version: int | None, source: Location, config: JobConfig
) -> Previous | None:
    """Step 2a: the latest version and its record if this run can build on them; else None
    (a full run), with the reason logged."""
    if version is None:
        return None
    try:
        stats = store.load(version)
        basis = stats.basis()
    except StatsFileError as exc:
        log.warning("full run: version %d cannot be built on (%s)", version, exc)
        return None
    same = (
        basis.source == source.url
        and basis.mode == config.mode
        and basis.include == config.include
        and basis.exclude == config.exclude
        and basis.max_image_pixels == config.max_image_pixels
        and basis.group_by == config.group_by
    )
    if not same:
        log.info("full run: version %d was built from another source, mode, filters or "
                 "groups", version)
        return None
    if basis.record is None:
        log.info("full run: version %d has no per-file record", version)
        return None
    try:
        record = FileRecord.from_bytes(store.read_bytes(basis.record), store.url_of(basis.record))
    except (FileNotFoundError, StatsFileError) as exc:
        log.warning("full run: the record of version %d cannot be read (%s)", version, exc)
        return None
    if len(record) != sum(part.files.count for part in basis.parts.values()):
        log.warning("full run: the record of version %d does not match its stats", version)
        return None
    return Previous(stats, basis, record)


def plan(listing: Listing, previous: Previous | None) -> incremental.Plan:
    """Step 2b: the files to read, and the record rows to keep or take out."""
    if previous is None:
        return incremental.Plan.full(listing.entries)
    planned = incremental.plan(listing.entries, previous.record.entries())
    log.info(
        "incremental run on version %d: %d files to read, %d unchanged, %d removed",
        previous.stats.version,
        len(planned.to_read),
        len(planned.reused),
        planned.removed,
    )
    return planned


def scan(
    files: list[FileEntry], source: Location, config: JobConfig, progress: Progress | None
) -> Scanned:
    """Step 3: decode ``files`` on the cluster and merge what they hold."""
    if not files:
        return Scanned(ScanResult())
    options = config.scan_options
    if source.is_process_local and options.decode_timeout:
        log.info("%s lives in this process: decoding without a sandbox or time limit", source.url)
        options = dataclasses.replace(options, decode_timeout=0)
    with open_cluster(config, processes=not source.is_process_local) as cluster:
        shards = make_shards(files, config.shard_bytes, config.shard_files,
                             min_shards=cluster.threads * SHARDS_PER_THREAD)
        client = cluster.ready(len(shards))  # sized for the shards: no more jobs than needed
        threads = cluster.threads
        log.info("decoding %d files in %d shards on %d worker threads", len(files), len(shards),
                 threads)
        if progress is not None:
            progress.begin(len(files))
        result = run_scan(
            client,
            source,
            shards,
            options,
            config.split_every,
            on_files_done=progress.advance if progress is not None else None,
        )
    return Scanned(result, len(shards), threads)


def combine(
    config: JobConfig,
    source: Location,
    store: StatsStore,
    listing: Listing,
    previous: Previous | None,
    planned: incremental.Plan,
    scanned: Scanned,
    retries: set[RetryCount],
) -> Outcome:
    """Step 4: what was kept, what was read and what could not be listed, merged and checked."""
    carried = (
        incremental.carry_over(previous.basis, previous.record, planned, config.scan_options)
        if previous is not None
        else ScanResult()
    )
    result = carried.merge(scanned.result).merge(ScanResult(skipped=listing.unlisted))
    layout = check(result, config, len(listing.entries), store.url)
    requests = scanned.result.retries + sum(count.value for count in retries)
    run = {
        "files_read": len(planned.to_read),
        "files_reused": len(planned.reused),
        "files_removed": planned.removed,
        "incremental": previous is not None,
        "bytes_read": scanned.result.bytes_read,
        "shards": scanned.shards,
        "worker_threads": scanned.threads,
        "task_seconds": round(scanned.result.seconds, 3),
        "retries": {"storage_requests": requests, "tasks": scanned.result.task_retries},
    }
    return Outcome(config, source.url, layout, result, run)


def publish(
    store: StatsStore,
    outcome: Outcome,
    parent: int | None,
    previous: Previous | None,
    planned: incremental.Plan,
    scanned: Scanned,
    started: float,
) -> ComputeResult:
    """Step 5: write the version (none when nothing changed), then its per-file record."""

    def document(version: int | None, parent: int | None) -> dict[str, Any]:
        return outcome.document(version, parent, time.perf_counter() - started)

    if previous is not None and _same_content(document(0, None), previous.stats.document):
        url = store.url_of(version_name(previous.stats.version))
        log.info("nothing changed since version %d: no new version written",
                 previous.stats.version)
        return ComputeResult(previous.stats, url, written=False)

    written: dict[str, Any] = {}

    def serialise(number: int, parent: int | None) -> bytes:
        written.clear()
        written.update(document(number, parent))  # the last call is the version created
        return dumps(written)

    try:
        version = store.write(serialise, parent)
    except StoreError as exc:
        raise ResultNotStoredError(
            f"{exc} (the computed statistics are printed on stdout)", document(None, parent)
        ) from exc
    _report_retries(outcome.run["retries"])
    if outcome.keeps_record:
        kept = [previous.record.take(planned.reused)] if previous else []
        record = FileRecord.concat([*kept, FileRecord.from_blocks(scanned.result.rows)])
        try:
            store.write_file(record_name(version), record.to_bytes())
        except StoreError as exc:  # the stats are stored; only the next run's shortcut is lost
            log.warning("%s; the next run will read every file", exc)
    url = store.url_of(version_name(version))
    log.info("wrote %s", url)
    return ComputeResult(Stats.from_document(written), url, written=True)


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
