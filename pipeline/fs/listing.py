"""List the image files under SOURCE, through any fsspec filesystem (on the client)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from ..core.files import FileEntry, is_image_path, passes_filters
from ..errors import NoImagesError, SourceNotFoundError

__all__ = ["list_images"]


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
    """Every image file under ``root``, recursively, sorted by relative path.

    Hidden files and folders, S3 folder markers and non-image extensions are left out;
    ``include``/``exclude`` are fnmatch patterns on the relative path (``*`` crosses ``/``).
    Symlinked folders are followed, as torchvision's ``ImageFolder`` does, except a link
    back into the folders that lead to it (a loop). A loop, or a subfolder that cannot be
    listed (permission denied...), is left out, and ``on_unlisted(relative_folder + "/",
    reason)`` is called for it.
    """
    shown = url or root
    root = root.rstrip("/")
    try:
        if not fs.isdir(root):
            kind = "is not a folder" if fs.exists(root) else "does not exist"
            raise SourceNotFoundError(f"source {shown} {kind}")
        found = fs.find(root, detail=True, withdirs=True)
        problems = _follow_folder_links(fs, root, found)
    except SourceNotFoundError:
        raise
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise SourceNotFoundError(f"source {shown} does not exist") from exc
    except PermissionError as exc:
        raise SourceNotFoundError(f"source {shown} cannot be listed: permission denied") from exc
    entries = []
    prefix = root + "/" if root else ""
    if on_unlisted is not None:
        for folder, reason in sorted([*problems, *_unlisted_folders(fs, found)]):
            relative = folder[len(prefix) :]
            hidden = any(part.startswith(".") for part in relative.split("/"))
            if folder.startswith(prefix) and not hidden:
                on_unlisted(relative + "/", reason)
    for path, info in found.items():
        if info.get("type") == "directory" or not path.startswith(prefix):
            continue
        relative = path[len(prefix) :]
        if is_image_path(relative) and passes_filters(relative, include, exclude):
            entries.append(FileEntry(relative, int(info.get("size") or 0), _token(info)))
    if not entries:
        raise NoImagesError(f"no image files under {shown}")
    entries.sort()
    return entries


def _follow_folder_links(
    fs: Any, root: str, found: dict[str, dict[str, Any]]
) -> list[tuple[str, str]]:
    """Add to ``found`` what symlinked folders hold (fsspec's local walk does not enter
    them); returns the links left out as loops, with the reason.

    A link is a loop when its target is, or contains, a folder on the way to it: the root's
    real path or a link target followed to get there.
    """
    if not isinstance(fs, LocalFileSystem):
        return []
    pending = [(path, frozenset({os.path.realpath(root)})) for path in _folder_links(found)]
    loops = []
    while pending:
        link, way = pending.pop()
        target = os.path.realpath(link)
        if not os.path.isdir(target):
            continue  # dangling, or a file: read (or skipped) as a file
        here = os.path.realpath(os.path.dirname(link))
        if any(_contains(target, folder) for folder in (*way, here)):
            loops.append((link, "symlink loop: the link leads back to a folder above it"))
            continue
        inside = fs.find(link, detail=True, withdirs=True)
        inside.pop(link, None)
        found.update(inside)
        found[link] = {**found[link], "type": "directory"}
        pending += [(path, way | {target}) for path in _folder_links(inside)]
    return loops


def _folder_links(found: dict[str, dict[str, Any]]) -> list[str]:
    """Symlinks that may lead to folders (hidden ones aside: their files are left out)."""
    return [
        path
        for path, info in found.items()
        if info.get("islink") and info.get("type") != "file"
        and not path.rpartition("/")[2].startswith(".")
    ]


def _contains(folder: str, inner: str) -> bool:
    return inner == folder or inner.startswith(folder.rstrip(os.sep) + os.sep)


def _unlisted_folders(fs: Any, found: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """Folders of a ``find`` result that could not be listed, and why.

    fsspec's walk leaves out a subfolder it cannot list without a word; such a folder shows
    up empty, so only the (few) empty folders are listed again to find out.
    """
    parents = {path.rstrip("/").rpartition("/")[0] for path in found}
    for path, info in sorted(found.items()):
        folder = path.rstrip("/")
        if info.get("type") != "directory" or folder in parents:
            continue
        try:
            fs.ls(folder, detail=False)
        except OSError as exc:
            reason = "permission denied" if isinstance(exc, PermissionError) else (
                exc.strerror or type(exc).__name__
            )
            yield folder, f"cannot list folder: {reason}"
