"""``python -m pipeline`` is the ``imgstats`` command."""

import sys

from .cli import main

sys.exit(main())
