"""The implicit part of the model: who rated what, as in Koren's SVD++ (docs/design.md, "The model").

A user's row is ``p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j`` (``N(u)``: the movies they rated in training), and with
the movie side on, a movie's is ``q_i + |N(i)|^-½ Σ_{v∈N(i)} w_v``. These *composite* rows are what a sample
holds and the bundle exports, so the prediction stays ``μ + b_u + b_i + p_u·q_i``. Every ``y_j`` meets every
other one a user rated beside it, so :class:`ImplicitRows` draws them all at once: preconditioned conjugate
gradients on a system perturbed so that its solution is a draw, not the mean (Papandreou & Yuille, 2010).
"""

from __future__ import annotations

import math

import torch

from embedder.distributed import Group

CG_TOLERANCE = 1e-3
"""Relative residual ``‖rhs - H v‖ / ‖rhs‖`` at which the conjugate gradients stop."""
CG_MAX_ITERATIONS = 200


class ImplicitRows:
    """The implicit rows feeding one side's composite rows, one per row of the other side.

    ``pattern``: the side's rating pattern ``N`` as a sparse CSR matrix of ones over this process's rows;
    ``transposed``: the other side's, ``Nᵀ`` sharded by its rows; ``rows``: the starting rows (zeros, the
    same in every process); ``group``: the processes sharing the chain.
    """

    def __init__(self, pattern: torch.Tensor, transposed: torch.Tensor, rows: torch.Tensor, group: Group):
        self.pattern, self.transposed, self.rows, self.group = pattern, transposed, rows, group
        self.n_rows = transposed.shape[1]
        counts = torch.diff(pattern.crow_indices()).to(rows.dtype)
        # |N(u)|^-½ of this process's rows; 0 for a row without ratings.
        self.weights = torch.where(counts > 0, counts.clamp(min=1).rsqrt(), torch.zeros_like(counts))

    def contribution(self) -> torch.Tensor:
        """``|N(u)|^-½ Σ_{j∈N(u)} y_j`` for every row of the side (all processes')."""
        return self.group.gather(self._spread(self.rows), self.n_rows)

    def _spread(self, rows: torch.Tensor) -> torch.Tensor:
        """``S N rows`` at this process's rows of the side (``S``: the weights)."""
        return self.weights.unsqueeze(1) * (self.pattern @ rows.to(self.pattern.dtype)).to(rows.dtype)

    def _collect(self, per_row: torch.Tensor) -> torch.Tensor:
        """``Nᵀ S per_row`` for every implicit row, from this process's rows of the side."""
        weighted = self.group.gather(self.weights.unsqueeze(1) * per_row, self.n_rows)
        local = (self.transposed @ weighted.to(self.transposed.dtype)).to(per_row.dtype)
        return self.group.gather(local, len(self.rows))

    def draw(self, gram, residual_sums, noise_sums, alpha, prior_mean, prior_precision, noise) -> None:
        """Replace the rows by a draw from their conditional (or, without noise, its mode).

        With ``H = α JᵀJ + Λ`` (``J``: the map from the implicit rows to their part of each prediction),
        ``H v = α Jᵀ e + √α Jᵀ ε₁ + Λ m + √Λ ε₂`` has ``v ~ N(H⁻¹(α Jᵀ e + Λ m), H⁻¹)``, and ``JᵀJ v`` is
        ``Nᵀ S G S N v``: it never needs the ratings. ``gram``: ``G_u = Σ_i z_i z_iᵀ`` of this process's rows;
        ``residual_sums``: ``Σ_i e_ui z_i`` (``e``: the ratings less all but the implicit part);
        ``noise_sums``: ``Σ_i ε_ui z_i`` for standard normal ``ε`` per rating, and ``noise``: standard normal
        rows (the same in every process), or both None for the mode.
        """
        noise_part = 0.0 if noise_sums is None else math.sqrt(alpha) * noise_sums
        rhs = self._collect(alpha * residual_sums + noise_part) + prior_precision * prior_mean
        if noise is not None:
            rhs = rhs + prior_precision.sqrt() * noise
        k = gram.shape[1]
        # Preconditioner: H's k x k diagonal blocks, Λ + α Σ_{u∈N(j)} s_u² G_u per implicit row.
        blocks = self._collect(alpha * self.weights.unsqueeze(1) * gram.reshape(-1, k * k)).reshape(-1, k, k)
        blocks.diagonal(dim1=1, dim2=2).add_(prior_precision)
        inverse = torch.linalg.inv(blocks)

        def product(v: torch.Tensor) -> torch.Tensor:
            per_row = torch.bmm(gram, self._spread(v).unsqueeze(2)).squeeze(2)
            return alpha * self._collect(per_row) + prior_precision * v

        precondition = lambda residual: torch.bmm(inverse, residual.unsqueeze(2)).squeeze(2)
        self.rows, _ = conjugate_gradients(product, rhs, self.rows, precondition)


def conjugate_gradients(
    product, rhs: torch.Tensor, start: torch.Tensor, precondition
) -> tuple[torch.Tensor, int]:
    """Solve ``H x = rhs`` (H symmetric positive definite, applied by ``product``) by conjugate gradients
    from ``start``, ``precondition`` applying an approximate inverse of H; returns x and the iterations."""
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
