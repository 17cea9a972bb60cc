"""S3 listed in parallel by prefix, streaming, in key order.

The key space under the root is split by common prefixes (``ListObjectsV2`` with the
delimiter ``/``), a level at a time, until there are :data:`PARTS` prefixes or no level
left to split (a prefix with more than :data:`SPLIT_LIMIT` direct files is not split). The
files met on the way and the prefixes are put in key order (a prefix's key ends with ``/``:
``a.png`` before ``a.png/...`` before ``a.png0``), then each prefix is listed flat, one
thread a prefix, at most :data:`CONCURRENCY` at once, each at most :data:`PAGES_AHEAD` pages
ahead of the reader. S3 returns a flat listing in UTF-8 byte order, which is code point
order: the concatenation is the listing in Python's ``str`` order, as the plan needs it.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fsspec.asyn import sync

from .walk import Found, token

__all__ = ["CONCURRENCY", "PARTS", "is_s3", "list_by_prefix"]

#: Prefixes to split the key space into, when the tree has them.
PARTS = 64
#: Prefixes listed at once.
CONCURRENCY = 16
#: Pages (1,000 keys each) a prefix listed ahead of the reader holds at most.
PAGES_AHEAD = 4
#: Direct files of a prefix above which it is listed flat, not split.
SPLIT_LIMIT = 2000
#: Sub-prefixes of a prefix above which it is listed flat, not split.
MAX_PREFIXES = 100_000
#: Levels split at most.
DEPTH = 4


@dataclass(frozen=True)
class _Prefix:
    """A prefix relative to the root, ending with ``/``; ``whole``: list it flat."""

    key: str
    whole: bool = False


_Item = Found | _Prefix


def _key(item: _Item) -> str:
    return item.key if isinstance(item, _Prefix) else item[0]


def is_s3(fs: Any) -> bool:
    """Whether ``fs`` is s3fs's filesystem, not version-aware (its keys list in order)."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return "s3" in protocols and hasattr(fs, "_call_s3") and not getattr(
        fs, "version_aware", False)


def list_by_prefix(
    fs: Any, root: str, parts: int = PARTS, concurrency: int = CONCURRENCY, page: int = 1000
) -> Iterator[Found]:
    """Every object under the folder ``root`` (``bucket/key``) in key order: files only, no
    folder markers, paths relative to ``root``; ``page`` keys a request at most. One part
    and one thread is one sequential listing."""
    bucket, key, _ = fs.split_path(root)
    lister = _Lister(fs, bucket, f"{key}/" if key else "", page)
    with ThreadPoolExecutor(concurrency, thread_name_prefix="imgstats-list") as pool:
        plan = lister.split(pool, parts)
        yield from lister.stream(pool, plan, concurrency)


@dataclass
class _Lister:
    fs: Any
    bucket: str
    base: str  # the root's key and "/", or "" for a bucket
    page: int
    stop: threading.Event = field(default_factory=threading.Event)

    def pages(self, prefix: str, delimiter: str) -> Iterator[dict[str, Any]]:
        """The ``ListObjectsV2`` answers for a prefix (relative to the root), one a page."""
        kwargs = {"Bucket": self.bucket, "Prefix": self.base + prefix, "MaxKeys": self.page,
                  **self.fs.req_kw}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        while True:
            page = sync(self.fs.loop, self.fs._call_s3, "list_objects_v2", **kwargs)
            yield page
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def files(self, page: dict[str, Any]) -> list[Found]:
        """A page's objects, folder markers left out, in the page's (key) order."""
        start = len(self.base)
        return [
            (item["Key"][start:], int(item.get("Size") or 0), token(item))
            for item in page.get("Contents", ())
            if not item["Key"].endswith("/")
        ]

    def children(self, prefix: _Prefix) -> list[_Item]:
        """A prefix's direct files and sub-prefixes; itself, to list whole, when it has more
        than :data:`SPLIT_LIMIT`."""
        files: list[_Item] = []
        prefixes: list[_Item] = []
        start = len(self.base)
        for page in self.pages(prefix.key, "/"):
            files += self.files(page)
            prefixes += [_Prefix(p["Prefix"][start:]) for p in page.get("CommonPrefixes", ())]
            if page.get("IsTruncated") and (
                len(files) > SPLIT_LIMIT or len(prefixes) > MAX_PREFIXES
            ):
                return [_Prefix(prefix.key, whole=True)]
        return files + prefixes

    def split(self, pool: ThreadPoolExecutor, parts: int) -> list[_Item]:
        """Files and prefixes in key order, covering the root: prefixes split a level at a
        time (concurrently) until there are ``parts`` of them or none to split."""
        plan: list[_Item] = [_Prefix("")]
        for _ in range(DEPTH):
            splittable = [i for i in plan if isinstance(i, _Prefix) and not i.whole]
            if not splittable or sum(isinstance(i, _Prefix) for i in plan) >= parts:
                break
            split = dict(zip(splittable, pool.map(self.children, splittable), strict=True))
            plan = sorted(
                (child for item in plan
                 for child in (split[item] if isinstance(item, _Prefix) and item in split
                               else [item])),
                key=_key,
            )
        return plan

    def stream(
        self, pool: ThreadPoolExecutor, plan: list[_Item], concurrency: int
    ) -> Iterator[Found]:
        """The plan's files, each prefix listed flat by a thread, in plan order."""
        window: deque[Found | queue.Queue[Any]] = deque()
        items = iter(plan)
        running = 0

        def fill() -> None:
            nonlocal running
            while running < concurrency:
                item = next(items, None)
                if item is None:
                    return
                if isinstance(item, _Prefix):
                    pages: queue.Queue[Any] = queue.Queue(PAGES_AHEAD)
                    pool.submit(self.produce, item.key, pages)
                    running += 1
                    window.append(pages)
                else:
                    window.append(item)

        try:
            fill()
            while window:
                head = window.popleft()
                if isinstance(head, tuple):
                    yield head
                    continue
                while (page := head.get()) is not None:
                    if isinstance(page, BaseException):
                        raise page
                    yield from page
                running -= 1
                fill()
        finally:
            self.stop.set()  # threads still listing ahead give up

    def produce(self, prefix: str, pages: queue.Queue[Any]) -> None:
        """List ``prefix`` flat into ``pages``: lists of files, then None (or the error)."""
        try:
            for page in self.pages(prefix, ""):
                if not self._put(pages, self.files(page)):
                    return
            self._put(pages, None)
        except BaseException as exc:  # handed to the reader, who raises it
            self._put(pages, exc)

    def _put(self, pages: queue.Queue[Any], item: Any) -> bool:
        while not self.stop.is_set():
            try:
                pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False
