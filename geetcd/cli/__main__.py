"""``python -m geetcd.cli``: the same as the ``geetcd`` console script."""

from __future__ import annotations

import sys

from geetcd.cli.app import main

sys.exit(main())
