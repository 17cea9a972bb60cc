"""``synth://``: a deterministic collection of any size that needs no disk, for scale tests.

``synth://images`` with storage options ``{"files": 10_000_000}`` lists ten million image
files, ``d00000/f000000000.png`` ... in folders of ``per_folder`` (1,000) files, each a tiny
valid PNG (one of :data:`VARIANTS` 4x4 RGB images, chosen by the file's number) with its size
and a change token. Every process computes the same listing from the same options, so Dask
workers and decode sandboxes open it as they open ``s3://`` (the package registers the
protocol with fsspec through an entry point).

Churn, for incremental runs: ``changed`` files (spread evenly, or the first ones of a random
permutation with ``scatter``: both deterministic) hold another image and token; ``added`` new
files come in new folders after the last.
"""

from __future__ import annotations

import io
import random
from functools import cached_property
from typing import Any

import numpy as np
from fsspec import AbstractFileSystem
from PIL import Image

__all__ = ["SyntheticFileSystem"]

#: How many different images the files hold.
VARIANTS = 16


def _png(variant: int) -> bytes:
    rng = np.random.default_rng(variant)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


_IMAGES = [_png(v) for v in range(2 * VARIANTS)]  # the second half: what changed files hold


class SyntheticFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """``files`` image files (plus ``added``), ``per_folder`` to a folder; see the module."""

    protocol = "synth"
    root_marker = ""

    def __init__(
        self,
        files: int = 1000,
        per_folder: int = 1000,
        changed: int = 0,
        added: int = 0,
        scatter: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.files, self.per_folder, self.added = files, per_folder, added
        self.changed, self.scatter, self.seed = changed, scatter, seed

    @property
    def total(self) -> int:
        return self.files + self.added

    @cached_property
    def _changed(self) -> frozenset[int]:
        if not self.changed:
            return frozenset()
        if self.scatter:
            return frozenset(random.Random(self.seed).sample(range(self.files), self.changed))
        step = max(1, self.files // self.changed)
        return frozenset(range(0, self.files, step)[: self.changed])

    # names ----------------------------------------------------------------------------------
    def _folders(self) -> int:
        return -(-self.total // self.per_folder)

    def _file_name(self, index: int) -> str:
        return f"d{index // self.per_folder:05d}/f{index:09d}.png"

    def _index(self, path: str) -> int | None:
        """The file number of a path under the root, or None."""
        parts = self._strip_protocol(path).split("/")
        if len(parts) != 3 or not parts[2].startswith("f") or not parts[2].endswith(".png"):
            return None
        try:
            index = int(parts[2][1:-4])
        except ValueError:
            return None
        return index if 0 <= index < self.total and self._file_name(index) == "/".join(
            parts[1:]) else None

    def _data(self, index: int) -> bytes:
        variant = index % VARIANTS + (VARIANTS if index in self._changed else 0)
        return _IMAGES[variant]

    def _file_info(self, root: str, index: int) -> dict[str, Any]:
        token = "v1" if index in self._changed else "v0"
        return {"name": f"{root}/{self._file_name(index)}", "size": len(self._data(index)),
                "type": "file", "ETag": f"{index}-{token}"}

    # the fsspec API -------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        path = path.removeprefix("synth://").removeprefix("synth:")
        return path.strip("/")

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        parts = self._strip_protocol(path).split("/")
        root = parts[0]
        if len(parts) == 1:
            entries: list[dict[str, Any]] = [
                {"name": f"{root}/d{folder:05d}", "size": 0, "type": "directory"}
                for folder in range(self._folders())
            ]
        elif len(parts) == 2 and parts[1].startswith("d") and parts[1][1:].isdigit():
            folder = int(parts[1][1:])
            if folder >= self._folders():
                raise FileNotFoundError(path)
            start = folder * self.per_folder
            entries = [self._file_info(root, i)
                       for i in range(start, min(start + self.per_folder, self.total))]
        elif self._index(path) is not None:
            entries = [self.info(path)]
        else:
            raise FileNotFoundError(path)
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        stripped = self._strip_protocol(path)
        index = self._index(stripped)
        if index is not None:
            return self._file_info(stripped.split("/")[0], index)
        parts = stripped.split("/")
        if len(parts) == 1 or (len(parts) == 2 and parts[1][1:].isdigit()
                               and int(parts[1][1:]) < self._folders()):
            return {"name": stripped, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        index = self._index(path)
        if index is None:
            raise FileNotFoundError(path)
        return self._data(index)[start:end]

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> io.BytesIO:
        if mode != "rb":
            raise PermissionError("synth:// is read-only")
        return io.BytesIO(self.cat_file(path))
