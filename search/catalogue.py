"""What a bundle says about its movies besides the model: titles, metadata, clusters.

::

    from search import Recommender
    catalogue = Recommender.load("artifacts/current").catalogue   # or Catalogue.load(path)
    catalogue.find_movies("star wars")           # movie ids, best match first
    catalogue.movie(50)                          # one movie as a JSON-ready dict
    catalogue.items(ids, scores)                 # a result's rows: movie fields + score
    catalogue.clusters(); catalogue.cluster_of(50); catalogue.cluster_members(3, sort="title")
    catalogue.user_ratings(42)                   # (movie ids, ratings), highest first

Ids are original MovieLens ids.  An unknown id raises :class:`UnknownIdError` (a
``KeyError``) naming it; clusters before ``python -m search build`` raise
:class:`NotBuiltError`, whose message says how to build them.

:meth:`Catalogue.items` is the one place a result becomes JSON rows: the web API
and the command line's ``--json`` print the same rows, and a result page builds
them on every request, so each movie's fields are prepared once, as plain Python
values, when the catalogue is made.  It needs numpy, pandas and rapidfuzz only
(no faiss), so a script that only looks up movies loads fast.

The object holds no per-call state; one instance serves many threads.
Tested in ``tests/search/test_catalogue.py``.
"""

from __future__ import annotations

import math
import os
from functools import cached_property
from typing import Any

import numpy as np

from embedder import DEFAULT_BUNDLE
from embedder.bundle import Bundle, BundleError
from embedder.vocab import UnknownIdError
from search.clusters import genre_lists
from search.titles import TitleIndex
from search.validate import check_int, is_whole

BUILD_HINT = "run `python -m search build --bundle {path}` first"
MEMBER_SORTS = ("popularity", "title", "rating")
"""The orders :meth:`Catalogue.cluster_members` takes."""


class NotBuiltError(BundleError):
    """The bundle has no search files yet (clusters); the message says how to build them."""


class Catalogue:
    """Titles, movie rows, clusters and users' training ratings of one bundle.

    Build with :meth:`load` or from a loaded bundle; a :class:`search.Recommender`
    makes one over its own bundle (``rec.catalogue``).

    Attributes
    ----------
    bundle:
        The verified :class:`embedder.bundle.Bundle`.
    row_of:
        ``{movie_id: bundle row}`` as a dict: one id is looked up on every web
        request, and a dict does that faster than the vocabulary's vectorised
        lookup.  Shared with the recommender; read it, never change it.
    rating_counts:
        Training ratings per movie, in bundle row order; shared likewise.
    """

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.row_of: dict[int, int] = {int(m): r for r, m in enumerate(bundle.movie_ids.tolist())}
        self.rating_counts: np.ndarray = bundle.movies["rating_count"].to_numpy(np.int64)
        self._labels: np.ndarray | None = None
        self._summaries: list[dict] | None = None
        if bundle.has("cluster_labels.npy") and bundle.has("clusters.json"):
            labels = bundle.array("cluster_labels.npy")
            n_movies = len(bundle.movie_ids)
            if labels.shape != (n_movies,) or labels.dtype.kind not in "iu":
                raise BundleError(f"cluster_labels.npy: expected {n_movies} integer labels, found {labels.dtype} {labels.shape}")
            self._labels = labels.astype(np.int64)
            self._summaries = bundle.json("clusters.json")
        self._rows = self._movie_rows()

    @classmethod
    def load(cls, path: str | os.PathLike = DEFAULT_BUNDLE, verify: bool = True, mmap: bool = False) -> Catalogue:
        """The catalogue of the bundle at ``path`` (see :meth:`embedder.bundle.Bundle.load`)."""
        return cls(Bundle.load(path, verify=verify, mmap=mmap))

    def __repr__(self) -> str:
        return f"Catalogue({self.bundle.path}, {len(self.movie_ids)} movies, built={self.built})"

    @property
    def movie_ids(self) -> np.ndarray:
        """Original ids of all movies, in bundle row order."""
        return self.bundle.movie_ids

    @property
    def built(self) -> bool:
        """Whether ``python -m search build`` has run on this bundle (clusters available)."""
        return self._labels is not None

    def warm(self) -> None:
        """Build the title index now rather than at the first title search (a server
        that forks after loading calls it, so that its workers share it)."""
        _ = self._titles

    # ------------------------------------------------------------------ movies

    def _row(self, movie_id: Any) -> int:
        """The bundle row of one movie id."""
        if not is_whole(movie_id):
            raise ValueError(f"expected one movie id (an integer), got {movie_id!r}")
        row = self.row_of.get(int(movie_id))
        if row is None:
            raise UnknownIdError(f"unknown movie {int(movie_id)}")
        return row

    def _movie_rows(self) -> list[tuple]:
        """Per movie, its JSON fields as plain Python values (reading the pandas frame
        cell by cell on each request would cost more than the search itself)."""
        movies = self.bundle.movies
        means = movies["mean_rating"].to_numpy(np.float64)
        labels = [None] * len(means) if self._labels is None else [None if c < 0 else c for c in self._labels.tolist()]
        return [
            (int(movie_id), str(title), genres, int(count), float(mean) if count > 0 and math.isfinite(mean) else None, label)
            for movie_id, title, genres, count, mean, label in zip(
                self.movie_ids.tolist(),
                movies["title"].tolist(),
                genre_lists(movies["genres"]),
                self.rating_counts.tolist(),
                means.tolist(),
                labels,
            )
        ]

    def movie(self, movie_id: Any) -> dict:
        """One movie as a JSON-ready dict: movie_id, title, genres (list), rating_count,
        mean_rating (None without ratings) and cluster (None before ``build``, and
        for a movie without training ratings)."""
        return _record(self._rows[self._row(movie_id)])

    def items(self, movie_ids: Any, scores: Any = None) -> list[dict]:
        """JSON rows for a result, in order: :meth:`movie`'s fields plus ``score``
        (a float; None for every row when ``scores`` is None, e.g. a title search).

        Padding entries (id -1) are dropped.  The command line's ``--json`` and the
        web API both print these rows.

        Raises
        ------
        UnknownIdError
            For an id not in the bundle.
        ValueError
            When ``movie_ids`` and ``scores`` differ in length.
        """
        ids, values = _result_pairs(movie_ids, scores)
        row_of, table, rows = self.row_of, self._rows, []
        for movie_id, score in zip(ids.tolist(), values):
            if movie_id < 0:  # -1 pads a short result
                continue
            row = row_of.get(movie_id)
            if row is None:
                raise UnknownIdError(f"unknown movie {movie_id}")
            item = _record(table[row])
            item["score"] = score
            rows.append(item)
        return rows

    @cached_property
    def _titles(self) -> TitleIndex:
        return TitleIndex(self.bundle.movies["title"].astype(str).tolist(), self.rating_counts)

    def find_movies(self, query: str, limit: int = 10) -> list[int]:
        """Movie ids whose title matches ``query``, best first, at most ``limit``.

        Forgiving (see :mod:`search.titles`): exact titles (also without the year, or
        "the godfather" for "Godfather, The"), then prefixes, then containing, then
        every word in any order ("godfather part 2", "12 monkeys"), then words run
        together ("starwars"), then close spellings ("star wras"); within each, most
        rated first.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError("title query must be a non-empty string")
        limit = check_int(limit, "limit", 1)
        return [int(self.movie_ids[r]) for r in self._titles.find(query)[:limit]]

    # ------------------------------------------------------------------ users

    def user_ratings(self, user_id: Any, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The user's training ratings, highest first (ties in bundle order).

        Returns
        -------
        (movie_ids int64, ratings float32)
        """
        if not is_whole(user_id):
            raise ValueError(f"user_ratings takes one user id (an integer), got {user_id!r}")
        row = self.bundle.user_vocab.number(int(user_id))
        seen = self.bundle.seen
        lo, hi = seen.indptr[row], seen.indptr[row + 1]
        cols = seen.indices[lo:hi].astype(np.int64)
        ratings = seen.data[lo:hi].astype(np.float32)
        order = np.lexsort((cols, -ratings))
        if limit is not None:
            order = order[: check_int(limit, "limit", 1)]
        return self.movie_ids[cols[order]].astype(np.int64), ratings[order]

    # ------------------------------------------------------------------ clusters

    def _need_clusters(self) -> np.ndarray:
        if self._labels is None:
            raise NotBuiltError(f"this bundle has no clusters yet: {BUILD_HINT.format(path=self.bundle.path)}")
        return self._labels

    def cluster_of(self, movie_id: Any) -> int | None:
        """The K-Means cluster of a movie; None for a movie without training ratings
        (label -1: not clustered). Raises :class:`NotBuiltError` before ``build``."""
        label = int(self._need_clusters()[self._row(movie_id)])
        return None if label < 0 else label

    def clusters(self) -> list[dict]:
        """The cluster summaries of ``clusters.json`` (size, label, top movies, genre mix,
        mean rating). Raises :class:`NotBuiltError` before ``build``."""
        self._need_clusters()
        return self._summaries

    def cluster_members(self, cluster: int, sort: str = "popularity") -> list[int]:
        """Movie ids of one cluster, sorted by ``popularity`` (most rated first),
        ``title`` or ``rating`` (highest mean rating first, unrated last).

        Raises :class:`UnknownIdError` for a cluster outside ``0..n-1``,
        ``ValueError`` for another ``sort`` and :class:`NotBuiltError` before ``build``.
        """
        labels = self._need_clusters()
        if sort not in MEMBER_SORTS:
            raise ValueError(f"sort must be one of {', '.join(MEMBER_SORTS)}, got {sort!r}")
        n_clusters = len(self._summaries)
        if not is_whole(cluster) or not 0 <= cluster < n_clusters:
            raise UnknownIdError(f"unknown cluster {cluster} (clusters are 0..{n_clusters - 1})")
        rows = np.flatnonzero(labels == cluster)
        movies = self.bundle.movies
        if sort == "popularity":
            order = np.lexsort((rows, -self.rating_counts[rows]))
        elif sort == "title":
            order = np.lexsort((rows, movies["title"].astype(str).str.lower().to_numpy()[rows]))
        else:
            means = movies["mean_rating"].to_numpy(np.float64)[rows]
            means = np.where(np.isfinite(means) & (self.rating_counts[rows] > 0), means, -np.inf)
            order = np.lexsort((rows, -self.rating_counts[rows], -means))
        return [int(i) for i in self.movie_ids[rows[order]]]


def _record(fields: tuple) -> dict:
    """A movie's prepared fields as a fresh dict, genres a fresh list (callers may change their copy)."""
    movie_id, title, genres, count, mean, cluster = fields
    return {"movie_id": movie_id, "title": title, "genres": list(genres), "rating_count": count, "mean_rating": mean, "cluster": cluster}


def _result_pairs(movie_ids: Any, scores: Any = None) -> tuple[np.ndarray, list]:
    """A result's movie ids (int64, flat, padding -1 kept) and its scores as Python
    floats (all None when ``scores`` is None); ValueError if their lengths differ."""
    ids = np.asarray(movie_ids, dtype=np.int64).reshape(-1)
    values = [None] * len(ids) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1).tolist()
    if len(ids) != len(values):
        raise ValueError(f"movie_ids and scores differ in length: {len(ids)} vs {len(values)}")
    return ids, values
