"""The implicit part of the model: who rated what, as in Koren's SVD++.

A user's vector in the model is ``p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j`` (``N(u)``: the
movies the user rated in training), and a movie's, with the movie side switched
on, ``q_i + |N(i)|^-½ Σ_{v∈N(i)} w_v``. Both rows carry a bias coordinate, so the
implicit rows add to the biases too. These *composite* rows are what a sample
holds and what the bundle exports: the prediction stays ``μ + b_u + b_i + p_u·q_i``
and the index's score is still the predicted rating.

:class:`ImplicitRows` holds one side's implicit rows (for the user side, one
``y_j`` per movie) and draws them all jointly from their Gaussian conditional
given the rest of the sample. Every ``y_j`` meets every other one a user rated
beside it, so the conditional's precision is not block diagonal; instead of
drawing row by row (a Python loop over the catalogue) the draw solves one linear
system by preconditioned conjugate gradients, perturbed so that its solution is
a draw and not the mean (Papandreou & Yuille, 2010): with ``H = α JᵀJ + Λ`` and
``J`` the map from the implicit rows to their part of each prediction,

    H v = α Jᵀ e + √α Jᵀ ε₁ + Λ m + √Λ ε₂,   ε₁, ε₂ ~ N(0, I)

has ``v ~ N(H⁻¹(α Jᵀ e + Λ m), H⁻¹)``. ``JᵀJ v`` never needs the ratings: it is
``Nᵀ S G S N v`` with ``N`` the rating pattern, ``S`` the ``|N(u)|^-½`` weights
and ``G_u = Σ_{i∈R(u)} z_i z_iᵀ`` the Gram matrices the user step has just built,
so one iteration costs two sparse products with the pattern and a batch of small
matrix-vector products.
"""

from __future__ import annotations

import math

import torch

from embedder.distributed import Group

CG_TOLERANCE = 1e-3
"""Relative residual ``‖rhs - H v‖ / ‖rhs‖`` at which the conjugate gradients stop."""
CG_MAX_ITERATIONS = 200
"""Upper bound on the conjugate-gradient iterations of one draw."""


class ImplicitRows:
    """The implicit rows feeding one side's composite rows.

    Parameters
    ----------
    pattern, transposed:
        The side's rating pattern as a sparse CSR matrix over this process's rows
        (``n_local x n_others``, ones), and the other side's (``n_others_local x
        n_rows``): the pattern ``N`` and its transpose, each sharded by its rows.
    n_rows, n_others:
        Sizes of the two sides (all processes together).
    width:
        Row width k (factors plus the bias coordinate).
    group, dtype:
        The processes sharing the chain; the dtype of the rows and of the solves.
    """

    def __init__(
        self,
        pattern: torch.Tensor,
        transposed: torch.Tensor,
        n_rows: int,
        n_others: int,
        width: int,
        group: Group,
        dtype: torch.dtype,
    ):
        self.pattern, self.transposed = pattern, transposed
        self.n_rows, self.n_others, self.group = n_rows, n_others, group
        counts = torch.diff(pattern.crow_indices()).to(dtype)
        self.weights = torch.where(counts > 0, counts.clamp(min=1).rsqrt(), torch.zeros_like(counts))
        """``|N(u)|^-½`` of this process's rows (0 for a row without ratings)."""
        self.rows = torch.zeros(n_others, width, dtype=dtype, device=pattern.device)
        """The implicit rows, one per row of the other side (the same in every process)."""

    def contribution(self) -> torch.Tensor:
        """``|N(u)|^-½ Σ_{j∈N(u)} y_j`` for every row of the side (all processes')."""
        return self.group.gather(self._spread(self.rows), self.n_rows)

    def _spread(self, rows: torch.Tensor) -> torch.Tensor:
        """``S N rows`` at this process's rows of the side."""
        return self.weights.unsqueeze(1) * (self.pattern @ rows.to(self.pattern.dtype)).to(rows.dtype)

    def _collect(self, per_row: torch.Tensor) -> torch.Tensor:
        """``Nᵀ S per_row`` for every implicit row, from this process's rows of the side."""
        weighted = self.group.gather(self.weights.unsqueeze(1) * per_row, self.n_rows)
        local = (self.transposed @ weighted.to(self.transposed.dtype)).to(per_row.dtype)
        return self.group.gather(local, self.n_others)

    def draw(
        self,
        gram: torch.Tensor,
        residual_sums: torch.Tensor,
        noise_sums: torch.Tensor | None,
        alpha: float,
        prior_mean: torch.Tensor,
        prior_precision: torch.Tensor,
        noise: torch.Tensor | None,
    ) -> None:
        """Replace the rows by a draw from their conditional (or its mode).

        ``gram``: ``G_u`` of this process's rows of the side (``n_local x k x k``);
        ``residual_sums``: ``Σ_i e_ui z_i`` with ``e`` the ratings less everything
        but the implicit part; ``noise_sums``: ``Σ_i ε_ui z_i`` for standard normal
        ``ε`` per rating, or None for the conditional mode; ``noise``: standard
        normal ``n_others x k`` (the same in every process), or None.
        """
        rhs = self._collect(
            alpha * residual_sums + (0.0 if noise_sums is None else math.sqrt(alpha) * noise_sums)
        )
        rhs = rhs + prior_precision * prior_mean
        if noise is not None:
            rhs = rhs + prior_precision.sqrt() * noise
        k = gram.shape[1]
        # Preconditioner: H's k x k diagonal blocks, Λ + α Σ_{u∈N(j)} s_u² G_u per implicit row.
        blocks = self._collect(alpha * self.weights.unsqueeze(1) * gram.reshape(-1, k * k)).reshape(-1, k, k)
        blocks.diagonal(dim1=1, dim2=2).add_(prior_precision)
        inverse = torch.linalg.inv(blocks)

        def product(v: torch.Tensor) -> torch.Tensor:
            spread = self._spread(v)
            return (
                alpha * self._collect(torch.bmm(gram, spread.unsqueeze(2)).squeeze(2)) + prior_precision * v
            )

        def precondition(residual: torch.Tensor) -> torch.Tensor:
            return torch.bmm(inverse, residual.unsqueeze(2)).squeeze(2)

        self.rows, _ = conjugate_gradients(product, rhs, self.rows, precondition)


def conjugate_gradients(
    product, rhs: torch.Tensor, start: torch.Tensor, precondition
) -> tuple[torch.Tensor, int]:
    """Solve ``H x = rhs`` (H symmetric positive definite, given as ``product``) by
    preconditioned conjugate gradients from ``start``; ``precondition`` applies
    the inverse of an approximation of H.

    Returns the solution and the iterations taken (at most
    :data:`CG_MAX_ITERATIONS`; stops at :data:`CG_TOLERANCE`).
    """
    x = start.clone()
    residual = rhs - product(x)
    goal = CG_TOLERANCE * float(torch.linalg.vector_norm(rhs))
    z = precondition(residual)
    direction = z.clone()
    rz = float((residual * z).sum())
    for iteration in range(1, CG_MAX_ITERATIONS + 1):
        if float(torch.linalg.vector_norm(residual)) <= goal:
            return x, iteration - 1
        h_direction = product(direction)
        step = rz / float((direction * h_direction).sum())
        x.add_(direction, alpha=step)
        residual.sub_(h_direction, alpha=step)
        z = precondition(residual)
        rz, previous = float((residual * z).sum()), rz
        direction = z + (rz / previous) * direction
    return x, CG_MAX_ITERATIONS
