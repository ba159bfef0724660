"""The model object: ``r̂ = μ + b_u + b_i + p_u·q_i``, written once.

:class:`MFModel` holds μ, the biases, the embeddings and the two vocabularies.
Training returns one (:attr:`embedder.train.TrainResult.model`), a bundle stores
and loads one (:attr:`embedder.bundle.Bundle.model`, over the loaded, possibly
memory-mapped, arrays), and evaluation, search, the command line and the web
server read predictions and search vectors from it. numpy only: serving never
imports torch.

Tested in ``tests/embedder/test_factors.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedder.vocab import Vocabulary

PREDICT_BLOCK = 1 << 14
"""Pairs predicted at a time by :meth:`MFModel.predict`: the gathered embedding rows
of a block (4 MiB at d=64) stay in cache for the dot products, as those of much
larger blocks would not."""


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


@dataclass(frozen=True, eq=False)
class MFModel:
    """Biased matrix factorization as arrays.

    Row ``r`` of the user arrays belongs to user ``user_vocab.ids[r]`` (the original
    MovieLens id), and likewise for movies. The arrays are held as given, never
    copied, so a bundle's memory maps stay shared between processes.
    """

    global_mean: float
    """μ, the global bias."""
    user_embeddings: np.ndarray
    """``p_u``, ``(n_users, d)``; ``d`` may be 0 (a biases-only baseline)."""
    movie_embeddings: np.ndarray
    """``q_i``, ``(n_movies, d)``."""
    user_biases: np.ndarray
    """``b_u``, ``(n_users,)``."""
    movie_biases: np.ndarray
    """``b_i``, ``(n_movies,)``."""
    rating_scale: tuple[float, float]
    """(lowest, highest) rating of the dataset; :meth:`predict` clips to it."""
    user_vocab: Vocabulary | None = None
    """User id <-> row; None for a model known by rows only (an evaluation baseline)."""
    movie_vocab: Vocabulary | None = None
    """Movie id <-> row; None likewise."""

    def __post_init__(self) -> None:
        users, movies = self.user_embeddings.shape, self.movie_embeddings.shape
        if len(users) != 2 or len(movies) != 2 or users[1] != movies[1]:
            raise ValueError(f"user embeddings {users} and movie embeddings {movies} must be 2-D and equally wide")
        for kind, rows, biases, vocab in (
            ("user", users[0], self.user_biases, self.user_vocab),
            ("movie", movies[0], self.movie_biases, self.movie_vocab),
        ):
            if biases.shape != (rows,) or (vocab is not None and len(vocab) != rows):
                length = "no" if vocab is None else len(vocab)
                raise ValueError(f"{kind} biases {biases.shape} and {length} ids do not match {rows} embedding rows")

    @classmethod
    def biases(cls, global_mean: float, user_biases: np.ndarray, movie_biases: np.ndarray, rating_scale: tuple[float, float]) -> MFModel:
        """A model without embeddings: ``μ + b_u + b_i``."""
        empty = lambda n: np.zeros((n, 0), np.float32)  # noqa: E731
        return cls(global_mean, empty(len(user_biases)), empty(len(movie_biases)), user_biases, movie_biases, rating_scale)

    @classmethod
    def constant(cls, global_mean: float, n_users: int, n_movies: int, rating_scale: tuple[float, float]) -> MFModel:
        """The global-mean baseline: μ for everyone."""
        return cls.biases(global_mean, np.zeros(n_users, np.float32), np.zeros(n_movies, np.float32), rating_scale)

    @property
    def dim(self) -> int:
        """Embedding size d."""
        return int(self.movie_embeddings.shape[1])

    def predict(self, user_rows: np.ndarray, movie_rows: np.ndarray, clip: bool = True) -> np.ndarray:
        """``μ + b_u + b_i + p_u·q_i`` in float32 for paired rows, clipped to the rating scale
        unless ``clip`` is False.

        The fallback for an id the model has not learnt: a row of ``-1`` (unknown id)
        contributes a zero embedding and a zero bias, so an unknown user is predicted
        ``μ + b_i``, an unknown movie ``μ + b_u`` and both ``μ``. Users and movies
        with no training ratings are exported with zero rows, so they get exactly this
        fallback from the stored vectors too.
        """
        user_rows = np.asarray(user_rows, dtype=np.int64)
        movie_rows = np.asarray(movie_rows, dtype=np.int64)
        raw = np.empty(len(user_rows), dtype=np.float32)
        # In blocks: the gathered embedding rows of 20M pairs would take gigabytes at once.
        for start in range(0, len(raw), PREDICT_BLOCK):
            block = slice(start, start + PREDICT_BLOCK)
            known_user = user_rows[block] >= 0
            known_movie = movie_rows[block] >= 0
            u = np.where(known_user, user_rows[block], 0)
            m = np.where(known_movie, movie_rows[block], 0)
            dot = np.einsum("ij,ij->i", self.user_embeddings[u], self.movie_embeddings[m]) * (known_user & known_movie)
            raw[block] = (
                np.float32(self.global_mean)
                + self.user_biases[u] * known_user
                + self.movie_biases[m] * known_movie
                + dot.astype(np.float32)
            )
        return np.clip(raw, *self.rating_scale) if clip else raw

    def predict_ids(self, user_ids: np.ndarray, movie_ids: np.ndarray, clip: bool = True) -> np.ndarray:
        """:meth:`predict` for paired original ids; an id not in the vocabulary falls back as a row of -1."""
        if self.user_vocab is None or self.movie_vocab is None:
            raise ValueError("this model has no vocabularies: predict by rows")
        users = self.user_vocab.numbers(user_ids, missing="negative")
        return self.predict(users, self.movie_vocab.numbers(movie_ids, missing="negative"), clip)

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Raw predicted ratings of the given users for every movie, ``(len(user_rows), n_movies)``."""
        scores = self.user_embeddings[user_rows] @ self.movie_embeddings.T
        scores += (self.global_mean + self.user_biases[user_rows])[:, None]  # in place: no block-sized temporaries
        scores += self.movie_biases
        return scores

    # docs/design.md, "Bias-augmented vectors": y_u · x_i = r̂(u, i), so an inner-product
    # search over the movie rows ranks by predicted rating and scores with it.

    def item_vectors(self) -> np.ndarray:
        """Movie rows ``x_i = [q_i, b_i, 1]`` as a new C-contiguous float32 ``(n_movies, d + 2)`` array."""
        return _augment(self.movie_embeddings, self.movie_biases, "movie", -2)

    def user_vectors(self) -> np.ndarray:
        """User queries ``y_u = [p_u, 1, μ + b_u]`` as a new C-contiguous float32 ``(n_users, d + 2)`` array.

        ``μ + b_u`` is summed in float32, the order :meth:`predict` sums in, so
        ``y_u · x_i`` equals the prediction to float rounding (1e-4 in the tests).
        """
        return self._queries(self.user_embeddings, self.user_biases)

    def query_vector(self, embedding: np.ndarray, bias: float) -> np.ndarray:
        """The query ``[p, 1, μ + b]`` (float32) of a user outside the model, given their
        ``p`` and ``b`` (a newcomer folded in: :mod:`search.foldin`)."""
        return self._queries(np.reshape(embedding, (1, -1)), np.reshape(np.float32(bias), (1,)))[0]

    def _queries(self, embeddings: np.ndarray, biases: np.ndarray) -> np.ndarray:
        shifted = np.float32(self.global_mean) + np.asarray(biases, dtype=np.float32)
        return _augment(embeddings, shifted, "user", -1)
