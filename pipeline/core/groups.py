"""Groups: which group a file's statistics also count in, from its path relative to SOURCE.

``dir`` / ``dir:N``: the first N folder names of the path, joined with ``/`` (an ImageFolder's
class folders with ``dir``); ``re:PATTERN``: ``re.search(PATTERN, path)``'s first capture
group, or the whole match. A file with fewer folders, or no match, is in the group ``.``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

__all__ = ["NO_GROUP", "OTHER_GROUP", "GroupBy"]

#: The group of every file when a run has no groups.
NO_GROUP = ""
#: The group of a file that no folder or pattern names.
OTHER_GROUP = "."


@dataclass(frozen=True)
class GroupBy:
    """A parsed ``--group-by`` spec; called on a relative path, gives its group."""

    spec: str
    levels: int = field(default=0, compare=False)
    pattern: str | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, spec: str) -> GroupBy:
        """``dir``, ``dir:N`` (N >= 1) or ``re:PATTERN``; :class:`ValueError` saying why not."""
        if spec == "dir":
            return cls(spec, levels=1)
        if spec.startswith("dir:"):
            levels = spec[4:]
            if not levels.isdigit() or int(levels) < 1:
                raise ValueError(f"dir:N needs a whole number N >= 1, not {levels!r}")
            return cls(spec, levels=int(levels))
        if spec.startswith("re:"):
            try:
                re.compile(spec[3:])
            except re.error as exc:
                raise ValueError(f"{spec[3:]!r} is not a regular expression: {exc}") from None
            return cls(spec, pattern=spec[3:])
        raise ValueError(f"group-by must be dir, dir:N or re:PATTERN, not {spec!r}")

    @cached_property
    def _compiled(self) -> re.Pattern[str] | None:
        return re.compile(self.pattern) if self.pattern is not None else None

    def __call__(self, path: str) -> str:
        if self._compiled is not None:
            match = self._compiled.search(path)
            if match is None:
                return OTHER_GROUP
            named = match.group(1) if match.re.groups else match.group(0)
            return named or OTHER_GROUP
        folders = path.split("/")[:-1]
        if len(folders) < self.levels:
            return OTHER_GROUP
        return "/".join(folders[: self.levels])

    def __getstate__(self) -> dict[str, object]:
        return {"spec": self.spec, "levels": self.levels, "pattern": self.pattern}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
