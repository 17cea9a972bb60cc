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
from typing import Any, Literal

from .core.groups import GroupBy
from .core.keys import MODES, Mode
from .core.transform import DEFAULT_INTERPOLATION, Transform
from .errors import UsageError

__all__ = [
    "JOBQUEUE_KINDS",
    "ClusterSpec",
    "JobConfig",
    "Scale",
    "ScanOptions",
    "load_config_file",
    "parse_json_options",
]

log = logging.getLogger(__name__)

ON_ERROR = ("skip", "fail")
#: Pillow's own default (``PIL.Image.MAX_IMAGE_PIXELS``, about 89.5 MP): above it an image is
#: treated as a decompression bomb.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
#: Seconds one file's read, and then its decode, may take before it is skipped (0: no limit,
#: no sandbox).
DEFAULT_DECODE_TIMEOUT = 60.0
#: The largest file read: a larger one is skipped with its size, without being read, as a
#: decompression bomb is. One frame at Pillow's pixel limit takes at most 1.4 GB even as
#: uncompressed 4-channel float32 TIFF.
DEFAULT_MAX_FILE_BYTES = 2 * 2**30
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
#: ``--cluster`` kinds that dask-jobqueue provides, and their cluster classes.
JOBQUEUE_KINDS = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
    "htcondor": "HTCondorCluster",
    "oar": "OARCluster",
    "moab": "MoabCluster",
}
#: Seconds a started cluster may go without any worker: until the first batch job starts, and
#: later whenever every job has ended (walltime) and none has replaced them yet. Five minutes
#: is longer than a job waits on a quiet queue, shorter than a busy queue's hours.
DEFAULT_CLUSTER_TIMEOUT = 300.0
#: Jobs a started cluster gets when the config gives neither ``scale`` nor ``adapt`` (fewer
#: when the listing has fewer shards than their worker threads).
DEFAULT_JOBS = 4


@dataclass(frozen=True)
class ScanOptions:
    """How each task turns a file into counted pixels: what travels from the config to the
    scan of every shard."""

    mode: Mode = "rgb"
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT  # seconds per file; 0: no sandbox
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES
    group_by: GroupBy | None = None  # each file's group, from its path
    segment_files: int = DEFAULT_SEGMENT_FILES  # rows per record segment
    transform: Transform | None = None  # applied after the mode's conversion


@dataclass(frozen=True)
class Scale:
    """``scale:`` in the config: a fixed number of workers (``scale: 8``, as Dask's
    ``cluster.scale(8)``, or ``{workers: 8}``) or of batch jobs (``{jobs: 2}``)."""

    count: int
    unit: Literal["workers", "jobs"] = "workers"


@dataclass(frozen=True)
class ClusterSpec:
    """A Dask cluster manager to start for the run: ``module.cls(*args, **kwargs)``, then
    sized by ``scale`` or ``adapt`` (the keyword arguments of its ``adapt``), or by default."""

    name: str
    module: str
    cls: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    scale: Scale | None = None
    adapt: Mapping[str, Any] | None = None

    @property
    def is_jobqueue(self) -> bool:
        """Whether this is one of dask-jobqueue's batch-system clusters."""
        return self.module.split(".")[0] == "dask_jobqueue"


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
    verify: bool = False  # read every file to check its content digest (see --verify)
    quiet: bool = False
    shard_bytes: int = DEFAULT_SHARD_BYTES
    shard_files: int = DEFAULT_SHARD_FILES
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT  # seconds per file; 0: no sandbox
    unsafe_store: bool = False
    scheduler_timeout: float = DEFAULT_SCHEDULER_TIMEOUT
    group_by: str | None = None  # dir, dir:N or re:PATTERN
    segment_files: int = DEFAULT_SEGMENT_FILES
    cluster: str = "local"
    cluster_options: Mapping[str, Any] = field(default_factory=dict)
    clusters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    scale: Scale | None = None
    adapt: Mapping[str, Any] | None = None
    cluster_timeout: float = DEFAULT_CLUSTER_TIMEOUT
    dry_run: bool = False
    performance_report: str | None = None
    resize: int | None = None  # torchvision's Resize(N): the shorter side to N
    center_crop: str | None = None  # torchvision's CenterCrop: N or HxW
    interpolation: str = DEFAULT_INTERPOLATION  # of the resize
    transform: str | None = None  # MODULE:NAME, a deterministic function of a PIL image
    #: The SHA-256 of the function's module source, pinned by the run when it starts (not an
    #: option: workers check that they run this very code).
    transform_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.on_error not in ON_ERROR:
            raise UsageError(f"on_error must be skip or fail, not {self.on_error!r}")
        for name in ("workers", "threads_per_worker", "max_errors", "max_image_pixels",
                     "max_file_bytes"):
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
        try:
            self.transform_spec  # noqa: B018 (checks the transform options)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        for name in ("scheduler_timeout", "cluster_timeout"):
            if not 0 < getattr(self, name) < float("inf"):
                raise UsageError(
                    f"{name} must be a positive number of seconds, not {getattr(self, name)}"
                )
        if self.scale is not None and self.adapt is not None:
            raise UsageError("give scale or adapt, not both")
        if self.scheduler and self.cluster != "local":
            raise UsageError(
                f"scheduler and cluster {self.cluster!r} both given: attach to a running "
                "scheduler or start a cluster, not both"
            )
        self.cluster_spec  # noqa: B018 - an unknown cluster name fails here, before any work

    @property
    def scan_options(self) -> ScanOptions:
        """What every task needs of this config."""
        group_by = GroupBy.parse(self.group_by) if self.group_by is not None else None
        return ScanOptions(
            self.mode, self.max_image_pixels, self.decode_timeout, self.max_file_bytes,
            group_by, transform=self.transform_spec,
        )

    @property
    def transform_spec(self) -> Transform | None:
        """The ``resize``, ``center_crop``, ``interpolation`` and ``transform`` options as one
        spec (None: the pixels are counted as decoded)."""
        return Transform.parse(
            self.resize, self.center_crop, self.interpolation, self.transform,
            self.transform_sha256,
        )

    @property
    def scheduler_address(self) -> str | None:
        """``scheduler``, else the ``DASK_SCHEDULER_ADDRESS`` environment variable (unless a
        cluster is to be started)."""
        if self.cluster != "local":
            return None
        return self.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None

    @property
    def cluster_spec(self) -> ClusterSpec | None:
        """The cluster manager ``cluster`` names (None: the local cluster): an entry of
        ``clusters``, else a dask-jobqueue kind with ``cluster_options`` as its arguments
        (over dask's ``jobqueue.<kind>.*`` configuration). ``scale``/``adapt`` win over an
        entry's own."""
        name = self.cluster
        if name in self.clusters:
            spec = _cluster_spec(name, self.clusters[name])
        elif name in JOBQUEUE_KINDS:
            spec = ClusterSpec(name, "dask_jobqueue", JOBQUEUE_KINDS[name],
                               kwargs=dict(self.cluster_options))
        elif name == "local":
            return None
        else:
            known = ["local", *JOBQUEUE_KINDS, *self.clusters]
            raise UsageError(
                f"unknown cluster {name!r}{_suggestion(name, dict.fromkeys(known))}: "
                f"one of {', '.join(known)}"
            )
        if self.scale is not None or self.adapt is not None:
            spec = dataclasses.replace(spec, scale=self.scale, adapt=self.adapt)
        return spec

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], origin: str = "configuration") -> JobConfig:
        """Build from plain values (parsed YAML, CLI options), checking every key's type."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        checked: dict[str, Any] = {}
        for key, value in values.items():
            if key in RETIRED:
                log.warning("%s: %r has no effect any more: %s", origin, key, RETIRED[key])
                continue
            if key not in fields or key in _PINNED:
                options = {name: f for name, f in fields.items() if name not in _PINNED}
                raise UsageError(f"{origin}: unknown key {key!r}{_suggestion(key, options)}")
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


#: Fields a run fills in itself: not options.
_PINNED = {"transform_sha256"}
_INT_KEYS = {
    "workers",
    "threads_per_worker",
    "max_errors",
    "shard_bytes",
    "shard_files",
    "segment_files",
    "max_image_pixels",
    "resize",
    "max_file_bytes",
}
_BOOL_KEYS = {"full", "verify", "quiet", "unsafe_store", "dry_run"}
_STR_KEYS = {
    "source", "out", "mode", "scheduler", "on_error", "group_by", "cluster", "performance_report",
    "interpolation", "transform",
}
_OPTIONAL = {
    "scheduler", "workers", "threads_per_worker", "max_errors", "max_image_pixels", "group_by",
    "scale", "adapt", "performance_report", "resize", "center_crop", "transform",
    "max_file_bytes",
}
_SPEC_KEYS = ("module", "class", "args", "kwargs", "scale", "adapt")


def _check_type(key: str, value: Any, origin: str) -> Any:
    def wrong(expected: str) -> UsageError:
        return UsageError(f"{origin}: key {key!r} must be {expected}, not {type(value).__name__}")

    if value is None and key in _OPTIONAL:
        return None
    if key in _INT_KEYS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong("an integer")
        return value
    if key in ("decode_timeout", "scheduler_timeout", "cluster_timeout"):
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
    if key == "center_crop":  # N (an integer in YAML) or HxW
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise wrong("N or HxW")
        return str(value)
    if key in ("include", "exclude"):
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of glob patterns")
        return tuple(value)
    if key in ("source_options", "store_options", "cluster_options"):
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise wrong("a mapping of option names to values")
        return dict(value)
    if key == "scale":
        return _scale(value, f"{origin}: key 'scale'")
    if key == "adapt":
        return _adapt(value, f"{origin}: key 'adapt'")
    if key == "clusters":
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise wrong("a mapping of cluster names to specs")
        for name, spec in value.items():
            _cluster_spec(name, spec, origin)  # checked now, used when named
        return {name: dict(spec) for name, spec in value.items()}
    raise AssertionError(f"no type check for {key}")  # pragma: no cover


def _scale(value: Any, where: str) -> Scale:
    """``8``, ``{workers: 8}`` or ``{jobs: 2}``."""
    unit: Literal["workers", "jobs"] = "workers"
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif isinstance(value, Mapping) and len(value) == 1 and set(value) <= {"workers", "jobs"}:
        count = value.get("workers", value.get("jobs"))
        unit = "jobs" if "jobs" in value else "workers"
    else:
        raise UsageError(f"{where} must be a number of workers, {{workers: N}} or {{jobs: N}}")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise UsageError(f"{where} must be a positive integer, not {count!r}")
    return Scale(count, unit)


def _adapt(value: Any, where: str) -> dict[str, Any]:
    """Keyword arguments of ``cluster.adapt`` (``minimum``, ``maximum``, ``minimum_jobs``,
    ``maximum_jobs``, ``interval``, ``wait_count``, ``target_duration``...)."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise UsageError(f"{where} must be a mapping such as {{minimum: 0, maximum: 4}}")
    for bound in ("minimum", "maximum", "minimum_jobs", "maximum_jobs"):
        count = value.get(bound, 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise UsageError(f"{where}: {bound} must be a whole number, not {count!r}")
    return dict(value)


def _cluster_spec(name: str, spec: Any, origin: str = "configuration") -> ClusterSpec:
    """One entry of ``clusters:`` (dask-ctl's shape: module, class, args, kwargs)."""
    where = f"{origin}: clusters.{name}"
    if not isinstance(spec, Mapping):
        raise UsageError(f"{where} must be a mapping with module, class and kwargs")
    for key in spec:
        if key not in _SPEC_KEYS:
            hint = _suggestion(key, dict.fromkeys(_SPEC_KEYS))
            raise UsageError(f"{where}: unknown key {key!r}{hint}")
    module, cls = spec.get("module"), spec.get("class")
    if not isinstance(module, str) or not isinstance(cls, str) or not module or not cls:
        raise UsageError(f"{where} needs module and class (e.g. dask_kubernetes.operator, "
                         "KubeCluster)")
    args, kwargs = spec.get("args", []), spec.get("kwargs", {})
    if not isinstance(args, list | tuple):
        raise UsageError(f"{where}.args must be a list")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise UsageError(f"{where}.kwargs must be a mapping of argument names to values")
    scale, adapt = spec.get("scale"), spec.get("adapt")
    if scale is not None and adapt is not None:
        raise UsageError(f"{where}: give scale or adapt, not both")
    return ClusterSpec(
        name, module, cls, tuple(args), dict(kwargs),
        None if scale is None else _scale(scale, f"{where}.scale"),
        None if adapt is None else _adapt(adapt, f"{where}.adapt"),
    )


def load_config_file(path: str) -> dict[str, Any]:
    """The mapping in a YAML config file (safe loading only: no Python objects)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read config {path!r}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"config {path!r} is not UTF-8 text: {exc.reason}") from exc
    except RecursionError as exc:
        raise UsageError(f"config {path!r} is nested too deeply") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0] or type(exc).__name__
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"config {path!r} is not valid YAML{where}: {problem}") from exc
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f"config {path!r} must hold a mapping of option names to values")
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
