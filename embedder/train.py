"""Training: fit the model on the training rows and return it with its history.

Two methods fit the same model, ``r̂ = μ + b_u + b_i + p_u·q_i``:

* ``gibbs`` (default): Bayesian MF by Gibbs sampling (:mod:`embedder.gibbs`); the
  exported model is the posterior mean, truncated to rank ``config.dim``. One chain
  runs on all training rows: a few alternating-least-squares passes put it near the
  posterior's mode, then it samples until the Monte Carlo error of the running mean
  is small enough that more sweeps would barely change it (:class:`_Convergence`).
  With ``refit=False`` the chain runs on the training rows less a validation part
  instead, and records the validation RMSE of the running mean per sweep (a curve
  to check the stopping rule against, at the cost of the held-out rows).
* ``adam``: Adam on MSE + L2 on the touched rows, early stopping on validation RMSE
  (a validation part is carved out), then, with ``refit``, a second run on all
  training rows for the chosen epoch count.

The test part never reaches this module. Training uses torch's own thread setting
(all cores by default); it changes no process-wide state.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from embedder.config import TrainConfig
from embedder.distributed import Group
from embedder.factors import MFModel
from embedder.gibbs import GibbsSampler, PosteriorMean
from embedder.model import CollaborativeFiltering
from embedder.data import validation_split
from embedder.vocab import Vocabulary

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "train_rmse", "val_rmse", "seconds"]
PROGRESS_EVERY = 10
"""Without a terminal, progress is one log line per this many epochs (sweeps)."""


@dataclass
class TrainResult:
    """A trained model with the vocabularies and per-epoch history it came with."""

    model: MFModel
    """The fitted model as float32 arrays with both vocabularies, the rows of users
    and movies without ratings in the fitted rows zeroed (:func:`fitted_model`): what
    the bundle stores and every figure is computed from."""
    module: CollaborativeFiltering
    """The same parameters as a torch module, untrained rows as trained (``model.pt``)."""
    users: Vocabulary
    movies: Vocabulary
    history: pd.DataFrame
    """The validation run, one row per epoch (sweep): epoch, train_rmse, val_rmse, seconds."""
    best_epoch: int
    """The epoch (sweep) count with the lowest validation RMSE."""
    seconds: float
    """Training time of both runs, in seconds."""
    rating_scale: tuple[float, float]
    trained_users: np.ndarray
    """Boolean mask over user rows: True where the user has ratings in the fitted rows."""
    trained_movies: np.ndarray
    """Boolean mask over movie rows: True where the movie has ratings in the fitted rows."""
    validation_rmse: float = float("nan")
    """The best held-out validation RMSE of the validation run."""
    refit_history: pd.DataFrame | None = None
    """Adam's refit on all training rows (val_rmse empty), or None without one."""
    fitted_all: bool = True
    """Whether the model was fitted on all training rows (validation part included)."""
    warm_up_passes: int = 0
    """(gibbs) Alternating-least-squares passes run before sampling."""
    world_size: int = 1
    """Processes that shared the chain (torchrun); 1 without."""
    implicit_sides: str = "none"
    """(gibbs) The sides that had an implicit part (``config.implicit`` resolved)."""
    implicit: tuple[np.ndarray, np.ndarray] | None = None
    """(gibbs, with the users' implicit part) One row ``[E_j, c_j]`` per movie, in the
    basis of the exported movie vectors: a user's exported row is about their own
    part plus ``|N(u)|^-½ Σ_{j∈N(u)}`` of these (see :meth:`PosteriorMean.implicit_rows`);
    float32 vectors ``(n_movies, dim)`` and biases ``(n_movies,)``. None otherwise."""


@dataclass
class _Run:
    """What one run of a method returns."""

    model: CollaborativeFiltering | None
    history: pd.DataFrame
    best_epoch: int
    best_val: float
    warm_up_passes: int = 0
    implicit_sides: str = "none"
    implicit: tuple[np.ndarray, np.ndarray] | None = None


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


def _rows(frame: pd.DataFrame, users: Vocabulary, movies: Vocabulary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User rows, movie rows (int32: a vocabulary never nears 2³¹ ids) and float32 ratings."""
    ratings = np.array(frame["rating"].to_numpy(), dtype=np.float32)  # a writable copy
    rows = lambda vocabulary, column: vocabulary.numbers(frame[column].to_numpy()).astype(np.int32)
    return rows(users, "user_id"), rows(movies, "movie_id"), ratings


def _as_tensors(frame: pd.DataFrame, users: Vocabulary, movies: Vocabulary, device: torch.device):
    u, m, r = _rows(frame, users, movies)
    return torch.as_tensor(u, device=device), torch.as_tensor(m, device=device), torch.as_tensor(r, device=device)


def _clipped_rmse(predicted: torch.Tensor, actual: torch.Tensor, scale: tuple[float, float]) -> float:
    return float(((predicted.clamp(*scale) - actual) ** 2).mean().sqrt())


@torch.no_grad()
def _rmse(model: CollaborativeFiltering, u, m, r, scale: tuple[float, float], chunk: int = 1 << 16) -> float:
    squared = 0.0
    for start in range(0, len(r), chunk):
        pred = model(u[start : start + chunk], m[start : start + chunk]).clamp(*scale)
        squared += float(((pred - r[start : start + chunk]) ** 2).sum())
    return (squared / max(len(r), 1)) ** 0.5


class _Log:
    """Per-epoch history rows, progress and the early-stopping bookkeeping.

    Progress is a tqdm bar on a terminal; on a pipe or a log file, one line every
    :data:`PROGRESS_EVERY` epochs (sweeps) instead of a bar's redraws.
    """

    def __init__(self, total: int, unit: str, progress: bool, desc: str, min_delta: float):
        self.min_delta = min_delta
        self.rows: list[dict] = []
        self.best_val, self.best_epoch, self.stale = float("inf"), 0, 0
        self.unit, self.total, self.desc = unit, total, desc
        self.lines = progress and not sys.stderr.isatty()
        self.bar = tqdm(range(1, total + 1), desc=desc, unit=unit, disable=not progress or self.lines)
        self.started = time.perf_counter()

    def __iter__(self):
        return iter(self.bar)

    def close(self) -> None:
        self.bar.close()

    def record(self, epoch: int, train_rmse: float, val_rmse: float | None, note: str = "") -> bool:
        """Add a row; True when validation RMSE improved on the best so far."""
        now = time.perf_counter()
        val = float("nan") if val_rmse is None else val_rmse
        self.rows.append({"epoch": epoch, "train_rmse": train_rmse, "val_rmse": val, "seconds": now - self.started})
        self.started = now
        shown = {"train": f"{train_rmse:.4f}", **({} if val_rmse is None else {"val": f"{val_rmse:.4f}"})}
        self.bar.set_postfix(shown)
        log.info("%s %d train_rmse %.4f val_rmse %.4f %s", self.unit, epoch, train_rmse, val, note)
        if self.lines and epoch % PROGRESS_EVERY == 0:
            values = " ".join(f"{name} {value}" for name, value in shown.items())
            print(f"{self.desc}: {self.unit} {epoch} {values} {note}".rstrip(), file=sys.stderr, flush=True)
        improved = val_rmse is not None and val_rmse < self.best_val - self.min_delta
        if improved:
            self.best_val, self.best_epoch, self.stale = val_rmse, epoch, 0
        else:
            self.stale += 1
        return improved

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=HISTORY_COLUMNS)


@dataclass
class _Task:
    """One run of a method: fit on ``fit``; with ``val``, record the validation RMSE
    (Adam also stops early on it); ``epochs`` fixes Adam's epoch count (a refit).
    ``keep_model`` False skips building a model nobody will use."""

    fit: pd.DataFrame
    val: pd.DataFrame | None
    epochs: int | None
    keep_model: bool
    config: TrainConfig
    users: Vocabulary
    movies: Vocabulary
    scale: tuple[float, float]
    device: torch.device
    progress: bool
    group: Group

    def log(self, unit: str, default_total: int, min_delta: float) -> _Log:
        desc = "refit on all training rows" if self.epochs else ("validation run" if self.val is not None else "training")
        return _Log(self.epochs or default_total, unit, self.progress, desc, min_delta=min_delta)


def _fit_adam(task: _Task) -> _Run:
    """Adam on MSE + L2; with a validation part, early stopping and the best epoch's
    weights, else exactly ``task.epochs`` epochs."""
    config, device = task.config, task.device
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    fu, fm, fr = _as_tensors(task.fit, task.users, task.movies, device)
    model = CollaborativeFiltering(len(task.users), len(task.movies), config.dim, float(fr.mean()), config.init_std, generator).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    held_out = None if task.val is None else _as_tensors(task.val, task.users, task.movies, device)
    history = task.log("epoch", config.epochs, min_delta=1e-5)
    best_state = None
    for epoch in history:
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
        val_rmse = None if held_out is None else _rmse(model, *held_out, task.scale)
        if history.record(epoch, (squared / len(fr)) ** 0.5, val_rmse):
            best_state = copy.deepcopy(model.state_dict()) if task.keep_model else None
        elif held_out is not None and history.stale >= config.patience:
            break
    history.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    best_epoch = history.best_epoch if held_out is not None else len(history.rows)
    return _Run(model.cpu() if task.keep_model else None, history.frame(), best_epoch, history.best_val)


class _Convergence:
    """When the running posterior mean has converged: the stopping rule of the chain.

    After S samples the mean's predictions carry Monte Carlo error of variance
    ``v/S`` per rating (``v``: the samples' variance around their mean, measured
    on the training ratings), which adds ``v/S`` to the expected squared error.
    Doubling the samples would remove half of it, an RMSE gain of about
    ``v / (4 S σ)`` at noise level ``σ``. The chain stops once that estimated
    gain is below ``tolerance``: more data means a tighter posterior and fewer
    sweeps; a small data set, more.

    Under torchrun each process holds its own ratings; ``group`` sums over them.
    """

    def __init__(self, n: int, device: torch.device, tolerance: float, min_samples: int, group: Group | None = None):
        self.tolerance, self.min_samples = tolerance, min_samples
        self.group = group or Group()
        self.count = 0
        self.mean = torch.zeros(n, dtype=torch.float32, device=device)
        self.squares = torch.zeros(n, dtype=torch.float32, device=device)

    def add(self, predictions: torch.Tensor) -> None:
        """Fold one sample's predictions at the training ratings in (Welford's update)."""
        self.count += 1
        delta = predictions - self.mean
        self.mean.add_(delta, alpha=1.0 / self.count)
        self.squares.addcmul_(delta, predictions - self.mean)

    def gain(self, noise_std: float) -> float:
        """Estimated RMSE gain of doubling the samples (inf before two samples)."""
        n, total = self.group.sum(len(self.squares), self.squares.sum(dtype=torch.float64), device=self.squares.device)
        if self.count < 2:
            return math.inf
        spread = total / n / (self.count - 1)
        return spread / (4 * self.count * noise_std)

    def converged(self, gain: float) -> bool:
        """Whether to stop, given this sweep's :meth:`gain` (computed once per sweep:
        under torchrun it is a sum over every process)."""
        return self.count >= self.min_samples and gain < self.tolerance

    def rmse(self, ratings: torch.Tensor, scale: tuple[float, float]) -> float:
        """RMSE of the running mean (clipped to ``scale``) at the training ratings."""
        errors = self.mean.clamp(*scale) - ratings
        n, total = self.group.sum(len(errors), errors.square().sum(dtype=torch.float64), device=errors.device)
        return math.sqrt(total / max(n, 1))


def _fit_gibbs(task: _Task) -> _Run:
    """One chain: warm-up passes, then sweeps until :class:`_Convergence` says stop
    (or ``config.sweeps``); the running posterior mean is the model."""
    config, device, group = task.config, task.device, task.group
    sides = config.implicit_sides(len(task.fit))
    sampler = GibbsSampler(
        len(task.users), len(task.movies), config.sample_dim, *_rows(task.fit, task.users, task.movies),
        init_std=config.sample_init_std, seed=config.seed, device=device, group=group, implicit=sides,
    )
    ratings = sampler.ratings()
    warm = _warm_up(sampler, config.warm_up, config.warm_ridge)
    # The running sum of P Qᵀ, cut back to the exported rank whenever it is wider than
    # twice that (plus a sample): a compression costs the square of the width.
    keeps_implicit = sampler.implicit_user_rows is not None
    mean = PosteriorMean(keep=config.dim, cap=2 * config.dim + config.sample_dim, implicit=keeps_implicit) if task.keep_model else None
    convergence = _Convergence(len(ratings), device, config.tolerance, config.min_sweeps, group)
    held_out = None
    if task.val is not None:
        vu, vm, vr = (torch.as_tensor(a, device=device) for a in _rows(task.val, task.users, task.movies))
        held_out, val_mean = (vu, vm, vr), torch.zeros(len(vr), dtype=vr.dtype, device=device)
    history = task.log("sweep", config.sweeps, min_delta=0.0)
    for sweep in history:
        sampler.sweep()
        if sweep <= config.burn_in:
            continue
        if mean is not None:
            mean.add(sampler.sample, sampler.implicit_user_rows)
        convergence.add(ratings - sampler.residuals)
        val_rmse = None
        if held_out is not None:
            val_mean += (sampler.predict(vu, vm) - val_mean) / convergence.count
            val_rmse = _clipped_rmse(val_mean, vr, task.scale)
        noise_std = 1.0 / math.sqrt(sampler.alpha)
        gain = convergence.gain(noise_std)
        note = f"gain {gain:.5f}"
        history.record(sweep, convergence.rmse(ratings, task.scale), val_rmse, note)
        if convergence.converged(gain):
            break
    history.close()
    model = None if mean is None else _model_from_mean(mean, len(task.users), len(task.movies), config.dim)
    implicit = None
    if model is not None and keeps_implicit:
        vectors, biases = mean.implicit_rows(model.movie_factors.weight.detach().to(torch.float64))
        implicit = (vectors.cpu().numpy().astype(np.float32), biases.cpu().numpy().astype(np.float32))
    return _Run(
        model, history.frame(), len(history.rows) + config.burn_in, history.best_val,
        warm_up_passes=warm, implicit_sides=sides, implicit=implicit,
    )


def _warm_up(sampler: GibbsSampler, passes: int, ridge: float) -> int:
    """Alternating-least-squares passes until the training RMSE improves by less
    than 0.001 (at most ``passes``); how many ran."""
    previous = math.inf
    for done in range(1, passes + 1):
        sampler.warm_up(ridge)
        rmse = sampler.training_rmse()
        log.info("warm-up pass %d train_rmse %.4f", done, rmse)
        if previous - rmse < 1e-3:
            return done
        previous = rmse
    return passes


def _model_from_mean(mean: PosteriorMean, n_users: int, n_movies: int, dim: int) -> CollaborativeFiltering:
    """A :class:`CollaborativeFiltering` holding the posterior mean at rank ``dim``."""
    mu, bu, bi, P, Q = mean.factors(dim)
    model = CollaborativeFiltering(n_users, n_movies, dim, mu)
    with torch.no_grad():
        for table, values in (
            (model.user_factors.weight, P),
            (model.movie_factors.weight, Q),
            (model.user_bias.weight, bu.unsqueeze(1)),
            (model.movie_bias.weight, bi.unsqueeze(1)),
        ):
            table.copy_(values.to(torch.float32).cpu())
    return model.eval()


_METHODS: dict[str, Callable[[_Task], _Run]] = {"adam": _fit_adam, "gibbs": _fit_gibbs}


def fitted_model(
    module: CollaborativeFiltering,
    users: Vocabulary,
    movies: Vocabulary,
    trained_users: np.ndarray,
    trained_movies: np.ndarray,
    rating_scale: tuple[float, float],
) -> MFModel:
    """The module's parameters as an :class:`MFModel` of float32 copies, untrained rows zeroed.

    A user or movie with no rating in the fitted part never received a gradient
    (or a draw from data), so its row is still the initialisation; zeroing it makes
    the model give exactly the documented fallback (``μ + b_i`` or ``μ + b_u``).
    """
    user_embeddings, movie_embeddings, user_biases, movie_biases = (
        table.weight.detach().cpu().numpy().astype(np.float32)  # a copy: the module keeps its rows
        for table in (module.user_factors, module.movie_factors, module.user_bias, module.movie_bias)
    )
    for embeddings, biases, trained in ((user_embeddings, user_biases, trained_users), (movie_embeddings, movie_biases, trained_movies)):
        embeddings[~trained] = 0.0
        biases[~trained] = 0.0
    return MFModel(
        float(module.global_bias.detach()), user_embeddings, movie_embeddings, user_biases[:, 0], movie_biases[:, 0], rating_scale, users, movies
    )


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

    ``gibbs`` with ``config.refit`` (the default): one chain on all of
    ``train_ratings``. Otherwise a validation part (``config.val_fraction`` of
    ``train_ratings``) is carved out and its RMSE recorded per epoch (sweep); Adam
    stops early on it and, with ``config.refit``, runs again on all training rows
    for the chosen epoch count. The test part never reaches this function.

    ``group``: the processes sharing the chain under torchrun
    (:mod:`embedder.distributed`); every one of them calls this function with the
    same arguments and gets the same model. Only ``gibbs`` runs on several.
    """
    device = resolve_device(config.device)
    group = group or Group()
    if group.size > 1 and config.method != "gibbs":
        raise ValueError(f"method {config.method!r} runs in one process; only 'gibbs' trains under torchrun")
    method = _METHODS[config.method]
    started = time.perf_counter()
    context = dict(config=config, users=users, movies=movies, scale=rating_scale, device=device, progress=progress, group=group)
    refit_history = None
    if config.method == "gibbs" and config.refit:
        fitted = train_ratings
        first = final = method(_Task(train_ratings, None, None, True, **context))
    else:
        fitted, val = validation_split(train_ratings, config.val_fraction, config.seed)
        first = method(_Task(fitted, val, None, not config.refit, **context))
        final = first
        if config.refit:
            fitted = train_ratings
            final = method(_Task(train_ratings, None, first.best_epoch, True, **context))
            refit_history = final.history
    seconds = time.perf_counter() - started
    trained_users = np.bincount(users.numbers(fitted["user_id"].to_numpy()), minlength=len(users)) > 0
    trained_movies = np.bincount(movies.numbers(fitted["movie_id"].to_numpy()), minlength=len(movies)) > 0
    return TrainResult(
        model=fitted_model(final.model, users, movies, trained_users, trained_movies, rating_scale),
        module=final.model,
        users=users,
        movies=movies,
        history=first.history,
        best_epoch=first.best_epoch,
        seconds=seconds,
        rating_scale=rating_scale,
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
