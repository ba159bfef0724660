"""Search over an exported bundle: exact top-K recommendations whose scores are the predicted ratings,
"movies like this", K-Means clusters, title search. Never torch; faiss loads on the first
:class:`Recommender`, so ``import search`` is cheap.

    from search import Recommender
    rec = Recommender.load("artifacts/current")
    ids, scores = rec.recommend(42, k=10)

Modules, lowest first: ``topk`` (the one exact top-K), ``similar``, ``clusters``, ``titles``, ``index``
(faiss), ``foldin`` (newcomers), ``catalogue`` (:class:`Catalogue`), ``recommender`` (:class:`Recommender`),
``build`` and ``batch`` (``python -m search build|recommend-all``), ``cli``.
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
}


def __getattr__(name: str) -> Any:
    if name == "BundleError":
        return importlib.import_module("embedder.bundle").BundleError
    if name not in _LAZY:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
