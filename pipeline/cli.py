"""The ``imgstats`` command: argument parsing, logging and exit codes, nothing else.

Exit status: 0 success (or nothing changed), 1 the run failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from . import __version__
from .api import load_stats
from .config import JobConfig, load_config_file, parse_json_options
from .errors import ImgstatsError, ResultNotStoredError, StatsFileError
from .job import compute_stats
from .location import resolve
from .stats import Stats
from .store import open_store, version_name

__all__ = ["main"]

log = logging.getLogger("pipeline")


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
    # the config file.
    compute = commands.add_parser(
        "compute",
        parents=[common],
        help="compute the stats of SOURCE and write a new version to STORE",
        description="Compute the exact per-channel mean and std of the images under SOURCE "
        "and write them as a new version in STORE.",
        argument_default=argparse.SUPPRESS,
    )
    compute.add_argument("source", nargs="?", help="local folder or fsspec URL of the images")
    compute.add_argument("--out", metavar="STORE", help="folder or URL of the versioned stats")
    compute.add_argument("--config", metavar="FILE", help="YAML file of options (CLI wins)")
    compute.add_argument("--mode", choices=["rgb", "native", "gray"], help="pixel semantics")
    compute.add_argument("--scheduler", metavar="ADDRESS", help="existing Dask scheduler")
    compute.add_argument("--workers", type=int, metavar="N", help="local cluster workers")
    compute.add_argument(
        "--threads-per-worker", type=int, metavar="N", help="threads per local cluster worker"
    )
    compute.add_argument("--on-error", choices=["skip", "fail"], help="undecodable files")
    compute.add_argument("--max-errors", type=int, metavar="N", help="fail past N skipped files")
    compute.add_argument("--include", action="append", metavar="GLOB", help="keep matching paths")
    compute.add_argument("--exclude", action="append", metavar="GLOB", help="drop matching paths")
    compute.add_argument("--source-options", metavar="JSON", help="fsspec options for SOURCE")
    compute.add_argument("--store-options", metavar="JSON", help="fsspec options for STORE")
    compute.add_argument("--split-every", type=int, metavar="N", help="tree reduction fan-in")
    compute.add_argument(
        "--max-image-pixels", type=int, metavar="N", help="decompression bomb limit"
    )
    compute.add_argument(
        "--decode-timeout",
        type=float,
        metavar="SECONDS",
        help="skip a file whose decode takes longer (default 60; 0: no limit, decode in the "
        "worker process)",
    )
    compute.add_argument("--unsafe-store", action="store_true", help="write to a store that "
                         "cannot create files exclusively")
    compute.add_argument("--full", action="store_true", help="read every file again")
    compute.add_argument("--quiet", action="store_true", help="print nothing on success")

    show = commands.add_parser(
        "show", parents=[common], help="print one version's stats and its Normalize line"
    )
    show.add_argument("store", metavar="STORE_OR_FILE", help="store folder/URL or one stats file")
    show.add_argument("--version", type=int, metavar="N", help="this version, not the latest")
    show.add_argument("--json", action="store_true", help="print the stats file itself")
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
        if args.command == "compute":
            return _compute(args)
        if args.command == "show":
            return _show(args)
        return _history(args)
    except ResultNotStoredError as exc:
        print(json.dumps(exc.document, indent=2))  # the work is not lost
        return _fail(str(exc), exc.exit_code, debug)
    except ImgstatsError as exc:
        return _fail(str(exc), exc.exit_code, debug)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, debug)
    except Exception as exc:  # a bug or an unexpected library error: still one line
        return _fail(f"unexpected {type(exc).__name__}: {exc}", 1, debug)


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"imgstats: error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    return code


def _configure_logging(debug: bool, quiet: bool) -> None:
    # Warnings (skipped files, clipped 16-bit images) by default, progress only with --debug:
    # a failure is then the one "imgstats: error:" line on stderr, as cron jobs expect.
    level = logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
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


def _compute(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    result = compute_stats(config, show_progress=not config.quiet)
    if not config.quiet:
        if not result.written:
            print(f"imgstats: nothing changed since version {result.stats.version}; "
                  "no new version written", file=sys.stderr)
        print(result.url)
    return 0


def _store_options(args: argparse.Namespace) -> dict[str, Any] | None:
    text = getattr(args, "store_options", None)
    return parse_json_options(text, "--store-options") if text else None


def _show(args: argparse.Namespace) -> int:
    stats = load_stats(args.store, args.version, _store_options(args))
    if args.json:
        print(json.dumps(stats.document, indent=2))
    else:
        print(format_stats(stats))
    return 0


def _history(args: argparse.Namespace) -> int:
    store = open_store(resolve(args.store, _store_options(args)))
    versions = store.versions()
    if not versions:
        raise StatsFileError(f"{store.url} holds no stats versions")
    for number in versions:
        try:
            stats = store.load(number)
        except StatsFileError as exc:
            print(f"{version_name(number)}  unreadable: {exc}")
            continue
        print(format_history_line(stats))
    return 0


def _floats(values: Sequence[float]) -> str:
    return "[" + ", ".join(repr(v) for v in values) + "]"


def format_stats(stats: Stats) -> str:
    """The ``show`` table: per channel on the [0, 1] and raw scales, then the Normalize line."""
    doc = stats.document
    lines = [
        f"version {stats.version} of {stats.source} (mode {stats.mode}, created {stats.created})",
        f"{stats.image_count} images, {stats.pixel_count} pixels per channel, "
        f"{stats.dtype} samples (scale {doc['scale']}), {len(stats.skipped)} files skipped",
        "",
        f"{'channel':<8}{'mean':>20}{'std':>20}{'min':>10}{'max':>10}"
        f"{'mean raw':>14}{'std raw':>14}{'min raw':>9}{'max raw':>9}",
    ]
    for i, name in enumerate(stats.channels):
        scale = stats.scale
        lines.append(
            f"{name:<8}{stats.mean[i]:>20.17f}{stats.std[i]:>20.17f}"
            f"{stats.min[i] / scale:>10.6f}{stats.max[i] / scale:>10.6f}"
            f"{stats.mean[i] * scale:>14.6f}{stats.std[i] * scale:>14.6f}"
            f"{_raw(stats.min[i]):>9}{_raw(stats.max[i]):>9}"
        )
    lines += [
        "",
        f"transforms.Normalize(mean={_floats(stats.mean)}, std={_floats(stats.std)})",
    ]
    return "\n".join(lines)


def _raw(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def format_history_line(stats: Stats) -> str:
    parent = "-" if stats.parent is None else str(stats.parent)
    return (
        f"{version_name(stats.version)}  {stats.created}  parent {parent:>6}  "
        f"{stats.image_count:>9} images  {stats.mode:<6}  mean {_floats(stats.mean)}  "
        f"std {_floats(stats.std)}"
    )
