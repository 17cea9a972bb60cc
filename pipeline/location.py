"""URLs to filesystems, in one place.

A :class:`Location` is what crosses process boundaries: protocol, path and storage options,
never a live filesystem (s3fs is not fork-safe). Each process opens its own filesystem from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.core import split_protocol

from .errors import UsageError

__all__ = ["Location", "resolve"]


@dataclass(frozen=True)
class Location:
    """A folder on some fsspec filesystem."""

    protocol: str
    path: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        """The folder's URL, with no credentials (those live in ``storage_options`` only)."""
        if self.protocol == "file":
            return self.path
        return f"{self.protocol}://{self.path.lstrip('/')}"

    def filesystem(self) -> fsspec.AbstractFileSystem:
        """This process's filesystem instance for the location."""
        return fsspec.filesystem(self.protocol, **self.storage_options)

    def join(self, relative: str) -> str:
        """The filesystem path of ``relative`` under this folder."""
        return f"{self.path.rstrip('/')}/{relative}" if self.path else relative

    @property
    def is_process_local(self) -> bool:
        """Whether only this process can see the data (fsspec's memory filesystem)."""
        return self.protocol == "memory"


def resolve(url: str, storage_options: Mapping[str, Any] | None = None) -> Location:
    """Turn a local folder or fsspec URL into a :class:`Location` (nothing is opened yet)."""
    if not url:
        raise UsageError("an empty path or URL was given")
    options = dict(storage_options or {})
    protocol, _ = split_protocol(url)
    if protocol in (None, "file", "local"):
        path = url.removeprefix("file://").removeprefix("local://")
        return Location("file", os.path.abspath(os.path.expanduser(path)), options)
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        raise UsageError(f"cannot use {protocol}:// URLs: {exc}") from exc
    path = cls._strip_protocol(url)
    canonical = cls.protocol if isinstance(cls.protocol, str) else cls.protocol[0]
    return Location(canonical, path.rstrip("/") or path, options)
