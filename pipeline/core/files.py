"""File sets and shards, pure: the listing's entries, their mergeable fingerprint, and the
cut of a sorted listing into the shards that tasks decode."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

__all__ = [
    "IMAGE_EXTENSIONS",
    "FileEntry",
    "FileSet",
    "Shard",
    "entry_digest",
    "is_image_path",
    "passes_filters",
    "path_bytes",
    "path_text",
]

IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp", "ppm", "pgm", "pbm"}
)


@dataclass(frozen=True, order=True)
class FileEntry:
    """One image file: its path relative to SOURCE (posix), size and change token."""

    path: str  # a local name that is not UTF-8 as os.fsdecode gives it (surrogateescape)
    size: int
    token: str  # ETag where the filesystem has one, else mtime


@dataclass(frozen=True)
class FileSet:
    """Count, bytes and an order-independent fingerprint of a set of files, mergeable.

    The fingerprint is the sum, modulo 2**128, of a SHA-256 digest of each file's path (its
    bytes: UTF-8, undecodable bytes of a local name as they are), size and token: any split,
    merged in any order, gives the same value.
    """

    count: int = 0
    nbytes: int = 0
    digest: int = 0

    def add(self, entry: FileEntry) -> FileSet:
        return self.merge(FileSet(1, entry.size, entry_digest(entry)))

    def remove(self, entry: FileEntry) -> FileSet:
        """The set without ``entry`` (which must be in it)."""
        return self.subtract(FileSet(1, entry.size, entry_digest(entry)))

    def subtract(self, other: FileSet) -> FileSet:
        """The set without ``other``'s files (which must all be in it)."""
        return FileSet(
            self.count - other.count,
            self.nbytes - other.nbytes,
            (self.digest - other.digest) % 2**128,
        )

    def merge(self, other: FileSet) -> FileSet:
        return FileSet(
            self.count + other.count,
            self.nbytes + other.nbytes,
            (self.digest + other.digest) % 2**128,
        )

    @property
    def fingerprint(self) -> str:
        return f"{self.digest:032x}"


def path_bytes(path: str) -> bytes:
    """A path's bytes: UTF-8, with the undecodable bytes of a local name (which Python gives
    as lone surrogates, ``os.fsdecode``'s ``surrogateescape``) as they were on disk."""
    return path.encode("utf-8", "surrogateescape")


def path_text(data: bytes) -> str:
    """The inverse of :func:`path_bytes`."""
    return data.decode("utf-8", "surrogateescape")


def entry_digest(entry: FileEntry) -> int:
    """The entry's term of a :class:`FileSet` fingerprint (sum these modulo 2**128)."""
    text = path_bytes(f"{entry.path}\0{entry.size}\0{entry.token}")
    return int.from_bytes(hashlib.sha256(text).digest()[:16], "big")


@dataclass(frozen=True)
class Shard:
    """A contiguous run of the sorted listing, decoded by one task.

    ``expected`` (empty, or one per file) holds the content digest each file had when it was
    last counted (``--verify``): a file whose bytes still have it is not decoded again. None:
    count the file.
    """

    index: int
    files: tuple[FileEntry, ...]
    expected: tuple[bytes | None, ...] = ()

    @property
    def nbytes(self) -> int:
        return sum(f.size for f in self.files)

    def expected_digest(self, position: int) -> bytes | None:
        """The digest the file at ``position`` is expected to have (None: none)."""
        return self.expected[position] if self.expected else None

    def part(self, start: int, stop: int) -> Shard:
        """The files from ``start`` to ``stop``, with their expected digests."""
        return Shard(self.index, self.files[start:stop], self.expected[start:stop])

    def without(self, position: int) -> Shard:
        """The shard without the file at ``position``."""
        files = self.files[:position] + self.files[position + 1 :]
        return Shard(self.index, files, self.expected[:position] + self.expected[position + 1 :])

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled as columns: a shard crosses two process boundaries on its way to a decode
        # sandbox, and a thousand dataclass instances pickle at ~14 us each.
        files = self.files
        columns = ([f.path for f in files], [f.size for f in files], [f.token for f in files])
        return _shard, (self.index, *columns, self.expected)


def _shard(
    index: int,
    paths: list[str],
    sizes: list[int],
    tokens: list[str],
    expected: tuple[bytes | None, ...],
) -> Shard:
    """A :class:`Shard` from the columns :meth:`Shard.__reduce__` gives."""
    return Shard(index, tuple(map(FileEntry, paths, sizes, tokens)), expected)


def is_image_path(path: str) -> bool:
    """Whether a relative path names a visible file with an image extension."""
    if path.endswith("/") or any(part.startswith(".") for part in path.split("/")):
        return False
    _, dot, ext = path.rpartition(".")
    return bool(dot) and ext.lower() in IMAGE_EXTENSIONS


def passes_filters(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether ``path`` matches one of ``include`` (when any) and none of ``exclude``."""
    if include and not any(fnmatchcase(path, pattern) for pattern in include):
        return False
    return not any(fnmatchcase(path, pattern) for pattern in exclude)
