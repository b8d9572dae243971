"""``python -m geetcd.bench``: the same as the ``geetcd-bench`` console script."""

import sys

from geetcd.bench.cli import main

sys.exit(main())
