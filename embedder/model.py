"""The biased matrix-factorization model: ``r̂ = μ + b_u + b_i + p_u·q_i``."""

from __future__ import annotations

import torch
from torch import nn


class CollaborativeFiltering(nn.Module):
    """Global bias + user/movie biases + dot product of user/movie embeddings.

    Parameters
    ----------
    n_users, n_movies:
        Vocabulary sizes (rows of the embedding tables).
    dim:
        Embedding size d.
    global_mean:
        Initial value of μ, the training-set mean rating.
    init_std:
        Standard deviation of the normal initialisation of the embeddings; biases
        start at zero.
    generator:
        Seeded generator, so two runs with the same seed start identically.
    """

    def __init__(
        self,
        n_users: int,
        n_movies: int,
        dim: int,
        global_mean: float,
        init_std: float = 0.05,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.user_factors = nn.Embedding(n_users, dim)
        self.movie_factors = nn.Embedding(n_movies, dim)
        self.user_bias = nn.Embedding(n_users, 1)
        self.movie_bias = nn.Embedding(n_movies, 1)
        self.global_bias = nn.Parameter(torch.tensor(float(global_mean)))
        with torch.no_grad():
            self.user_factors.weight.normal_(0.0, init_std, generator=generator)
            self.movie_factors.weight.normal_(0.0, init_std, generator=generator)
            self.user_bias.weight.zero_()
            self.movie_bias.weight.zero_()

    def forward(self, users: torch.Tensor, movies: torch.Tensor) -> torch.Tensor:
        """Raw (unclipped) predictions for paired user and movie rows."""
        p_u = self.user_factors(users)
        q_i = self.movie_factors(movies)
        return (
            self.global_bias
            + self.user_bias(users).squeeze(-1)
            + self.movie_bias(movies).squeeze(-1)
            + (p_u * q_i).sum(-1)
        )

    def penalty(self, users: torch.Tensor, movies: torch.Tensor, reg: float, bias_reg: float) -> torch.Tensor:
        """L2 on the rows this batch touches, averaged per rating.

        Penalising only touched rows (rather than weight decay on whole tables)
        regularises each user and movie in proportion to how often it is seen,
        the classic SGD-MF scheme.
        """
        factors = self.user_factors(users).pow(2).sum(-1) + self.movie_factors(movies).pow(2).sum(-1)
        biases = self.user_bias(users).squeeze(-1).pow(2) + self.movie_bias(movies).squeeze(-1).pow(2)
        return reg * factors.mean() + bias_reg * biases.mean()
