"""One ``compute`` run: list, plan, scan, check, publish, streaming from end to end.

The listing is lined up against the previous version's record segments range by range
(:mod:`pipeline.run.plan`); the files to read are cut into shards as the plan goes
(:mod:`pipeline.run.work`) and scanned on the cluster, at most a window at once
(:mod:`pipeline.run.graph`); results are merged as they arrive and their rows become record
segments at once (:mod:`pipeline.run.recorder`). Nothing per file stays on the client.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import JobConfig
from ..core.files import FileEntry, FileSet
from ..core.groups import NO_GROUP
from ..core.keys import ResultKey
from ..core.result import ScanResult, Skip
from ..core.transform import record_of
from ..decode import CONVERSIONS, pin_function
from ..errors import ResultNotStoredError, SourceUnreachableError, StatsFileError, StoreError
from ..fs.listing import iter_images
from ..fs.location import Location, resolve, storage_errors
from ..fs.retries import RetryCount, retry_count
from ..store import StatsStore, open_store, writable_store
from ..store.document import Basis, Stats, dumps
from ..store.names import version_name
from ..store.record import MAX_RECORD_BYTES, FileRecord
from ..store.segments import Segment, read_manifest
from .capacity import check_local_cluster
from .cluster import open_cluster
from .early import EarlyCluster, early_cluster
from .graph import Retries, stream_scans
from .outcome import Outcome, check
from .plan import align
from .recorder import Recorder, RecordStats
from .sizing import JobShape, planned_threads
from .work import Limits, Pause, Work, shards

__all__ = ["ComputeResult", "Progress", "compute_stats"]

log = logging.getLogger(__name__)

#: Shards per worker thread at least, so large images still spread over every worker.
SHARDS_PER_THREAD = 4
#: Shards in flight per worker thread: enough to keep every thread busy while results travel.
WINDOW_PER_THREAD = 4
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
        """``files`` more are to be read (called as the plan finds them)."""

    def advance(self, files: int) -> None:
        """``files`` more were read."""


class Listing:
    """SOURCE's image files as the walk streams them (iterate once), counted as they pass;
    the folders that could not be listed (known once iterated); the retry counts of the
    clients this run uses (one count per client: a set adds each once)."""

    def __init__(
        self, entries: Iterator[FileEntry], skipped: list[Skip], retries: frozenset[RetryCount],
        url: str = "",
    ) -> None:
        self._entries = entries
        self._skipped = skipped
        self.retries = retries
        self.url = url
        self.count = 0
        self.nbytes = 0

    def __iter__(self) -> Iterator[FileEntry]:
        for entry in self._entries:
            self.count += 1
            self.nbytes += entry.size
            yield entry
        log.info("listed %d image files (%d bytes) under %r", self.count, self.nbytes, self.url)

    @property
    def unlisted(self) -> tuple[Skip, ...]:
        return tuple(self._skipped)


@dataclass(frozen=True)
class Previous:
    """The latest version and its record's manifest, when this run can build on them."""

    stats: Stats
    basis: Basis
    manifest: bytes


@dataclass(frozen=True)
class Scanned:
    """What the run read and how: the merged result and the work done."""

    result: ScanResult
    costs: RecordStats
    files_read: int = 0
    files_reused: int = 0
    files_removed: int = 0
    files_verified: int = 0
    shards: int = 0
    threads: int = 0


def compute_stats(config: JobConfig, progress: Progress | None = None) -> ComputeResult:
    """Compute the exact per-channel statistics of ``config.source`` and store a new version.

    Reads only new and changed files when the latest version allows it (unless
    ``config.full``); writes nothing when the result equals the latest version. A run that
    fails leaves no store folder that it created.
    """
    started = time.perf_counter()
    config = pin_function(config)  # the --transform function's source, checked by every task
    source = resolve(config.source, config.source_options)
    if config.scheduler_address is None:
        check_local_cluster(
            config.workers,
            config.threads_per_worker,
            sandboxed=bool(config.decode_timeout) and not source.is_process_local,
            processes=not source.is_process_local,
        )
    with early_cluster(config, source) as early:
        return _compute(config, source, early, progress, started)


def _compute(
    config: JobConfig,
    source: Location,
    early: EarlyCluster | None,
    progress: Progress | None,
    started: float,
) -> ComputeResult:
    """:func:`compute_stats` once the cluster is starting: list, plan, scan, publish."""
    listing = list_source(source, config)
    store = open_store(resolve(config.out, config.store_options))
    retries = {*listing.retries, retry_count(store.fs)}  # counted from the store's first request
    store = writable_store(store, config.unsafe_store)
    try:
        parent = max(store.versions(), default=None)  # the version this run starts from
        previous = None if config.full else find_previous(store, parent, source, config)
        recorder = Recorder(
            store,
            config.segment_files,
            config.scan_options.group_by or (lambda path: NO_GROUP),
            _totals(previous.basis) if previous else ScanResult(),
            previous.basis.layout if previous else None,
            verify=config.verify and previous is not None,
        )
        try:
            scanned = scan(listing, previous, source, store, config, recorder, progress, early)
            outcome = combine(config, source, store, listing, previous, scanned, retries)
            outcome = dataclasses.replace(outcome, record=keep_record(recorder, previous))
            done = publish(store, outcome, parent, previous, started)
            if recorder.failure is not None:  # the stats are stored; the next run's shortcut is not
                log.warning("%s; the version keeps no per-file record: the next run reads "
                            "every file", recorder.failure)
            return done
        except BaseException:
            recorder.abandon()
            raise
    except BaseException:
        store.remove_created_folders()
        raise


def list_source(source: Location, config: JobConfig) -> Listing:
    """Step 1: SOURCE's image files as a stream in path order; the first is listed now, so
    that a source with none, or that cannot be read, fails here (exit 2)."""
    skipped: list[Skip] = []
    with storage_errors(source, "list source", SourceUnreachableError):
        fs = source.filesystem()

    def walk() -> Iterator[FileEntry]:
        with storage_errors(source, "list source", SourceUnreachableError):
            yield from iter_images(
                fs,
                source.path,
                config.include,
                config.exclude,
                url=source.url,
                on_unlisted=lambda folder, reason: skipped.append(Skip(folder, reason)),
            )

    entries = walk()
    first = next(entries)  # never missing: iter_images raises NoImagesError instead
    return Listing(itertools.chain([first], entries), skipped, frozenset({retry_count(fs)}),
                   source.url)


def find_previous(
    store: StatsStore, version: int | None, source: Location, config: JobConfig
) -> Previous | None:
    """Step 2: the latest version and its record if this run can build on them; else None
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
        and basis.max_file_bytes == config.max_file_bytes
        and basis.conversion == CONVERSIONS[config.mode]
        and basis.group_by == config.group_by
        and basis.transform == record_of(config.transform_spec)
    )
    if not same:
        log.info("full run: version %d was built from another source, mode, filters, limits, "
                 "groups or transform", version)
        return None
    if basis.record is None:
        log.info("full run: version %d has no per-file record", version)
        return None
    try:
        manifest = store.read_bytes(basis.record, MAX_RECORD_BYTES)
        files = FileSet()
        for segment in read_manifest(manifest, store.url_of(basis.record)):
            files = files.merge(segment.files)
    except (FileNotFoundError, StatsFileError) as exc:
        log.warning("full run: the record of version %d cannot be read (%s)", version, exc)
        return None
    recorded = FileSet()
    for part in basis.parts.values():
        recorded = recorded.merge(part.files)
    if files != recorded:
        log.warning("full run: the record of version %d does not match its stats", version)
        return None
    return Previous(stats, basis, manifest)


def scan(
    listing: Listing,
    previous: Previous | None,
    source: Location,
    store: StatsStore,
    config: JobConfig,
    recorder: Recorder,
    progress: Progress | None,
    early: EarlyCluster | None = None,
) -> Scanned:
    """Step 3: line the listing up against the previous record, read what changed on the
    cluster, merge the results and write their record segments as they arrive."""
    options = dataclasses.replace(config.scan_options, segment_files=config.segment_files)
    if source.is_process_local and options.decode_timeout:
        log.info("%r lives in this process: decoding without a sandbox or time limit", source.url)
        options = dataclasses.replace(options, decode_timeout=0)
    segments: Iterator[Segment] = (
        read_manifest(previous.manifest) if previous is not None else iter(())
    )

    def read(segment: Segment) -> FileRecord:
        return FileRecord.from_bytes(store.read_bytes(segment.name, segment.size),
                                     store.url_of(segment.name))

    planned = [0, 0]  # files to read, shards
    threads = _planned_threads(config)
    work = shards(
        align(listing, segments, verify=recorder.verify),
        recorder,
        read,
        Limits(config.shard_bytes, config.shard_files),
        min_shards=threads * SHARDS_PER_THREAD,
    )
    # no cluster is started for a run with nothing to read (nothing is in flight yet: pauses
    # are passed over until the first shard)
    first = next((item for item in work if isinstance(item, Work)), None)
    if first is not None:
        with open_cluster(config, not source.is_process_local, early) as cluster:
            ahead, more = _look_ahead(work, cluster.threads * SHARDS_PER_THREAD)
            # sized for the shards: no more jobs than a small run can keep busy
            client = cluster.ready(None if more else len(ahead) + 1)
            threads = cluster.threads

            def tagged() -> Iterator[tuple[Work, Any] | None]:
                for item in itertools.chain([first], ahead, work):
                    if not isinstance(item, Work):
                        yield None  # a pause: a result first
                        continue
                    planned[0] += len(item.shard.files)
                    planned[1] += 1
                    if progress is not None:
                        progress.begin(len(item.shard.files))
                    yield item, item.shard

            counted = Retries()
            log.info("decoding on %d worker threads", threads)
            for item, result in stream_scans(client, source, options, tagged(),
                                             WINDOW_PER_THREAD * threads, counted):
                recorder.scanned(item.slots, result, item.shard)
                if progress is not None:
                    progress.advance(len(item.shard.files))
            recorder.totals = dataclasses.replace(recorder.totals, task_retries=counted.count)
    return Scanned(recorder.totals, recorder.stats, planned[0], recorder.reused,
                   recorder.removed, recorder.verified, planned[1], threads)


def _look_ahead(work: Iterator[Work | Pause], count: int) -> tuple[list[Work], bool]:
    """Up to ``count`` more shards from ``work`` and whether the run has more than ``count``
    (with the first), as far as it can tell: a pause wants results before the plan goes on."""
    ahead: list[Work] = []
    for item in work:
        if not isinstance(item, Work):
            return ahead, True
        ahead.append(item)
        if len(ahead) == count:
            return ahead, True
    return ahead, False


def keep_record(recorder: Recorder, previous: Previous | None) -> str | None:
    """Step 4b: the new record's manifest, once the result is known to become a version: the
    previous one when no range changed, else a new one. Float samples keep no record."""
    if not _keeps_record(recorder.totals):
        return None
    if previous is not None and recorder.unchanged:
        return previous.basis.record
    return recorder.finish()


def _planned_threads(config: JobConfig) -> int:
    """Worker threads the run expects, to cut a small collection into enough shards before
    any cluster is started (the cluster then sizes itself for the shards)."""
    spec = config.cluster_spec
    if spec is not None:
        return planned_threads(spec.scale, spec.adapt, JobShape())  # a thread per job, at least
    if config.scheduler_address:
        return 2  # unknown until attached; only small collections are cut by it
    return (config.workers or os.cpu_count() or 1) * (config.threads_per_worker or 1)


def _keeps_record(result: ScanResult) -> bool:
    """Whether the run keeps a per-file record: integer samples only (float ones keep
    moments, which cannot be taken apart again)."""
    return all(key.layout.is_integer for key in result.summaries)


def _totals(basis: Basis) -> ScanResult:
    """The previous version's groups as a result that the run adds to and takes from."""
    summaries = {}
    images: Counter[ResultKey] = Counter()
    files = {}
    for name, part in basis.parts.items():
        key = ResultKey(name, basis.layout)
        summaries[key] = part.summary
        images[key] = part.images
        files[name] = part.files
    return ScanResult(summaries, images, basis.high_bit_depth_images, files=files)


def combine(
    config: JobConfig,
    source: Location,
    store: StatsStore,
    listing: Listing,
    previous: Previous | None,
    scanned: Scanned,
    retries: set[RetryCount],
) -> Outcome:
    """Step 4: what was kept, what was read and what could not be listed, checked."""
    result = scanned.result.merge(ScanResult(skipped=listing.unlisted))
    layout = check(result, config, listing.count, store.url)
    requests = result.retries + sum(count.value for count in retries)
    run = {
        "files_read": scanned.files_read,
        "files_reused": scanned.files_reused,
        "files_removed": scanned.files_removed,
        "incremental": previous is not None,
        "verify": config.verify and previous is not None,
        "files_verified": scanned.files_verified,
        "files_decoded": result.decoded,
        "bytes_read": result.bytes_read,
        "shards": scanned.shards,
        "worker_threads": scanned.threads,
        "task_seconds": round(result.seconds, 3),
        "retries": {"storage_requests": requests, "tasks": result.task_retries},
        "record": scanned.costs.as_dict(),
    }
    return Outcome(config, source.url, layout, result, run)


def publish(
    store: StatsStore,
    outcome: Outcome,
    parent: int | None,
    previous: Previous | None,
    started: float,
) -> ComputeResult:
    """Step 5: write the version (none when nothing changed); its record is already written."""

    def document(version: int | None, parent: int | None) -> dict[str, Any]:
        return outcome.document(version, parent, time.perf_counter() - started)

    if previous is not None and _same_content(document(0, None), previous.stats.document):
        url = store.url_of(version_name(previous.stats.version))
        checked = outcome.run["files_verified"] if outcome.run["verify"] else None
        log.info("nothing changed since version %d%s: no new version written",
                 previous.stats.version,
                 "" if checked is None else f" ({checked} files read, their digests verified)")
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
    url = store.url_of(version_name(version))
    log.info("wrote %r", url)
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
