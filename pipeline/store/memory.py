"""A store on fsspec's in-process memory filesystem: one lock makes create and publish atomic
(memory is per process, so that is every writer)."""

from __future__ import annotations

import threading

from .base import StatsStore
from .names import LATEST

__all__ = ["MemoryStore"]


class MemoryStore(StatsStore):
    """``memory://`` stores (tests, notebooks)."""

    _lock = threading.Lock()

    @property
    def supports_exclusive_create(self) -> bool:
        return True

    def create(self, name: str, data: bytes, durable: bool = True) -> None:
        with self._lock:
            if self.fs.exists(self.path_of(name)):
                raise FileExistsError(self.url_of(name))
            self.fs.pipe_file(self.path_of(name), data)

    def publish_latest(self, version: int, data: bytes) -> None:
        with self._lock:
            if version > self.latest_version():
                self.fs.pipe_file(self.path_of(LATEST), data)
