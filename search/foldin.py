"""Fold-in: a newcomer's row from a few (movie, rating) pairs, without retraining.

With the movie side frozen, a user's row ``x = [p_u, b_u]`` is a Bayesian linear regression of
``r - μ - b_i`` on ``z_i = [q_i, 1]`` over the movies they rated:

    x = (Zᵀ Z / σ² + diag(1/s²))⁻¹ (Zᵀ (r - μ - b) / σ² + m / s²)

The prior ``N(m, diag(s²))`` is the spread of the trained users' rows, ``σ²`` the model's training error.
With an implicit part, ``|N|^-½ Σ_{j∈N} [E_j, c_j]`` over the rated movies is known and added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from embedder.model import MFModel

NOISE_SAMPLE = 100_000
"""Training ratings used to estimate σ² (a seeded sample; all of them when fewer)."""
MIN_VARIANCE = 1e-6
"""Floor of a prior variance, so a dimension every trained user shares stays solvable."""


def implicit_parts(implicit: tuple[np.ndarray, np.ndarray], rated: sp.csr_matrix) -> np.ndarray:
    """``|N(u)|^-½ Σ_{j∈N(u)} [E_j, c_j]`` for each row of ``rated`` (a CSR pattern of who rated what)."""
    vectors, biases = implicit
    rows = np.c_[vectors, biases].astype(np.float64)
    pattern = sp.csr_matrix((np.ones(rated.nnz), rated.indices, rated.indptr), shape=rated.shape)
    counts = np.diff(rated.indptr)
    return (pattern @ rows) / np.sqrt(np.maximum(counts, 1))[:, None]


@dataclass(frozen=True)
class UserPrior:
    """The prior over a new user's own ``[p_u, b_u]``: mean ``m`` and variance ``s²`` of the trained users'
    rows, the rating noise ``σ²``, and the users' implicit rows per movie ``(E, c)`` (None without them)."""

    mean: np.ndarray
    variance: np.ndarray
    noise: float
    implicit: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_model(
        cls, model: MFModel, seen: sp.csr_matrix, implicit: tuple[np.ndarray, np.ndarray] | None = None
    ) -> UserPrior:
        """Estimate the prior from a model and its training ratings ``seen`` (CSR users x movies)."""
        trained = np.diff(seen.indptr) > 0
        rows = np.c_[model.user_embeddings[trained], model.user_biases[trained]].astype(np.float64)
        if implicit is not None:
            rows -= implicit_parts(implicit, seen[trained])
        coo = seen.tocoo()
        pick = np.random.default_rng(0).choice(coo.nnz, min(coo.nnz, NOISE_SAMPLE), replace=False)
        users, movies, ratings = coo.row[pick], coo.col[pick], coo.data[pick]
        predicted = model.predict(users, movies, clip=False).astype(np.float64)
        noise = float(np.mean((ratings - predicted) ** 2)) if len(ratings) else 1.0
        return cls(rows.mean(0), np.maximum(rows.var(0), MIN_VARIANCE), max(noise, MIN_VARIANCE), implicit)


def fold_in(
    prior: UserPrior, model: MFModel, movie_rows: np.ndarray, ratings: np.ndarray
) -> tuple[np.ndarray, float]:
    """A new user's ``(p_u, b_u)``: the posterior mean given their ratings of the model's ``movie_rows``."""
    d = model.dim
    Z = np.c_[model.movie_embeddings[movie_rows].astype(np.float64), np.ones(len(movie_rows))]
    targets = np.asarray(ratings, np.float64) - model.global_mean - model.movie_biases[movie_rows]
    known = np.zeros(d + 1)
    if prior.implicit is not None and len(movie_rows):
        rated = sp.csr_matrix(
            (np.ones(len(movie_rows)), movie_rows, [0, len(movie_rows)]), (1, len(model.movie_biases))
        )
        known = implicit_parts(prior.implicit, rated)[0]
        targets = targets - Z @ known
    precision = Z.T @ Z / prior.noise + np.diag(1.0 / prior.variance)
    rhs = Z.T @ targets / prior.noise + prior.mean / prior.variance
    row = np.linalg.solve(precision, rhs) + known
    return row[:d], float(row[d])


@dataclass(frozen=True)
class NewUser:
    """A folded-in user: the movies they rated (ids and bundle rows), their ratings, ``p_u``, ``b_u``, and the
    query ``[p_u, 1, μ + b_u]`` whose inner product with a movie's index row is the predicted rating."""

    movie_ids: np.ndarray
    ratings: np.ndarray
    movie_rows: np.ndarray
    embedding: np.ndarray
    bias: float
    query: np.ndarray

    @property
    def fallback(self) -> bool:
        """No ratings: the row is the prior mean, an average user."""
        return len(self.movie_ids) == 0
