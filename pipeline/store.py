"""Versioned stats files on any fsspec filesystem.

A store is a folder of ``v000001.json``, ``v000002.json``... and ``latest.json``. A version is
created exclusively (a writer that loses a race takes the next number, nothing is ever
overwritten) and atomically (a reader never sees half a file); ``latest.json`` is published
last and never moves back to an older version.

Each backend says how it does that:

========  ==========================================  ===========================================
backend   exclusive, atomic create                    ``latest.json`` never regresses
========  ==========================================  ===========================================
local     temp file beside the target, ``os.link``    ``flock`` on a lock file, compare, replace
s3        one PUT with ``IfNoneMatch="*"`` (probed)   PUT with ``IfMatch`` on the ETag read
memory    in-process lock (memory is per process)     the same lock
========  ==========================================  ===========================================

Any other filesystem cannot create exclusively and is refused unless ``allow_unsafe`` is set.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator

from .errors import (
    StatsFileError,
    StoreConflictError,
    StoreError,
    StoreNotFoundError,
    StoreUnreachableError,
    UnsafeStoreError,
)
from .location import Location, as_storage_error, storage_errors
from .stats import MAX_FILE_BYTES, Stats

__all__ = ["LATEST", "StatsStore", "open_store", "version_name"]

log = logging.getLogger(__name__)

LATEST = "latest.json"
_VERSION_RE = re.compile(r"^v(\d{6,})\.json$")
_MAX_CREATE_ATTEMPTS = 100


def version_name(version: int) -> str:
    """``v000001.json`` for version 1."""
    return f"v{version:06d}.json"


def parse_version_name(name: str) -> int | None:
    match = _VERSION_RE.match(name)
    return int(match.group(1)) if match else None


class StatsStore:
    """A folder of versioned stats files. Use :func:`open_store` to get the right backend."""

    exclusive_create = True
    #: Whether a store folder exists on its own (not only as the prefix of the files in it).
    has_folders = True

    def __init__(self, location: Location, allow_unsafe: bool = False) -> None:
        self.location = location
        self.allow_unsafe = allow_unsafe
        self.fs = location.filesystem()
        self._created_folders: list[str] = []  # by check_writable, outermost first

    @property
    def url(self) -> str:
        return self.location.url

    def url_of(self, name: str) -> str:
        return f"{self.url.rstrip('/')}/{name}"

    def _path(self, name: str) -> str:
        return self.location.join(name)

    # reading ---------------------------------------------------------------------------
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
        """Whether what holds the store folder exists (a bucket on S3); folders are implicit."""
        return True

    def read_bytes(self, name: str, limit: int | None = None) -> bytes:
        """A file's bytes (at most ``limit`` + 1 of them); FileNotFoundError if it does not
        exist."""
        path = self._path(name)
        try:
            if limit is not None:
                return self.fs.cat_file(path, start=0, end=limit + 1)
            return self.fs.cat_file(path)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise as_storage_error(exc, self.location, "read store", StoreUnreachableError) from exc

    def _stats_bytes(self, name: str) -> bytes:
        """A stats file's bytes, never more than a stats file may hold (+1, to tell)."""
        return self.read_bytes(name, MAX_FILE_BYTES)

    def load(self, version: int | None = None) -> Stats:
        """Version ``version``, or the newest (``latest.json``, else the highest listed)."""
        if version is not None:
            name = version_name(version)
            try:
                data = self._stats_bytes(name)
            except FileNotFoundError:
                raise StatsFileError(f"{self.url} has no version {version}") from None
            return Stats.from_json(data, self.url_of(name))
        try:
            return Stats.from_json(self._stats_bytes(LATEST), self.url_of(LATEST))
        except FileNotFoundError:
            return self.load(self.require_versions()[-1])

    def require_versions(self) -> list[int]:
        """:meth:`versions`, or an error saying why there are none."""
        versions = self.versions()
        if versions:
            return versions
        with self._errors("read store"):
            exists = not self.has_folders or self.fs.exists(self.location.path)
        if not exists:
            raise StoreNotFoundError(f"no stats store at {self.url}: it does not exist")
        raise StatsFileError(f"{self.url} holds no stats versions")

    # writing ---------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Fail early (exit 2) if the store cannot be written, before any work is done."""
        if not self.exclusive_create and not self.allow_unsafe:
            raise UnsafeStoreError(
                f"store {self.url} cannot create files exclusively, so concurrent runs could "
                "overwrite each other; use a local, s3:// or memory:// store"
            )
        with self._errors("create store"):
            missing = []
            folder = self.location.path
            while folder and not self.fs.exists(folder):
                missing.insert(0, folder)
                parent = folder.rstrip("/").rpartition("/")[0]
                folder = parent if parent != folder else ""
            self.fs.makedirs(self.location.path, exist_ok=True)
            self._created_folders = missing

    def remove_created_folders(self) -> None:
        """Remove the folders :meth:`check_writable` created, if they are still empty (a run
        that failed leaves no empty ``--out`` folder behind)."""
        for folder in reversed(self._created_folders):
            try:
                if self.fs.ls(folder, detail=False, refresh=True):
                    return
                self.fs.rmdir(folder)
            except OSError:
                return
        self._created_folders = []

    def write(self, build: Callable[[int, int | None], bytes], parent: int | None) -> int:
        """Create the next version with ``build(version, parent)``; returns its number.

        A version that exists already (another writer won the race) is never overwritten:
        the next number is tried, ``build`` is called again for it.
        """
        version = max(self.versions(), default=0) + 1
        for _ in range(_MAX_CREATE_ATTEMPTS):
            data = build(version, parent)
            try:
                self._create(version_name(version), data)
            except FileExistsError:
                log.info("version %d was taken by another run; trying the next", version)
                version = max(max(self.versions(), default=0), version) + 1
                continue
            except Exception as exc:
                action = f"write {version_name(version)} to"
                raise as_storage_error(exc, self.location, action, StoreError) from exc
            self._publish_latest(version, data)
            return version
        raise StoreConflictError(f"gave up creating a version in {self.url} after many conflicts")

    def write_file(self, name: str, data: bytes) -> None:
        """Create a companion file (a version's record) exclusively and atomically."""
        try:
            self._create(name, data)
        except Exception as exc:
            raise as_storage_error(exc, self.location, f"write {name} to", StoreError) from exc

    def _create(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def _publish_latest(self, version: int, data: bytes) -> None:
        raise NotImplementedError

    def _latest_version(self) -> int:
        try:
            return int(json.loads(self._stats_bytes(LATEST))["version"])
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError):
            return 0  # a damaged latest.json is replaced

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        """Storage failures inside the block become one-line :class:`StoreUnreachableError`."""
        return storage_errors(self.location, action, StoreUnreachableError)



class LocalStore(StatsStore):
    """Local folder: temp file then ``os.link`` (fails if the target exists) for versions;
    ``flock`` + compare + ``os.replace`` for ``latest.json``."""

    def _create(self, name: str, data: bytes) -> None:
        target = self._path(name)
        with self._temp_file(data) as temp:
            os.link(temp, target)
        _fsync_dir(self.location.path)

    def _publish_latest(self, version: int, data: bytes) -> None:
        lock_path = self._path(".latest.lock")
        with open(lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if version <= self._latest_version():
                return
            with self._temp_file(data) as temp:
                os.replace(temp, self._path(LATEST))
            _fsync_dir(self.location.path)

    @contextlib.contextmanager
    def _temp_file(self, data: bytes) -> Iterator[str]:
        temp = self._path(f".tmp-{uuid.uuid4().hex}")
        try:
            with open(temp, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            yield temp
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


class MemoryStore(StatsStore):
    """fsspec's in-process memory filesystem: one lock makes create and publish atomic."""

    _lock = threading.Lock()

    def _create(self, name: str, data: bytes) -> None:
        with self._lock:
            if self.fs.exists(self._path(name)):
                raise FileExistsError(self.url_of(name))
            self.fs.pipe_file(self._path(name), data)

    def _publish_latest(self, version: int, data: bytes) -> None:
        with self._lock:
            if version > self._latest_version():
                self.fs.pipe_file(self._path(LATEST), data)


class UnsafeStore(MemoryStore):
    """Any other filesystem: check-then-write, safe only with a single writer."""

    exclusive_create = False


class S3Store(StatsStore):
    """S3 and S3-compatible stores: conditional PUTs, probed once before the first write."""

    _PROBE_PREFIX = ".imgstats-probe-"
    has_folders = False

    def check_writable(self) -> None:
        # No makedirs: on S3 that would create a missing bucket instead of reporting it.
        self._probe()

    def _probe(self) -> None:
        """Write a throwaway key twice with ``IfNoneMatch="*"``: the second must be refused."""
        probe = self._path(f"{self._PROBE_PREFIX}{uuid.uuid4().hex}")
        action = "write to store"
        try:
            self.fs.pipe_file(probe, b"probe", mode="create")
        except Exception as exc:
            raise as_storage_error(exc, self.location, action, StoreUnreachableError) from exc
        try:
            self.fs.pipe_file(probe, b"probe", mode="create")
            honoured = False
        except FileExistsError:
            honoured = True
        except Exception as exc:
            raise as_storage_error(exc, self.location, action, StoreUnreachableError) from exc
        finally:
            with contextlib.suppress(Exception):  # best effort: a leftover probe is harmless
                self.fs.rm_file(probe)
        if not honoured and not self.allow_unsafe:
            raise UnsafeStoreError(
                f"store {self.url} does not honour conditional writes (If-None-Match), so "
                "concurrent runs could overwrite each other; pass --unsafe-store to write anyway"
            )
        if not honoured:
            log.warning("store %s ignores conditional writes; writing unsafely as asked", self.url)
            self.exclusive_create = False

    def _container_exists(self) -> bool:
        bucket = self.location.path.split("/", 1)[0]
        try:
            return bool(self.fs.exists(bucket))
        except Exception:  # unreachable: treated as missing, the caller reports it
            return False

    def _create(self, name: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(name), data, mode="create")

    def _publish_latest(self, version: int, data: bytes) -> None:
        bucket, key, _ = self.fs.split_path(self._path(LATEST))
        for _ in range(_MAX_CREATE_ATTEMPTS):
            try:
                info = self.fs.info(self._path(LATEST), refresh=True)
                etag = info.get("ETag")
            except FileNotFoundError:
                etag = None
            if version <= self._latest_version():
                return
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
            except Exception as exc:
                if not _precondition_failed(exc):
                    action = f"publish {LATEST} in"
                    raise as_storage_error(exc, self.location, action, StoreError) from exc
                continue  # another writer moved latest.json: look again
            finally:
                self.fs.invalidate_cache(self._path(LATEST))
            return
        raise StoreConflictError(f"gave up publishing {self.url_of(LATEST)} after many conflicts")


def _precondition_failed(exc: BaseException) -> bool:
    if isinstance(exc, FileExistsError):
        return True
    cause = exc.__cause__
    response = getattr(cause, "response", None) or {}
    return response.get("Error", {}).get("Code") in ("PreconditionFailed", "412")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_store(location: Location, allow_unsafe: bool = False) -> StatsStore:
    """The store backend for ``location``'s filesystem."""
    backend: type[StatsStore]
    if location.protocol == "file":
        backend = LocalStore
    elif location.protocol in ("s3", "s3a"):
        backend = S3Store
    elif location.protocol == "memory":
        backend = MemoryStore
    else:
        backend = UnsafeStore
    return backend(location, allow_unsafe)
