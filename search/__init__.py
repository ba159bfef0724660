"""Search over an exported bundle: top-K recommendations, "movies like this", clusters, title search.
Never torch; faiss loads with the first :class:`Recommender`, so ``import search`` is cheap.

    from search import Recommender
    ids, scores, relevance = Recommender.load("artifacts/current").recommend(42, k=10)
"""

from __future__ import annotations

import importlib
from typing import Any

from embedder.vocab import UnknownIdError

__all__ = ["BundleError", "Catalogue", "NotBuiltError", "Recommender", "UnknownIdError"]
_LAZY = {
    "Recommender": "search.recommender",
    "Catalogue": "search.catalogue",
    "NotBuiltError": "search.catalogue",
    "BundleError": "embedder.bundle",
}


def __getattr__(name: str) -> Any:
    """The public classes, imported on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
