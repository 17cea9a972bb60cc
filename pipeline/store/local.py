"""A store in a local folder: a temp file beside the target, then ``os.link`` (which fails if
the name exists) to create; ``flock`` on a lock file, compare, ``os.replace`` to publish.

Nothing in the folder is followed: the lock file and the files read are opened with
``O_NOFOLLOW`` (a symlink planted at a store name is refused, never written through or read
through), and only regular files are read. A writer holds an ``flock`` on its temp file for
as long as the file exists, so later runs remove the temp files of killed runs (unlocked and
older than :data:`TEMP_MAX_AGE`) and never a live writer's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import time
import uuid
from collections.abc import Iterator

from ..errors import StatsFileError, StoreUnreachableError, UnsafeStoreError
from ..fs.location import as_storage_error
from .base import TEMP_MAX_AGE, StatsStore
from .names import LATEST

__all__ = ["LOCK", "TEMP_PREFIX", "LocalStore"]

log = logging.getLogger(__name__)

LOCK = ".latest.lock"
TEMP_PREFIX = ".tmp-"
_NO_FOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class LocalStore(StatsStore):
    """A folder on this machine's filesystem (or a shared mount that honours links and
    locks)."""

    @property
    def supports_exclusive_create(self) -> bool:
        return True

    def prepare(self) -> None:
        super().prepare()
        try:
            status = os.lstat(self.path_of(LOCK))
        except FileNotFoundError:
            return
        if not stat.S_ISREG(status.st_mode):
            raise UnsafeStoreError(self._not_a_lock())

    def _not_a_lock(self) -> str:
        return (f"store {self.url!r} has something other than a lock file at {LOCK!r} (a "
                "symbolic link?): imgstats never follows it; remove it")

    def create(self, name: str, data: bytes, durable: bool = True) -> None:
        target = self.path_of(name)
        folder = os.path.dirname(target)
        if folder != self.location.path:
            os.makedirs(folder, exist_ok=True)
        with self._temp_file(data, durable) as temp:
            os.link(temp, target)
        if durable:
            _fsync_dir(folder)

    def sync(self) -> None:
        os.sync()  # one flush for the files written without fsync (record segments)

    def publish_latest(self, version: int, data: bytes) -> None:
        # O_NOFOLLOW: a symlink planted at the lock's name does not make us create its target.
        try:
            lock = os.open(self.path_of(LOCK), os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeStoreError(self._not_a_lock()) from None
            raise
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if version <= self.latest_version():
                return
            with self._temp_file(data) as temp:
                os.replace(temp, self.path_of(LATEST))
            _fsync_dir(self.location.path)
        finally:
            os.close(lock)

    def read_bytes(self, name: str, limit: int | None = None) -> bytes:
        path = self.path_of(name)
        try:
            fd = os.open(path, os.O_RDONLY | _NO_FOLLOW)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StatsFileError(
                    f"{self.url_of(name)!r} is a symbolic link: store files are never followed"
                ) from None
            raise as_storage_error(exc, self.location, "read store", StoreUnreachableError) from exc
        with open(fd, "rb") as handle:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise StatsFileError(f"{self.url_of(name)!r} is not a regular file")
            # Store files never change once in place: their size bounds the read (and the
            # buffer is not allocated for ``limit`` bytes up front).
            size = status.st_size if limit is None else min(status.st_size, limit)
            return handle.read(size + 1)

    def clean_up(self, max_age: float = TEMP_MAX_AGE) -> None:
        """Remove the temp files of killed runs: older than ``max_age`` and locked by no
        process (a live writer holds its temp file's lock until the file is gone)."""
        try:
            with os.scandir(self.location.path) as listing:
                temps = [e for e in listing if e.name.startswith(TEMP_PREFIX)]
        except OSError:
            return
        now = time.time()
        for entry in temps:
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime < max_age:
                    continue
                fd = os.open(entry.path, os.O_RDONLY | _NO_FOLLOW)
            except OSError:
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.stat(entry.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                    os.unlink(entry.path)
                    log.info("removed %r, left by a run that was stopped", entry.path)
            except OSError:  # BlockingIOError: a live writer holds it
                continue
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def _temp_file(self, data: bytes, durable: bool = True) -> Iterator[str]:
        """A complete temp file beside the store's files (synced when ``durable``), locked
        (see :meth:`clean_up`) until it has been linked or renamed and is gone."""
        temp = self.path_of(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        with open(temp, "xb") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                handle.write(data)
                handle.flush()  # complete before it is linked (the lock keeps it open)
                if durable:
                    os.fsync(handle.fileno())
                yield temp
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
