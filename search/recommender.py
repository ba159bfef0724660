"""Retrieval over one bundle: recommend, recommend for a newcomer, similar movies.

Every ranking is one :class:`InnerProduct`, exact or through a faiss index whose candidates (``k`` plus the
user's seen count, so exclusion cannot starve the result) are re-scored exactly: a score is always the
predicted rating. No per-call state: one instance serves many threads.
"""

from __future__ import annotations

import logging
import numbers
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import faiss
import numpy as np
import scipy.sparse as sp

from embedder import DEFAULT_BUNDLE
from embedder.bundle import Bundle
from embedder.vocab import UnknownIdError
from search.catalogue import Catalogue, check_count, is_whole
from search.foldin import NewUser, UserPrior, fold_in
from search.index import INDEX_FILE, apply_params, read_index, search_candidates
from search.similar import SIMILAR_FILES, Similarity
from search.topk import select_topk, top_k

ORDERS = ("relevance", "rating")
"""A top-K's order: by the relevance model (what you would watch and like), or by predicted rating."""
log = logging.getLogger(__name__)
RESCORE_FLOATS = 1 << 24  # about the most floats gathered at once when re-scoring candidates (64 MiB)


@dataclass(frozen=True)
class InnerProduct:
    """One ranking: ``queries · items`` over float32 rows, searched exactly or through ``ann``; ``users``
    are the trained users' query rows."""

    items: np.ndarray
    users: np.ndarray | None = None
    ann: faiss.Index | None = None

    def scores_of(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``queries[i] · items[rows[i, j]]`` for every found row (-1: padding, ``-inf``)."""
        scores = np.einsum("ijk,ik->ij", self.items[np.maximum(rows, 0)], queries)
        scores[rows < 0] = -np.inf
        return scores

    def search(self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None, banned: np.ndarray | None):
        """Top-``k`` item rows and scores per query row, ``min(k, items not banned)`` wide, padded with -1 /
        ``-inf`` (as :func:`top_k`)."""
        n = len(self.items)
        k = min(k, n - (0 if banned is None else len(banned)))
        if k == 0:
            return np.empty((len(queries), 0), np.int64), np.empty((len(queries), 0), np.float32)
        if self.ann is None:
            return top_k(queries, self.items, k, exclude, banned)
        allowed = None
        if banned is not None:
            allowed = np.ones(n, bool)
            allowed[banned] = False
        out_rows, out_scores = np.full((len(queries), k), -1), np.full((len(queries), k), -np.inf, np.float32)
        n_seen = np.diff(exclude.indptr) if exclude is not None else np.zeros(len(queries), np.int64)
        # Users grouped by the candidates they need, rounded up to a power of two, so that one heavy rater
        # does not make the whole batch search deep.
        fetch = np.minimum(2 ** np.ceil(np.log2(k + n_seen)).astype(np.int64), n)
        for depth in np.unique(fetch):
            members = np.flatnonzero(fetch == depth)
            parts = -(-len(members) * depth * self.items.shape[1] // RESCORE_FLOATS)
            for group in np.array_split(members, parts):
                found = np.sort(search_candidates(self.ann, queries[group], int(depth), allowed), axis=1)
                scores = self.scores_of(queries[group], found)
                if exclude is not None:
                    scores[exclude[group][np.arange(len(group))[:, None], found].toarray() != 0] = -np.inf
                pos, best = select_topk(scores, k)  # found is sorted: ties go to the lower row
                out_rows[group, : pos.shape[1]] = np.where(pos >= 0, np.take_along_axis(found, pos, 1), -1)
                out_scores[group, : pos.shape[1]] = best
        return out_rows, out_scores


class Recommender:
    """Recommendations and similar movies over one bundle. ``catalogue`` tells what the movies are;
    ``index_kind`` is ``"flat"`` (exact) unless ``python -m search build --index hnsw|ivf`` made another."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.catalogue = Catalogue(bundle)
        model = bundle.model
        self._seen = sp.csr_matrix(bundle.seen)
        self._counts = self.catalogue.rating_counts
        self._similarity = Similarity(model.movie_embeddings, self._seen)
        self._table = tuple(map(bundle.array, SIMILAR_FILES)) if bundle.has(SIMILAR_FILES[0]) else None
        info = bundle.manifest.get("index") or {}
        self.index_kind: str = info.get("kind", "flat")
        ann = None
        if self.index_kind != "flat":
            ann = read_index(bundle.read_bytes(info.get("file", INDEX_FILE)), INDEX_FILE)
            apply_params(ann, info.get("params", {}))
        self._rating = InnerProduct(model.item_vectors(), model.user_vectors(), ann)
        self.relevance = bundle.relevance()
        self._relevance = None
        if self.relevance is not None:
            self._relevance = InnerProduct(np.hstack([self.relevance.movie_factors, self._rating.items]))
        else:
            log.warning("%s: no relevance model, recommends by predicted rating until retrained", bundle.path)

    @classmethod
    def load(cls, path: str | os.PathLike = DEFAULT_BUNDLE, mmap: bool = False) -> Recommender:
        """Load the bundle at ``path`` (see :meth:`embedder.bundle.Bundle.load`); one fresh from training
        works too (only the catalogue's clusters need ``python -m search build``)."""
        return cls(Bundle.load(path, mmap=mmap))

    @property
    def user_ids(self) -> np.ndarray:
        """Original ids of all users, in bundle row order."""
        return self.bundle.user_ids

    @property
    def movie_ids(self) -> np.ndarray:
        """Original ids of all movies, in bundle row order (ties are broken in this order)."""
        return self.bundle.movie_ids

    def _user_rows(self, raw: Any) -> tuple[np.ndarray, bool]:
        """Bundle rows of one user id or an array of them, and whether one id (not an array) was given."""
        ids = np.atleast_1d(np.asarray(raw))
        finite_floats = ids.dtype.kind == "f" and np.all(np.isfinite(ids) & (ids == np.round(ids)))
        if ids.ndim != 1 or not (ids.dtype.kind in "iu" or finite_floats or ids.size == 0):
            raise ValueError(f"user ids must be whole numbers, got {raw!r}")
        return self.bundle.user_vocab.numbers(ids.astype(np.int64), missing="error"), np.ndim(raw) == 0

    def _banned(self, min_ratings: int) -> np.ndarray | None:
        """Movie rows with fewer than ``min_ratings`` training ratings (None when there is no floor)."""
        return np.flatnonzero(self._counts < min_ratings) if min_ratings > 0 else None

    def _answer(self, rows: np.ndarray, *values: np.ndarray, scalar: bool) -> tuple[np.ndarray, ...]:
        """Movie rows (-1 = padding) as ids, with their values; one query's answer 1-D without padding."""
        ids = np.where(rows >= 0, self.movie_ids[np.maximum(rows, 0)], -1).astype(np.int64)
        if scalar:
            return ids[0][ids[0] >= 0], *(v[0][ids[0] >= 0] for v in values)
        return ids, *values

    def order_of(self, order: str) -> str:
        """The order a top-K is given in: ``order`` checked, ``"rating"`` without a relevance model."""
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        return "rating" if self.relevance is None else order

    def _rank(self, watch, queries, k, exclude, banned, order, scalar):
        """Top-``k`` in ``order`` for rating queries ``queries`` and relevance user rows ``watch``: movie ids,
        predicted ratings, relevance (NaN without a relevance model)."""
        if watch is not None:  # [p_u, β y_u]: the relevance index's queries (docs/design.md, "Relevance")
            watch = np.hstack([watch, np.float32(self.relevance.rating_weight) * queries])
        if self.order_of(order) == "rating":
            rows, scores = self._rating.search(queries, k, exclude, banned)
            relevance = np.full(scores.shape, np.nan, np.float32)
            if watch is not None:
                relevance = self._relevance.scores_of(watch, rows)
        else:
            rows, relevance = self._relevance.search(watch, k, exclude, banned)
            scores = self._rating.scores_of(queries, rows)
        return self._answer(rows, scores, relevance, scalar=scalar)

    def _rank_users(self, rows, k, exclude_seen, banned, order, scalar=False):
        """:meth:`_rank` for the trained users of bundle ``rows``."""
        watch = None if self.relevance is None else self.relevance.user_factors[rows]
        exclude = self._seen[rows] if exclude_seen else None
        return self._rank(watch, self._rating.users[rows], k, exclude, banned, order, scalar)

    def recommend(
        self,
        user_ids: Any,
        k: int = 10,
        exclude_seen: bool = True,
        min_ratings: int = 0,
        order: str = "relevance",
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-``k`` movies for one user id or an array of them, by relevance (what they would watch and like)
        or predicted rating, without the movies rated in training unless ``exclude_seen`` is False, among
        movies with ``min_ratings``+ ratings: ``(movie_ids int64, scores float32, relevance float32)``, a
        score being the raw predicted rating ``μ + b_u + b_i + p_u·q_i``, relevance NaN without a relevance
        model; 1-D for one id, ``(n_users, k')`` for a batch, padded with id -1 and score ``-inf``."""
        k, min_ratings = check_count(k, "k", 1), check_count(min_ratings, "min_ratings", 0)
        rows, scalar = self._user_rows(user_ids)
        return self._rank_users(rows, k, exclude_seen, self._banned(min_ratings), order, scalar)

    def recommend_all(
        self,
        k: int = 10,
        batch_size: int = 4096,
        exclude_seen: bool = True,
        min_ratings: int = 0,
        rows: slice = slice(None),
        workers: int = 1,
        order: str = "relevance",
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Top-``k`` for every user (or the users of bundle ``rows``), as :meth:`recommend`, streamed:
        ``(user_ids, movie_ids, scores, relevance)`` blocks of ``batch_size`` users in bundle order.
        ``workers`` threads search parts of a block side by side; with more than one, the caller should give
        BLAS one thread (``python -m search recommend-all`` does)."""
        k, min_ratings = check_count(k, "k", 1), check_count(min_ratings, "min_ratings", 0)
        batch_size, workers = check_count(batch_size, "batch_size", 1), check_count(workers, "workers", 1)
        banned, order = self._banned(min_ratings), self.order_of(order)
        user_rows = np.arange(len(self.user_ids))[rows]

        def search(part: np.ndarray) -> tuple[np.ndarray, ...]:
            return self._rank_users(part, k, exclude_seen, banned, order)

        def blocks() -> Iterator[tuple[np.ndarray, ...]]:
            with ThreadPoolExecutor(workers) as pool:
                for start in range(0, len(user_rows), batch_size):
                    batch = user_rows[start : start + batch_size]
                    parts = list(pool.map(search, np.array_split(batch, workers)))
                    yield self.user_ids[batch], *(np.concatenate(column) for column in zip(*parts))

        return blocks()

    @cached_property
    def _prior(self) -> UserPrior:
        return UserPrior.from_model(self.bundle.model, self._seen, implicit=self.bundle.implicit_rows())

    def fold_in(self, ratings: Mapping | Any) -> NewUser:
        """A user who is not in the bundle, from ``{movie_id: rating}`` or ``(movie_id, rating)`` pairs (none:
        the average user). The one check of a newcomer's ratings: UnknownIdError naming every unknown
        movie, ValueError for a rating off the bundle's scale, an id that is not an integer, a repeat."""
        pairs = list(ratings.items()) if isinstance(ratings, Mapping) else list(ratings)
        low, high = self.bundle.rating_scale
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not is_whole(pair[0]):
                raise ValueError(f"expected (movie_id, rating) pairs, movie ids integers, got {pair!r}")
            movie, rating = pair
            number = isinstance(rating, numbers.Real) and not isinstance(rating, bool)
            if not number or not low <= rating <= high:
                raise ValueError(
                    f"rating of movie {movie} must be a number from {low:g} to {high:g}, got {rating!r}"
                )
        ids = [int(movie) for movie, _ in pairs]
        twice = sorted(movie for movie, n in Counter(ids).items() if n > 1)
        if twice:
            raise ValueError(f"movie {twice[0]} is rated more than once")
        unknown = [str(i) for i in ids if i not in self.catalogue.row_of]
        if unknown:
            raise UnknownIdError(f"unknown movie{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
        rows = np.array([self.catalogue.row_of[i] for i in ids], np.int64)
        values = np.array([float(r) for _, r in pairs], np.float64)
        embedding, bias = fold_in(self._prior, self.bundle.model, rows, values)
        embedding, bias = embedding.astype(np.float32), np.float32(bias)
        query = self.bundle.model.query_vector(embedding, bias)
        return NewUser(np.array(ids, np.int64), values, rows, embedding, bias, query)

    def recommend_for_ratings(
        self, ratings: Any, k: int = 10, min_ratings: int = 0, order: str = "relevance"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-``k`` movies for a newcomer (:meth:`fold_in`, same errors), ranked as :meth:`recommend`, the
        rated movies left out. With no ratings, the average user's list among movies with at least
        :attr:`fallback_min_ratings` ratings, so that a lucky bias from a few ratings does not lead."""
        k, min_ratings = check_count(k, "k", 1), check_count(min_ratings, "min_ratings", 0)
        user = self.fold_in(ratings)
        floor = max(min_ratings, self.fallback_min_ratings) if user.fallback else min_ratings
        n = len(user.movie_rows)
        rated = sp.csr_matrix((np.ones(n), user.movie_rows, [0, n]), shape=(1, len(self.movie_ids)))
        watch = None if self.relevance is None else self.relevance.user_vector(user.movie_rows)[None]
        return self._rank(watch, user.query[None], k, rated, self._banned(floor), order, True)

    def because(self, rated_rows: np.ndarray, movie_ids: np.ndarray, n: int = 3) -> list[np.ndarray]:
        """For each of ``movie_ids``, up to ``n`` movie ids of ``rated_rows`` (the rows the person rated) that
        add most to its relevance, largest first; empty lists without a relevance model."""
        if self.relevance is None:
            return [np.empty(0, np.int64) for _ in movie_ids]
        rows = self.bundle.movie_vocab.numbers(np.asarray(movie_ids, np.int64), missing="error")
        return [self.movie_ids[self.relevance.explain(rated_rows, int(row), n)[0]] for row in rows]

    def items(self, answer: tuple[np.ndarray, ...], rated_rows: np.ndarray) -> list[dict]:
        """The rows of a recommendation ``answer`` (:meth:`search.catalogue.Catalogue.items`: what the API and
        the CLI's ``--json`` print), each with ``because``: :meth:`because` of ``rated_rows`` as movie ids and
        titles."""
        items = self.catalogue.items(*answer)
        for item, ids in zip(items, self.because(rated_rows, [item["movie_id"] for item in items])):
            item["because"] = [
                {"movie_id": int(i), "title": self.catalogue.movie(int(i))["title"]} for i in ids
            ]
        return items

    def rated_rows(self, user_id: Any) -> np.ndarray:
        """Movie rows a trained user rated in training."""
        rows, _ = self._user_rows(user_id)
        return self._seen[int(rows[0])].indices

    @cached_property
    def fallback_min_ratings(self) -> int:
        """The count floor of :meth:`recommend_for_ratings` without ratings: the median of rated movies."""
        rated = self._counts[self._counts > 0]
        return int(np.median(rated)) if len(rated) else 0

    def similar(self, movie_id: Any, k: int = 10, min_ratings: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` movies most like ``movie_id`` (:mod:`search.similar`), best first; the movie itself and
        movies that cannot be compared are left out. A built bundle answers from its table of each movie's
        nearest, unless a ``min_ratings`` floor leaves fewer than ``k`` of them."""
        k, min_ratings = check_count(k, "k", 1), check_count(min_ratings, "min_ratings", 0)
        row = self.catalogue.row(movie_id)
        if self._table is not None:
            rows, scores = self._table[0][row], self._table[1][row]
            kept = (rows >= 0) & (self._counts[rows] >= min_ratings)
            if kept.sum() >= k or rows[-1] < 0:  # enough, or the row holds every comparable movie
                return self.movie_ids[rows[kept][:k]], scores[kept][:k]
        scores = self._similarity.block_scores([row])
        scores[:, self._counts < min_ratings] = -np.inf
        return self._answer(*select_topk(scores, k), scalar=True)

    def warm(self) -> None:
        """Build now what the first :meth:`similar` and title search would build (a server that forks after
        loading calls it, so that its workers share those pages)."""
        self._similarity.warm()
        self.catalogue.warm()
