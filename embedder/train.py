"""Training: a validation run that picks the epoch (or sweep) count, then a refit.

Two methods fit the same model, ``r̂ = μ + b_u + b_i + p_u·q_i``:

* ``gibbs`` (default): Bayesian MF by Gibbs sampling (:mod:`embedder.gibbs`); the
  exported model is the posterior mean, truncated to rank ``config.dim``.
* ``adam``: Adam on MSE + L2 on the touched rows, early stopping on validation RMSE.

Either way a validation part (``config.val_fraction`` of the training rows) is
carved out, the method runs on the rest while the validation RMSE is logged per
epoch (per sweep), and the best count is kept. With ``config.refit`` the method
then runs again on all training rows for that count, and that model is the one
returned. The test part never reaches this module.

For ``gibbs`` the refit does not wait for the validation run: the two chains run
side by side, one per core, and the refit keeps (a cheap snapshot of) its
posterior mean at each sweep where the validation RMSE improved. When the
validation run ends, the refit's mean at the chosen sweep count is exactly what a
refit started afterwards would have reached (each chain has its own seeded
generators), in about half the wall time. Adam steps are too small to share a
process with another run (they would mostly wait on the GIL), so Adam refits after.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from embedder.allocator import reuse_freed_memory
from embedder.config import TrainConfig
from embedder.gibbs import GibbsSampler, PosteriorMean, Ratings
from embedder.model import CollaborativeFiltering
from embedder.split import validation_split
from embedder.vocab import Vocabulary

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "train_rmse", "val_rmse", "seconds"]


@dataclass
class TrainResult:
    """A trained model with the vocabularies and per-epoch history it came with."""

    model: CollaborativeFiltering
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
    """The refit on all training rows (val_rmse empty), or None without a refit."""


@dataclass
class _Run:
    """What one run of a method returns."""

    model: CollaborativeFiltering | None
    history: pd.DataFrame
    best_epoch: int
    best_val: float


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


def _rows(frame: pd.DataFrame, users: Vocabulary, movies: Vocabulary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ratings = np.array(frame["rating"].to_numpy(), dtype=np.float64)  # a writable copy
    return users.numbers(frame["user_id"].to_numpy()), movies.numbers(frame["movie_id"].to_numpy()), ratings


def _as_tensors(frame: pd.DataFrame, users: Vocabulary, movies: Vocabulary, device: torch.device):
    u, m, r = _rows(frame, users, movies)
    return torch.as_tensor(u, device=device), torch.as_tensor(m, device=device), torch.as_tensor(r, dtype=torch.float32, device=device)


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
    """Per-epoch history rows, the progress bar and the early-stopping bookkeeping."""

    def __init__(self, total: int, unit: str, progress: bool, refit: bool, min_delta: float):
        self.min_delta = min_delta
        self.rows: list[dict] = []
        self.best_val, self.best_epoch, self.stale = float("inf"), 0, 0
        self.unit, self.total = unit, total
        desc = "refit on all training rows" if refit else "validation run"
        self.bar = tqdm(range(1, total + 1), desc=desc, unit=unit, disable=not progress)
        self.started = time.perf_counter()

    def __iter__(self):
        return iter(self.bar)

    def record(self, epoch: int, train_rmse: float, val_rmse: float | None) -> bool:
        """Add a row; True when validation RMSE improved on the best so far."""
        now = time.perf_counter()
        val = float("nan") if val_rmse is None else val_rmse
        self.rows.append({"epoch": epoch, "train_rmse": train_rmse, "val_rmse": val, "seconds": now - self.started})
        self.started = now
        self.bar.set_postfix(train=f"{train_rmse:.4f}", **({} if val_rmse is None else {"val": f"{val_rmse:.4f}"}))
        log.info("%s %d train_rmse %.4f val_rmse %.4f", self.unit, epoch, train_rmse, val)
        improved = val_rmse is not None and val_rmse < self.best_val - self.min_delta
        if improved:
            self.best_val, self.best_epoch, self.stale = val_rmse, epoch, 0
        else:
            self.stale += 1
        return improved

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=HISTORY_COLUMNS)


class _Verdicts:
    """The validation run's verdict on each sweep (did the validation RMSE improve?),
    passed to a refit running alongside it on another thread."""

    def __init__(self) -> None:
        self._verdicts: queue.SimpleQueue[bool | None] = queue.SimpleQueue()
        self._cancelled = threading.Event()

    def publish(self, improved: bool) -> None:
        """(validation run) The verdict on the next sweep."""
        self._verdicts.put(improved)

    def close(self) -> None:
        """(validation run) No more verdicts: the run ended, or failed."""
        self._verdicts.put(None)

    def next(self) -> bool | None:
        """(refit) The verdict on the sweep it just made; None once the validation run is over."""
        return self._verdicts.get()

    def cancel(self) -> None:
        """(refit) Stop the validation run early: the refit failed, so nobody needs it."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


@dataclass
class _Task:
    """One run of a method: fit on ``fit``; with ``val``, pick the best count (at most
    the config's), else run exactly ``epochs``. ``keep_model`` False skips building
    a model nobody will use (the validation run before a refit).

    With ``verdicts`` the run is one of a pair on two threads: the validation run
    publishes its verdict on every sweep, and the refit (no ``val``, no ``epochs``)
    follows them and keeps its model at the last improving sweep."""

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
    verdicts: _Verdicts | None = None

    def log(self, unit: str, default_total: int, min_delta: float) -> _Log:
        return _Log(self.epochs or default_total, unit, self.progress, refit=self.val is None, min_delta=min_delta)


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
    if best_state is not None:
        model.load_state_dict(best_state)
    best_epoch = history.best_epoch if held_out is not None else len(history.rows)
    return _Run(model.cpu() if task.keep_model else None, history.frame(), best_epoch, history.best_val)


def _fit_gibbs(task: _Task) -> _Run:
    """Gibbs sampling; the running posterior mean is scored after every sweep. With a
    validation part the mean at the best sweep is kept; a refit following the
    validation run's verdicts keeps its mean at the last improving sweep; otherwise
    the mean after ``task.epochs`` sweeps."""
    if task.verdicts is None or task.val is None:
        return _gibbs_chain(task)
    try:
        return _gibbs_chain(task)
    finally:
        task.verdicts.close()  # also on failure, so the refit never waits forever


def _gibbs_chain(task: _Task) -> _Run:
    config, device = task.config, task.device
    ratings = Ratings.from_arrays(*_rows(task.fit, task.users, task.movies), device)
    sampler = GibbsSampler(len(task.users), len(task.movies), config.sample_dim, ratings, config.sample_init_std, config.seed)
    # The running sum of P Qᵀ, cut back to the exported rank whenever it is wider than
    # twice that (plus a sample). Keeping more along the way bought nothing on
    # ML-100K (exported validation RMSE 0.8891 at 64, 0.8892 at 128), and a
    # compression costs the square of the width.
    mean = PosteriorMean(keep=config.dim, cap=2 * config.dim + config.sample_dim) if task.keep_model else None
    count = 0
    held_out = None
    if task.val is not None:
        vu, vm, vr = (torch.as_tensor(a, device=device) for a in _rows(task.val, task.users, task.movies))
        held_out, val_mean = (vu, vm, vr), torch.zeros(len(vr), dtype=vr.dtype, device=device)
    fit_mean = torch.zeros_like(ratings.values)
    history = task.log("sweep", config.sweeps, min_delta=0.0)
    best, best_epoch = None, None
    for sweep in history:
        if task.verdicts is not None and task.verdicts.cancelled:
            break
        sampler.sweep()
        if sweep <= config.burn_in:
            continue
        count += 1
        if mean is not None:
            mean.add(sampler.sample)
        # Running means of the predictions, for the history (fit rows: from the residuals).
        fit_mean += (ratings.values - sampler.residuals - fit_mean) / count
        val_rmse = None
        if held_out is not None:
            val_mean += (sampler.predict(vu, vm) - val_mean) / count
            val_rmse = _clipped_rmse(val_mean, vr, task.scale)
        improved = _exchange(task, history.record(sweep, _clipped_rmse(fit_mean, ratings.values, task.scale), val_rmse))
        if improved is None:
            break
        if improved:
            best, best_epoch = (None if mean is None else mean.snapshot()), sweep
    frame = history.frame()
    if task.val is None and task.verdicts is not None and best_epoch is not None:
        frame = frame[frame["epoch"] <= best_epoch]  # the sweeps the kept mean has seen
    model = None if mean is None else _model_from_mean(best or mean, len(task.users), len(task.movies), config.dim)
    return _Run(model, frame, best_epoch or history.total, history.best_val)


def _exchange(task: _Task, improved: bool) -> bool | None:
    """The verdict a run acts on after a sweep. A run on its own, or a validation
    run (which publishes it), keeps its own; a refit beside a validation run takes
    that run's verdict instead, None once the validation run is over."""
    if task.verdicts is None:
        return improved
    if task.val is not None:
        task.verdicts.publish(improved)
        return improved
    return task.verdicts.next()


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
_REFITS_ALONGSIDE = {"gibbs"}
"""Methods whose refit runs beside the validation run (see the module docstring)."""


def _validate_and_refit_together(
    method: Callable[[_Task], _Run], fit: pd.DataFrame, val: pd.DataFrame, everything: pd.DataFrame, context: dict
) -> tuple[_Run, _Run]:
    """The validation run on a worker thread and the refit on this one, in step.

    Returns (validation run, refit). The refit ends with the validation run; an
    error in either is raised here, and a failed refit stops the validation run.
    """
    verdicts = _Verdicts()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="validation-run") as pool:
        validation = pool.submit(method, _Task(fit, val, None, False, verdicts=verdicts, **context))
        try:
            refit = method(_Task(everything, None, None, True, verdicts=verdicts, **context))
        except BaseException:
            verdicts.cancel()
            raise
        return validation.result(), refit


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Limit torch's intra-op threads for the duration (0: leave them alone)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fitted_mask(rows: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[rows] = True
    return mask


def train(
    train_ratings: pd.DataFrame,
    config: TrainConfig,
    users: Vocabulary,
    movies: Vocabulary,
    rating_scale: tuple[float, float],
    progress: bool = True,
) -> TrainResult:
    """Fit the model on the training rows with ``config.method``.

    A validation part (``config.val_fraction`` of ``train_ratings``) is carved out
    to choose the epoch (sweep) count; with ``config.refit`` (the default) the
    method then runs again on all of ``train_ratings`` for that count. The test
    part never reaches this function. Training raises glibc's malloc thresholds
    for the process (:mod:`embedder.allocator`).
    """
    device = resolve_device(config.device)
    reuse_freed_memory()
    fit, val = validation_split(train_ratings, config.val_fraction, config.seed)
    method = _METHODS[config.method]
    started = time.perf_counter()
    context = dict(config=config, users=users, movies=movies, scale=rating_scale, device=device, progress=progress)
    with _torch_threads(config.threads):
        if config.refit and config.method in _REFITS_ALONGSIDE:
            first, final = _validate_and_refit_together(method, fit, val, train_ratings, context)
        else:
            first = method(_Task(fit, val, None, not config.refit, **context))
            final = method(_Task(train_ratings, None, first.best_epoch, True, **context)) if config.refit else first
        fitted, refit_history = (train_ratings, final.history) if config.refit else (fit, None)
    seconds = time.perf_counter() - started
    return TrainResult(
        model=final.model,
        users=users,
        movies=movies,
        history=first.history,
        best_epoch=first.best_epoch,
        seconds=seconds,
        rating_scale=rating_scale,
        trained_users=_fitted_mask(users.numbers(fitted["user_id"].to_numpy()), len(users)),
        trained_movies=_fitted_mask(movies.numbers(fitted["movie_id"].to_numpy()), len(movies)),
        validation_rmse=first.best_val,
        refit_history=refit_history,
    )
