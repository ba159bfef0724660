"""Training (:func:`train`): fit the model on the training rows and return it with its history.

Each method (``gibbs``: :mod:`embedder.gibbs`, ``adam``: :mod:`embedder.adam`) yields one :class:`Step` per
epoch (sweep); :func:`_follow` alone records the history, shows progress and stops.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from embedder import adam
from embedder.adam import CollaborativeFiltering
from embedder.config import TrainConfig
from embedder.data import validation_split
from embedder.distributed import Group
from embedder.gibbs import Convergence, GibbsSampler, PosteriorMean
from embedder.model import MFModel
from embedder.vocab import Vocabulary

log = logging.getLogger(__name__)

PROGRESS_EVERY = 10
"""Without a terminal, progress is one line per this many epochs (sweeps)."""


Step = namedtuple("Step", "epoch train_rmse val_rmse converged note", defaults=(None, False, ""))
"""One epoch (sweep) of a run as a method yields it; ``val_rmse`` is None without a validation part."""


@dataclass
class TrainResult:
    """A trained model with its per-epoch history."""

    model: MFModel
    """float32 copies of the fitted parameters, rows without ratings in the fitted rows zeroed."""
    module: CollaborativeFiltering
    """The same parameters as a torch module, untrained rows as trained (``model.pt``)."""
    history: pd.DataFrame
    """The first run, one row per epoch (sweep): epoch, train_rmse, val_rmse, seconds."""
    best_epoch: int
    seconds: float
    trained_users: np.ndarray
    """Masks over user and movie rows: True where the row has ratings in the fitted rows."""
    trained_movies: np.ndarray
    validation_rmse: float = math.nan
    refit_history: pd.DataFrame | None = None
    fitted_all: bool = True
    warm_up_passes: int = 0
    world_size: int = 1
    implicit_sides: str = "none"
    implicit: tuple[np.ndarray, np.ndarray] | None = None
    """(gibbs) The users' implicit rows ``[E_j, c_j]`` per movie (:meth:`PosteriorMean.implicit_rows`)."""


@dataclass
class _Run:
    model: CollaborativeFiltering | None
    history: pd.DataFrame
    best_epoch: int
    best_val: float
    warm_up_passes: int = 0
    implicit_sides: str = "none"
    implicit: tuple[np.ndarray, np.ndarray] | None = None


_Context = namedtuple("_Context", "config users movies scale device progress group")
"""What every method reads: settings, vocabularies, rating scale, device, progress, the process group."""


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


def _rows(frame: pd.DataFrame, ctx: _Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User rows, movie rows (int32) and float32 ratings (a writable copy)."""
    rows = lambda vocabulary, column: vocabulary.numbers(frame[column].to_numpy()).astype(np.int32)
    ratings = np.array(frame["rating"], dtype=np.float32)
    return rows(ctx.users, "user_id"), rows(ctx.movies, "movie_id"), ratings


def _tensors(frame: pd.DataFrame, ctx: _Context) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(a, device=ctx.device) for a in _rows(frame, ctx))


def _follow(steps: Iterator[Step], total: int, unit, desc, progress, patience=0, min_delta=0.0, on_best=None):
    """The one loop over a run's steps: the history, the progress (a bar on a terminal, else a line every
    :data:`PROGRESS_EVERY` steps) and the stopping decision (the chain has converged, or ``patience`` steps
    passed without a validation improvement). Returns the history, the best validation step and its RMSE."""
    lines = progress and not sys.stderr.isatty()
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress or lines)
    rows, best_val, best_epoch, stale = [], math.inf, 0, 0
    started = time.perf_counter()
    for step in steps:
        now = time.perf_counter()
        val = math.nan if step.val_rmse is None else step.val_rmse
        rows.append((step.epoch, step.train_rmse, val, now - started))
        started = now
        shown = f"train {step.train_rmse:.4f}" + ("" if step.val_rmse is None else f" val {val:.4f}")
        bar.update(step.epoch - bar.n)
        bar.set_postfix_str(shown)
        log.info("%s %d %s %s", unit, step.epoch, shown, step.note)
        if lines and step.epoch % PROGRESS_EVERY == 0:
            print(f"{desc}: {unit} {step.epoch} {shown} {step.note}".rstrip(), file=sys.stderr, flush=True)
        if step.val_rmse is not None and step.val_rmse < best_val - min_delta:
            best_val, best_epoch, stale = step.val_rmse, step.epoch, 0
            if on_best:
                on_best()
        else:
            stale += 1
        if step.converged or (patience and step.val_rmse is not None and stale >= patience):
            break
    bar.close()
    return pd.DataFrame(rows, columns=["epoch", "train_rmse", "val_rmse", "seconds"]), best_epoch, best_val


def _describe(val, epochs) -> str:
    return "refit on all training rows" if epochs else ("validation run" if val is not None else "training")


def _fit_adam(ctx: _Context, fit: pd.DataFrame, val: pd.DataFrame | None, epochs=None, keep=True) -> _Run:
    """Adam on MSE + L2; with a validation part, early stopping and (``keep``) the best epoch's weights,
    else exactly ``epochs`` epochs."""
    config = ctx.config
    generator = torch.Generator().manual_seed(config.seed)
    fitted = _tensors(fit, ctx)
    mean = float(fitted[2].mean())
    sizes = (len(ctx.users), len(ctx.movies), config.dim)
    model = CollaborativeFiltering(*sizes, mean, config.init_std, generator).to(ctx.device)
    held_out = None if val is None else _tensors(val, ctx)
    count = epochs or config.epochs
    run = adam.epochs(model, fitted, held_out, config, ctx.scale, generator, count)
    steps = (Step(epoch, train, val_rmse) for epoch, (train, val_rmse) in enumerate(run, 1))
    best = {}
    on_best = (lambda: best.update(state=copy.deepcopy(model.state_dict()))) if keep else None
    desc = _describe(val, epochs)
    history, best_epoch, best_val = _follow(
        steps, count, "epoch", desc, ctx.progress, config.patience, 1e-5, on_best
    )
    if best:
        model.load_state_dict(best["state"])
    best_epoch = best_epoch if val is not None else len(history)
    return _Run(model.cpu() if keep else None, history, best_epoch, best_val)


def _fit_gibbs(ctx: _Context, fit: pd.DataFrame, val: pd.DataFrame | None, epochs=None, keep=True) -> _Run:
    """One chain: warm-up passes, then sweeps until :class:`Convergence` says stop; its mean is the model."""
    config, device = ctx.config, ctx.device
    sides = config.implicit_sides(len(fit))
    n_users, n_movies = len(ctx.users), len(ctx.movies)
    chain = (config.sample_init_std, config.seed, device, ctx.group, sides)
    sampler = GibbsSampler(n_users, n_movies, config.sample_dim, _rows(fit, ctx), *chain)
    warm = _warm_up(sampler, config.warm_up, config.warm_ridge)
    implicit = sampler.implicit_user_rows is not None
    mean = PosteriorMean(keep=config.dim, cap=2 * config.dim + config.sample_dim, implicit=implicit)

    def sweeps() -> Iterator[Step]:
        ratings = sampler.ratings
        convergence = Convergence(len(ratings), device, config.tolerance, config.min_sweeps, ctx.group)
        if val is not None:
            vu, vm, vr = _tensors(val, ctx)
            val_mean = torch.zeros(len(vr), dtype=vr.dtype, device=device)
        for sweep in range(1, config.sweeps + 1):
            sampler.sweep()
            if sweep <= config.burn_in:
                continue
            mean.add(sampler.sample, sampler.implicit_user_rows)
            convergence.add(ratings - sampler.residuals)
            val_rmse = None
            if val is not None:
                val_mean += (sampler.predict(vu, vm) - val_mean) / convergence.count
                val_rmse = float(((val_mean.clamp(*ctx.scale) - vr) ** 2).mean().sqrt())
            gain = convergence.gain(1.0 / math.sqrt(sampler.alpha))
            rmse = convergence.rmse(ratings, ctx.scale)
            yield Step(sweep, rmse, val_rmse, convergence.converged(gain), f"gain {gain:.5f}")

    history, _, best_val = _follow(sweeps(), config.sweeps, "sweep", _describe(val, None), ctx.progress)
    model = _module_from_mean(mean, n_users, n_movies, config.dim)
    rows = None
    if implicit:
        vectors, biases = mean.implicit_rows(model.movie_factors.weight.detach().to(torch.float64))
        rows = (vectors.cpu().numpy().astype(np.float32), biases.cpu().numpy().astype(np.float32))
    return _Run(model, history, len(history) + config.burn_in, best_val, warm, sides, rows)


def _warm_up(sampler: GibbsSampler, passes: int, ridge: float) -> int:
    """Up to ``passes`` ALS passes, until the training RMSE improves by less than 0.001; how many ran."""
    previous = math.inf
    for done in range(1, passes + 1):
        sampler.warm_up(ridge)
        rmse = sampler.training_rmse()
        log.info("warm-up pass %d train_rmse %.4f", done, rmse)
        if previous - rmse < 1e-3:
            return done
        previous = rmse
    return passes


def _module_from_mean(mean: PosteriorMean, n_users: int, n_movies: int, dim: int) -> CollaborativeFiltering:
    mu, bu, bi, P, Q = mean.factors(dim)
    model = CollaborativeFiltering(n_users, n_movies, dim, mu)
    tables = (model.user_factors, model.movie_factors, model.user_bias, model.movie_bias)
    with torch.no_grad():
        for table, values in zip(tables, (P, Q, bu.unsqueeze(1), bi.unsqueeze(1))):
            table.weight.copy_(values.to(torch.float32).cpu())
    return model.eval()


def fitted_model(module, users, movies, trained_users, trained_movies, rating_scale) -> MFModel:
    """The module's parameters as an :class:`MFModel` of float32 copies, untrained rows (still at their
    initialisation) zeroed, which gives exactly the documented fallback (``μ + b_i`` or ``μ + b_u``)."""
    tables = (module.user_factors, module.movie_factors, module.user_bias, module.movie_bias)
    p, q, bu, bi = (table.weight.detach().cpu().numpy().astype(np.float32) for table in tables)
    p[~trained_users], bu[~trained_users] = 0.0, 0.0
    q[~trained_movies], bi[~trained_movies] = 0.0, 0.0
    mu = float(module.global_bias.detach())
    return MFModel(mu, p, q, bu[:, 0], bi[:, 0], rating_scale, users, movies)


def train(
    train_ratings: pd.DataFrame,
    config: TrainConfig,
    users: Vocabulary,
    movies: Vocabulary,
    rating_scale: tuple[float, float],
    progress: bool = True,
    group: Group | None = None,
) -> TrainResult:
    """Fit the model on the training rows with ``config.method``.

    ``gibbs`` with ``config.refit`` (the default): one chain on all of ``train_ratings``. Otherwise a
    validation part (``config.val_fraction`` of them) is carved out and its RMSE recorded per epoch (sweep);
    Adam stops early on it and, with ``config.refit``, runs again on all training rows for the chosen epoch
    count. ``group``: the processes sharing the chain under torchrun (:mod:`embedder.distributed`); each
    calls this function with the same arguments and gets the same model.
    """
    group = group or Group()
    if group.size > 1 and config.method != "gibbs":
        raise ValueError(f"method {config.method!r} runs in one process; only 'gibbs' trains under torchrun")
    ctx = _Context(config, users, movies, rating_scale, resolve_device(config.device), progress, group)
    method = _fit_gibbs if config.method == "gibbs" else _fit_adam
    started = time.perf_counter()
    refit_history = None
    if config.method == "gibbs" and config.refit:
        fitted = train_ratings
        first = final = method(ctx, train_ratings, None)
    else:
        fitted, val = validation_split(train_ratings, config.val_fraction, config.seed)
        first = final = method(ctx, fitted, val, None, not config.refit)
        if config.refit:
            fitted = train_ratings
            final = method(ctx, train_ratings, None, first.best_epoch, True)
            refit_history = final.history
    seconds = time.perf_counter() - started
    trained_users = np.bincount(users.numbers(fitted["user_id"].to_numpy()), minlength=len(users)) > 0
    trained_movies = np.bincount(movies.numbers(fitted["movie_id"].to_numpy()), minlength=len(movies)) > 0
    return TrainResult(
        model=fitted_model(final.model, users, movies, trained_users, trained_movies, rating_scale),
        module=final.model,
        history=first.history,
        best_epoch=first.best_epoch,
        seconds=seconds,
        trained_users=trained_users,
        trained_movies=trained_movies,
        validation_rmse=first.best_val,
        refit_history=refit_history,
        fitted_all=fitted is train_ratings,
        warm_up_passes=first.warm_up_passes,
        world_size=group.size,
        implicit_sides=final.implicit_sides,
        implicit=final.implicit,
    )
