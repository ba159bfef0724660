"""``python -m search``: see :mod:`search.cli`."""

import sys

from search.cli import main

sys.exit(main())
