"""``imgstats diff``: drift between two versions of a store, or the latest versions of two
stores or stats files; ``--fail-above METRIC=VALUE`` exits 3 when a channel exceeds it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..api import load_stats
from ..config import parse_json_options
from ..errors import DriftError, InputError, UsageError
from ..fs.location import resolve
from ..report.drift import METRICS, SIGNED, Comparison, compare_stats, exceeding
from ..store import open_store
from ..store.document import Stats, dumps
from .text import table

__all__ = ["diff", "format_comparison", "parse_limits"]

#: Channels over a limit named on the one stderr line (the table and --json show them all).
SHOWN = 5


def parse_limits(given: list[str] | None) -> dict[str, float]:
    """``["ks=0.05", "js=0.1"]`` -> ``{"ks": 0.05, "js": 0.1}``; :class:`UsageError` otherwise."""
    limits: dict[str, float] = {}
    for text in given or []:
        name, sep, value = text.partition("=")
        if not sep or name not in METRICS:
            raise UsageError(f"--fail-above needs METRIC=VALUE with METRIC one of "
                             f"{', '.join(METRICS)}, not {text!r}")
        try:
            limit = float(value)
        except ValueError:
            raise UsageError(f"--fail-above {text}: {value!r} is not a number") from None
        if not 0 <= limit < float("inf"):
            raise UsageError(f"--fail-above {text}: the limit must be a number >= 0")
        limits[name] = limit
    return limits


def diff(args: argparse.Namespace) -> int:
    limits = parse_limits(args.fail_above)
    a, b = _versions(args)
    comparison = compare_stats(a, b)
    if args.json:
        print(dumps(comparison.as_json()).decode(), end="")
    else:
        print(format_comparison(a, b, comparison))
    sys.stdout.flush()
    found = exceeding(comparison, limits)
    if found:
        more = f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
        raise DriftError("drift above the limits: " + "; ".join(found[:SHOWN]) + more)
    return 0


def _versions(args: argparse.Namespace) -> tuple[Stats, Stats]:
    """A and B: two versions of one store, or the chosen (latest) versions of two."""
    options: dict[str, Any] | None = (
        parse_json_options(args.store_options, "--store-options") if args.store_options else None
    )
    if args.b is not None:
        return load_stats(args.a, args.from_, options), load_stats(args.b, args.to, options)
    store = open_store(resolve(args.a, options))
    versions = store.require_versions()
    to = args.to if args.to is not None else versions[-1]
    start = args.from_
    if start is None:
        before = [v for v in versions if v < to]
        if not before:
            raise InputError(f"{store.url} has no version before {to} to compare with (give "
                             "--from N, or a second store or stats file)")
        start = before[-1]
    return store.load(start), store.load(to)


def format_comparison(a: Stats, b: Stats, comparison: Comparison) -> str:
    """The ``diff`` text: what was compared, a table per channel, then each group's."""
    lines = [
        f"A: {a.source} version {a.version}, {a.image_count:,} images",
        f"B: {b.source} version {b.version}, {b.image_count:,} images",
        "B against A (mean and std deltas on [0, 1], B minus A; wasserstein on [0, 1])",
        *(["note: A and B were counted after different transforms"]
          if a.transform != b.transform else []),
        "",
        _table(["channel"], [[c] for c in comparison.channels], comparison.metrics),
    ]
    if comparison.groups:
        keys = [[name, channel] for name in sorted(comparison.groups)
                for channel in comparison.channels]
        merged = {m: tuple(v for name in sorted(comparison.groups)
                           for v in comparison.groups[name][m]) for m in METRICS}
        lines += ["", _table(["group", "channel"], keys, merged)]
    for side, names in (("A", comparison.only_in_a), ("B", comparison.only_in_b)):
        if names:
            lines.append(f"groups only in {side}: {', '.join(names)}")
    return "\n".join(lines)


def _table(heads: list[str], keys: list[list[str]], metrics: dict[str, tuple[float, ...]]) -> str:
    rows = [
        [*key, *(f"{metrics[m][i]:+.6g}" if m in SIGNED else f"{metrics[m][i]:.6g}"
                 for m in METRICS)]
        for i, key in enumerate(keys)
    ]
    return table([*heads, *METRICS], rows, right=set(range(len(heads), len(heads) + 5)))
