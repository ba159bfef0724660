"""``python -m embedder``: see :mod:`embedder.cli`."""

from embedder.cli import main

raise SystemExit(main())
