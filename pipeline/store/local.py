"""A store in a local folder: a temp file beside the target, then ``os.link`` (which fails if
the name exists) to create; ``flock`` on a lock file, compare, ``os.replace`` to publish."""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator

from .base import StatsStore
from .names import LATEST

__all__ = ["LocalStore"]

LOCK = ".latest.lock"
TEMP_PREFIX = ".tmp-"


class LocalStore(StatsStore):
    """A folder on this machine's filesystem (or a shared mount that honours links and
    locks)."""

    @property
    def supports_exclusive_create(self) -> bool:
        return True

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
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        lock = os.open(self.path_of(LOCK), flags, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if version <= self.latest_version():
                return
            with self._temp_file(data) as temp:
                os.replace(temp, self.path_of(LATEST))
            _fsync_dir(self.location.path)
        finally:
            os.close(lock)

    @contextlib.contextmanager
    def _temp_file(self, data: bytes, durable: bool = True) -> Iterator[str]:
        temp = self.path_of(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            with open(temp, "xb") as handle:
                handle.write(data)
                if durable:
                    handle.flush()
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
