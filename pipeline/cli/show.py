"""``imgstats show`` and ``imgstats history``: one version's stats, a line per version."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..api import load_stats
from ..config import parse_json_options
from ..errors import StatsFileError
from ..fs.location import resolve
from ..store import open_store
from ..store.document import Stats
from ..store.names import version_name
from .text import number, plural, table

__all__ = ["format_stats", "history", "history_row", "normalize_call", "show"]

#: Skipped files that ``show`` names (``--skipped`` lists them all).
SKIPPED_SHOWN = 5
#: Width that ``show`` and ``history`` keep to.
COLUMNS = 100


def _store_options(args: argparse.Namespace) -> dict[str, Any] | None:
    text = getattr(args, "store_options", None)
    return parse_json_options(text, "--store-options") if text else None


def show(args: argparse.Namespace) -> int:
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


def history(args: argparse.Namespace) -> int:
    store = open_store(resolve(args.store, _store_options(args)))
    rows: list[list[str]] = []
    for version in store.require_versions():
        try:
            stats = store.load(version)
        except StatsFileError as exc:
            rows.append([version_name(version), f"unreadable: {exc}"])
            continue
        rows.append(history_row(stats))
    header = ["version", "created (UTC)", "parent", "run", "images", "read", "reused", "skipped"]
    print(table(header, rows, right={2, 4, 5, 6, 7}))
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
        f"{stats.dtype} samples (scale {number(scale)}), {plural(len(skipped), 'file')} skipped",
        "",
    ]
    rows = [
        [
            name,
            repr(stats.mean[i]),
            repr(stats.std[i]),
            f"{stats.mean[i] * scale:.6f}",
            f"{stats.std[i] * scale:.6f}",
            number(stats.min[i]),
            number(stats.max[i]),
        ]
        for i, name in enumerate(stats.channels)
    ]
    header = ["channel", "mean", "std", "mean (raw)", "std (raw)", "min", "max"]
    lines += [table(header, rows, right={3, 4, 5, 6}), ""]
    if skipped:
        lines.append("skipped:")
        lines += [f"  {s.get('path')!r}: {s.get('error')}" for s in skipped[:SKIPPED_SHOWN]]
        if len(skipped) > SKIPPED_SHOWN:
            lines.append(
                f"  ... and {len(skipped) - SKIPPED_SHOWN:,} more "
                f"(`imgstats show {store!r} --skipped` lists them all)"
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
