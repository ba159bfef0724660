"""Export a trained model as a bundle (DESIGN.md, "The bundle")."""

from __future__ import annotations

import io
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from embedder import __version__
from embedder.bundle import (
    FileWriter,
    bytes_writer,
    movies_writer,
    npy_writer,
    predict_ratings,
    seen_writer,
    write_bundle,
)
from embedder.config import TrainConfig
from embedder.split import rmse_mae, validation_split
from embedder.train import TrainResult


def model_arrays(result: TrainResult) -> dict[str, np.ndarray]:
    """The model's parameters as float32 arrays, untrained rows zeroed.

    A user or movie with no rating in the fitted part never received a gradient,
    so its row is still the random initialisation; zeroing it makes the stored
    vectors give exactly the documented fallback (``μ + b_i`` or ``μ + b_u``).
    """
    model = result.model
    with torch.no_grad():
        arrays = {
            "user_embeddings.npy": model.user_factors.weight.numpy().astype(np.float32),
            "movie_embeddings.npy": model.movie_factors.weight.numpy().astype(np.float32),
            "user_biases.npy": model.user_bias.weight.numpy()[:, 0].astype(np.float32),
            "movie_biases.npy": model.movie_bias.weight.numpy()[:, 0].astype(np.float32),
        }
    for name, mask in (("user", result.trained_users), ("movie", result.trained_movies)):
        arrays[f"{name}_embeddings.npy"][~mask] = 0.0
        arrays[f"{name}_biases.npy"][~mask] = 0.0
    arrays["user_ids.npy"] = result.users.ids.astype(np.int64)
    arrays["movie_ids.npy"] = result.movies.ids.astype(np.int64)
    return arrays


def evaluate_arrays(
    arrays: dict[str, np.ndarray],
    global_mean: float,
    result: TrainResult,
    ratings: pd.DataFrame,
) -> dict[str, float]:
    """RMSE/MAE of the exported float32 arrays (clipped) on a ratings frame."""
    predicted = predict_ratings(
        global_mean,
        arrays["user_embeddings.npy"],
        arrays["movie_embeddings.npy"],
        arrays["user_biases.npy"],
        arrays["movie_biases.npy"],
        result.users.numbers(ratings["user_id"].to_numpy(), missing="negative"),
        result.movies.numbers(ratings["movie_id"].to_numpy(), missing="negative"),
        result.rating_scale,
    )
    return rmse_mae(predicted, ratings["rating"].to_numpy())


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
        "state_dict": result.model.state_dict(),
        "user_ids": torch.from_numpy(result.users.ids.copy()),
        "movie_ids": torch.from_numpy(result.movies.ids.copy()),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def curve_png(history: pd.DataFrame, best_epoch: int) -> bytes:
    """The training curve (train/val RMSE per epoch) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.plot(history["epoch"], history["train_rmse"], marker=".", label="train RMSE")
    ax.plot(history["epoch"], history["val_rmse"], marker=".", label="validation RMSE")
    ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE")
    ax.set_title("Training curve")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that made the bundle."""
    import scipy
    import sklearn

    return {
        "embedder": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
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
    arrays = model_arrays(result)
    global_mean = float(result.model.global_bias.detach())
    _, val = validation_split(train, config.val_fraction, config.seed)
    metrics = {
        name: evaluate_arrays(arrays, global_mean, result, part)
        for name, part in (("train", train), ("val", val), ("test", test))
    }
    table = movie_table(movies, arrays["movie_ids.npy"], train)
    history_csv = result.history.to_csv(index=False).encode()
    files: dict[str, FileWriter] = {name: npy_writer(array) for name, array in arrays.items()}
    files.update(
        {
            "movies.parquet": movies_writer(table),
            "seen.npz": seen_writer(seen_matrix(result, train)),
            "model.pt": bytes_writer(model_state_bytes(result)),
            "history.csv": bytes_writer(history_csv),
            "training_curve.png": bytes_writer(curve_png(result.history, result.best_epoch)),
        }
    )
    manifest = {
        "dataset": dataset,
        "rating_scale": list(result.rating_scale),
        "global_mean": global_mean,
        "config": config.to_dict(),
        "metrics": metrics,
        "training": {
            "best_epoch": result.best_epoch,
            "epochs_run": int(len(result.history)),
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
