"""Search over an exported bundle: exact top-K recommendations whose scores are the
predicted ratings, "movies like this", and K-Means clusters.

Only numpy, scipy, pandas, faiss and scikit-learn: never torch, so scripts and the
web server start fast.  ``import search`` itself is cheap; faiss is loaded on the
first use of :class:`Recommender`.

    from search import Recommender
    rec = Recommender.load("artifacts/current")
    ids, scores = rec.recommend(42, k=10)

Modules: ``vectors`` (bias augmentation), ``topk`` (blocked exact top-K),
``index`` (faiss indexes), ``clusters`` (K-Means), ``build`` (``python -m search
build``), ``recommender`` (retrieval: :class:`Recommender`), ``catalogue`` (titles,
movie rows, clusters: :class:`Catalogue`, ``rec.catalogue``), ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from embedder.vocab import UnknownIdError

if TYPE_CHECKING:
    from embedder.bundle import BundleError
    from search.catalogue import Catalogue, NotBuiltError
    from search.recommender import Recommender

__all__ = ["BundleError", "Catalogue", "NotBuiltError", "Recommender", "UnknownIdError"]


_LAZY = {
    "Recommender": "search.recommender",
    "Catalogue": "search.catalogue",
    "NotBuiltError": "search.catalogue",
    "BundleError": "embedder.bundle",
}


def __getattr__(name: str) -> Any:
    # Lazy, so `import search` (e.g. by the CLI's --help) does not load faiss.
    if name not in _LAZY:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
