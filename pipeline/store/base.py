"""The stats store: versioned stats files in a folder of any fsspec filesystem.

A store is a folder of ``v000001.json``, ``v000002.json``... and ``latest.json``. A version is
created exclusively (a writer that loses a race takes the next number, nothing is ever
overwritten) and atomically (a reader never sees half a file); ``latest.json`` is published
last and never moves back to an older version. :class:`StatsStore` holds what every backend
shares; each backend (one module each) says how it creates and publishes, and declares what
it can do (:attr:`StatsStore.supports_exclusive_create`, :attr:`StatsStore.supports_folders`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

from ..errors import (
    StatsFileError,
    StoreConflictError,
    StoreError,
    StoreNotFoundError,
    StoreUnreachableError,
)
from ..fs.location import Location, as_storage_error, storage_errors
from .document import MAX_FILE_BYTES, Stats
from .names import LATEST, parse_version_name, version_name

__all__ = ["StatsStore"]

log = logging.getLogger(__name__)

#: Version numbers a writer tries before it gives up (every one taken by another writer).
MAX_CREATE_ATTEMPTS = 100
#: Seconds after which a temp file or probe that a run leaves for a moment (milliseconds, a
#: few requests) is taken as left by a run that was killed.
TEMP_MAX_AGE = 600.0


class StatsStore(ABC):
    """A folder of versioned stats files. :func:`~pipeline.store.open_store` picks the backend."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.fs = location.filesystem()
        self._created_folders: list[str] = []  # by prepare(), outermost first

    # what the backend can do ---------------------------------------------------------------
    @property
    @abstractmethod
    def supports_exclusive_create(self) -> bool:
        """Whether :meth:`create` fails, atomically, when the name exists (concurrent writers
        are then safe)."""

    @property
    def supports_folders(self) -> bool:
        """Whether a store folder exists on its own, not only as the prefix of its files."""
        return True

    # what the backend does -----------------------------------------------------------------
    @abstractmethod
    def create(self, name: str, data: bytes, durable: bool = True) -> None:
        """Write a new file ``name`` (which may hold ``/``: a file in a sub-folder), whole or
        not at all; :class:`FileExistsError` if the name exists (never overwrite it).
        ``durable=False``: the backend may return before the bytes are on stable storage
        (:meth:`sync` waits for them)."""

    def sync(self) -> None:  # noqa: B027 (most backends are durable at once: nothing to wait for)
        """Wait until every file created with ``durable=False`` is on stable storage."""

    @abstractmethod
    def publish_latest(self, version: int, data: bytes) -> None:
        """Make ``data`` (version ``version``) ``latest.json``, unless that already holds a
        newer version."""

    # names ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.location.url

    def url_of(self, name: str) -> str:
        return f"{self.url.rstrip('/')}/{name}"

    def path_of(self, name: str) -> str:
        """The filesystem path of the store's file ``name``."""
        return self.location.join(name)

    # reading -------------------------------------------------------------------------------
    def versions(self) -> list[int]:
        """Every version number in the store, ascending (listing caches bypassed)."""
        try:
            names = self.fs.ls(self.location.path, detail=False, refresh=True)
        except Exception as exc:
            if isinstance(exc, FileNotFoundError) and self._container_exists():
                return []  # no folder yet, so no versions
            raise as_storage_error(exc, self.location, "list store", StoreUnreachableError) from exc
        found = (parse_version_name(name.rstrip("/").rsplit("/", 1)[-1]) for name in names)
        return sorted(v for v in found if v is not None)

    def _container_exists(self) -> bool:
        """Whether what holds the store folder exists (a bucket on S3)."""
        return True

    def require_versions(self) -> list[int]:
        """:meth:`versions`, or an error saying why there are none."""
        versions = self.versions()
        if versions:
            return versions
        with self._errors("read store"):
            exists = not self.supports_folders or self.fs.exists(self.location.path)
        if not exists:
            raise StoreNotFoundError(f"no stats store at {self.url!r}: it does not exist")
        raise StatsFileError(f"{self.url!r} holds no stats versions")

    def read_bytes(self, name: str, limit: int | None = None) -> bytes:
        """A file's bytes (at most ``limit`` + 1 of them); FileNotFoundError if it does not
        exist. ``name`` is a name the store makes (see :mod:`~pipeline.store.names`)."""
        path = self.path_of(name)
        try:
            if limit is not None:
                data: bytes = self.fs.cat_file(path, start=0, end=limit + 1)
            else:
                data = self.fs.cat_file(path)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise as_storage_error(exc, self.location, "read store", StoreUnreachableError) from exc
        return data

    def _stats_bytes(self, name: str) -> bytes:
        """A stats file's bytes, never more than a stats file may hold (+1, to tell)."""
        return self.read_bytes(name, MAX_FILE_BYTES)

    def load(self, version: int | None = None) -> Stats:
        """Version ``version``, or the newest: the highest version listed (a run stopped
        between creating a version and publishing it leaves ``latest.json`` behind), or
        ``latest.json`` when the store cannot be listed (a reader allowed to get objects but
        not to list them)."""
        if version is not None:
            name = version_name(version)
            try:
                data = self._stats_bytes(name)
            except FileNotFoundError:
                raise StatsFileError(f"{self.url!r} has no version {version}") from None
            return Stats.from_json(data, repr(self.url_of(name)))
        unlisted: StoreUnreachableError | None = None
        try:
            versions = self.versions()
        except StoreUnreachableError as exc:
            unlisted, versions = exc, []
        if versions:
            return self.load(versions[-1])
        try:
            return Stats.from_json(self._stats_bytes(LATEST), repr(self.url_of(LATEST)))
        except FileNotFoundError:
            if unlisted is not None:
                raise unlisted from None
            return self.load(self.require_versions()[-1])

    def latest_version(self) -> int:
        """The version ``latest.json`` holds (0: none, or a damaged file to replace)."""
        try:
            return int(json.loads(self._stats_bytes(LATEST))["version"])
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError):
            return 0

    # writing -------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Make the store folder, failing early (exit 2) if it cannot be made; the folders made
        are remembered for :meth:`remove_created_folders`."""
        if not self.supports_folders:
            return  # on S3, making a folder would create a missing bucket instead of saying so
        with self._errors("create store"):
            missing: list[str] = []
            folder = self.location.path
            while folder and not self.fs.exists(folder):
                missing.insert(0, folder)
                parent = folder.rstrip("/").rpartition("/")[0]
                folder = parent if parent != folder else ""
            self.fs.makedirs(self.location.path, exist_ok=True)
            self._created_folders = missing

    def remove_created_folders(self) -> None:
        """Remove the folders :meth:`prepare` made, if they hold nothing but empty folders (a
        run that failed leaves no empty ``--out`` folder behind)."""
        for folder in reversed(self._created_folders):
            try:
                if not self._remove_empty_tree(folder):
                    return
            except OSError:
                return
        self._created_folders = []

    def _remove_empty_tree(self, folder: str) -> bool:
        """Remove ``folder`` if it holds only (trees of) empty folders; whether it did."""
        for entry in self.fs.ls(folder, detail=True, refresh=True):
            if entry.get("type") != "directory" or not self._remove_empty_tree(entry["name"]):
                return False
        self.fs.rmdir(folder)
        return True

    def discard(self, folder: str) -> None:
        """Delete a folder of files this run created and nothing references (a failed run's
        record segments), best effort."""
        with contextlib.suppress(Exception):
            self.fs.rm(self.path_of(folder), recursive=True)

    def write(self, build: Callable[[int, int | None], bytes], parent: int | None) -> int:
        """Create the next version with ``build(version, parent)``; returns its number.

        A version that exists already (another writer won the race) is never overwritten:
        the next number is tried, ``build`` is called again for it.
        """
        version = max(self.versions(), default=0) + 1
        for _ in range(MAX_CREATE_ATTEMPTS):
            data = build(version, parent)
            try:
                self.create(version_name(version), data)
            except FileExistsError:
                log.info("version %d was taken by another run; trying the next", version)
                version = max(max(self.versions(), default=0), version) + 1
                continue
            except Exception as exc:
                action = f"write {version_name(version)} to"
                raise as_storage_error(exc, self.location, action, StoreError) from exc
            try:
                self.publish_latest(version, data)
            except Exception as exc:  # the version is complete, and readers find it (load)
                reason = as_storage_error(exc, self.location, f"publish {LATEST} in", StoreError)
                log.warning("version %d is written, but %s; the next run publishes it", version,
                            reason)
            return version
        raise StoreConflictError(
            f"gave up creating a version in {self.url!r} after many conflicts"
        )

    # what killed runs leave behind ---------------------------------------------------------
    def clean_up(self, max_age: float = TEMP_MAX_AGE) -> None:  # noqa: B027 (most leave nothing)
        """Remove what runs that were killed left in the store, older than ``max_age``
        seconds (never a live run's file)."""

    def repair_latest(self) -> None:
        """Publish the newest version as ``latest.json`` when a run was stopped after creating
        it and before publishing it."""
        versions = self.versions()
        if not versions or self.latest_version() >= versions[-1]:
            return
        newest = versions[-1]
        try:
            data = self._stats_bytes(version_name(newest))
            Stats.from_json(data)  # never publish a file that does not load
        except (FileNotFoundError, StatsFileError) as exc:
            log.warning("latest.json is older than version %d, which cannot be read (%s)",
                        newest, exc)
            return
        log.warning("%r held an older version than %d (a run was stopped before publishing "
                    "it): published it", LATEST, newest)
        self.publish_latest(newest, data)

    def write_file(self, name: str, data: bytes, durable: bool = True) -> None:
        """Create a companion file (a record segment or manifest) exclusively and atomically."""
        try:
            self.create(name, data, durable)
        except Exception as exc:
            raise as_storage_error(exc, self.location, f"write {name} to", StoreError) from exc

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        """Storage failures inside the block become one-line :class:`StoreUnreachableError`."""
        return storage_errors(self.location, action, StoreUnreachableError)
