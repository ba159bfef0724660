"""Export a trained model as a bundle (docs/design.md, "The bundle")."""

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

from embedder import __version__
from embedder.bundle import (
    IMPLICIT_BIASES,
    IMPLICIT_EMBEDDINGS,
    FileWriter,
    bytes_writer,
    movies_writer,
    npy_writer,
    seen_writer,
    write_bundle,
)
from embedder.config import TrainConfig
from embedder.evaluate import DEFAULT_MIN_RATINGS, frame_errors, held_out_rows, quality_report
from embedder.data import validation_part
from embedder.train import TrainResult


def model_arrays(result: TrainResult) -> dict[str, np.ndarray]:
    """The bundle's ``.npy`` files: the fitted model's arrays (untrained rows already
    zeroed: :func:`embedder.train.fitted_model`), its ids and, with the users'
    implicit part, the implicit rows (those of movies without training ratings zeroed)."""
    model = result.model
    arrays = {
        "user_embeddings.npy": model.user_embeddings,
        "movie_embeddings.npy": model.movie_embeddings,
        "user_biases.npy": model.user_biases,
        "movie_biases.npy": model.movie_biases,
    }
    if result.implicit is not None:
        # A movie nobody rated in training is in no one's N(u): its implicit row is a
        # draw from the prior, and a newcomer who rates it gains nothing from it.
        arrays[IMPLICIT_EMBEDDINGS], arrays[IMPLICIT_BIASES] = (array.copy() for array in result.implicit)
        arrays[IMPLICIT_EMBEDDINGS][~result.trained_movies] = 0.0
        arrays[IMPLICIT_BIASES][~result.trained_movies] = 0.0
    arrays["user_ids.npy"] = model.user_vocab.ids.astype(np.int64)
    arrays["movie_ids.npy"] = model.movie_vocab.ids.astype(np.int64)
    return arrays


def movie_table(movies: pd.DataFrame, movie_ids: np.ndarray, train: pd.DataFrame) -> pd.DataFrame:
    """One row per bundle movie: id, title, genres, training rating count and mean."""
    stats = train.groupby("movie_id")["rating"].agg(rating_count="size", mean_rating="mean")
    table = pd.DataFrame({"movie_id": movie_ids})
    table = table.merge(movies[["movie_id", "title", "genres"]], on="movie_id", how="left")
    table = table.merge(stats, left_on="movie_id", right_index=True, how="left")
    table["title"] = table["title"].fillna(table["movie_id"].map(lambda i: f"Movie {i}")).astype(str)
    table["genres"] = table["genres"].fillna("").astype(str)
    table["rating_count"] = table["rating_count"].fillna(0).astype(np.int64)
    table["mean_rating"] = table["mean_rating"].astype(np.float64)
    return table


def seen_matrix(result: TrainResult, train: pd.DataFrame) -> sp.csr_matrix:
    """CSR (users x movies) of the training ratings, values = rating."""
    rows = result.users.numbers(train["user_id"].to_numpy())
    cols = result.movies.numbers(train["movie_id"].to_numpy())
    values = train["rating"].to_numpy(np.float32)
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(len(result.users), len(result.movies)))
    matrix.sum_duplicates()
    return matrix


def model_state_bytes(result: TrainResult) -> bytes:
    """``model.pt``: the state dict and id maps, all tensors (loadable with weights_only=True)."""
    payload = {
        "state_dict": result.module.state_dict(),
        "user_ids": torch.from_numpy(result.users.ids.copy()),
        "movie_ids": torch.from_numpy(result.movies.ids.copy()),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def history_table(result: TrainResult) -> pd.DataFrame:
    """Every run's per-epoch (per-sweep) rows, with a ``phase`` column: ``training``
    (one run on all training rows), or ``validation`` then ``refit``."""
    one_run = result.fitted_all and result.refit_history is None
    runs = [result.history.assign(phase="training" if one_run else "validation")]
    if result.refit_history is not None:
        runs.append(result.refit_history.assign(phase="refit"))
    return pd.concat(runs, ignore_index=True)


def curve_png(history: pd.DataFrame, best_epoch: int, unit: str = "epoch") -> bytes:
    """The training curve (train/val RMSE per epoch or sweep) as a PNG.

    ``history`` may carry a ``phase`` column (see :func:`history_table`); the
    refit's training RMSE is drawn dashed.
    """
    # A bare Figure draws with the Agg renderer without pyplot: no global backend
    # switch, no figure registry, and a faster import.
    from matplotlib.figure import Figure

    phases = history["phase"] if "phase" in history else pd.Series("validation", index=history.index)
    first, refit = history[phases != "refit"], history[phases == "refit"]
    fig = Figure(figsize=(6, 3.6), dpi=100)
    ax = fig.subplots()
    marker = "." if len(first) <= 60 else None  # dots only where they can be told apart
    ax.plot(first["epoch"], first["train_rmse"], marker=marker, label="train RMSE")
    if first["val_rmse"].notna().any():  # a run on all training rows has no validation curve
        ax.plot(first["epoch"], first["val_rmse"], marker=marker, label="validation RMSE")
    if len(refit):
        ax.plot(refit["epoch"], refit["train_rmse"], linestyle="--", label="train RMSE, refit on all rows")
    ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best {unit} ({best_epoch})")
    ax.set_xlabel(unit)
    ax.set_ylabel("RMSE")
    ax.set_title("Training curve" + (" (running posterior mean)" if unit == "sweep" else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")  # "best" searches every placement, the slowest step of the drawing
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that made the bundle."""
    import scipy

    return {
        "embedder": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": importlib.metadata.version("scikit-learn"),  # installed, but not imported to train
        "torch": torch.__version__,
    }


def export_bundle(
    dest: str | Path,
    result: TrainResult,
    config: TrainConfig,
    dataset: dict[str, Any],
    movies: pd.DataFrame,
    train: pd.DataFrame,
    test: pd.DataFrame,
) -> tuple[Path, dict[str, Any]]:
    """Write the bundle for ``result`` at ``dest`` (atomically) and return it with its manifest.

    The metrics written to the manifest are computed from the exported float32
    arrays, clipped to the rating scale, so anyone can recompute them from the
    ``.npy`` files alone.
    """
    model = result.model
    arrays = model_arrays(result)
    val = validation_part(train, config.val_fraction, config.seed)
    metrics = {name: frame_errors(model, part) for name, part in (("train", train), ("val", val), ("test", test))}
    table = movie_table(movies, arrays["movie_ids.npy"], train)
    seen = seen_matrix(result, train)
    evaluation = quality_report(
        model, seen, table, held_out_rows(test, result.users, result.movies), DEFAULT_MIN_RATINGS, seed=config.seed
    )
    history = history_table(result)
    unit = "sweep" if config.method == "gibbs" else "epoch"
    files: dict[str, FileWriter] = {name: npy_writer(array) for name, array in arrays.items()}
    files.update(
        {
            "movies.parquet": movies_writer(table),
            "seen.npz": seen_writer(seen),
            "model.pt": bytes_writer(model_state_bytes(result)),
            "history.csv": bytes_writer(history.to_csv(index=False).encode()),
            "training_curve.png": bytes_writer(curve_png(history, result.best_epoch, unit)),
        }
    )
    manifest = {
        "dataset": dataset,
        "rating_scale": list(result.rating_scale),
        "global_mean": model.global_mean,
        "config": config.to_dict(),
        "metrics": metrics,
        "evaluation": evaluation,
        "training": {
            "method": config.method,
            "best_epoch": result.best_epoch,
            "epochs_run": int(len(result.history)),
            "unit": unit,
            "validation_rmse": round(result.validation_rmse, 6) if math.isfinite(result.validation_rmse) else None,
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
        "n_users": len(result.users),
        "n_movies": len(result.movies),
        "dim": config.dim,
        "versions": library_versions(),
    }
    path = write_bundle(dest, files, manifest)
    return path, manifest
