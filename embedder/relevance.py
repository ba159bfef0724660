"""The relevance model: who watches what, and which of your movies brought each one up.

A top-K by predicted rating lists well-liked movies few people watch; this model learns from the rating
*pattern* (docs/design.md, "Relevance"): a rank-``r`` linear autoencoder of the binary users x movies
matrix ``X``. With ``X ≈ U Σ Vᵀ``, ``watch(u, i) = |N(u)|^-½ x_u V D V_iᵀ``, ``D = Σ² / (Σ² + λ)``: a user's
vector is the scaled sum of their movies' rows (so a newcomer's needs no refit, and the score splits into
one term per rated movie). The order is ``relevance(u, i) = watch(u, i) + β r̂(u, i)``, one inner product
of ``[p_u, β y_u]`` with ``[V_i, x_i]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from embedder.metrics import ndcg_at_k

REGULARIZATIONS = (100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)
"""The ``λ`` that training chooses from, on a validation part carved from training."""


@dataclass(frozen=True, eq=False)
class RelevanceModel:
    """The relevance model's arrays, as the bundle stores them."""

    user_factors: np.ndarray
    """``p_u = |N(u)|^-½ x_u V D``, float32 ``(n_users, r)``; zero for a user without training ratings."""
    movie_factors: np.ndarray
    """``V``, float32 ``(n_movies, r)``: the right singular vectors of ``X``."""
    shrinkage: np.ndarray
    """``D = σ² / (σ² + λ)``, float32 ``(r,)``."""
    rating_weight: float
    """``β``: how much the predicted rating adds to the watch score."""
    regularization: float
    """``λ``, chosen on a validation part carved from training."""

    def _terms(self, movie_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rated rows (each once) and their terms ``|N|^-½ V_j D``, whose sum is the user's ``p``."""
        rows = np.unique(np.asarray(movie_rows, dtype=np.int64))
        return rows, self.movie_factors[rows] * (self.shrinkage / np.sqrt(max(len(rows), 1)))

    def user_vector(self, movie_rows: np.ndarray) -> np.ndarray:
        """``p`` of someone who rated ``movie_rows`` (a newcomer folded in), float32 ``(r,)``."""
        return self._terms(movie_rows)[1].sum(axis=0).astype(np.float32)

    def watch_scores(self, user_vectors: np.ndarray) -> np.ndarray:
        """``watch(u, i)`` of each given user vector for every movie, ``(n, n_movies)``."""
        return np.atleast_2d(user_vectors) @ self.movie_factors.T

    def explain(self, movie_rows: np.ndarray, movie: int, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` rated movies that add most (and positively) to ``movie``'s watch score, with what
        each adds (the terms of ``|N|^-½ Σ_j V_j D V_movieᵀ``), largest first."""
        rows, terms = self._terms(movie_rows)
        shares = terms @ self.movie_factors[movie]
        best = np.argsort(-shares, kind="stable")[:n]
        best = best[shares[best] > 0]
        return rows[best], shares[best]


def watched(seen: sp.csr_matrix) -> sp.csr_matrix:
    """The binary users x movies matrix ``X`` of who rated what, float32."""
    pattern = sp.csr_matrix(seen, dtype=np.float32, copy=True)
    pattern.data[:] = 1.0
    return pattern


def _svd(pattern: sp.csr_matrix, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``rank`` singular values and right singular vectors of ``pattern``; the randomized SVD
    only multiplies by ``X`` and ``Xᵀ``, so the ratings stay sparse throughout."""
    from sklearn.utils.extmath import randomized_svd

    rank = max(1, min(rank, min(pattern.shape) - 1))
    _, sigma, vt = randomized_svd(pattern, rank, n_iter=2, random_state=seed)
    return sigma, np.ascontiguousarray(vt.T, dtype=np.float32)


def fit_relevance(
    seen: sp.csr_matrix,
    held_out: sp.csr_matrix,
    rank: int,
    regularizations: tuple[float, ...],
    rating_weight: float,
    relevant_rating: float = 4.0,
    seed: int = 0,
) -> tuple[RelevanceModel, dict[float, float]]:
    """Fit the relevance model on the training ratings ``seen`` (users x movies CSR).

    ``λ`` is the one of ``regularizations`` whose watch scores, fitted on ``seen`` less its validation part
    ``held_out``, rank that part's relevant ratings (``>= relevant_rating``) best by NDCG@10. Returns the
    model fitted on all of ``seen`` and the validation NDCG@10 of each ``λ`` (none if there is one).
    """
    everything = watched(seen)
    figures: dict[float, float] = {}
    if len(regularizations) > 1:
        fit_part = (everything - watched(held_out)).tocsr()
        fit_part.eliminate_zeros()
        sigma, factors = _svd(fit_part, rank, seed)
        relevant = sp.csr_matrix(held_out >= relevant_rating, dtype=np.float32)
        figures = _validation_ndcg(fit_part, relevant, sigma, factors, regularizations, seed)
    chosen = max(figures, key=figures.get) if figures else regularizations[0]
    sigma, movie_factors = _svd(everything, rank, seed)
    shrinkage = (sigma**2 / (sigma**2 + chosen)).astype(np.float32)
    counts = np.sqrt(np.maximum(np.diff(everything.indptr), 1))[:, None]
    user_factors = (np.asarray(everything @ movie_factors) * shrinkage / counts).astype(np.float32)
    return RelevanceModel(user_factors, movie_factors, shrinkage, float(rating_weight), chosen), figures


def _validation_ndcg(
    fit_part, relevant, sigma, factors, regularizations, seed, k=10, max_users=2000, block=256
):
    """NDCG@k of the watch score on ``relevant`` for each ``λ``: one SVD serves them all, since ``λ`` only
    changes the shrinkage. Users go in blocks, so that a block's dense scores stay small at ML-25M size."""
    users = np.flatnonzero(np.diff(relevant.indptr))
    users = np.sort(np.random.default_rng(seed).permutation(users)[:max_users])
    sigma, sums = sigma.astype(np.float32), dict.fromkeys(regularizations, 0.0)
    for start in range(0, len(users), block):
        rows = users[start : start + block]
        projected, truth = np.asarray(fit_part[rows] @ factors), relevant[rows].toarray() > 0
        rated = fit_part[rows].toarray() > 0
        for regularization in regularizations:
            scores = (projected * (sigma**2 / (sigma**2 + regularization))) @ factors.T
            scores[rated] = -np.inf
            top = np.argpartition(-scores, k, axis=1)[:, :k]
            hits = np.take_along_axis(truth, top, axis=1)
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
            ranked = np.take_along_axis(hits, order, axis=1)
            sums[regularization] += ndcg_at_k(ranked, truth.sum(axis=1)) * len(rows)  # every row has one
    return {lam: total / len(users) for lam, total in sums.items()} if len(users) else {}
