"""The stats store: versioned stats files, the stats document, the per-file record.

========  ==========================================  ===========================================
backend   exclusive, atomic create                    ``latest.json`` never regresses
========  ==========================================  ===========================================
local     temp file beside the target, ``os.link``    ``flock`` on a lock file, compare, replace
s3        one PUT with ``IfNoneMatch="*"`` (probed)   PUT with ``IfMatch`` on the ETag read
memory    in-process lock (memory is per process)     the same lock
unsafe    check, then write (one writer only)         compare, then write
========  ==========================================  ===========================================

Any other filesystem, and an S3 service that ignores conditional writes, cannot create
exclusively: :func:`writable_store` refuses it unless ``allow_unsafe`` is set.
"""

from __future__ import annotations

import logging

from ..errors import StoreError, UnsafeStoreError
from ..fs.location import Location, as_storage_error
from .base import StatsStore
from .document import Stats
from .local import LocalStore
from .memory import MemoryStore
from .names import LATEST, version_name
from .s3 import S3Store
from .unsafe import UnsafeStore

__all__ = [
    "LATEST",
    "LocalStore",
    "MemoryStore",
    "S3Store",
    "Stats",
    "StatsStore",
    "UnsafeStore",
    "open_store",
    "version_name",
    "writable_store",
]

log = logging.getLogger(__name__)


def open_store(location: Location) -> StatsStore:
    """The store backend for ``location``'s filesystem."""
    if location.protocol == "file":
        return LocalStore(location)
    if location.protocol in ("s3", "s3a"):
        return S3Store(location)
    if location.protocol == "memory":
        return MemoryStore(location)
    return UnsafeStore(location)


def writable_store(store: StatsStore, allow_unsafe: bool = False) -> StatsStore:
    """``store``, checked for writing before any work is done: its folder made (see
    :meth:`StatsStore.remove_created_folders`), an S3 service probed for conditional writes.
    A store that cannot create exclusively is refused (exit 2) unless ``allow_unsafe``, and
    then written check-then-write. What killed runs left is cleaned up (see
    :meth:`StatsStore.clean_up`, :meth:`StatsStore.repair_latest`)."""
    exclusive = store.supports_exclusive_create
    if isinstance(store, S3Store):
        exclusive = store.honours_conditional_writes()
    if not exclusive:
        s3 = isinstance(store, S3Store)
        if not allow_unsafe:
            why, instead = (
                ("does not honour conditional writes (If-None-Match)", "")
                if s3
                else ("cannot create files exclusively", "use a local, s3:// or memory:// store, ")
            )
            raise UnsafeStoreError(
                f"store {store.url!r} {why}, so concurrent runs could overwrite each other; "
                f"{instead}pass --unsafe-store to write anyway"
            )
        log.warning("store %r %s; writing unsafely as asked", store.url,
                    "ignores conditional writes" if s3 else "cannot create files exclusively")
        store = UnsafeStore(store.location, folders=store.supports_folders)
    store.prepare()
    for repair in (store.clean_up, store.repair_latest):  # what killed runs left behind
        try:
            repair()
        except Exception as exc:  # the run may still succeed: its write says if not
            log.warning("%s", as_storage_error(exc, store.location, "tidy up", StoreError))
    return store
