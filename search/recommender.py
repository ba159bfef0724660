"""Retrieval over one bundle: recommend, recommend for a newcomer, similar movies.

::

    from search import Recommender
    rec = Recommender.load("artifacts/current")
    ids, scores = rec.recommend(42, k=10)          # raw predicted ratings, best first
    ids, scores = rec.recommend([1, 2, 3], k=10)   # one batched call, (3, 10) arrays
    for users, ids, scores in rec.recommend_all(k=10): ...
    ids, scores = rec.similar(50, k=10)            # search.similar's blend, the movie itself excluded
    ids, scores = rec.recommend_for_ratings({1: 5, 50: 4}, k=10)   # a newcomer, folded in
    rec.catalogue.items(ids, scores)               # titles, metadata, clusters: search.catalogue

Ids are original MovieLens ids everywhere.  An unknown id raises
:class:`UnknownIdError` (a ``KeyError``) whose message names it; a bad ``k``
raises ``ValueError``.

Which search runs:

* one user, flat index: a numpy mat-vec over the movie rows, seen movies set to
  ``-inf``, exact top-K: for one query, cheaper than waking faiss and its thread
  pool (benchmarks/README.md, "Retrieval").
* several users, flat index: :class:`search.topk.BlockedTopK`, exact.
* ``hnsw``/``ivf`` bundles: the faiss index proposes candidates (``k`` plus the
  user's seen count, so exclusion cannot starve the result), which are then
  re-scored exactly: a score is always the predicted rating.

The object holds no per-call state; one instance serves many threads.

Tested in ``tests/search/test_recommender.py``.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedder import DEFAULT_BUNDLE
from embedder.bundle import Bundle, BundleError
from embedder.vocab import UnknownIdError
from search.catalogue import Catalogue
from search.foldin import NewUser, UserPrior, fold_in
from search.index import INDEX_FILE, apply_params, read_index, search_candidates
from search.similar import NeighbourTable, Similarity
from search.topk import BlockedTopK, topk_1d, topk_rows
from search.validate import check_int, check_k, is_whole


def _as_ids(raw: Any, kind: str) -> tuple[np.ndarray, bool]:
    """Ids as an int64 array and whether a scalar was given; ValueError for non-integers."""
    scalar = np.ndim(raw) == 0
    values = np.atleast_1d(np.asarray(raw))
    if values.ndim != 1:
        raise ValueError(f"{kind} ids must be a scalar or a 1-D array, got shape {values.shape}")
    if values.dtype.kind in "iu":
        return values.astype(np.int64), scalar
    if values.dtype.kind == "f" and np.isfinite(values).all() and (values == np.round(values)).all():
        return values.astype(np.int64), scalar
    if values.size == 0:
        return values.astype(np.int64), scalar
    if values.dtype.kind == "f":
        values = values[~(np.isfinite(values) & (values == np.round(values)))]
    bad = values.flat[0]
    bad = bad.item() if isinstance(bad, np.generic) else bad  # 'abc', not np.str_('abc')
    raise ValueError(f"{kind} ids must be whole numbers, got {bad!r}")


class Recommender:
    """Recommendations and similar movies over one bundle, loaded once.

    Build with :meth:`load` (a bundle folder) or ``Recommender(bundle)`` (a loaded one).

    Attributes
    ----------
    bundle:
        The verified :class:`embedder.bundle.Bundle`.
    catalogue:
        The :class:`search.catalogue.Catalogue` of the same bundle: titles, movie
        rows, clusters, users' ratings (what answers are shown with).
    index_kind:
        ``"flat"`` (exact) unless ``python -m search build --index hnsw|ivf`` made another.
    """

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self._movie_vocab = bundle.movie_vocab
        self._user_vocab = bundle.user_vocab
        self.catalogue = Catalogue(bundle)
        # One-id lookups are on the latency path of every web request: a dict
        # answers one id faster than the vocabulary's vectorised lookup.
        self._user_row_of = {int(u): r for r, u in enumerate(bundle.user_ids.tolist())}
        self._movie_row_of = self.catalogue.row_of
        self._items = bundle.model.item_vectors()
        self._users = bundle.model.user_vectors()
        self._seen = sp.csr_matrix(bundle.seen)
        self._similarity = Similarity(bundle.model.movie_embeddings, self._seen)  # its index is built on first use
        self._neighbours = NeighbourTable.of(bundle)  # None before search build: similar counts live
        self._counts = self.catalogue.rating_counts
        self._engine = BlockedTopK(self._items)
        self._subsets: dict[int, tuple[np.ndarray, BlockedTopK]] = {}
        self._subset_lock = threading.Lock()

        info = bundle.manifest.get("index") or {}
        self.index_kind: str = info.get("kind", "flat")
        self._ann = None
        if self.index_kind != "flat":
            name = info.get("file", INDEX_FILE)
            self._ann = read_index(bundle.read_bytes(name), name)
            if self._ann.ntotal != len(self._items) or self._ann.d != self._items.shape[1]:
                raise BundleError(f"{INDEX_FILE}: holds {self._ann.ntotal} x {self._ann.d}, expected {self._items.shape}")
            apply_params(self._ann, info.get("params", {}))

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | os.PathLike = DEFAULT_BUNDLE, verify: bool = True, mmap: bool = False) -> Recommender:
        """Load the bundle at ``path`` (checksums verified) and get ready to answer.

        Works on a bundle fresh from training too: recommend and similar need
        only the core arrays (the catalogue's clusters then raise
        :class:`search.catalogue.NotBuiltError`).
        ``mmap`` maps the core arrays instead of reading them (see
        :meth:`embedder.bundle.Bundle.load`).
        """
        return cls(Bundle.load(path, verify=verify, mmap=mmap))

    def __repr__(self) -> str:
        return f"Recommender({self.bundle.path}, {len(self.user_ids)} users, {len(self.movie_ids)} movies, index={self.index_kind})"

    @property
    def user_ids(self) -> np.ndarray:
        """Original ids of all users, in bundle row order."""
        return self.bundle.user_ids

    @property
    def movie_ids(self) -> np.ndarray:
        """Original ids of all movies, in bundle row order (ties are broken in this order)."""
        return self.bundle.movie_ids

    # ------------------------------------------------------------------ helpers

    def _rows(self, raw: Any, kind: str) -> tuple[np.ndarray, bool]:
        """Bundle rows of user or movie ids, and whether one id (not an array) was given."""
        row_of, vocab = (self._user_row_of, self._user_vocab) if kind == "user" else (self._movie_row_of, self._movie_vocab)
        if is_whole(raw):  # the one-id fast path of every web request
            row = row_of.get(int(raw))
            if row is None:
                raise UnknownIdError(f"unknown {kind} {int(raw)}")
            return np.array([row]), True
        ids, scalar = _as_ids(raw, kind)
        return vocab.numbers(ids, missing="error"), scalar

    def _movie_row(self, movie_id: Any) -> int:
        rows, scalar = self._rows(movie_id, "movie")
        if not scalar:
            raise ValueError(f"expected one movie id, got {len(rows)}")
        return int(rows[0])

    def _candidates(self, min_ratings: int) -> tuple[np.ndarray | None, BlockedTopK]:
        """Movie rows with at least ``min_ratings`` ratings (None = all) and their engine."""
        if min_ratings <= 0 or (self._counts >= min_ratings).all():
            return None, self._engine
        with self._subset_lock:
            if min_ratings not in self._subsets:
                rows = np.flatnonzero(self._counts >= min_ratings)
                if len(self._subsets) >= 4:  # a few thresholds are in use at a time
                    self._subsets.pop(next(iter(self._subsets)))
                self._subsets[min_ratings] = (rows, BlockedTopK(self._items[rows]))
            return self._subsets[min_ratings]

    def _to_ids(self, rows: np.ndarray, scores: np.ndarray, candidates: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Movie rows (or candidate positions; -1 = padding) to original ids."""
        if candidates is not None:
            rows = np.where(rows >= 0, candidates[np.maximum(rows, 0)], -1)
        ids = np.where(rows >= 0, self.movie_ids[np.maximum(rows, 0)], -1)
        return ids.astype(np.int64), scores.astype(np.float32)

    # ------------------------------------------------------------------ recommend

    def recommend(self, user_ids: Any, k: int = 10, exclude_seen: bool = True, min_ratings: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` movies by predicted rating for one user or a batch.

        Parameters
        ----------
        user_ids:
            One id (int) or an array of ids; a batch is one vectorised call.
        k:
            Movies per user, >= 1.  More than there are candidates returns what exists.
        exclude_seen:
            Leave out the movies the user rated in training.
        min_ratings:
            Only movies with at least this many ratings are candidates: a remedy
            for obscure movies with a lucky bias ranking first.

        Returns
        -------
        (movie_ids int64, scores float32)
            Best first; a score is the raw predicted rating ``μ + b_u + b_i + p_u·q_i``.
            One id gives 1-D arrays of up to ``k`` entries.  A batch gives
            ``(n_users, min(k, n_candidates))`` arrays; a row whose user has fewer
            unseen candidates is padded with id -1 and score ``-inf`` (with an
            hnsw/ivf index, also a row for which the approximate search found
            too few).  Ties are broken by the movies' order in the bundle.

        Raises
        ------
        UnknownIdError
            (a KeyError) for an id not in the bundle, naming it.
        ValueError
            For ``k < 1``, a non-integer ``k`` or id, or a negative ``min_ratings``.
        """
        k = check_k(k)
        min_ratings = check_int(min_ratings, "min_ratings", 0)
        rows, scalar = self._rows(user_ids, "user")
        if scalar and self._ann is None:
            return self._recommend_one(int(rows[0]), k, exclude_seen, min_ratings)
        candidates, engine = self._candidates(min_ratings)
        if self._ann is not None:
            cols, scores = self._recommend_ann(rows, k, exclude_seen, candidates)
            ids, scores = self._to_ids(cols, scores, None)
            if scalar:
                keep = ids[0] >= 0
                return ids[0][keep], scores[0][keep]
            return ids, scores
        exclude = self._exclusions(rows, candidates) if exclude_seen else None
        cols, scores = engine.search(self._users[rows], k, exclude)
        return self._to_ids(cols, scores, candidates)

    def _exclusions(self, rows: np.ndarray | slice, candidates: np.ndarray | None) -> sp.csr_matrix:
        seen = self._seen[rows]
        return seen if candidates is None else seen[:, candidates]

    def _recommend_one(self, row: int, k: int, exclude_seen: bool, min_ratings: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self._items @ self._users[row]
        if exclude_seen:
            scores[self._seen.indices[self._seen.indptr[row] : self._seen.indptr[row + 1]]] = -np.inf
        return self._best_movies(scores, k, min_ratings)

    def _best_movies(self, scores: np.ndarray, k: int, min_ratings: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k movie ids of one score per movie (-inf = left out), rarely rated ones left out too."""
        if min_ratings > 0:
            scores[self._counts < min_ratings] = -np.inf
        cols, best = topk_1d(scores, k)
        return self.movie_ids[cols], best

    def _recommend_ann(self, rows: np.ndarray, k: int, exclude_seen: bool, candidates: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate candidates from faiss, re-scored exactly; returns movie rows."""
        n_movies = len(self._items)
        allowed = None
        if candidates is not None:
            allowed = np.zeros(n_movies, bool)
            allowed[candidates] = True
        n_allowed = n_movies if candidates is None else len(candidates)
        width = min(k, n_allowed)
        out_rows = np.full((len(rows), width), -1, np.int64)
        out_scores = np.full((len(rows), width), -np.inf, np.float32)
        if width == 0:
            return out_rows, out_scores
        seen = self._seen[rows]
        # Only seen movies that are candidates take places among the fetched ones.
        n_seen = np.diff(self._exclusions(rows, candidates).indptr) if exclude_seen else np.zeros(len(rows), np.int64)
        # Users are grouped by how many candidates they need (k plus their seen
        # count, rounded up to a power of two), so one heavy rater does not make
        # the whole batch search deep.
        need = np.minimum(k + n_seen, n_allowed)
        buckets = np.ceil(np.log2(np.maximum(need, 1))).astype(np.int64)
        for bucket in np.unique(buckets):
            fetch = int(min(2**bucket, n_allowed))
            members = np.flatnonzero(buckets == bucket)
            # Re-scoring gathers (users x fetch x dim) floats: keep that near 64 MiB.
            step = max(1, (1 << 24) // (fetch * self._items.shape[1]))
            for group in np.array_split(members, -(-len(members) // step)):
                queries = self._users[rows[group]]
                found = search_candidates(self._ann, queries, fetch, allowed)
                scores = np.einsum("ijk,ik->ij", self._items[np.maximum(found, 0)], queries)
                scores[found < 0] = -np.inf
                if exclude_seen:
                    scores[self._is_seen(seen[group], found)] = -np.inf
                out_rows[group], out_scores[group] = topk_rows(scores, width, columns=found)
        return out_rows, out_scores

    @staticmethod
    def _is_seen(seen: sp.csr_matrix, found: np.ndarray) -> np.ndarray:
        """Boolean (rows x candidates): candidate ``found[i, j]`` is in row i of ``seen``."""
        if seen.nnz == 0:
            return np.zeros(found.shape, bool)
        # One sorted key per (row, movie) pair turns the lookup into one searchsorted.
        n_cols = seen.shape[1]
        keys = np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr)) * n_cols + seen.indices
        keys.sort()
        query = np.arange(found.shape[0], dtype=np.int64)[:, None] * n_cols + np.maximum(found, 0)
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return (keys[pos] == query) & (found >= 0)

    def recommend_all(
        self,
        k: int = 10,
        batch_size: int = 4096,
        exclude_seen: bool = True,
        min_ratings: int = 0,
        rows: slice = slice(None),
        workers: int = 1,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Exact top-``k`` for every user (or the users of bundle ``rows``), streamed in user blocks.

        ``workers``: user blocks searched at once (:meth:`search.topk.BlockedTopK.iter_search`,
        which says how to set BLAS threads for more than one); exact search only.

        Yields
        ------
        (user_ids (b,), movie_ids (b, k'), scores (b, k'))
            ``batch_size`` users per block in bundle order (the last may be
            shorter), padded as in :meth:`recommend`.
        """
        k = check_k(k)
        min_ratings = check_int(min_ratings, "min_ratings", 0)
        batch_size = check_int(batch_size, "batch_size", 1)
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise ValueError(f"rows must be a slice of consecutive bundle rows, got {rows!r}")
        if self._ann is not None:
            return self._recommend_all_ann(k, batch_size, exclude_seen, min_ratings, rows)
        candidates, engine = self._candidates(min_ratings)
        exclude = self._exclusions(rows, candidates) if exclude_seen else None
        return self._stream(engine, k, batch_size, exclude, candidates, rows, workers)

    def _stream(self, engine, k, batch_size, exclude, candidates, rows, workers):
        user_ids = self.user_ids[rows]
        for start, cols, scores in engine.iter_search(self._users[rows], k, exclude, batch_size=batch_size, workers=workers):
            ids, scores = self._to_ids(cols, scores, candidates)
            yield user_ids[start : start + len(ids)], ids, scores

    def _recommend_all_ann(self, k, batch_size, exclude_seen, min_ratings, rows):
        user_ids = self.user_ids[rows]
        for start in range(0, len(user_ids), batch_size):
            users = user_ids[start : start + batch_size]
            ids, scores = self.recommend(users, k, exclude_seen=exclude_seen, min_ratings=min_ratings)
            yield users, ids, scores

    # ------------------------------------------------------------------ newcomers

    @cached_property
    def _prior(self) -> UserPrior:
        return UserPrior.from_model(self.bundle.model, self._seen, implicit=self.bundle.implicit_rows())

    def fold_in(self, ratings: Any) -> NewUser:
        """A user who is not in the bundle, from their ratings (see :mod:`search.foldin`).

        ``ratings``: a mapping ``{movie_id: rating}`` or pairs ``(movie_id, rating)``;
        it may be empty (then the answer is the average user, ``fallback`` True).

        Raises
        ------
        UnknownIdError
            Naming every movie id not in the bundle (none is silently dropped).
        ValueError
            For a rating outside the bundle's rating scale or not a number, an id
            that is not an integer, or a movie rated twice.
        """
        pairs = list(ratings.items()) if isinstance(ratings, dict) else list(ratings)
        low, high = self.bundle.rating_scale
        ids, values = [], []
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"expected (movie_id, rating) pairs, got {pair!r}")
            movie_id, rating = pair
            if not is_whole(movie_id):
                raise ValueError(f"movie ids must be integers, got {movie_id!r}")
            if isinstance(rating, bool) or not isinstance(rating, (int, float, np.integer, np.floating)) or not low <= rating <= high:
                raise ValueError(f"rating of movie {movie_id} must be a number from {low:g} to {high:g}, got {rating!r}")
            ids.append(int(movie_id))
            values.append(float(rating))
        twice = sorted(movie for movie, n in Counter(ids).items() if n > 1)
        if twice:
            raise ValueError(f"movie {twice[0]} is rated more than once")
        rows = self._movie_vocab.numbers(np.array(ids, np.int64), missing="negative")
        if (rows < 0).any():
            unknown = ", ".join(str(i) for i, r in zip(ids, rows.tolist()) if r < 0)
            raise UnknownIdError(f"unknown movie{'s' if (rows < 0).sum() > 1 else ''} {unknown}")
        ratings_array = np.array(values, np.float64)
        model = self.bundle.model
        embedding, bias = fold_in(self._prior, model, rows, ratings_array)
        embedding, bias = embedding.astype(np.float32), np.float32(bias)
        return NewUser(np.array(ids, np.int64), ratings_array, rows, embedding, bias, model.query_vector(embedding, bias))

    def recommend_for_ratings(self, ratings: Any, k: int = 10, min_ratings: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` movies for a newcomer given their ratings, without retraining.

        Folds the user in (:meth:`fold_in`, same errors) and ranks exactly like
        :meth:`recommend` for a trained user: a score is the predicted rating and
        the rated movies are left out. With no ratings (:attr:`NewUser.fallback`),
        the average user's list among the more widely rated movies: only movies
        with at least the median rating count of rated movies (or ``min_ratings``
        if higher), so that a lucky bias from a few ratings does not lead.
        """
        k = check_k(k)
        min_ratings = check_int(min_ratings, "min_ratings", 0)
        user = self.fold_in(ratings)
        if user.fallback:
            min_ratings = max(min_ratings, self.fallback_min_ratings)
        scores = self._items @ user.query
        scores[user.movie_rows] = -np.inf
        return self._best_movies(scores, k, min_ratings)

    @cached_property
    def fallback_min_ratings(self) -> int:
        """The rating-count floor of :meth:`recommend_for_ratings` without ratings."""
        rated = self._counts[self._counts > 0]
        return int(np.median(rated)) if len(rated) else 0

    # ------------------------------------------------------------------ similar

    def similar(self, movie_id: Any, k: int = 10, min_ratings: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` movies most like ``movie_id`` (:mod:`search.similar`).

        A score blends the cosine of the two movies' embeddings with the cosine
        of who rated them in training (the number of users who rated both over
        the geometric mean of their rating counts), weighted by
        :data:`search.similar.EMBEDDING_WEIGHT` and the rest. The movie itself
        is excluded, and so are movies with a zero embedding or without
        training ratings: they have nothing to compare.  Such a query movie
        therefore gets an empty result, not an arbitrary one.

        Returns
        -------
        (movie_ids int64, scores float32), best first, up to ``k`` long; a score
        is at most 1.
        """
        k = check_k(k)
        min_ratings = check_int(min_ratings, "min_ratings", 0)
        row = self._movie_row(movie_id)
        stored = self._neighbours.lookup(row, k, self._counts, min_ratings) if self._neighbours is not None else None
        if stored is not None:
            return self.movie_ids[stored[0]], stored[1]
        return self._best_movies(self._similarity.scores(row), k, min_ratings)

    def warm(self) -> None:
        """Build now what :meth:`similar` would build at its first call (the movie ->
        raters index), the catalogue's title index, and with an approximate index
        the select its candidates go through (compiled by numba, or loaded from its
        cache). A server that forks after loading (gunicorn's ``preload_app``) calls
        it first, so that the workers share those pages instead of each building its
        own copy, and no worker's first request waits for them."""
        self._similarity.warm()
        self.catalogue.warm()
        if self._ann is not None:
            topk_rows(np.zeros((1, 1), np.float32), 1)

