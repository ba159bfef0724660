"""The model object and its formula, ``r̂ = μ + b_u + b_i + p_u·q_i``, written once (:func:`rating`).

Training returns an :class:`MFModel`, a bundle stores and loads one, and every other layer reads predictions
and search vectors from it. numpy only: serving never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedder.vocab import Vocabulary

PREDICT_BLOCK = 1 << 14
"""Pairs predicted at a time by :meth:`MFModel.predict`, so that 20M pairs never gather gigabytes."""


def rating(mu, user_bias, movie_bias, user_vectors, movie_vectors):
    """``μ + b_u + b_i + p_u·q_i`` for paired rows, numpy arrays or torch tensors alike."""
    return mu + user_bias + movie_bias + (user_vectors * movie_vectors).sum(-1)


def _augment(embeddings: np.ndarray, biases: np.ndarray, bias_column: int) -> np.ndarray:
    """``[e, 1, 1]`` rows as C-contiguous float32, with the biases in ``bias_column`` (-2 or -1)."""
    out = np.ones((embeddings.shape[0], embeddings.shape[1] + 2), dtype=np.float32)
    out[:, :-2] = embeddings
    out[:, bias_column] = biases
    return out


@dataclass(frozen=True, eq=False)
class MFModel:
    """Biased matrix factorization as arrays; row ``r`` of the user arrays is user ``user_vocab.ids[r]``.

    The arrays are held as given, never copied, so a bundle's memory maps stay shared between processes.
    """

    global_mean: float
    user_embeddings: np.ndarray
    """``p_u``, ``(n_users, d)``; ``d`` may be 0 (a biases-only baseline)."""
    movie_embeddings: np.ndarray
    user_biases: np.ndarray
    movie_biases: np.ndarray
    rating_scale: tuple[float, float]
    """(lowest, highest) rating of the dataset; :meth:`predict` clips to it."""
    user_vocab: Vocabulary | None = None
    """None for a model known by rows only (an evaluation baseline); likewise ``movie_vocab``."""
    movie_vocab: Vocabulary | None = None

    @classmethod
    def biases(cls, global_mean: float, user_biases, movie_biases, rating_scale) -> MFModel:
        """A model without embeddings: ``μ + b_u + b_i``."""
        empty = (np.zeros((len(user_biases), 0), np.float32), np.zeros((len(movie_biases), 0), np.float32))
        return cls(global_mean, *empty, user_biases, movie_biases, rating_scale)

    @classmethod
    def constant(cls, global_mean: float, n_users: int, n_movies: int, rating_scale) -> MFModel:
        """The global-mean baseline: μ for everyone."""
        zeros = (np.zeros(n_users, np.float32), np.zeros(n_movies, np.float32))
        return cls.biases(global_mean, *zeros, rating_scale)

    @property
    def dim(self) -> int:
        """Embedding size d."""
        return int(self.movie_embeddings.shape[1])

    def predict(self, user_rows: np.ndarray, movie_rows: np.ndarray, clip: bool = True) -> np.ndarray:
        """:func:`rating` in float32 for paired rows, clipped to the rating scale unless ``clip`` is False.

        A row of ``-1`` (an id the model has not learnt) counts as a zero row, so an unknown user is
        predicted ``μ + b_i``, an unknown movie ``μ + b_u`` and both ``μ``, the same fallback as users and
        movies without training ratings (exported as zero rows).
        """
        user_rows, movie_rows = np.asarray(user_rows, np.int64), np.asarray(movie_rows, np.int64)
        raw = np.empty(len(user_rows), dtype=np.float32)
        for start in range(0, len(raw), PREDICT_BLOCK):
            block = slice(start, start + PREDICT_BLOCK)
            known_user, known_movie = (user_rows[block] >= 0)[:, None], (movie_rows[block] >= 0)[:, None]
            u, m = np.maximum(user_rows[block], 0), np.maximum(movie_rows[block], 0)
            biases = self.user_biases[u] * known_user[:, 0], self.movie_biases[m] * known_movie[:, 0]
            vectors = self.user_embeddings[u] * known_user, self.movie_embeddings[m] * known_movie
            raw[block] = rating(np.float32(self.global_mean), *biases, *vectors)
        return np.clip(raw, *self.rating_scale) if clip else raw

    def predict_ids(self, user_ids: np.ndarray, movie_ids: np.ndarray, clip: bool = True) -> np.ndarray:
        """:meth:`predict` for paired original ids; an id not in the vocabulary falls back as a row of -1."""
        users = self.user_vocab.numbers(user_ids, missing="negative")
        return self.predict(users, self.movie_vocab.numbers(movie_ids, missing="negative"), clip)

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Raw predicted ratings of the given users for every movie, ``(len(user_rows), n_movies)``."""
        scores = self.user_embeddings[user_rows] @ self.movie_embeddings.T
        scores += (self.global_mean + self.user_biases[user_rows])[:, None]
        scores += self.movie_biases
        return scores

    # docs/design.md, "Bias-augmented vectors": y_u · x_i = r̂(u, i), so an inner-product
    # search over the movie rows ranks by predicted rating and scores with it.

    def item_vectors(self) -> np.ndarray:
        """Movie rows ``x_i = [q_i, b_i, 1]`` as a new C-contiguous float32 ``(n_movies, d + 2)`` array."""
        return _augment(self.movie_embeddings, self.movie_biases, -2)

    def user_vectors(self) -> np.ndarray:
        """User queries ``y_u = [p_u, 1, μ + b_u]`` as a new C-contiguous float32 ``(n_users, d + 2)`` array;
        ``μ + b_u`` is summed in float32 first, as :meth:`predict` sums."""
        return self._queries(self.user_embeddings, self.user_biases)

    def query_vector(self, embedding: np.ndarray, bias: float) -> np.ndarray:
        """The query ``[p, 1, μ + b]`` (float32) of a user outside the model (a newcomer folded in)."""
        return self._queries(np.reshape(embedding, (1, -1)), np.reshape(np.float32(bias), (1,)))[0]

    def _queries(self, embeddings: np.ndarray, biases: np.ndarray) -> np.ndarray:
        return _augment(embeddings, np.float32(self.global_mean) + np.asarray(biases, np.float32), -1)
