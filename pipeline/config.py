"""The job configuration and the defaults of every option, in one place.

:class:`JobConfig` is one frozen dataclass, built from YAML and/or command-line options (keys
are the long option names with ``_`` for ``-``; unknown keys and wrong types are
:class:`~pipeline.errors.UsageError` naming the key; YAML is loaded with ``safe_load`` only).
:class:`ScanOptions` is the part of it that travels to every task: how a file becomes counted
pixels. This module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .core.groups import GroupBy
from .core.keys import MODES, Mode
from .errors import UsageError

__all__ = ["JobConfig", "ScanOptions", "load_config_file", "parse_json_options"]

log = logging.getLogger(__name__)

ON_ERROR = ("skip", "fail")
#: Pillow's own default (``PIL.Image.MAX_IMAGE_PIXELS``, about 89.5 MP): above it an image is
#: treated as a decompression bomb.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
#: Seconds one file's decode may take before it is skipped (0: no limit, no sandbox).
DEFAULT_DECODE_TIMEOUT = 60.0
#: Shard limits. A task costs ~3 ms of Dask overhead (measured: 2,000 no-op tasks on a 2-worker
#: LocalCluster); a shard should carry ~0.3 s of work to keep that near 1% while leaving a short
#: tail to balance: 16 MiB is ~150 ImageNet-size JPEGs (~2 ms each in a worker), 1,000 files
#: ~1,000 CIFAR-size PNGs (~0.3 ms each with reading and per-file rows).
DEFAULT_SHARD_BYTES = 16 * 2**20
DEFAULT_SHARD_FILES = 1000
#: Keys that older configs may hold and that no longer do anything, with why.
RETIRED = {
    "split_every": "results are merged on the client as they arrive (no reduction tree)",
}
#: Files per record segment. An incremental run reads and rewrites the segments whose range
#: changed: with files changed at random, a fraction f of them touches about 1 - (1 - f)**32
#: of the segments (3.2% for f = 0.1%); new files in new folders touch none.
DEFAULT_SEGMENT_FILES = 32
#: Seconds to wait for a scheduler that does not answer.
DEFAULT_SCHEDULER_TIMEOUT = 10.0


@dataclass(frozen=True)
class ScanOptions:
    """How each task turns a file into counted pixels: what travels from the config to the
    scan of every shard."""

    mode: Mode = "rgb"
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT  # seconds per file; 0: no sandbox
    group_by: GroupBy | None = None  # each file's group, from its path
    segment_files: int = DEFAULT_SEGMENT_FILES  # rows per record segment


@dataclass(frozen=True)
class JobConfig:
    """Everything one ``compute`` run needs."""

    source: str
    out: str
    mode: Mode = "rgb"
    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int | None = None
    on_error: str = "skip"
    max_errors: int | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    source_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    store_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    full: bool = False
    quiet: bool = False
    shard_bytes: int = DEFAULT_SHARD_BYTES
    shard_files: int = DEFAULT_SHARD_FILES
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT  # seconds per file; 0: no sandbox
    unsafe_store: bool = False
    scheduler_timeout: float = DEFAULT_SCHEDULER_TIMEOUT
    group_by: str | None = None  # dir, dir:N or re:PATTERN
    segment_files: int = DEFAULT_SEGMENT_FILES

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.on_error not in ON_ERROR:
            raise UsageError(f"on_error must be skip or fail, not {self.on_error!r}")
        for name in ("workers", "threads_per_worker", "max_errors", "max_image_pixels"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "max_errors" else 1):
                raise UsageError(f"{name} must be a positive integer, not {value}")
        if self.shard_bytes < 1 or self.shard_files < 1 or self.segment_files < 1:
            raise UsageError("shard_bytes, shard_files and segment_files must be positive")
        if not 0 <= self.decode_timeout < float("inf"):
            raise UsageError(
                "decode_timeout must be a number of seconds (0: no limit), "
                f"not {self.decode_timeout}"
            )
        if self.group_by is not None:
            try:
                GroupBy.parse(self.group_by)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        if not 0 < self.scheduler_timeout < float("inf"):
            raise UsageError(
                f"scheduler_timeout must be a positive number of seconds, "
                f"not {self.scheduler_timeout}"
            )

    @property
    def scan_options(self) -> ScanOptions:
        """What every task needs of this config."""
        group_by = GroupBy.parse(self.group_by) if self.group_by is not None else None
        return ScanOptions(self.mode, self.max_image_pixels, self.decode_timeout, group_by)

    @property
    def scheduler_address(self) -> str | None:
        """``scheduler``, else the ``DASK_SCHEDULER_ADDRESS`` environment variable."""
        return self.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], origin: str = "configuration") -> JobConfig:
        """Build from plain values (parsed YAML, CLI options), checking every key's type."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        checked: dict[str, Any] = {}
        for key, value in values.items():
            if key in RETIRED:
                log.warning("%s: %r has no effect any more: %s", origin, key, RETIRED[key])
                continue
            if key not in fields:
                raise UsageError(f"{origin}: unknown key {key!r}{_suggestion(key, fields)}")
            checked[key] = _check_type(key, value, origin)
        for required, typed in (("source", "SOURCE"), ("out", "--out")):
            if not checked.get(required):
                where = "" if origin == "command line" else f" (or `{required}:` in {origin})"
                raise UsageError(f"{typed} is required{where}")
        try:
            return cls(**checked)
        except UsageError as exc:  # a value out of range: say where it came from
            raise UsageError(f"{origin}: {exc}") from exc


def _suggestion(key: str, known: Mapping[str, Any]) -> str:
    """`` (did you mean 'workers'?)`` for a key close to a known one, else nothing."""
    close = difflib.get_close_matches(str(key).replace("-", "_"), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_INT_KEYS = {
    "workers",
    "threads_per_worker",
    "max_errors",
    "shard_bytes",
    "shard_files",
    "segment_files",
    "max_image_pixels",
}
_BOOL_KEYS = {"full", "quiet", "unsafe_store"}
_STR_KEYS = {"source", "out", "mode", "scheduler", "on_error", "group_by"}
_OPTIONAL = {
    "scheduler", "workers", "threads_per_worker", "max_errors", "max_image_pixels", "group_by"
}


def _check_type(key: str, value: Any, origin: str) -> Any:
    def wrong(expected: str) -> UsageError:
        return UsageError(f"{origin}: key {key!r} must be {expected}, not {type(value).__name__}")

    if value is None and key in _OPTIONAL:
        return None
    if key in _INT_KEYS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong("an integer")
        return value
    if key in ("decode_timeout", "scheduler_timeout"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise wrong("a number of seconds")
        return float(value)
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if key in _STR_KEYS:
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if key in ("include", "exclude"):
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of glob patterns")
        return tuple(value)
    if key in ("source_options", "store_options"):
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise wrong("a mapping of option names to values")
        return dict(value)
    raise AssertionError(f"no type check for {key}")  # pragma: no cover


def load_config_file(path: str) -> dict[str, Any]:
    """The mapping in a YAML config file (safe loading only: no Python objects)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"config {path} is not UTF-8 text: {exc.reason}") from exc
    except RecursionError as exc:
        raise UsageError(f"config {path} is nested too deeply") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0] or type(exc).__name__
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"config {path} is not valid YAML{where}: {problem}") from exc
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f"config {path} must hold a mapping of option names to values")
    return values


def parse_json_options(text: str, option: str) -> dict[str, Any]:
    """``--source-options '{"anon": true}'`` -> a dict."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{option} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object")
    return value
