""" "Movies like this": the one similarity behind ``Recommender.similar``, its table and its evaluation.

::

    similarity(i, j) = EMBEDDING_WEIGHT · cos(q_i, q_j) + (1 - EMBEDDING_WEIGHT) · cos(c_i, c_j)

``q_i`` is movie i's embedding and ``c_i`` who rated it in training. The embeddings know how people *rate*
movies, who rated what knows which movies the same people *watch*; the blend agrees with genres more often
than either alone.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.sparse as sp

from search.topk import select_topk

EMBEDDING_WEIGHT = 0.25
"""Weight of the embeddings' cosine in the blend, chosen for the genre agreement of the top 10."""
TABLE_WIDTH = 100
"""Neighbours per movie in the table ``search build`` stores: the web's largest ``k``."""
SIMILAR_FILES = ("similar_movies.npy", "similar_scores.npy")
"""The table in a built bundle: each movie's neighbours (int32 rows, -1 padded) and their similarities."""
TABLE_BLOCK = 256  # movies scored at once while building the table: 4 x TABLE_BLOCK x n_movies bytes


def unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised float32 rows, and a mask of the rows of zero norm (which stay zero, never NaN)."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    zero = norms == 0
    return np.ascontiguousarray(vectors / np.where(zero, 1, norms)[:, None], np.float32), zero


class Similarity:
    """The blended similarity of one bundle's movies, from ``movie_embeddings`` and ``seen`` (users x movies
    CSR of the training ratings); what it needs is built at the first call or by :meth:`warm`."""

    def __init__(self, movie_embeddings: np.ndarray, seen: sp.spmatrix):
        self._embeddings = movie_embeddings
        self._seen = sp.csr_matrix(seen)

    @cached_property
    def _parts(self) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray]:
        """The pattern (users x movies), its transpose, unit ``q_i``, ``1/sqrt(n_i)``, the comparable mask."""
        seen = self._seen
        pattern = sp.csr_matrix((np.ones(seen.nnz, np.float32), seen.indices, seen.indptr), shape=seen.shape)
        counts = np.bincount(seen.indices, minlength=seen.shape[1])
        inverse = np.where(counts > 0, 1 / np.sqrt(np.maximum(counts, 1)), 0).astype(np.float32)
        unit, zero = unit_rows(self._embeddings)
        return pattern, pattern.T.tocsr(), unit, inverse, ~zero & (counts > 0)

    def warm(self) -> None:
        """Build now what scoring needs (a server does so before forking, so its workers share it)."""
        self._parts  # noqa: B018

    @property
    def comparable(self) -> np.ndarray:
        """Boolean per movie: it has a nonzero embedding and training ratings."""
        return self._parts[4]

    def block_scores(self, rows: np.ndarray) -> np.ndarray:
        """Similarity of each movie of ``rows`` with every movie, ``(len(rows), n_movies)`` float32;
        ``-inf`` for the movie itself and for movies that are not comparable (a whole row when it is not)."""
        rows = np.asarray(rows, np.int64)
        pattern, by_movie, unit, inverse, comparable = self._parts
        out = (by_movie[rows] @ pattern).toarray()  # co-rater counts, exact in float32
        out *= inverse[rows][:, None] * np.float32(1 - EMBEDDING_WEIGHT)
        out *= inverse
        out += np.float32(EMBEDDING_WEIGHT) * (unit[rows] @ unit.T)
        out[:, ~comparable] = -np.inf
        out[~comparable[rows]] = -np.inf
        out[np.arange(len(rows)), rows] = -np.inf
        return out


def neighbour_table(similarity: Similarity, width: int = TABLE_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Every movie's ``width`` most similar movies, best first (ties: lower row): ``(rows int32, scores
    float32)``, both ``(n_movies, width)``, padded with row -1 and ``-inf`` (a padded row holds every movie
    its movie can be compared with)."""
    n = len(similarity.comparable)
    rows, scores = np.full((n, width), -1, np.int32), np.full((n, width), -np.inf, np.float32)
    for start in range(0, n, TABLE_BLOCK):
        stop = min(start + TABLE_BLOCK, n)
        found, best = select_topk(similarity.block_scores(np.arange(start, stop)), width)
        rows[start:stop, : found.shape[1]], scores[start:stop, : found.shape[1]] = found, best
    return rows, scores
