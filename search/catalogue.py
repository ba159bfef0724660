"""What a bundle says about its movies besides the model: titles, metadata, clusters.

:meth:`Catalogue.items` is the one place a result becomes JSON rows (the web API and the CLI's ``--json``).
No faiss, so a script that only looks up movies loads fast.
"""

from __future__ import annotations

import math
import numbers
import os
from functools import cached_property
from typing import Any

import numpy as np

from embedder import DEFAULT_BUNDLE
from embedder.bundle import Bundle, BundleError
from embedder.vocab import UnknownIdError
from search.clusters import genre_lists
from search.titles import TitleIndex

MEMBER_SORTS = ("popularity", "title", "rating")  # the orders of Catalogue.cluster_members
AMBIGUOUS_SHOWN = 15  # candidates an AmbiguousTitle message lists


def is_whole(value: object) -> bool:
    """Whether ``value`` is a Python or numpy integer (a bool is not a number here)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_count(value: object, name: str, low: int) -> int:
    """``value`` as an int; a ValueError naming ``name`` unless a whole number of at least ``low``."""
    if not is_whole(value) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


class NotBuiltError(BundleError):
    """The bundle has no search files yet (clusters); the message says how to build them."""


class AmbiguousTitle(ValueError):
    """A title matches several movies and none clearly; ``candidates`` holds their ids, best first."""

    def __init__(self, message: str, candidates: list[int] = ()):
        super().__init__(message)
        self.candidates = list(candidates)


class Catalogue:
    """Titles, movie rows, clusters and users' training ratings of one bundle; ``row_of`` maps a movie id
    to its bundle row, ``rating_counts`` holds the training ratings per movie in bundle order."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.row_of: dict[int, int] = {int(m): r for r, m in enumerate(bundle.movie_ids.tolist())}
        self.rating_counts: np.ndarray = bundle.movies["rating_count"].to_numpy(np.int64)
        self._labels = self._summaries = None
        if bundle.has("cluster_labels.npy") and bundle.has("clusters.json"):
            self._labels = bundle.array("cluster_labels.npy").astype(np.int64)
            self._summaries = bundle.json("clusters.json")
        # Each movie's JSON fields as plain values, prepared once: reading the frame cell by cell per
        # result would cost more than the search.
        movies = bundle.movies
        labels = [None] * len(movies) if self._labels is None else self._labels.tolist()
        self._rows = [
            {
                "movie_id": movie_id,
                "title": title,
                "genres": genres,
                "rating_count": count,
                "mean_rating": mean if count > 0 and math.isfinite(mean) else None,
                "cluster": label if label is not None and label >= 0 else None,
            }
            for movie_id, title, genres, count, mean, label in zip(
                self.movie_ids.tolist(),
                movies["title"].astype(str).tolist(),
                genre_lists(movies["genres"]),
                self.rating_counts.tolist(),
                movies["mean_rating"].to_numpy(np.float64).tolist(),
                labels,
            )
        ]

    @classmethod
    def load(cls, path: str | os.PathLike = DEFAULT_BUNDLE) -> Catalogue:
        """The catalogue of the bundle at ``path`` (see :meth:`embedder.bundle.Bundle.load`)."""
        return cls(Bundle.load(path))

    @property
    def movie_ids(self) -> np.ndarray:
        """Original ids of all movies, in bundle row order."""
        return self.bundle.movie_ids

    @property
    def built(self) -> bool:
        """Whether ``python -m search build`` has run on this bundle (clusters available)."""
        return self._labels is not None

    def warm(self) -> None:
        """Build the title index now (a server that forks after loading calls it, so its workers share it)."""
        self._titles  # noqa: B018

    def row(self, movie_id: Any) -> int:
        """The bundle row of one movie id; UnknownIdError naming an unknown one."""
        if not is_whole(movie_id):
            raise ValueError(f"expected one movie id (an integer), got {movie_id!r}")
        if int(movie_id) not in self.row_of:
            raise UnknownIdError(f"unknown movie {int(movie_id)}")
        return self.row_of[int(movie_id)]

    def _record(self, row: int) -> dict:
        """A movie's fields as a fresh dict, genres a fresh list (callers may change their copy)."""
        return {**self._rows[row], "genres": list(self._rows[row]["genres"])}

    def movie(self, movie_id: Any) -> dict:
        """One movie as a JSON-ready dict: movie_id, title, genres (list), rating_count, mean_rating (None
        without ratings) and cluster (None before ``build``, and for a movie without training ratings)."""
        return self._record(self.row(movie_id))

    def items(self, movie_ids: Any, scores: Any = None, relevance: Any = None) -> list[dict]:
        """JSON rows for a result, in order: :meth:`movie`'s fields plus ``score`` and, when given,
        ``relevance`` (None where NaN or not given). Padding entries (id -1) are dropped."""
        ids = np.asarray(movie_ids, np.int64).reshape(-1).tolist()
        columns = {"score": scores} if relevance is None else {"score": scores, "relevance": relevance}
        for name, values in columns.items():
            values = [math.nan] * len(ids) if values is None else np.asarray(values, np.float64).reshape(-1)
            if len(ids) != len(values):
                raise ValueError(f"movie_ids and {name} differ in length: {len(ids)} vs {len(values)}")
            columns[name] = [None if math.isnan(v) else float(v) for v in values]
        return [
            {**self._record(self.row(movie_id)), **{name: values[n] for name, values in columns.items()}}
            for n, movie_id in enumerate(ids)
            if movie_id >= 0  # -1 pads a short result
        ]

    @cached_property
    def _titles(self) -> TitleIndex:
        return TitleIndex([row["title"] for row in self._rows], self.rating_counts)

    def find_movies(self, query: str, limit: int = 10) -> list[int]:
        """Movie ids whose title matches ``query``, best first (:mod:`search.titles`), at most ``limit``."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("title query must be a non-empty string")
        return [int(self.movie_ids[r]) for r in self._titles.find(query)[: check_count(limit, "limit", 1)]]

    def resolve(self, text: str, ask: str = "pass one id") -> int:
        """A movie id or title typed by a person, as one movie id, never a guess: a title when it clearly
        names one movie (:meth:`search.titles.TitleIndex.match`). Otherwise :class:`AmbiguousTitle` lists
        the candidates after ``ask`` (what the person should do, in the interface's words); no match at all
        raises UnknownIdError."""
        text = text.strip()
        if not text:
            raise ValueError("no movie id or title given")
        if text.lstrip("-").isdigit() and int(text) in self.row_of:
            return int(text)
        rows, clear = self._titles.match(text)
        if not len(rows):
            raise UnknownIdError(f"unknown movie {text!r}: no id or title matches")
        matches = [int(m) for m in self.movie_ids[rows]]
        if clear:
            return matches[0]
        lines = [f"{m:>8}  {self._rows[r]['title']}" for m, r in zip(matches[:AMBIGUOUS_SHOWN], rows)]
        if len(matches) > AMBIGUOUS_SHOWN:
            lines.append(f"  ... and {len(matches) - AMBIGUOUS_SHOWN} more")
        raise AmbiguousTitle(f"{text!r} matches {len(matches)} movies; {ask}:\n" + "\n".join(lines), matches)

    def user_ratings(self, user_id: Any, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The user's training ratings, highest first (ties in bundle order): ``(movie_ids int64, ratings
        float32)``, at most ``limit``."""
        if not is_whole(user_id):
            raise ValueError(f"user_ratings takes one user id (an integer), got {user_id!r}")
        seen = self.bundle.seen[self.bundle.user_vocab.number(int(user_id))]
        cols, ratings = seen.indices.astype(np.int64), seen.data.astype(np.float32)
        order = np.lexsort((cols, -ratings))[:limit]
        return self.movie_ids[cols[order]].astype(np.int64), ratings[order]

    def _need_clusters(self) -> np.ndarray:
        if self._labels is None:
            hint = f"run `python -m search build --bundle {self.bundle.path}` first"
            raise NotBuiltError(f"this bundle has no clusters yet: {hint}")
        return self._labels

    def cluster_of(self, movie_id: Any) -> int | None:
        """The K-Means cluster of a movie (None: not clustered); :class:`NotBuiltError` before ``build``."""
        label = int(self._need_clusters()[self.row(movie_id)])
        return None if label < 0 else label

    def clusters(self) -> list[dict]:
        """The cluster summaries of ``clusters.json``; :class:`NotBuiltError` before ``build``."""
        self._need_clusters()
        return self._summaries

    def cluster_members(self, cluster: int, sort: str = "popularity") -> list[int]:
        """Movie ids of one cluster, sorted by ``popularity`` (most rated first), ``title`` or ``rating``
        (highest mean first, unrated last); :class:`UnknownIdError` for an unknown cluster."""
        labels = self._need_clusters()
        if sort not in MEMBER_SORTS:
            raise ValueError(f"sort must be one of {', '.join(MEMBER_SORTS)}, got {sort!r}")
        if not is_whole(cluster) or not 0 <= cluster < len(self._summaries):
            raise UnknownIdError(f"unknown cluster {cluster} (clusters are 0..{len(self._summaries) - 1})")
        rows = np.flatnonzero(labels == cluster)
        counts = self.rating_counts[rows]
        means = [self._rows[r]["mean_rating"] for r in rows]
        keys = {
            "popularity": (rows, -counts),
            "title": (rows, [self._rows[r]["title"].lower() for r in rows]),
            "rating": (rows, -counts, [-m if m is not None else np.inf for m in means]),
        }
        return [int(i) for i in self.movie_ids[rows[np.lexsort(keys[sort])]]]
