"""Export a trained model as a bundle (docs/design.md, "The bundle"); the caller brings the evaluation."""

from __future__ import annotations

import importlib.metadata
import io
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from embedder import __version__, bundle
from embedder.config import TrainConfig
from embedder.data import validation_split
from embedder.metrics import rating_errors
from embedder.relevance import RelevanceModel
from embedder.train import TrainResult

LIBRARIES = ("numpy", "pandas", "scipy", "scikit-learn", "torch")


def model_arrays(result: TrainResult) -> dict[str, np.ndarray]:
    """The bundle's ``.npy`` files: the model's arrays, its ids and any implicit rows (zero for movies
    without training ratings: in no one's N(u), their rows are draws from the prior)."""
    model = result.model
    arrays = {f"{name}.npy": getattr(model, name) for name in bundle.PARAMETERS}
    if result.implicit is not None:
        for name, array in zip((bundle.IMPLICIT_EMBEDDINGS, bundle.IMPLICIT_BIASES), result.implicit):
            arrays[name] = array.copy()
            arrays[name][~result.trained_movies] = 0.0
    arrays["user_ids.npy"] = model.user_vocab.ids.astype(np.int64)
    arrays["movie_ids.npy"] = model.movie_vocab.ids.astype(np.int64)
    return arrays


def movie_table(movies: pd.DataFrame, movie_ids: np.ndarray, train: pd.DataFrame) -> pd.DataFrame:
    """One row per bundle movie: id, title, genres, training rating count and mean."""
    stats = train.groupby("movie_id")["rating"].agg(rating_count="size", mean_rating="mean")
    table = pd.DataFrame({"movie_id": movie_ids}).merge(movies[["movie_id", "title", "genres"]], how="left")
    table = table.merge(stats, left_on="movie_id", right_index=True, how="left")
    table["title"] = table["title"].fillna(table["movie_id"].map(lambda i: f"Movie {i}")).astype(str)
    table["genres"] = table["genres"].fillna("").astype(str)
    table["rating_count"] = table["rating_count"].fillna(0).astype(np.int64)
    table["mean_rating"] = table["mean_rating"].astype(np.float64)
    return table


def seen_matrix(model, train: pd.DataFrame) -> sp.csr_matrix:
    """Canonical CSR (users x movies) whose values are the training ratings, over the model's vocabularies."""
    rows = model.user_vocab.numbers(train["user_id"].to_numpy())
    cols = model.movie_vocab.numbers(train["movie_id"].to_numpy())
    shape = (len(model.user_vocab), len(model.movie_vocab))
    return sp.csr_matrix((train["rating"].to_numpy(np.float32), (rows, cols)), shape=shape)


def model_state_bytes(result: TrainResult) -> bytes:
    """``model.pt``: the state dict and id maps, all tensors (loadable with weights_only=True)."""
    payload = {
        "state_dict": result.module.state_dict(),
        "user_ids": torch.from_numpy(result.model.user_vocab.ids.copy()),
        "movie_ids": torch.from_numpy(result.model.movie_vocab.ids.copy()),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def history_table(result: TrainResult) -> pd.DataFrame:
    """Every run's per-epoch rows, ``phase``: ``training`` (one run), or ``validation`` then ``refit``."""
    one_run = result.fitted_all and result.refit_history is None
    runs = [result.history.assign(phase="training" if one_run else "validation")]
    if result.refit_history is not None:
        runs.append(result.refit_history.assign(phase="refit"))
    return pd.concat(runs, ignore_index=True)


def curve_writer(history: pd.DataFrame, best_epoch: int, unit: str) -> bundle.FileWriter:
    """A writer of the training curve of :func:`history_table` (train/val RMSE per epoch or sweep), a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry

    first, refit = history[history["phase"] != "refit"], history[history["phase"] == "refit"]
    fig = Figure(figsize=(6, 3.6), dpi=100, layout="tight")
    ax = fig.subplots()
    marker = "." if len(first) <= 60 else None  # dots only where they can be told apart
    ax.plot(first["epoch"], first["train_rmse"], marker=marker, label="train RMSE")
    if first["val_rmse"].notna().any():
        ax.plot(first["epoch"], first["val_rmse"], marker=marker, label="validation RMSE")
    if len(refit):
        ax.plot(refit["epoch"], refit["train_rmse"], linestyle="--", label="train RMSE, refit on all rows")
    ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best {unit} ({best_epoch})")
    title = "Training curve" + (" (running posterior mean)" if unit == "sweep" else "")
    ax.set(xlabel=unit, ylabel="RMSE", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return lambda path: fig.savefig(path, format="png")


def export_bundle(
    dest: str | Path,
    result: TrainResult,
    config: TrainConfig,
    dataset: dict[str, Any],
    movies: pd.DataFrame,
    train: pd.DataFrame,
    test: pd.DataFrame,
    seen: sp.csr_matrix,
    evaluation: dict[str, Any] | None = None,
    relevance: RelevanceModel | None = None,
    relevance_info: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Write the bundle for ``result`` at ``dest`` (atomically); return its path and manifest. ``movies``:
    :func:`movie_table`; ``seen``: :func:`seen_matrix` of ``train``; ``evaluation``, ``relevance_info``:
    recorded in the manifest as given."""
    model = result.model
    arrays = model_arrays(result)
    if relevance is not None:
        factors = (relevance.user_factors, relevance.movie_factors, relevance.shrinkage)
        arrays |= dict(zip(bundle.RELEVANCE_FILES, factors, strict=True))
    val = validation_split(train, config.val_fraction, config.seed)[1]
    parts = {"train": train, "val": val, "test": test}
    predict = lambda part: model.predict_ids(part["user_id"].to_numpy(), part["movie_id"].to_numpy())  # noqa: E731
    metrics = {name: rating_errors(predict(part), part["rating"]) for name, part in parts.items()}
    history = history_table(result)
    unit = "sweep" if config.method == "gibbs" else "epoch"
    finite = math.isfinite(result.validation_rmse)
    files = {name: bundle.npy_writer(array) for name, array in arrays.items()} | {
        "movies.parquet": bundle.movies_writer(movies),
        "seen.npz": bundle.seen_writer(seen),
        "model.pt": bundle.bytes_writer(model_state_bytes(result)),
        "history.csv": bundle.bytes_writer(history.to_csv(index=False).encode()),
        "training_curve.png": curve_writer(history, result.best_epoch, unit),
    }
    manifest = {
        "dataset": dataset,
        "rating_scale": list(model.rating_scale),
        "global_mean": model.global_mean,
        "config": config.model_dump(),
        "metrics": metrics,
        **({"evaluation": evaluation} if evaluation is not None else {}),
        **({"relevance": relevance_info} if relevance is not None else {}),
        "training": {
            "method": config.method,
            "best_epoch": result.best_epoch,
            "epochs_run": int(len(result.history)),
            "unit": unit,
            "validation_rmse": round(result.validation_rmse, 6) if finite else None,
            "warm_up_passes": result.warm_up_passes,
            "world_size": result.world_size,
            "implicit": result.implicit_sides,
            "refit": config.refit,
            "val_in_training": result.fitted_all,
            "seconds": round(result.seconds, 3),
            "n_train": int(len(train)),
            "n_test": int(len(test)),
        },
        "split": {"test_size": 0.2, "random_state": 42, "order": "file order"},
        "fallback": "unknown user: μ + b_i; unknown movie: μ + b_u; both: μ (zero vectors and biases)",
        "shapes": {name: list(array.shape) for name, array in arrays.items()},
        "n_users": len(model.user_vocab),
        "n_movies": len(model.movie_vocab),
        "dim": config.dim,
        "versions": {"embedder": __version__, "python": platform.python_version()}
        | {name: importlib.metadata.version(name) for name in LIBRARIES},
    }
    return bundle.write_bundle(dest, files, manifest), manifest
