"""Writing ``image_mean`` and ``image_std`` into an existing ``preprocessor_config.json`` in
place: only those values' text changes; every other byte of the file stays as it was.

The top-level object is scanned with the standard library's own JSON scanner to find where
each member's value starts and ends; the two values are replaced in the text (in the layout
the old value had: one line, or one number a line as ``transformers`` writes them), or
added after the last member when missing. The result is checked to parse to the old object
with the two keys changed.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Sequence
from typing import Any

from ..errors import InputError

__all__ = ["update_preprocessor_config", "write_preprocessor_config"]

KEYS = ("image_mean", "image_std")
_SPACE = re.compile(r"[ \t\n\r]*")


def update_preprocessor_config(
    text: str, mean: Sequence[float], std: Sequence[float]
) -> str:
    """``text`` (a JSON object) with ``image_mean`` and ``image_std`` set; :class:`ValueError`
    if it is not a JSON object."""
    old = json.loads(text)
    if not isinstance(old, dict):
        raise ValueError("not a JSON object")
    values = {"image_mean": list(mean), "image_std": list(std)}
    members, closing = _members(text)
    newline = "\r\n" if "\r\n" in text else "\n"
    unit = _indent_unit(text, members)
    edits: list[tuple[int, int, str]] = []
    for key, start, end in members:
        if key in values:
            multiline = "\n" in text[start:end]
            edits.append((start, end, _format(values[key], unit if multiline else None, newline)))
    missing = [key for key in KEYS if key not in {m[0] for m in members}]
    if missing:
        layout = unit if "\n" in text else None
        pieces = [f"{json.dumps(key)}: {_format(values[key], layout, newline)}" for key in missing]
        separator = f",{newline}{layout}" if layout is not None else ", "
        if members:  # after the last member
            at = members[-1][2]
            edits.append((at, at, separator + separator.join(pieces)))
        else:  # an empty object: everything between its braces
            body = separator.join(pieces)
            opening = text.rindex("{", 0, closing)
            edits.append((opening + 1, closing, f"{newline}{layout}{body}{newline}"
                          if layout is not None else body))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    new = json.loads(text)
    if new != {**old, **values}:  # pragma: no cover (a bug here must not damage a file)
        raise AssertionError("the updated config does not parse to the intended object")
    return text


def write_preprocessor_config(path: str, mean: Sequence[float], std: Sequence[float]) -> None:
    """Update the file at ``path`` in place (a complete new file renamed over it, with the
    same permissions); :class:`InputError` naming the file if it cannot be."""
    target = os.path.realpath(path)
    try:
        with open(target, "rb") as handle:
            raw = handle.read()
        text = update_preprocessor_config(raw.decode("utf-8"), mean, std)
    except FileNotFoundError:
        raise InputError(f"no preprocessor config at {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot update {path}: {exc}") from exc
    folder = os.path.dirname(target)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".imgstats-", suffix=".json")
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(text.encode("utf-8"))
        os.chmod(temporary, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(temporary, target)
    except OSError as exc:
        os.unlink(temporary)
        raise InputError(f"cannot update {path}: {exc.strerror or exc}") from exc


def _members(text: str) -> tuple[list[tuple[str, int, int]], int]:
    """Each top-level key with the start and end of its value's text, and where the object's
    closing brace is."""
    decoder = json.JSONDecoder()
    at = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    if text[at : at + 1] != "{":
        raise ValueError("not a JSON object")
    at = _skip(text, at + 1)
    members: list[tuple[str, int, int]] = []
    if text[at : at + 1] == "}":
        return members, at
    while True:
        key, at = decoder.raw_decode(text, at)
        if not isinstance(key, str):
            raise ValueError(f"expected a key at character {at}")
        at = _skip(text, at)
        if text[at : at + 1] != ":":
            raise ValueError(f"expected ':' at character {at}")
        start = _skip(text, at + 1)
        _, end = decoder.raw_decode(text, start)
        members.append((key, start, end))
        at = _skip(text, end)
        if text[at : at + 1] == "}":
            return members, at
        if text[at : at + 1] != ",":
            raise ValueError(f"expected ',' or '}}' at character {at}")
        at = _skip(text, at + 1)


def _skip(text: str, at: int) -> int:
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]


def _indent_unit(text: str, members: list[tuple[str, int, int]]) -> str | None:
    """The indentation of the top-level keys (``"  "`` for transformers' files), or None for
    a file on one line."""
    for _, start, _ in members:
        line_start = text.rfind("\n", 0, start) + 1
        line = text[line_start:start]
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if indent and line.lstrip(" \t").startswith('"'):
            return indent
    return "  " if "\n" in text else None


def _format(values: list[Any], unit: str | None, newline: str) -> str:
    """A list of numbers: ``[a, b, c]``, or one a line indented by ``unit`` (a top-level
    value, as ``json.dumps(indent=...)`` writes it)."""
    if unit is None or not values:
        return json.dumps(values)
    inner = f",{newline}".join(f"{unit}{unit}{json.dumps(v)}" for v in values)
    return f"[{newline}{inner}{newline}{unit}]"
