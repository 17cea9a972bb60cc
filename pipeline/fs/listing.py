"""List the image files under SOURCE, through any fsspec filesystem (on the client).

Three walks, none recursive (a tree of any depth lists within Python's recursion limit):

- local folders: ``os.scandir`` with an explicit stack, following symlinked folders as
  torchvision's ``ImageFolder`` does, minus loops;
- filesystems that list a whole tree in one pass (object stores, memory): ``find`` without
  directories, so every object is a file, even a key that is also the prefix of other keys
  (``a.png`` and ``a.png/inner.png``), and folder markers (keys ending in ``/``) are not;
- any other filesystem: ``ls`` folder by folder, with an explicit stack.

Every entry that is not a folder is listed, whatever it is (a FIFO, a device, a dangling
link): the reader (:mod:`pipeline.fs.reading`) reads regular files only and skips the others
with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fsspec.asyn import AsyncFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

from ..core.files import FileEntry, is_image_path, passes_filters
from ..errors import NoImagesError, SourceNotFoundError

__all__ = ["list_images"]

#: Why a symlinked folder is not entered.
LOOP = "symlink loop: the link leads back to a folder above it"

#: A file found by a walk: (path relative to the root, size, change token).
_Found = tuple[str, int, str]


def _token(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is not None:
            return str(value).strip('"')
    return ""


def list_images(
    fs: Any,
    root: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    url: str | None = None,
    on_unlisted: Callable[[str, str], None] | None = None,
) -> list[FileEntry]:
    """Every image file under ``root``, at any depth, sorted by relative path.

    Hidden files and folders, folders, S3 folder markers and non-image extensions are left
    out; ``include``/``exclude`` are fnmatch patterns on the relative path (``*`` crosses
    ``/``). A symlink loop, or a subfolder that cannot be listed (permission denied...), is
    left out, and ``on_unlisted(relative_folder + "/", reason)`` is called for it.
    """
    shown = repr(url or root)
    root = root.rstrip("/")
    try:
        if not fs.isdir(root):
            kind = "is not a folder" if fs.exists(root) else "does not exist"
            raise SourceNotFoundError(f"source {shown} {kind}")
        if isinstance(fs, LocalFileSystem):
            found, problems = _walk_local(root)
        elif _lists_in_one_pass(fs):
            found, problems = list(_find_objects(fs, root)), []
        else:
            found, problems = _walk_listings(fs, root)
    except SourceNotFoundError:
        raise
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise SourceNotFoundError(f"source {shown} does not exist") from exc
    except PermissionError as exc:
        raise SourceNotFoundError(f"source {shown} cannot be listed: permission denied") from exc
    if on_unlisted is not None:
        for folder, reason in sorted(problems):
            on_unlisted(folder + "/", reason)
    entries = [
        FileEntry(path, size, token)
        for path, size, token in found
        if is_image_path(path) and passes_filters(path, include, exclude)
    ]
    if not entries:
        raise NoImagesError(f"no image files under {shown}")
    entries.sort()
    return entries


def _lists_in_one_pass(fs: Any) -> bool:
    """Whether ``fs`` has its own ``find`` (one flat listing: object stores, memory) rather
    than fsspec's, which walks folder by folder, recursively."""
    if isinstance(fs, AsyncFileSystem):
        return type(fs)._find is not AsyncFileSystem._find
    return type(fs).find is not AbstractFileSystem.find


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _walk_local(root: str) -> tuple[list[_Found], list[tuple[str, str]]]:
    """The visible non-folder entries under a local folder, and the folders left out.

    Symlinked folders are followed except a link back into the folders that lead to it: its
    target is, or contains, the root, a link target followed on the way, or the folder that
    holds the link.
    """
    found: list[_Found] = []
    problems: list[tuple[str, str]] = []
    pending: list[tuple[str, frozenset[str]]] = [("", frozenset({os.path.realpath(root)}))]
    while pending:
        relative, way = pending.pop()
        folder = _join(root, relative) if relative else root
        try:
            with os.scandir(folder) as listing:
                items = list(listing)
        except OSError as exc:
            if not relative:
                raise
            problems.append((relative, f"cannot list folder: {_reason(exc)}"))
            continue
        for item in items:
            if item.name.startswith("."):
                continue  # hidden, and everything under it
            path = _join(relative, item.name)
            if _is_folder(item):
                if not item.is_symlink():
                    pending.append((path, way))
                    continue
                target = os.path.realpath(item.path)
                here = os.path.realpath(folder)
                if any(_contains(target, inner) for inner in (*way, here)):
                    problems.append((path, LOOP))
                else:
                    pending.append((path, way | {target}))
                continue
            try:
                status = item.stat()  # through a link: what a read would open
                found.append((path, status.st_size, str(status.st_mtime)))
            except OSError:  # dangling, a loop: the reader says why
                found.append((path, 0, ""))
    return found, problems


def _is_folder(item: os.DirEntry[str]) -> bool:
    try:
        return item.is_dir()
    except OSError:  # a link loop, say: not a folder to enter
        return False


def _contains(folder: str, inner: str) -> bool:
    return inner == folder or inner.startswith(folder.rstrip(os.sep) + os.sep)


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or type(exc).__name__


def _find_objects(fs: Any, root: str) -> Iterator[_Found]:
    """Every object under ``root`` from one flat listing: files only, no folder markers."""
    prefix = root + "/" if root else ""
    for name, info in fs.find(root, detail=True, withdirs=False).items():
        if info.get("type") == "directory" or name.endswith("/") or not name.startswith(prefix):
            continue
        yield name[len(prefix) :], int(info.get("size") or 0), _token(info)


def _walk_listings(fs: Any, root: str) -> tuple[list[_Found], list[tuple[str, str]]]:
    """The visible files under ``root``, listed folder by folder, and the folders that could
    not be listed."""
    found: list[_Found] = []
    problems: list[tuple[str, str]] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            items = fs.ls(folder, detail=True)
        except OSError as exc:
            if folder == root:
                raise
            problems.append((folder[len(root) + 1 :], f"cannot list folder: {_reason(exc)}"))
            continue
        for info in items:
            name = str(info["name"]).rstrip("/")
            if not name.startswith(folder + "/"):
                continue  # the folder itself, or something odd: never walked twice
            relative = name[len(root) + 1 :]
            if name.rpartition("/")[2].startswith("."):
                continue
            if info.get("type") == "directory":
                pending.append(name)
            else:
                found.append((relative, int(info.get("size") or 0), _token(info)))
    return found, problems
