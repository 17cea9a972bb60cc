"""The ``imgstats`` command: argument parsing, logging, output and exit codes, nothing else.

Exit status: 0 success (or nothing changed), 1 the run failed, 2 bad usage or bad input,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 output pipe closed (``| head``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from . import __version__
from .api import load_stats
from .config import JobConfig, load_config_file, parse_json_options
from .errors import ImgstatsError, ResultNotStoredError, StatsFileError
from .location import resolve
from .signals import sigint_blocked
from .stats import Stats
from .store import open_store, version_name

if TYPE_CHECKING:
    from .job import ComputeResult

__all__ = ["main"]

log = logging.getLogger("pipeline")

#: Skipped files that ``show`` names (``--skipped`` lists them all).
SKIPPED_SHOWN = 5
#: Width that ``show`` and ``history`` keep to.
COLUMNS = 100


class Terminated(BaseException):
    """SIGTERM arrived (a batch system or ``kill`` stopping the run): unwind like Ctrl-C."""


def _default(name: str) -> str:
    value = next(f.default for f in dataclasses.fields(JobConfig) if f.name == name)
    return "none" if value is None else str(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgstats",
        description="Exact per-channel mean and std of an image collection, "
        "for transforms.Normalize(mean, std).",
    )
    parser.add_argument("--version", action="version", version=f"imgstats {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--debug", action="store_true", help="verbose logs and tracebacks on errors"
    )

    # Options default to SUPPRESS so that only those given on the command line override
    # the config file; the defaults shown are JobConfig's.
    compute = commands.add_parser(
        "compute",
        parents=[common],
        help="compute the stats of SOURCE and write a new version to STORE",
        description="Compute the exact per-channel mean and std of the images under SOURCE "
        "and write them as a new version in STORE.",
        argument_default=argparse.SUPPRESS,
    )

    def option(*names: str, help: str, **kwargs: Any) -> None:
        key = names[0].lstrip("-").replace("-", "_")
        if kwargs.get("action") != "store_true" and kwargs.get("action") != "append":
            help = f"{help} (default: {_default(key)})"
        compute.add_argument(*names, help=help, **kwargs)

    compute.add_argument("source", nargs="?", help="local folder or fsspec URL of the images")
    compute.add_argument("--out", metavar="STORE", help="folder or URL of the versioned stats")
    compute.add_argument("--config", metavar="FILE", help="YAML file of options (CLI wins)")
    option("--mode", choices=["rgb", "native", "gray"], help="pixel semantics")
    option(
        "--scheduler", metavar="ADDRESS",
        help="existing Dask scheduler (or DASK_SCHEDULER_ADDRESS); none: a local cluster",
    )
    option("--scheduler-timeout", type=float, metavar="SECONDS",
           help="wait this long for a scheduler that does not answer")
    option("--workers", type=int, metavar="N", help="local cluster workers (none: one per core)")
    option("--threads-per-worker", type=int, metavar="N",
           help="threads per local cluster worker (none: 1)")
    option("--on-error", choices=["skip", "fail"], help="undecodable files")
    option("--max-errors", type=int, metavar="N", help="fail past N skipped files")
    option("--include", action="append", metavar="GLOB", help="keep matching paths")
    option("--exclude", action="append", metavar="GLOB", help="drop matching paths")
    compute.add_argument("--source-options", metavar="JSON", help="fsspec options for SOURCE")
    compute.add_argument("--store-options", metavar="JSON", help="fsspec options for STORE")
    option("--split-every", type=int, metavar="N", help="tree reduction fan-in")
    option("--max-image-pixels", type=int, metavar="N", help="decompression bomb limit")
    option(
        "--decode-timeout", type=float, metavar="SECONDS",
        help="skip a file whose decode takes longer (0: no limit, decode in the worker process)",
    )
    option("--unsafe-store", action="store_true",
           help="write to a store that cannot create files exclusively")
    option("--full", action="store_true", help="read every file again")
    option("--quiet", action="store_true",
           help="print nothing on success (one line if files were skipped)")

    show = commands.add_parser(
        "show", parents=[common], help="print one version's stats and its Normalize line"
    )
    show.add_argument("store", metavar="STORE_OR_FILE", help="store folder/URL or one stats file")
    show.add_argument("--version", type=int, metavar="N", help="this version, not the latest")
    show.add_argument("--json", action="store_true", help="print the stats file itself")
    show.add_argument("--skipped", action="store_true",
                      help="list every skipped file and why, one per line")
    show.add_argument("--store-options", metavar="JSON", help="fsspec options for STORE")

    history = commands.add_parser("history", parents=[common], help="one line per version")
    history.add_argument("store", metavar="STORE", help="folder or URL of the versioned stats")
    history.add_argument("--store-options", metavar="JSON", help="fsspec options for STORE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    _configure_logging(debug, getattr(args, "quiet", False))
    try:
        with _sigterm_unwinds():
            if args.command == "compute":
                return _compute(args)
            if args.command == "show":
                return _show(args)
            return _history(args)
    except BrokenPipeError:
        return _output_closed()
    except ResultNotStoredError as exc:
        print(json.dumps(exc.document, indent=2))  # the work is not lost
        return _fail(str(exc), exc.exit_code, debug)
    except ImgstatsError as exc:
        return _fail(str(exc), exc.exit_code, debug)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, debug)
    except Terminated:
        return _fail("terminated", 143, debug)
    except Exception as exc:  # a bug or an unexpected library error: still one line
        return _fail(f"unexpected {type(exc).__name__}: {exc}", 1, debug)


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread, so a run cleans up (its
    cluster, its workers) as after Ctrl-C; further signals are ignored while it does."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        for ignored in (signal.SIGINT, signal.SIGTERM):
            signal.signal(ignored, signal.SIG_IGN)
        raise Terminated

    def interrupt(signum: int, frame: FrameType | None) -> None:
        for ignored in (signal.SIGINT, signal.SIGTERM):
            signal.signal(ignored, signal.SIG_IGN)
        raise KeyboardInterrupt

    try:
        previous = {
            signal.SIGTERM: signal.signal(signal.SIGTERM, terminate),
            signal.SIGINT: signal.signal(signal.SIGINT, interrupt),
        }
    except ValueError:  # not the main thread (main() called from a test's thread)
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _output_closed() -> int:
    """stdout's reader went away (``| head``): stop quietly, as Unix tools do."""
    with open(os.devnull, "wb") as devnull:  # so that the final flush has nowhere to fail
        os.dup2(devnull.fileno(), sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"imgstats: error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    return code


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime


def _configure_logging(debug: bool, quiet: bool) -> None:
    # Warnings (skipped files, clipped 16-bit images) by default, progress only with --debug:
    # a failure is then the one "imgstats: error:" line on stderr, as cron jobs expect.
    level = logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UTCFormatter("%(asctime)s %(levelname)s %(message)s",
                                       "%Y-%m-%dT%H:%M:%SZ"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def _config_from_args(args: argparse.Namespace) -> JobConfig:
    given: dict[str, Any] = {
        key: value for key, value in vars(args).items() if key not in ("command", "debug", "config")
    }
    for key in ("source_options", "store_options"):
        if key in given:
            given[key] = parse_json_options(given[key], "--" + key.replace("_", "-"))
    values: dict[str, Any] = {}
    origin = "command line"
    if "config" in vars(args):
        values = load_config_file(args.config)
        origin = f"config {args.config}"
    values.update({k: v for k, v in given.items() if v is not None})
    return JobConfig.from_mapping(values, origin)


class _ProgressBar:
    """Files read / to read, rate and time left, redrawn in place on a terminal's stderr."""

    def __init__(self) -> None:
        self._bar: Any = None

    def begin(self, files: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=files, unit=" files", desc="imgstats", file=sys.stderr,
                         dynamic_ncols=True, leave=False, smoothing=0.1)

    def advance(self, files: int) -> None:
        if self._bar is not None:
            self._bar.update(files)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def _progress(show: bool) -> Iterator[_ProgressBar | None]:
    """A progress bar when ``show``, with log lines printed above it, not through it."""
    if not show:
        yield None
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar = _ProgressBar()
    try:
        with logging_redirect_tqdm(loggers=[log]):
            yield bar
    finally:
        bar.close()


def _compute(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    with sigint_blocked():  # Dask's threads made at import start workers: see pipeline.signals
        from .job import compute_stats
    with _progress(not config.quiet and sys.stderr.isatty()) as bar:
        result = compute_stats(config, progress=bar)
    if config.quiet:
        if result.stats.skipped:  # cron mails whatever is printed: a clean run prints nothing
            print(f"imgstats: warning: {_skipped_summary(result.stats, config.out)}",
                  file=sys.stderr)
        return 0
    print(f"imgstats: {format_summary(result)}", file=sys.stderr)
    print(result.url)
    return 0


def format_summary(result: ComputeResult) -> str:
    """The line a run ends with: what it counted, read and wrote."""
    stats = result.stats
    if not result.written:
        return f"nothing changed since version {stats.version}; no new version written"
    run = stats.document.get("run") or {}
    skipped = len(stats.skipped)
    return (
        f"version {stats.version} written: {stats.image_count:,} images counted, "
        f"{_plural(skipped, 'file')} skipped, {run.get('files_read', 0):,} files read, "
        f"{run.get('files_reused', 0):,} reused, {run.get('seconds', 0):.1f} s"
    )


def _skipped_summary(stats: Stats, store: str) -> str:
    skipped = stats.skipped
    first = skipped[0]
    return (
        f"{_plural(len(skipped), 'file')} skipped in version {stats.version} (first: "
        f"{first.get('path')!r}: {first.get('error')}); `imgstats show {store} --skipped` "
        "lists them"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _store_options(args: argparse.Namespace) -> dict[str, Any] | None:
    text = getattr(args, "store_options", None)
    return parse_json_options(text, "--store-options") if text else None


def _show(args: argparse.Namespace) -> int:
    stats = load_stats(args.store, args.version, _store_options(args))
    if args.json:
        print(json.dumps(stats.document, indent=2))
    elif args.skipped:
        for skip in stats.skipped:
            print(f"{skip.get('path')!r}: {skip.get('error')}")
    else:
        print(format_stats(stats, args.store))
    sys.stdout.flush()  # a closed pipe is reported here, while it can be handled
    return 0


def _history(args: argparse.Namespace) -> int:
    store = open_store(resolve(args.store, _store_options(args)))
    rows: list[list[str]] = []
    for number in store.require_versions():
        try:
            stats = store.load(number)
        except StatsFileError as exc:
            rows.append([version_name(number), f"unreadable: {exc}"])
            continue
        rows.append(history_row(stats))
    header = ["version", "created (UTC)", "parent", "run", "images", "read", "reused", "skipped"]
    print(_table(header, rows, right={2, 4, 5, 6, 7}))
    sys.stdout.flush()
    return 0


def history_row(stats: Stats) -> list[str]:
    """One version's cells in the ``history`` table."""
    run = stats.document.get("run") or {}
    kind = "incremental" if run.get("incremental") else "full" if run else "-"
    created = stats.created.replace("T", " ").removesuffix("+00:00")
    return [
        version_name(stats.version),
        created,
        "-" if stats.parent is None else str(stats.parent),
        kind,
        f"{stats.image_count:,}",
        _count(run.get("files_read")),
        _count(run.get("files_reused")),
        f"{len(stats.skipped):,}",
    ]


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """Columns two spaces apart, as wide as their widest cell; ``right`` ones right-aligned.
    A row shorter than the header (an unreadable version) runs on from its last cell."""
    widths = [
        max(len(row[i]) for row in [header, *rows] if len(row) > i) for i in range(len(header))
    ]
    lines = []
    for row in [header, *rows]:
        if len(row) < len(header):
            lines.append("  ".join(row))
            continue
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_stats(stats: Stats, store: str = "STORE") -> str:
    """The ``show`` text: a summary, the per-channel table, the skipped files, the Normalize
    call. Means and stds are printed as the shortest text that reads back as the same float,
    in the table as in the Normalize call."""
    scale = stats.scale
    skipped = stats.skipped
    lines = [
        f"version {stats.version} of {stats.source}",
        f"mode {stats.mode}, created {stats.created}",
        f"{stats.image_count:,} images, {stats.pixel_count:,} pixels per channel, "
        f"{stats.dtype} samples (scale {_number(scale)}), {_plural(len(skipped), 'file')} skipped",
        "",
    ]
    rows = [
        [
            name,
            repr(stats.mean[i]),
            repr(stats.std[i]),
            f"{stats.mean[i] * scale:.6f}",
            f"{stats.std[i] * scale:.6f}",
            _number(stats.min[i]),
            _number(stats.max[i]),
        ]
        for i, name in enumerate(stats.channels)
    ]
    header = ["channel", "mean", "std", "mean (raw)", "std (raw)", "min", "max"]
    lines += [_table(header, rows, right={3, 4, 5, 6}), ""]
    if skipped:
        lines.append("skipped:")
        lines += [f"  {s.get('path')!r}: {s.get('error')}" for s in skipped[:SKIPPED_SHOWN]]
        if len(skipped) > SKIPPED_SHOWN:
            lines.append(
                f"  ... and {len(skipped) - SKIPPED_SHOWN:,} more "
                f"(`imgstats show {store} --skipped` lists them all)"
            )
        lines.append("")
    lines.append(normalize_call(stats.mean, stats.std))
    return "\n".join(lines)


def normalize_call(mean: Sequence[float], std: Sequence[float]) -> str:
    """``transforms.Normalize(mean=[...], std=[...])``, wrapped to stay within
    :data:`COLUMNS` (still valid Python, the floats in full)."""
    means, stds = _floats(mean), _floats(std)
    one_line = f"transforms.Normalize(mean={means}, std={stds})"
    if len(one_line) <= COLUMNS:
        return one_line
    indent = " " * len("transforms.Normalize(")
    two_lines = f"transforms.Normalize(mean={means},\n{indent}std={stds})"
    if max(len(line) for line in two_lines.splitlines()) <= COLUMNS:
        return two_lines
    inner = "    "
    return "\n".join([
        "transforms.Normalize(",
        f"{inner}mean=[",
        *(f"{inner * 2}{value!r}," for value in mean),
        f"{inner}],",
        f"{inner}std=[",
        *(f"{inner * 2}{value!r}," for value in std),
        f"{inner}],",
        ")",
    ])


def _floats(values: Sequence[float]) -> str:
    return "[" + ", ".join(repr(v) for v in values) + "]"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"
