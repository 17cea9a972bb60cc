"""List the image files under SOURCE, through any fsspec filesystem, as a stream in sorted
path order (on the client): memory does not grow with the collection.

Three walks, none recursive (a tree of any depth lists within Python's recursion limit):

- local folders: ``os.scandir`` depth first (:mod:`pipeline.fs.walk`), following symlinked
  folders as torchvision's ``ImageFolder`` does, minus loops;
- S3: the key space split by prefix and listed concurrently, in key order
  (:mod:`pipeline.fs.prefixes`); other filesystems that list a whole tree in one pass
  (memory...): ``find``, sorted. Either way every object is a file, even a key that is also
  the prefix of other keys (``a.png`` and ``a.png/inner.png``), and folder markers (keys
  ending in ``/``) are not;
- any other filesystem: ``ls`` folder by folder, depth first.

Every entry that is not a folder is listed, whatever it is (a FIFO, a device, a dangling
link): the reader (:mod:`pipeline.fs.reading`) reads regular files only and skips the others
with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fsspec.asyn import AsyncFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

from ..core.files import FileEntry, is_image_path, passes_filters
from ..errors import NoImagesError, SourceNotFoundError, SourceUnreachableError
from .prefixes import is_s3, list_by_prefix
from .walk import LOOP, Found, Unlisted, token, walk_listings, walk_local

__all__ = ["LOOP", "iter_images"]


def iter_images(
    fs: Any,
    root: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    url: str | None = None,
    on_unlisted: Callable[[str, str], None] | None = None,
) -> Iterator[FileEntry]:
    """Every image file under ``root``, at any depth, in sorted relative path order, as the
    walk finds them (:class:`NoImagesError` on the first ``next`` when there is none).

    Hidden files and folders, folders, S3 folder markers and non-image extensions are left
    out; ``include``/``exclude`` are fnmatch patterns on the relative path (``*`` crosses
    ``/``). A symlink loop, or a subfolder that cannot be listed (permission denied...), is
    left out, and once the walk is over ``on_unlisted(relative_folder + "/", reason)`` is
    called for each, in path order.
    """
    shown = repr(url or root)
    root = root.rstrip("/")
    unlisted: list[Unlisted] = []
    found = _translated(lambda: _walk(fs, root, shown, unlisted), shown)
    listed = 0
    last = None
    for path, size, change in found:
        if last is not None and path <= last:  # the plan lines the listing up by path
            raise SourceUnreachableError(f"source {shown} listed {path!r} after {last!r}")
        last = path
        if is_image_path(path) and passes_filters(path, include, exclude):
            listed += 1
            yield FileEntry(path, size, change)
    if on_unlisted is not None:
        for folder, why in sorted(unlisted):
            on_unlisted(folder + "/", why)
    if not listed:
        raise NoImagesError(f"no image files under {shown}")


def _walk(fs: Any, root: str, shown: str, unlisted: list[Unlisted]) -> Iterator[Found]:
    if not fs.isdir(root):
        kind = "is not a folder" if fs.exists(root) else "does not exist"
        raise SourceNotFoundError(f"source {shown} {kind}")
    if isinstance(fs, LocalFileSystem):
        return walk_local(root, unlisted)
    if is_s3(fs):
        return list_by_prefix(fs, root)
    if _lists_in_one_pass(fs):
        return iter(sorted(_find_objects(fs, root)))
    return walk_listings(fs, root, unlisted)


def _translated(walk: Callable[[], Iterator[Found]], shown: str) -> Iterator[Found]:
    """The walk, with a source that is missing or unreadable as :class:`SourceNotFoundError`."""
    try:
        yield from walk()
    except SourceNotFoundError:
        raise
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise SourceNotFoundError(f"source {shown} does not exist") from exc
    except PermissionError as exc:
        raise SourceNotFoundError(f"source {shown} cannot be listed: permission denied") from exc


def _lists_in_one_pass(fs: Any) -> bool:
    """Whether ``fs`` has its own ``find`` (one flat listing: object stores, memory) rather
    than fsspec's, which walks folder by folder, recursively."""
    if isinstance(fs, AsyncFileSystem):
        return type(fs)._find is not AsyncFileSystem._find
    return type(fs).find is not AbstractFileSystem.find


def _find_objects(fs: Any, root: str) -> Iterator[Found]:
    """Every object under ``root`` from one flat listing: files only, no folder markers."""
    prefix = root + "/" if root else ""
    for name, info in fs.find(root, detail=True, withdirs=False).items():
        if info.get("type") == "directory" or name.endswith("/") or not name.startswith(prefix):
            continue
        yield name[len(prefix) :], int(info.get("size") or 0), token(info)
