"""``imgstats compute``: options to a run, a progress bar on a terminal, one summary line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..config import JobConfig, load_config_file, parse_json_options
from ..run.signals import sigint_blocked
from ..store.document import Stats
from .text import plural

if TYPE_CHECKING:
    from ..run.job import ComputeResult

__all__ = ["compute", "format_summary"]

log = logging.getLogger("pipeline")


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
        origin = f"config {args.config!r}"
    values.update({k: v for k, v in given.items() if v is not None})
    return JobConfig.from_mapping(values, origin)


class _ProgressBar:
    """Files read / to read, rate and time left, redrawn in place on a terminal's stderr."""

    def __init__(self) -> None:
        self._bar: Any = None

    def begin(self, files: int) -> None:
        """``files`` more to read: the total grows as the run plans its shards."""
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=0, unit=" files", desc="imgstats", file=sys.stderr,
                             dynamic_ncols=True, leave=False, smoothing=0.1)
        self._bar.total += files
        self._bar.refresh()

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


def compute(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    with sigint_blocked():  # Dask's threads made at import start workers: see pipeline.run.signals
        from ..run.job import compute_stats
    if config.dry_run:
        from ..run.cluster import describe

        print(describe(config))
        return 0
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
        f"{plural(skipped, 'file')} skipped, {run.get('files_read', 0):,} files read, "
        f"{run.get('files_reused', 0):,} reused, {run.get('seconds', 0):.1f} s"
    )


def _skipped_summary(stats: Stats, store: str) -> str:
    skipped = stats.skipped
    first = skipped[0]
    return (
        f"{plural(len(skipped), 'file')} skipped in version {stats.version} (first: "
        f"{first.get('path')!r}: {first.get('error')}); `imgstats show {store!r} --skipped` "
        "lists them"
    )
