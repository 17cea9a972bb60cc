"""URLs to filesystems, in one place.

A :class:`Location` is what crosses process boundaries: protocol, path and storage options,
never a live filesystem (s3fs is not fork-safe). Each process opens its own filesystem from it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.core import split_protocol

from ..errors import ImgstatsError, UsageError

__all__ = ["Location", "as_storage_error", "describe_error", "resolve", "storage_errors"]

_SECRET_KEY = re.compile(
    r"key|secret|token|password|credential|session|signature|sig$", re.IGNORECASE
)
#: ``scheme://user:password@`` at the start of a URL (or of a path that is a URL).
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@")


@dataclass(frozen=True)
class Location:
    """A folder on some fsspec filesystem."""

    protocol: str
    path: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        """The folder's URL, with no credentials: those live in ``storage_options``, and any
        that a filesystem keeps in its paths (``https://user:password@host/``, a signed
        query) are shown as ``***``."""
        if self.protocol == "file":
            return self.path
        url = self.path if "://" in self.path else f"{self.protocol}://{self.path.lstrip('/')}"
        for secret in _path_secrets(self.path):
            url = url.replace(secret, "***")
        return url

    def filesystem(self) -> fsspec.AbstractFileSystem:
        """This process's filesystem instance for the location."""
        try:
            return fsspec.filesystem(self.protocol, **self.storage_options)
        except (TypeError, ValueError) as exc:
            reason = describe_error(exc, self.secrets())
            raise UsageError(f"invalid storage options for {self.url!r}: {reason}") from exc

    def join(self, relative: str) -> str:
        """The filesystem path of ``relative`` under this folder."""
        return f"{self.path.rstrip('/')}/{relative}" if self.path else relative

    def secrets(self) -> list[str]:
        """Values in the storage options that must never be shown (keys, tokens...)."""
        found: list[str] = []

        def walk(options: Mapping[str, Any]) -> None:
            for name, value in options.items():
                if isinstance(value, Mapping):
                    walk(value)
                elif isinstance(value, str) and value and _SECRET_KEY.search(name):
                    found.append(value)

        walk(self.storage_options)
        return found + ([] if self.protocol == "file" else _path_secrets(self.path))

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
    if _USERINFO.match(url):
        from_url = cls._get_kwargs_from_urls(url)
        if "username" in from_url or "password" in from_url:  # fsspec reads them (ftp, sftp)
            options = {**from_url, **options}
        elif not _USERINFO.match(path):  # not kept in the path either: a bucket name?
            shown = _USERINFO.sub(r"\1***@", url)
            raise UsageError(
                f"{shown!r}: credentials in a {protocol}:// URL are not used; give them "
                "through the environment, a profile, or the storage options"
            )
    canonical = cls.protocol if isinstance(cls.protocol, str) else cls.protocol[0]
    return Location(canonical, path.rstrip("/") or path, options)


def _path_secrets(path: str) -> list[str]:
    """Secrets a filesystem keeps in a path that is a URL: the user information and the
    values of secret-named query parameters (``X-Amz-Signature``, ``token``...)."""
    found = []
    userinfo = _USERINFO.match(path)
    if userinfo:
        found.append(userinfo.group(2))
    _, _, query = path.partition("?")
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if equals and value and _SECRET_KEY.search(name):
            found.append(value)
    return found


def describe_error(exc: BaseException, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """A one-line reason for a storage error, with any secret value blotted out."""
    if isinstance(exc, FileNotFoundError):
        text = "not found"
    elif isinstance(exc, PermissionError):
        text = "access denied"
    else:
        message = str(exc).strip()
        text = type(exc).__name__
        if message:
            text = f"{text}: {message.splitlines()[0][:300]}"
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _is_storage_error(exc: BaseException) -> bool:
    """OSError, or an error of a storage client library (botocore, aiohttp...)."""
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, OSError) or module in {"botocore", "aiobotocore", "aiohttp", "s3fs"}


def as_storage_error(
    exc: BaseException, location: Location, action: str, error: type[ImgstatsError]
) -> BaseException:
    """``error("cannot ACTION URL: reason")`` for a storage failure; anything else unchanged."""
    if isinstance(exc, ImgstatsError) or not _is_storage_error(exc):
        return exc
    reason = describe_error(exc, location.secrets())
    converted = error(f"cannot {action} {location.url!r}: {reason}")
    converted.__cause__ = exc
    return converted


@contextlib.contextmanager
def storage_errors(
    location: Location, action: str, error: type[ImgstatsError]
) -> Iterator[None]:
    """Turn storage failures inside the block into ``error("cannot ACTION URL: reason")``."""
    try:
        yield
    except Exception as exc:
        converted = as_storage_error(exc, location, action, error)
        if converted is exc:
            raise
        raise converted from exc
