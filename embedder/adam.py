"""``--method adam``: the model as a torch module, fitted by Adam on MSE + L2 (one MAP estimate)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from embedder.model import rating


class CollaborativeFiltering(nn.Module):
    """:func:`embedder.model.rating` over ``nn.Embedding`` tables (``model.pt`` holds its state); the
    embeddings start ``N(0, init_std²)`` from ``generator``, the biases at zero."""

    def __init__(
        self, n_users: int, n_movies: int, dim: int, global_mean: float, init_std=0.05, generator=None
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
        biases = self.user_bias(users).squeeze(-1), self.movie_bias(movies).squeeze(-1)
        return rating(self.global_bias, *biases, self.user_factors(users), self.movie_factors(movies))

    def penalty(self, users: torch.Tensor, movies: torch.Tensor, reg: float, bias_reg: float) -> torch.Tensor:
        """L2 on the rows this batch touches, averaged per rating: each user and movie is
        regularised in proportion to how often it is seen (the classic SGD-MF scheme)."""
        factors = self.user_factors(users).pow(2).sum(-1) + self.movie_factors(movies).pow(2).sum(-1)
        biases = self.user_bias(users).squeeze(-1).pow(2) + self.movie_bias(movies).squeeze(-1).pow(2)
        return reg * factors.mean() + bias_reg * biases.mean()


@torch.no_grad()
def clipped_rmse(model: CollaborativeFiltering, u, m, r, scale, chunk: int = 1 << 16) -> float:
    """RMSE of the model's predictions, clipped to ``scale``, at the ratings ``(u, m, r)``."""
    squared = 0.0
    for users, movies, ratings in zip(u.split(chunk), m.split(chunk), r.split(chunk)):
        squared += float(((model(users, movies).clamp(*scale) - ratings) ** 2).sum())
    return (squared / len(r)) ** 0.5


def epochs(model: CollaborativeFiltering, fit, val, config, scale, generator, count: int) -> Iterator[tuple]:
    """``count`` Adam epochs over the ratings ``fit = (u, m, r)`` (tensors), yielding each epoch's
    training RMSE and, with ``val``, the validation RMSE (the caller decides when to stop)."""
    fu, fm, fr = fit
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    for _ in range(count):
        model.train()
        order = torch.randperm(len(fr), generator=generator).to(fr.device)
        squared = 0.0
        for batch in order.split(config.batch_size):
            u, m, r = fu[batch], fm[batch], fr[batch]
            mse = torch.mean((model(u, m) - r) ** 2)
            loss = mse + model.penalty(u, m, config.reg, config.bias_reg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            squared += float(mse.detach()) * len(batch)
        model.eval()
        yield (squared / len(fr)) ** 0.5, None if val is None else clipped_rmse(model, *val, scale)
