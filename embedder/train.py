"""Training loop: Adam on MSE + L2, early stopping on validation RMSE."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from embedder.config import TrainConfig
from embedder.model import CollaborativeFiltering
from embedder.split import validation_split
from embedder.vocab import Vocabulary

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """A trained model with the vocabularies and per-epoch history it came with."""

    model: CollaborativeFiltering
    users: Vocabulary
    movies: Vocabulary
    history: pd.DataFrame
    """One row per epoch: epoch, train_rmse, val_rmse, seconds."""
    best_epoch: int
    seconds: float
    rating_scale: tuple[float, float]
    trained_users: np.ndarray
    """Boolean mask over user rows: True where the user has training ratings."""
    trained_movies: np.ndarray
    """Boolean mask over movie rows: True where the movie has training ratings."""


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


def _as_tensors(frame: pd.DataFrame, users: Vocabulary, movies: Vocabulary, device: torch.device):
    u = torch.as_tensor(users.numbers(frame["user_id"].to_numpy()), device=device)
    m = torch.as_tensor(movies.numbers(frame["movie_id"].to_numpy()), device=device)
    r = torch.as_tensor(frame["rating"].to_numpy(np.float32).copy(), device=device)
    return u, m, r


@torch.no_grad()
def _rmse(model: CollaborativeFiltering, u, m, r, scale: tuple[float, float], chunk: int = 1 << 16) -> float:
    squared = 0.0
    for start in range(0, len(r), chunk):
        pred = model(u[start : start + chunk], m[start : start + chunk]).clamp(*scale)
        squared += float(((pred - r[start : start + chunk]) ** 2).sum())
    return (squared / max(len(r), 1)) ** 0.5


def train(
    train_ratings: pd.DataFrame,
    config: TrainConfig,
    users: Vocabulary,
    movies: Vocabulary,
    rating_scale: tuple[float, float],
    progress: bool = True,
) -> TrainResult:
    """Fit :class:`CollaborativeFiltering` on the training rows.

    A validation part (``config.val_fraction`` of ``train_ratings``) is carved out
    for early stopping; the weights of the best validation epoch are returned.
    The test part never reaches this function.
    """
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    fit, val = validation_split(train_ratings, config.val_fraction, config.seed)
    fu, fm, fr = _as_tensors(fit, users, movies, device)
    vu, vm, vr = _as_tensors(val, users, movies, device)
    model = CollaborativeFiltering(
        len(users), len(movies), config.dim, float(fr.mean()), config.init_std, generator
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    history: list[dict] = []
    best_val, best_epoch, best_state, stale = float("inf"), 0, None, 0
    started = time.perf_counter()
    epochs = tqdm(range(1, config.epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in epochs:
        epoch_start = time.perf_counter()
        model.train()
        order = torch.randperm(len(fr), generator=generator).to(device)
        squared = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            u, m, r = fu[batch], fm[batch], fr[batch]
            pred = model(u, m)
            mse = torch.mean((pred - r) ** 2)
            loss = mse + model.penalty(u, m, config.reg, config.bias_reg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            squared += float(mse.detach()) * len(batch)
        model.eval()
        val_rmse = _rmse(model, vu, vm, vr, rating_scale)
        row = {
            "epoch": epoch,
            "train_rmse": (squared / len(fr)) ** 0.5,
            "val_rmse": val_rmse,
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(row)
        epochs.set_postfix(train=f"{row['train_rmse']:.4f}", val=f"{val_rmse:.4f}")
        log.info("epoch %d train_rmse %.4f val_rmse %.4f", epoch, row["train_rmse"], val_rmse)
        if val_rmse < best_val - 1e-5:
            best_val, best_epoch, stale = val_rmse, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    trained_users = np.zeros(len(users), dtype=bool)
    trained_users[fu.cpu().numpy()] = True
    trained_movies = np.zeros(len(movies), dtype=bool)
    trained_movies[fm.cpu().numpy()] = True
    return TrainResult(
        model=model.cpu(),
        users=users,
        movies=movies,
        history=pd.DataFrame(history),
        best_epoch=best_epoch,
        seconds=time.perf_counter() - started,
        rating_scale=rating_scale,
        trained_users=trained_users,
        trained_movies=trained_movies,
    )
