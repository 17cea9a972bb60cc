"""``imgstats report``: one self-contained HTML page of a store's version."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

from .._version import __version__
from ..config import parse_json_options
from ..errors import InputError, StatsFileError, UsageError
from ..fs.location import resolve
from ..store import open_store

__all__ = ["report"]


def report(args: argparse.Namespace) -> int:
    try:
        from ..report.html import render
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "matplotlib":
            raise
        raise UsageError(
            "imgstats report needs matplotlib: pip install 'imgstats[report]'"
        ) from None
    options: dict[str, Any] | None = (
        parse_json_options(args.store_options, "--store-options") if args.store_options else None
    )
    store = open_store(resolve(args.store, options))
    stats = store.load(args.version)
    history = []
    for version in store.require_versions():
        if version > stats.version:
            break
        try:
            history.append(stats if version == stats.version else store.load(version))
        except StatsFileError:  # a damaged old version leaves a gap in the plots
            continue
    page = render(stats, history, store.url, __version__)
    _write(args.out, page)
    print(f"imgstats: report of version {stats.version} written to {args.out}", file=sys.stderr)
    return 0


def _write(path: str, page: str) -> None:
    """A complete file or none: a temp file beside it, renamed over it."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".imgstats-", suffix=".html")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(page)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        os.unlink(temporary)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
