"""``imgstats show`` and ``imgstats history``: one version's stats, a line per version."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..api import load_stats
from ..config import parse_json_options
from ..core.transform import Transform
from ..errors import StatsFileError, UsageError
from ..export import export, unit_scale, write_preprocessor_config
from ..fs.location import resolve
from ..store import open_store
from ..store.document import GroupStats, Stats
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
    group = getattr(args, "group", None)
    if group is not None and group not in stats.groups:
        known = ", ".join(repr(name) for name in sorted(stats.groups)) or "none"
        raise StatsFileError(f"version {stats.version} has no group {group!r} (groups: {known})")
    part: GroupStats = stats.groups[group] if group is not None else stats
    chosen = "json" if args.json else getattr(args, "format", "text")
    update = getattr(args, "update", None)
    if update is not None:
        if chosen != "hf":
            raise UsageError("--update FILE goes with --format hf")
        unit = unit_scale(part)
        write_preprocessor_config(update, unit.mean, unit.std)
        print(f"imgstats: {update}: image_mean and image_std updated", file=sys.stderr)
    if chosen != "text":
        print(export(part, chosen))
    elif args.skipped:
        for skip in stats.skipped:
            print(f"{skip.get('path')!r}: {skip.get('error')}")
    else:
        print(format_stats(stats, args.store, group))
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
    kind = ("verify" if run.get("verify") else "incremental" if run.get("incremental")
            else "full" if run else "-")
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


def format_stats(stats: Stats, store: str = "STORE", group: str | None = None) -> str:
    """The ``show`` text: a summary, the per-channel tables (moments, then the distribution),
    the groups, the skipped files, the Normalize call. Means and stds are printed as the
    shortest text that reads back as the same float, in the table as in the Normalize call.
    With ``group``, the numbers are that group's."""
    part: GroupStats = stats.groups[group] if group is not None else stats
    skipped = stats.skipped
    scale = part.scale
    lines = [
        f"version {stats.version} of {stats.source}" + (f", group {group!r}" if group else ""),
        f"mode {stats.mode}, created {stats.created}",
        *([f"transform {Transform.from_record(stats.transform).describe()}"]
          if stats.transform else []),
        f"{part.image_count:,} images, {part.pixel_count:,} pixels per channel, "
        f"{part.dtype} samples (scale {number(scale)}), {plural(len(skipped), 'file')} skipped",
        "",
        _moments_table(part),
        "",
    ]
    if part.histogram is not None:
        lines += [_distribution_table(part), ""]
    if stats.groups and group is None:
        lines += [_groups_table(stats), "(`show --group NAME` shows one group)", ""]
    if skipped:
        lines.append("skipped:")
        lines += [f"  {s.get('path')!r}: {s.get('error')}" for s in skipped[:SKIPPED_SHOWN]]
        if len(skipped) > SKIPPED_SHOWN:
            lines.append(
                f"  ... and {len(skipped) - SKIPPED_SHOWN:,} more "
                f"(`imgstats show {store!r} --skipped` lists them all)"
            )
        lines.append("")
    lines.append(normalize_call(part.mean, part.std))
    return "\n".join(lines)


def _moments_table(part: GroupStats) -> str:
    scale = part.scale
    rows = [
        [
            name,
            repr(part.mean[i]),
            repr(part.std[i]),
            f"{part.mean[i] * scale:.6f}",
            f"{part.std[i] * scale:.6f}",
            number(part.min[i]),
            number(part.max[i]),
        ]
        for i, name in enumerate(part.channels)
    ]
    header = ["channel", "mean", "std", "mean (raw)", "std (raw)", "min", "max"]
    return table(header, rows, right={3, 4, 5, 6})


def _distribution_table(part: GroupStats) -> str:
    """Raw percentiles and the share of samples at 0 and at the largest value."""
    top = int(part.scale)
    levels = (0.01, 0.5, 0.99)
    quantiles = [part.quantile(q) for q in levels]
    at_zero, at_top = part.share_at(0), part.share_at(top)
    rows = [
        [name, *(str(q[i]) for q in quantiles), _percent(at_zero[i]), _percent(at_top[i])]
        for i, name in enumerate(part.channels)
    ]
    header = ["channel", "p1", "p50", "p99", "at 0", f"at {top}"]
    return table(header, rows, right={1, 2, 3, 4, 5})


def _groups_table(stats: Stats) -> str:
    group_by = stats.document.get("group_by")
    rows = [
        [name, f"{g.image_count:,}", " ".join(f"{m:.4f}" for m in g.mean),
         " ".join(f"{s:.4f}" for s in g.std)]
        for name, g in sorted(stats.groups.items())
    ]
    header = [f"group ({group_by})", "images", "mean", "std"]
    return table(header, rows, right={1})


def _percent(share: float) -> str:
    return f"{100 * share:.4g}%"


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
