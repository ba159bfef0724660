"""Unit rows for cosine similarity.

The bias-augmented rows that make an inner product the predicted rating
(docs/design.md, "Bias-augmented vectors") come from the model itself:
:meth:`embedder.model.MFModel.item_vectors` and
:meth:`~embedder.model.MFModel.user_vectors`. "Movies like this" uses the
cosine of ``q_i`` (inner products of L2-normalised rows) as one part of its
blend (:mod:`search.similar`).

Tested in ``tests/search/test_vectors.py``.
"""

from __future__ import annotations

import numpy as np


def normalize_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised float32 rows, and a mask of the rows that had zero norm.

    A zero row (a movie with no training ratings is exported as one) has no
    direction; it stays all zeros instead of becoming NaN, so its cosine with
    anything is 0 and it can never poison a search.
    """
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1)
    zero = norms == 0
    out = v / np.where(zero, 1.0, norms)[:, None]
    return np.ascontiguousarray(out, dtype=np.float32), zero
