""""Movies like this": the one similarity behind ``Recommender.similar`` and its evaluation.

::

    similarity(i, j) = EMBEDDING_WEIGHT · cos(q_i, q_j) + (1 - EMBEDDING_WEIGHT) · cos(c_i, c_j)

``q_i`` is movie i's embedding and ``c_i`` its binary column of the training
ratings (who rated it, the pattern of ``seen``), so
``cos(c_i, c_j) = |raters(i) ∩ raters(j)| / sqrt(n_i n_j)``. Both come from arrays
every bundle has. The embeddings know how people *rate* movies; who rated what
(item-item co-occurrence) knows which movies the same people *watch*; the blend
agrees with genres more often than either alone
(:func:`search.evaluate.neighbour_agreement`, figures in benchmarks/README.md).

A movie with a zero embedding or without training ratings (the same movies in a
trained bundle) is never compared: it is never returned, and as a query it gets
nothing.

Co-rater counts are sparse: a movie's raters (an int32 movie -> users index, the
CSC pattern of ``seen``, built on first use) pick their rows of ``seen``, whose
movie columns are counted (``np.bincount``, ``CHUNK`` ratings at a time), so a
query costs the summed rating counts of its raters. A block of queries (evaluation) counts heavy users, who
rated at least :data:`DENSE_SHARE` of the catalogue, with one GEMM over their rows
held dense: they are few but hold most of that work.

Memory (figures in benchmarks/README.md): the raters index is 4 bytes a training
rating plus a few arrays per movie, built at the first call (``warm`` builds it
now; a server does so before forking). Block scoring adds the heavy users' dense
rows, 4 bytes x movies each.

Tested in ``tests/search/test_similar.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from embedder.bundle import Bundle, BundleError
from search.topk import select_topk
from search.vectors import normalize_rows

EMBEDDING_WEIGHT = 0.25
"""Weight of the embeddings' cosine in the blend; who-rated-what's cosine gets the
rest. Chosen for the genre agreement of the top 10 (benchmarks/README.md, "Movies like this")."""

CHUNK = 1 << 20
"""About the most ratings gathered at once when counting co-raters: a popular
movie's raters hold a great many, and gathering them whole would grow each web
worker's heap by as much."""

DENSE_SHARE = 0.05
"""In block scoring, users who rated at least this share of the movies are held
as dense rows and counted with a GEMM; below it a scattered count is cheaper
(benchmarks/README.md, "Movies like this")."""


def _row_positions(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions in a CSR matrix's ``indices`` of the given rows' entries, in order:
    the gather scipy's row slicing does, without building a matrix (whose overhead
    weighs on a web request, which asks for one movie's raters)."""
    starts = indptr[rows].astype(np.int64)
    lengths = indptr[rows + 1] - starts
    first_of_row = np.cumsum(lengths) - lengths  # where each row starts in the output
    return np.repeat(starts - first_of_row, lengths) + np.arange(int(lengths.sum()))


class Similarity:
    """The blended similarity of one bundle's movies.

    Parameters
    ----------
    movie_embeddings:
        ``(n_movies, d)`` ``q_i``.
    seen:
        The training ratings, users x movies (CSR); only which entries exist is read.

    Building one is free; the index is built at the first call or by :meth:`warm`.
    Thread-safe for reads (a race on first use builds the same arrays twice).
    """

    def __init__(self, movie_embeddings: np.ndarray, seen: sp.spmatrix):
        self._embeddings = movie_embeddings
        self._seen = sp.csr_matrix(seen)  # shares the arrays of a CSR input
        if self._seen.shape[1] != len(movie_embeddings):
            raise ValueError(f"seen has {self._seen.shape[1]} movie columns for {len(movie_embeddings)} movie embeddings")

    @property
    def n_movies(self) -> int:
        """Number of movies (rows of the embeddings, columns of ``seen``)."""
        return self._seen.shape[1]

    def warm(self) -> None:
        """Build the index now (what :meth:`scores` needs) instead of at the first call."""
        self._unit  # noqa: B018 (a cached_property, which builds the raters index too)

    @cached_property
    def _raters(self) -> tuple[np.ndarray, np.ndarray]:
        """Per movie, the users who rated it: CSC ``(indptr, indices int32)`` of the pattern of ``seen``."""
        pattern = sp.csr_matrix((np.ones(self._seen.nnz, np.bool_), self._seen.indices, self._seen.indptr), shape=self._seen.shape)
        csc = pattern.tocsc()
        return csc.indptr, csc.indices.astype(np.int32, copy=False)

    @cached_property
    def _unit(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit ``q_i`` (float32), ``1 / sqrt(n_i)`` (float32, 0 without ratings), and the comparable mask."""
        unit, zero = normalize_rows(self._embeddings)
        counts = np.diff(self._raters[0])
        inverse = np.zeros(len(counts), np.float32)
        inverse[counts > 0] = 1 / np.sqrt(counts[counts > 0])
        return unit, inverse, ~zero & (counts > 0)

    @property
    def comparable(self) -> np.ndarray:
        """Boolean per movie: it has a nonzero embedding and training ratings."""
        return self._unit[2]

    def _raters_of(self, row: int) -> np.ndarray:
        indptr, indices = self._raters
        return indices[indptr[row] : indptr[row + 1]]

    def _co_raters(self, users: np.ndarray) -> np.ndarray:
        """Per movie, how many of ``users`` rated it (int64), about ``CHUNK`` ratings at a time."""
        indptr = self._seen.indptr
        ends = np.cumsum(indptr[users + 1] - indptr[users])
        cuts = np.searchsorted(ends, np.arange(CHUNK, ends[-1] if len(ends) else 0, CHUNK), side="right")
        counts = np.zeros(self.n_movies, np.int64)
        for part in np.split(users, cuts):
            counts += np.bincount(self._seen.indices[_row_positions(indptr, part)], minlength=self.n_movies)
        return counts

    def scores(self, row: int) -> np.ndarray:
        """Similarity of movie ``row`` with every movie, float32.

        ``-inf`` for the movie itself and for movies that are not comparable
        (for every movie when ``row`` is not).
        """
        unit, inverse, comparable = self._unit
        out = np.full(self.n_movies, -np.inf, np.float32)
        if not comparable[row]:
            return out
        cos_c = self._co_raters(self._raters_of(row)) * (inverse.astype(np.float64) * float(inverse[row]))
        blend = EMBEDDING_WEIGHT * (unit @ unit[row]).astype(np.float64) + (1 - EMBEDDING_WEIGHT) * cos_c
        out[comparable] = blend[comparable]
        out[row] = -np.inf
        return out

    @cached_property
    def _heavy(self) -> tuple[np.ndarray, np.ndarray]:
        """Position of each user among the dense ones (-1: not dense), and their rows, float32 0/1."""
        counts = np.diff(self._seen.indptr)
        heavy = np.flatnonzero(counts >= DENSE_SHARE * self.n_movies)
        position = np.full(len(counts), -1, np.int64)
        position[heavy] = np.arange(len(heavy))
        rows = self._seen[heavy]
        dense = np.zeros((len(heavy), self.n_movies), np.float32)
        dense[np.repeat(np.arange(len(heavy)), np.diff(rows.indptr)), rows.indices] = 1
        return position, dense

    def block_scores(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`scores` of several movies, one row each: ``(len(rows), n_movies)`` float32."""
        rows = np.asarray(rows, np.int64)
        unit, inverse, comparable = self._unit
        position, dense = self._heavy
        in_dense = np.zeros((len(rows), len(dense)), np.float32)
        light = []
        for n, row in enumerate(rows.tolist()):
            users = self._raters_of(row)
            where = position[users]
            in_dense[n, where[where >= 0]] = 1
            light.append(users[where < 0])
        counts = in_dense @ dense  # exact in float32: counts are integers far below 2**24
        for n, users in enumerate(light):
            counts[n] += self._co_raters(users)
        counts *= inverse  # cos(c_i, c_j), in place: the block is the largest array here
        counts *= inverse[rows][:, None] * np.float32(1 - EMBEDDING_WEIGHT)
        out = unit[rows] @ unit.T
        out *= np.float32(EMBEDDING_WEIGHT)
        out += counts
        out[:, ~comparable] = -np.inf
        out[~comparable[rows]] = -np.inf
        out[np.arange(len(rows)), rows] = -np.inf
        return out


TABLE_WIDTH = 100
"""Neighbours per movie in the table ``search build`` stores: the web's largest ``k``."""

SIMILAR_FILES = ("similar_movies.npy", "similar_scores.npy")
"""The table in a built bundle: each movie's neighbours (int32 rows) and their similarities."""

TABLE_BLOCK = 500
"""Query movies scored at once while building the table: a block's scores take
``4 × TABLE_BLOCK × n_movies`` bytes, so it bounds the memory of a build."""


def neighbour_table(similarity: Similarity, width: int | None = None, block: int = TABLE_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Every movie's ``width`` (default :data:`TABLE_WIDTH`) most similar movies,
    best first (ties: lower row).

    Returns ``(rows int32, scores float32)``, both ``(n_movies, width)``; a movie
    with fewer comparable movies is padded with row -1 and score ``-inf`` (so a
    row that ends in -1 holds every movie it can be compared with). Scored with
    :meth:`Similarity.block_scores` a block of movies at a time, so the whole
    catalogue costs GEMMs instead of one scattered count per movie.
    """
    n, width = similarity.n_movies, TABLE_WIDTH if width is None else width
    rows = np.full((n, width), -1, np.int32)
    scores = np.full((n, width), -np.inf, np.float32)
    for start in range(0, n, block):
        stop = min(start + block, n)
        found, best = select_topk(similarity.block_scores(np.arange(start, stop)), width)
        rows[start:stop, : found.shape[1]] = found
        scores[start:stop, : found.shape[1]] = best
    return rows, scores


@dataclass(frozen=True)
class NeighbourTable:
    """The table :func:`neighbour_table` made, as ``search build`` stores it
    (:data:`SIMILAR_FILES`), read back from a bundle and checked."""

    rows: np.ndarray
    """int32 ``(n_movies, width)``: each movie's neighbours, best first, -1 padded."""
    scores: np.ndarray
    """float32, the same shape: their similarities, ``-inf`` padded."""

    @classmethod
    def of(cls, bundle: Bundle) -> NeighbourTable | None:
        """The table of ``bundle``, or None before ``search build`` (or in a bundle built
        before it stored one); BundleError naming the file if it is malformed."""
        if not all(bundle.has(name) for name in SIMILAR_FILES):
            return None
        rows, scores = (bundle.array(name) for name in SIMILAR_FILES)
        n_movies = len(bundle.movie_ids)
        if rows.ndim != 2 or rows.shape[0] != n_movies or rows.shape[1] == 0 or rows.dtype != np.int32:
            raise BundleError(f"{SIMILAR_FILES[0]}: expected int32 ({n_movies}, width), found {rows.dtype} {rows.shape}")
        if scores.shape != rows.shape or scores.dtype != np.float32:
            raise BundleError(f"{SIMILAR_FILES[1]}: expected float32 {rows.shape}, found {scores.dtype} {scores.shape}")
        if rows.size and not (-1 <= rows.min() and rows.max() < n_movies):
            raise BundleError(f"{SIMILAR_FILES[0]}: rows must be -1 or from 0 to {n_movies - 1}")
        return cls(rows, scores)

    def lookup(self, row: int, k: int, counts: np.ndarray, min_ratings: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
        """The ``k`` movies most like movie ``row`` among those with at least
        ``min_ratings`` (``counts``: ratings per movie), as ``(rows, scores)`` best
        first, or None when the floor leaves fewer than ``k`` of the row's entries
        and the row does not hold every comparable movie (then only a live count
        knows). Every movie missing from a row scores at most as high as its last
        entry, so the first ``k`` that pass the floor are the answer."""
        rows, scores = self.rows[row], self.scores[row]
        listed = rows >= 0
        complete = not listed[-1]  # padded: the row holds every movie this one can be compared with
        keep = listed & (counts[rows] >= min_ratings) if min_ratings > 0 else listed
        picked = np.flatnonzero(keep)[:k]
        if len(picked) < k and not complete:
            return None
        return rows[picked], scores[picked]
