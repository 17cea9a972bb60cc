"""The ``imgstats`` command: argument parsing, logging and exit codes; each command's work
is in its own module (:mod:`~pipeline.cli.compute`, :mod:`~pipeline.cli.show`).

Exit status: 0 success (or nothing changed), 1 the run failed, 2 bad usage or bad input,
3 drift above a ``diff --fail-above`` limit, 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM), 141 output pipe closed (``| head``).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
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
from typing import Any

from .._version import __version__
from ..config import JobConfig
from ..core.transform import INTERPOLATIONS
from ..errors import ImgstatsError, ResultNotStoredError
from ..export import FORMATS
from ..report.drift import METRICS
from .compute import compute
from .diff import diff
from .report import report
from .show import history, show

__all__ = ["main"]

log = logging.getLogger("pipeline")

if "__mp_main__" in sys.modules:
    # A process multiprocessing spawned from the CLI (a LocalCluster worker, re-running the
    # ``imgstats`` script as ``__mp_main__``): it ignores the terminal's Ctrl-C from now on,
    # before Dask is imported (see pipeline.run.signals).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
    option("--cluster", metavar="NAME",
           help="cluster to start: local, slurm, pbs, sge, lsf, htcondor, oar, moab, or a name "
           "from the config's clusters section")
    option("--cluster-timeout", type=float, metavar="SECONDS",
           help="fail when a started cluster has no worker for this long (jobs not starting)")
    option("--dry-run", action="store_true",
           help="print the cluster that would be started (a batch job's script) and exit")
    compute.add_argument("--performance-report", metavar="FILE.html",
                         help="write Dask's performance report of the run")
    option("--workers", type=int, metavar="N", help="local cluster workers (none: one per core)")
    option("--threads-per-worker", type=int, metavar="N",
           help="threads per local cluster worker (none: 1)")
    option("--on-error", choices=["skip", "fail"], help="undecodable files")
    option("--max-errors", type=int, metavar="N", help="fail past N skipped files")
    option("--include", action="append", metavar="GLOB", help="keep matching paths")
    option("--exclude", action="append", metavar="GLOB", help="drop matching paths")
    compute.add_argument("--source-options", metavar="JSON", help="fsspec options for SOURCE")
    compute.add_argument("--store-options", metavar="JSON", help="fsspec options for STORE")
    compute.add_argument("--split-every", type=int, help=argparse.SUPPRESS)  # retired: no effect
    option("--max-image-pixels", type=int, metavar="N", help="decompression bomb limit")
    option("--max-file-bytes", type=int, metavar="N",
           help="skip (without reading) a file larger than this")
    option(
        "--decode-timeout", type=float, metavar="SECONDS",
        help="skip a file whose read or decode takes longer (0: no limit, decode in the worker "
        "process)",
    )
    option("--group-by", metavar="SPEC",
           help="also per group: dir (first folder), dir:N (first N folders) or re:PATTERN "
           "(its first capture group)")
    option("--resize", type=int, metavar="N",
           help="first torchvision's Resize(N): the shorter side to N pixels")
    option("--center-crop", metavar="N|HxW",
           help="then torchvision's CenterCrop (zero padding where the crop is larger)")
    option("--interpolation", choices=list(INTERPOLATIONS), help="the resize's filter")
    option("--transform", metavar="MODULE:NAME",
           help="then this deterministic function of the PIL image (returns a PIL image or "
           "an integer array)")
    option("--unsafe-store", action="store_true",
           help="write to a store that cannot create files exclusively")
    option("--full", action="store_true", help="read every file again")
    option("--verify", action="store_true",
           help="read every file and count again those whose content digest changed (a "
           "rewrite that kept size and mtime); the unchanged are not decoded")
    option("--quiet", action="store_true",
           help="print nothing on success (one line if files were skipped)")

    show = commands.add_parser(
        "show", parents=[common], help="print one version's stats and its Normalize line"
    )
    show.add_argument("store", metavar="STORE_OR_FILE", help="store folder/URL or one stats file")
    show.add_argument("--version", type=int, metavar="N", help="this version, not the latest")
    shape = show.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print the stats file itself")
    shape.add_argument("--format", choices=["text", *FORMATS], default="text",
                       help="what a framework takes, on its scale, ready to paste (json: the "
                       "stats file)")
    show.add_argument("--update", metavar="FILE",
                      help="with --format hf: set image_mean and image_std in this "
                      "preprocessor_config.json in place (other keys byte-identical)")
    show.add_argument("--skipped", action="store_true",
                      help="list every skipped file and why, one per line")
    show.add_argument("--group", metavar="NAME", help="one group's stats (runs with --group-by)")
    show.add_argument("--store-options", metavar="JSON", help="fsspec options for STORE")

    history = commands.add_parser("history", parents=[common], help="one line per version")
    history.add_argument("store", metavar="STORE", help="folder or URL of the versioned stats")
    history.add_argument("--store-options", metavar="JSON", help="fsspec options for STORE")

    diff = commands.add_parser(
        "diff", parents=[common], help="drift between two versions, or two stores",
        description="Per channel, B against A: mean and std deltas, Wasserstein-1, "
        "Kolmogorov-Smirnov and Jensen-Shannon distances from the exact histograms.",
    )
    diff.add_argument("a", metavar="A", help="store (its versions --from and --to), or stats")
    diff.add_argument("b", metavar="B", nargs="?", help="a second store or stats file")
    diff.add_argument("--from", dest="from_", type=int, metavar="N",
                      help="A's version (default: the one before --to; with B: A's latest)")
    diff.add_argument("--to", type=int, metavar="M",
                      help="B's version (default: the latest)")
    diff.add_argument("--json", action="store_true", help="the metrics as JSON")
    diff.add_argument("--fail-above", action="append", metavar="METRIC=VALUE",
                      help="exit 3 when a channel's metric exceeds VALUE (deltas by absolute "
                      f"value; repeatable; METRIC: {', '.join(METRICS)})")
    diff.add_argument("--store-options", metavar="JSON", help="fsspec options for A and B")

    report = commands.add_parser(
        "report", parents=[common], help="one self-contained HTML page of a store",
        description="Histograms, quantiles, groups, versions, skipped files and provenance of "
        "a store's latest version (or --version N), in one HTML file with its plots inside.",
    )
    report.add_argument("store", metavar="STORE", help="folder or URL of the versioned stats")
    report.add_argument("-o", "--out", metavar="FILE.html", required=True,
                        help="the HTML file to write")
    report.add_argument("--version", type=int, metavar="N", help="this version, not the latest")
    report.add_argument("--store-options", metavar="JSON", help="fsspec options for STORE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    # A path that is not UTF-8 (a local name, as Python gives it) prints as its own bytes.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")
    debug = getattr(args, "debug", False)
    _configure_logging(debug, getattr(args, "quiet", False))
    try:
        with _sigterm_unwinds():
            if args.command == "compute":
                return compute(args)
            if args.command == "show":
                return show(args)
            if args.command == "diff":
                return diff(args)
            if args.command == "report":
                return report(args)
            return history(args)
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


def _utc(seconds: float | None) -> time.struct_time:
    return time.gmtime(seconds)


def _configure_logging(debug: bool, quiet: bool) -> None:
    # Warnings (skipped files, clipped 16-bit images) by default, progress only with --debug:
    # a failure is then the one "imgstats: error:" line on stderr, as cron jobs expect.
    level = logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = _utc
    handler.setFormatter(formatter)
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
