"""A store on S3 or an S3-compatible service: one PUT with ``IfNoneMatch="*"`` creates (s3fs
turns the 412 into :class:`FileExistsError`); a PUT with ``IfMatch`` on the ETag just read
publishes. Whether the service honours those headers is probed before the first write."""

from __future__ import annotations

import contextlib
import datetime
import logging
import uuid

from ..errors import StoreConflictError, StoreError, StoreUnreachableError
from ..fs.location import as_storage_error
from .base import MAX_CREATE_ATTEMPTS, TEMP_MAX_AGE, StatsStore
from .names import LATEST

__all__ = ["S3Store"]

log = logging.getLogger(__name__)

PROBE_PREFIX = ".imgstats-probe-"


class S3Store(StatsStore):
    """``s3://bucket/prefix`` stores."""

    @property
    def supports_exclusive_create(self) -> bool:
        return True  # when the service honours conditional writes: see honours_conditional_writes

    @property
    def supports_folders(self) -> bool:
        return False

    def honours_conditional_writes(self) -> bool:
        """Write a throwaway key twice with ``IfNoneMatch="*"``: whether the second is refused.
        Storage failures (a missing bucket, no access) are one-line errors."""
        probe = self.path_of(f"{PROBE_PREFIX}{uuid.uuid4().hex}")
        action = "write to store"
        try:
            self.fs.pipe_file(probe, b"probe", mode="create")
        except Exception as exc:
            raise as_storage_error(exc, self.location, action, StoreUnreachableError) from exc
        try:
            self.fs.pipe_file(probe, b"probe", mode="create")
            return False
        except FileExistsError:
            return True
        except Exception as exc:
            raise as_storage_error(exc, self.location, action, StoreUnreachableError) from exc
        finally:
            with contextlib.suppress(Exception):  # best effort: a leftover probe is harmless
                self.fs.rm_file(probe)

    def clean_up(self, max_age: float = TEMP_MAX_AGE) -> None:
        """Remove the probes of runs that were killed between writing and removing them, older
        than ``max_age`` (a live run's lasts a few requests)."""
        try:
            listed = self.fs.ls(self.location.path, detail=True, refresh=True)
        except Exception:
            return
        now = datetime.datetime.now(datetime.UTC)
        for info in listed:
            name = str(info.get("name", ""))
            modified = info.get("LastModified")
            if not name.rpartition("/")[2].startswith(PROBE_PREFIX) or not isinstance(
                modified, datetime.datetime
            ):
                continue
            if (now - modified).total_seconds() >= max_age:
                with contextlib.suppress(Exception):
                    self.fs.rm_file(name)
                    log.info("removed %r, left by a run that was stopped", name)

    def _container_exists(self) -> bool:
        bucket = self.location.path.split("/", 1)[0]
        try:
            return bool(self.fs.exists(bucket))
        except Exception:  # unreachable: treated as missing, the caller reports it
            return False

    def create(self, name: str, data: bytes, durable: bool = True) -> None:
        self.fs.pipe_file(self.path_of(name), data, mode="create")

    def publish_latest(self, version: int, data: bytes) -> None:
        bucket, key, _ = self.fs.split_path(self.path_of(LATEST))
        for _ in range(MAX_CREATE_ATTEMPTS):
            try:
                info = self.fs.info(self.path_of(LATEST), refresh=True)
                etag = info.get("ETag")
            except FileNotFoundError:
                etag = None
            if version <= self.latest_version():
                return
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
            except Exception as exc:
                if not _precondition_failed(exc):
                    action = f"publish {LATEST} in"
                    raise as_storage_error(exc, self.location, action, StoreError) from exc
                continue  # another writer moved latest.json: look again
            finally:
                self.fs.invalidate_cache(self.path_of(LATEST))
            return
        raise StoreConflictError(
            f"gave up publishing {self.url_of(LATEST)!r} after many conflicts"
        )


def _precondition_failed(exc: BaseException) -> bool:
    if isinstance(exc, FileExistsError):
        return True
    cause = exc.__cause__
    response = getattr(cause, "response", None) or {}
    return response.get("Error", {}).get("Code") in ("PreconditionFailed", "412")
