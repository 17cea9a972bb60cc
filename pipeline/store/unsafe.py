"""A store on a filesystem that cannot create exclusively: check, then write. Safe with one
writer at a time only, so it is used only when asked for (``--unsafe-store``)."""

from __future__ import annotations

from ..fs.location import Location
from .base import StatsStore
from .names import LATEST

__all__ = ["UnsafeStore"]


class UnsafeStore(StatsStore):
    """Any fsspec filesystem, written check-then-write: two runs at once may overwrite each
    other's version or move ``latest.json`` back. ``folders``: whether the filesystem has
    folders of their own (object stores have none)."""

    def __init__(self, location: Location, folders: bool = True) -> None:
        super().__init__(location)
        self._folders = folders

    @property
    def supports_exclusive_create(self) -> bool:
        return False

    @property
    def supports_folders(self) -> bool:
        return self._folders

    def create(self, name: str, data: bytes, durable: bool = True) -> None:
        if self.fs.exists(self.path_of(name)):
            raise FileExistsError(self.url_of(name))
        self.fs.pipe_file(self.path_of(name), data)

    def publish_latest(self, version: int, data: bytes) -> None:
        if version > self.latest_version():
            self.fs.pipe_file(self.path_of(LATEST), data)
