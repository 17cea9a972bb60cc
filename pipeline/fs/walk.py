"""Folder-by-folder walks that stream their files in sorted path order, without recursion.

A depth-first walk yields the files of a tree sorted by relative path (Python's ``str``
order, which :mod:`pipeline.run.plan` and the record segments compare with) when every
folder's children are visited in the order of their *keys*: a file's key is its path, a
folder's is its path and ``/``. Sibling keys never prefix one another except a file's
(``a``) and a longer sibling's (``a.png``, ``a/``), and a path with a key as strict prefix
sorts after the key itself: so every path under one key sorts before every path under the
next. Only the folders on the way down are held, each as its sorted children.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["LOOP", "Found", "Unlisted", "join", "reason", "token", "walk_listings", "walk_local"]

#: Why a symlinked folder is not entered.
LOOP = "symlink loop: the link leads back to a folder above it"

#: A file found by a walk: (path relative to the root, size, change token).
Found = tuple[str, int, str]
#: A folder left out: (path relative to the root, reason).
Unlisted = tuple[str, str]


@dataclass(frozen=True)
class _Folder:
    """A folder to enter: its path relative to the root and, locally, the real paths of the
    link targets on the way to it."""

    path: str
    way: frozenset[str] = frozenset()


def token(info: dict[str, Any]) -> str:
    """A listing entry's change token: its ETag where it has one, else a time."""
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is not None:
            return str(value).strip('"')
    return ""


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or type(exc).__name__


def _key(child: Found | _Folder) -> str:
    return child.path + "/" if isinstance(child, _Folder) else child[0]


def _depth_first(
    children: Callable[[_Folder], list[Found | _Folder]], root: _Folder
) -> Iterator[Found]:
    """The files under ``root``, from ``children(folder)`` (each folder's files and folders,
    any order), each folder's children visited in key order."""
    stack = [iter(sorted(children(root), key=_key))]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
        elif isinstance(child, _Folder):
            stack.append(iter(sorted(children(child), key=_key)))
        else:
            yield child


def walk_local(root: str, unlisted: list[Unlisted]) -> Iterator[Found]:
    """The visible non-folder entries under a local folder in path order; the folders left
    out are appended to ``unlisted``.

    Symlinked folders are followed except a link back into the folders that lead to it: its
    target is, or contains, the root, a link target followed on the way, or the folder that
    holds the link.
    """

    def children(at: _Folder) -> list[Found | _Folder]:
        folder = join(root, at.path) if at.path else root
        try:
            with os.scandir(folder) as listing:
                items = list(listing)
        except OSError as exc:
            if not at.path:
                raise
            unlisted.append((at.path, f"cannot list folder: {reason(exc)}"))
            return []
        here = os.path.realpath(folder)
        out: list[Found | _Folder] = []
        for item in items:
            if item.name.startswith("."):
                continue  # hidden, and everything under it
            path = join(at.path, item.name)
            if _is_folder(item):
                if not item.is_symlink():
                    out.append(_Folder(path, at.way))
                    continue
                target = os.path.realpath(item.path)
                if any(_contains(target, inner) for inner in (*at.way, here)):
                    unlisted.append((path, LOOP))
                else:
                    out.append(_Folder(path, at.way | {target}))
                continue
            try:
                status = item.stat()  # through a link: what a read would open
                out.append((path, status.st_size, str(status.st_mtime)))
            except OSError:  # dangling, a loop: the reader says why
                out.append((path, 0, ""))
        return out

    return _depth_first(children, _Folder("", frozenset({os.path.realpath(root)})))


def _is_folder(item: os.DirEntry[str]) -> bool:
    try:
        return item.is_dir()
    except OSError:  # a link loop, say: not a folder to enter
        return False


def _contains(folder: str, inner: str) -> bool:
    return inner == folder or inner.startswith(folder.rstrip(os.sep) + os.sep)


def walk_listings(fs: Any, root: str, unlisted: list[Unlisted]) -> Iterator[Found]:
    """The visible files under ``root`` in path order, listed folder by folder with
    ``fs.ls``; the folders that could not be listed are appended to ``unlisted``."""

    def children(at: _Folder) -> list[Found | _Folder]:
        folder = join(root, at.path) if at.path else root
        try:
            items = fs.ls(folder, detail=True)
        except OSError as exc:
            if not at.path:
                raise
            unlisted.append((at.path, f"cannot list folder: {reason(exc)}"))
            return []
        out: list[Found | _Folder] = []
        for info in items:
            name = str(info["name"]).rstrip("/")
            if not name.startswith(folder + "/"):
                continue  # the folder itself, or something odd: never walked twice
            relative = name[len(root) + 1 :]
            if name.rpartition("/")[2].startswith("."):
                continue
            if info.get("type") == "directory":
                out.append(_Folder(relative))
            else:
                out.append((relative, int(info.get("size") or 0), token(info)))
        return out

    return _depth_first(children, _Folder(""))
