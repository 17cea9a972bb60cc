"""Plain-text formatting shared by the commands: tables, counts, numbers."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["number", "plural", "table"]


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
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


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"
