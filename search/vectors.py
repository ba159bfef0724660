"""Bias-augmented vectors: an inner product that *is* the predicted rating.

docs/design.md, "Bias-augmented vectors": a movie row ``x_i = [q_i, b_i, 1]`` and a
user query ``y_u = [p_u, 1, μ + b_u]`` give ``y_u · x_i = μ + b_u + b_i + p_u·q_i``,
so any inner-product search over ``x`` ranks by predicted rating and returns the
model's raw predictions as scores.  "Movies like this" uses the cosine of
``q_i`` (inner products of L2-normalised rows) as one part of its blend
(:mod:`search.similar`).

Tested in ``tests/search/test_vectors.py``.
"""

from __future__ import annotations

import numpy as np


def _augment(embeddings: np.ndarray, biases: np.ndarray, kind: str, bias_column: int) -> np.ndarray:
    """``[e, 1, 1]`` rows as C-contiguous float32, with the biases in ``bias_column`` (-2 or -1)."""
    e = np.asarray(embeddings, dtype=np.float32)
    b = np.asarray(biases, dtype=np.float32)
    if e.ndim != 2 or b.shape != (e.shape[0],):
        raise ValueError(f"{kind} embeddings {e.shape} and biases {b.shape} do not match")
    out = np.ones((e.shape[0], e.shape[1] + 2), dtype=np.float32)
    out[:, :-2] = e
    out[:, bias_column] = b
    return out


def item_vectors(movie_embeddings: np.ndarray, movie_biases: np.ndarray) -> np.ndarray:
    """Movie rows ``[q_i, b_i, 1]`` as a C-contiguous float32 ``(n_movies, d + 2)`` array."""
    return _augment(movie_embeddings, movie_biases, "movie", -2)


def user_vectors(user_embeddings: np.ndarray, user_biases: np.ndarray, global_mean: float) -> np.ndarray:
    """User queries ``[p_u, 1, μ + b_u]`` as a C-contiguous float32 ``(n_users, d + 2)`` array.

    ``μ + b_u`` is summed in float32, the same order as
    :func:`embedder.bundle.predict_ratings`, so scores match it to float rounding.
    """
    shifted = np.float32(global_mean) + np.asarray(user_biases, dtype=np.float32)
    return _augment(user_embeddings, shifted, "user", -1)


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
