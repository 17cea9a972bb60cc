"""The HTML report: one self-contained page (plots as base64 PNGs inside, no script, no
network) of one version and the store's history.

Sections: the summary, per-channel moments, histograms (linear and log), quantiles, groups,
mean and std across versions, skipped files, provenance. Every text from the stats files is
escaped.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from html import escape

import numpy as np

from ..core.histogram import Histogram
from ..core.transform import Transform
from ..store.document import QUANTILES, GroupStats, Stats
from . import plots

__all__ = ["GROUPS_PLOTTED", "SKIPPED_LISTED", "render"]

#: Groups drawn in the groups plot (the largest by image count; the table has them all).
GROUPS_PLOTTED = 40
#: Skipped files listed (the stats file has them all).
SKIPPED_LISTED = 1000

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       margin: 0 auto; max-width: 1000px; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px;
       border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #555; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 0; }
dt { color: #555; } dd { margin: 0; }
img { max-width: 100%; display: block; margin: 8px 0; }
pre { background: #f6f6f6; padding: 10px; white-space: pre-wrap; font-size: 12px; }
.note { color: #666; font-size: 13px; }
"""


def render(stats: Stats, history: Sequence[Stats], store: str, tool_version: str) -> str:
    """The report of ``stats`` (one version of ``store``), with ``history`` (every readable
    version, ascending) for the plots across versions."""
    title = f"imgstats report: {stats.source}, version {stats.version}"
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">store {escape(store)}, created {escape(stats.created)}</p>',
        _summary(stats),
        "<h2>Per channel</h2>",
        _moments(stats),
        *_distribution(stats),
        "<h2>Groups</h2>",
        *_groups(stats),
        "<h2>Across versions</h2>",
        *_versions(history),
        "<h2>Skipped files</h2>",
        _skipped(stats),
        "<h2>Provenance</h2>",
        f"<pre>{escape(json.dumps(stats.document.get('provenance'), indent=2))}</pre>",
        f'<p class="note">Written by imgstats {escape(tool_version)}.</p>',
    ]
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[object]],
           numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    head = "".join(f'<th{" class=n" if n else ""}>{escape(h)}</th>'
                   for h, n in zip(header, numeric, strict=True))
    lines = [
        "<tr>" + "".join(f'<td{" class=n" if n else ""}>{escape(str(cell))}</td>'
                         for cell, n in zip(row, numeric, strict=True)) + "</tr>"
        for row in rows
    ]
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _summary(stats: Stats) -> str:
    transform = Transform.from_record(stats.transform).describe() if stats.transform else None
    items = [
        ("source", stats.source),
        ("version", f"{stats.version} (parent: {stats.parent if stats.parent else '-'})"),
        ("mode", stats.mode),
        ("samples", f"{stats.dtype}, scale {stats.scale:g}, channels {', '.join(stats.channels)}"),
        ("images", f"{stats.image_count:,}"),
        ("pixels per channel", f"{stats.pixel_count:,}"),
        ("transform", transform or "none"),
        ("groups", str(stats.document.get("group_by") or "none")),
        ("skipped files", f"{len(stats.skipped):,}"),
    ]
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items) + (
        "</dl>")


def _moments(part: GroupStats) -> str:
    rows = [[c, repr(part.mean[i]), repr(part.std[i]), repr(part.variance[i]),
             f"{part.min[i]:g}", f"{part.max[i]:g}"] for i, c in enumerate(part.channels)]
    return _table(["channel", "mean", "std", "variance", "min (raw)", "max (raw)"], rows,
                  [False, True, True, True, True, True])


def _distribution(stats: Stats) -> list[str]:
    if stats.histogram is None:
        return ["<h2>Histograms</h2>",
                '<p class="note">Float samples keep moments only: no histogram.</p>']
    histogram = Histogram(stats.histogram)
    channels = list(stats.channels)
    quantiles = [[repr(q), *histogram.quantile(q)] for q in QUANTILES]
    return [
        "<h2>Histograms</h2>",
        "<h3>Linear</h3>",
        _image(plots.histogram_png(stats.histogram, channels, log=False),
               "histogram per channel, linear scale"),
        "<h3>Log</h3>",
        _image(plots.histogram_png(stats.histogram, channels, log=True),
               "histogram per channel, log scale"),
        "<h2>Quantiles</h2>",
        '<p class="note">Raw sample values: the smallest v with count(samples &le; v) &ge; '
        "q &middot; n (numpy's inverted_cdf), exactly.</p>",
        _table(["q", *channels], quantiles, [True] * (len(channels) + 1)),
    ]


def _groups(stats: Stats) -> list[str]:
    if not stats.groups:
        return ['<p class="note">This version has no groups (<code>compute --group-by</code>).'
                "</p>"]
    names = sorted(stats.groups)
    rows = [[name, f"{stats.groups[name].image_count:,}",
             *(f"{m:.6f}" for m in stats.groups[name].mean),
             *(f"{s:.6f}" for s in stats.groups[name].std)] for name in names]
    header = ["group", "images", *(f"mean {c}" for c in stats.channels),
              *(f"std {c}" for c in stats.channels)]
    plotted = sorted(names, key=lambda n: (-stats.groups[n].image_count, n))[:GROUPS_PLOTTED]
    plotted.sort()
    note = (f'<p class="note">The plot shows the {GROUPS_PLOTTED} largest of {len(names)} '
            "groups.</p>" if len(names) > GROUPS_PLOTTED else "")
    png = plots.groups_png(
        plotted,
        np.array([stats.groups[n].mean for n in plotted]),
        np.array([stats.groups[n].std for n in plotted]),
        list(stats.channels),
    )
    return [_image(png, "mean and std per group"), note,
            _table(header, rows, [False] + [True] * (len(header) - 1))]


def _versions(history: Sequence[Stats]) -> list[str]:
    same = [s for s in history if s.channels == history[-1].channels] if history else []
    rows = [[s.version, s.created.replace("T", " ").removesuffix("+00:00"),
             f"{s.image_count:,}", " ".join(f"{m:.6f}" for m in s.mean),
             " ".join(f"{v:.6f}" for v in s.std)] for s in history]
    table = _table(["version", "created (UTC)", "images", "mean", "std"], rows,
                   [True, False, True, False, False])
    if len(same) < 2:
        return ['<p class="note">One version so far: nothing to plot across versions.</p>',
                table]
    png = plots.versions_png([s.version for s in same], np.array([s.mean for s in same]),
                             np.array([s.std for s in same]), list(same[-1].channels))
    return [_image(png, "mean and std across versions"), table]


def _skipped(stats: Stats) -> str:
    skipped = stats.skipped
    if not skipped:
        return '<p class="note">None.</p>'
    rows = [[s.get("path", ""), s.get("error", "")] for s in skipped[:SKIPPED_LISTED]]
    more = (f'<p class="note">... and {len(skipped) - SKIPPED_LISTED:,} more (<code>imgstats '
            "show --skipped</code>).</p>" if len(skipped) > SKIPPED_LISTED else "")
    return _table(["path", "error"], rows) + more
