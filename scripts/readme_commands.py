"""Print a command of the README's quick start, so that CI runs exactly what the README says.

    python scripts/readme_commands.py 1    # the first bash block: install, sample, compute
    python scripts/readme_commands.py 2    # the second: install the test tools, run the tests
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def quick_start_commands(text: str) -> list[str]:
    """The bash blocks of the README's "Quick start" section, in order."""
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def main() -> None:
    number = int(sys.argv[1])
    print(quick_start_commands(README.read_text())[number - 1])


if __name__ == "__main__":
    main()
