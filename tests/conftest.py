"""Shared fixtures: synthetic ratings with a known answer, and a tiny trained bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""


def make_low_rank_ratings(
    n_users: int = 300,
    n_movies: int = 200,
    rank: int = 3,
    density: float = 0.3,
    noise: float = 0.1,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Ratings = μ + b_u + b_i + p_u·q_i + N(0, noise²) on a random subset of pairs.

    Returns the ratings frame (ids start at 1, shuffled row order) and the truth.
    """
    rng = np.random.default_rng(seed)
    truth = {
        "mu": np.float64(3.5),
        "bu": rng.normal(0, 0.3, n_users),
        "bi": rng.normal(0, 0.3, n_movies),
        "P": rng.normal(0, 0.6, (n_users, rank)),
        "Q": rng.normal(0, 0.6, (n_movies, rank)),
    }
    mask = rng.random((n_users, n_movies)) < density
    users, movies = np.nonzero(mask)
    clean = (
        truth["mu"]
        + truth["bu"][users]
        + truth["bi"][movies]
        + np.einsum("ij,ij->i", truth["P"][users], truth["Q"][movies])
    )
    order = rng.permutation(len(users))
    frame = pd.DataFrame(
        {
            "user_id": users[order] + 1,
            "movie_id": movies[order] + 1,
            "rating": (clean + rng.normal(0, noise, len(users)))[order].round(4),
            "timestamp": np.arange(len(users)),
        }
    )
    return frame, truth


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory) -> str:
    """A plain ratings CSV of low-rank synthetic data (user_id, movie_id, rating, timestamp)."""
    frame, _ = make_low_rank_ratings()
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    frame.to_csv(path, index=False)
    return str(path)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, synthetic_csv) -> str:
    """A bundle trained in seconds by the real CLI on the synthetic CSV."""
    from embedder.cli import main

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    code = main(["train", "--data", synthetic_csv, "--out", str(out), "--dim", "8", "--quiet"])
    assert code == 0
    return str(out)


FILMS = [
    "Star Wars (1977)",
    "War, The (1994)",
    "Empire Strikes Back, The (1980)",
    "Godfather, The (1972)",
    "Godfather: Part II, The (1974)",
    "Schindler's List (1993)",
    "Mystery Science Theater 3000: The Movie (1996)",
    "Toy Story (1995)",
]
"""Real titles with traps for title resolution: a film inside "Starwarz", two Godfathers, an apostrophe."""


@pytest.fixture(scope="session")
def films_bundle(tmp_path_factory) -> str:
    """A bundle of :data:`FILMS` (random model, every user rated a third of them)."""
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("films") / "bundle"
    n_users, n_movies = 10, len(FILMS)
    seen = (rng.random((n_users, n_movies)) < 0.4) * 4.0
    write_synthetic_bundle(
        path, rng.normal(size=(n_users, 3)), rng.normal(size=(n_movies, 3)), seen=seen, titles=FILMS
    )
    return str(path)


def write_synthetic_bundle(
    path,
    user_embeddings: np.ndarray,
    movie_embeddings: np.ndarray,
    user_biases: np.ndarray | None = None,
    movie_biases: np.ndarray | None = None,
    *,
    global_mean: float = 3.5,
    seen=None,
    titles: list[str] | None = None,
    genres: list[str] | None = None,
    rating_counts: np.ndarray | None = None,
    user_ids: np.ndarray | None = None,
    movie_ids: np.ndarray | None = None,
    rating_scale: tuple[float, float] = (1.0, 5.0),
):
    """Write a valid bundle straight from arrays (no training): for planted-answer tests.

    Ids default to 1..n for users and 101..100+n for movies, so a row index is
    never mistaken for an id.
    """
    import scipy.sparse as sp

    from embedder.bundle import movies_writer, npy_writer, seen_writer, write_bundle

    n_users, dim = user_embeddings.shape
    n_movies = movie_embeddings.shape[0]
    user_ids = np.arange(1, n_users + 1) if user_ids is None else np.asarray(user_ids)
    movie_ids = np.arange(101, 101 + n_movies) if movie_ids is None else np.asarray(movie_ids)
    arrays = {
        "user_embeddings.npy": np.asarray(user_embeddings, np.float32),
        "movie_embeddings.npy": np.asarray(movie_embeddings, np.float32),
        "user_biases.npy": np.zeros(n_users, np.float32)
        if user_biases is None
        else np.asarray(user_biases, np.float32),
        "movie_biases.npy": np.zeros(n_movies, np.float32)
        if movie_biases is None
        else np.asarray(movie_biases, np.float32),
        "user_ids.npy": user_ids.astype(np.int64),
        "movie_ids.npy": movie_ids.astype(np.int64),
    }
    counts = np.full(n_movies, 10, np.int64) if rating_counts is None else np.asarray(rating_counts, np.int64)
    movies = pd.DataFrame(
        {
            "movie_id": movie_ids.astype(np.int64),
            "title": titles or [f"Movie {i}" for i in movie_ids],
            "genres": genres or [""] * n_movies,
            "rating_count": counts,
            "mean_rating": np.full(n_movies, 3.5),
        }
    )
    seen = (
        sp.csr_matrix((n_users, n_movies), dtype=np.float32)
        if seen is None
        else sp.csr_matrix(seen, dtype=np.float32)
    )
    files = {name: npy_writer(array) for name, array in arrays.items()}
    files["movies.parquet"] = movies_writer(movies)
    files["seen.npz"] = seen_writer(seen)
    manifest = {
        "dataset": {"name": "synthetic", "data_arg": "synthetic", "checksum": "", "n_ratings": int(seen.nnz)},
        "rating_scale": list(rating_scale),
        "global_mean": float(global_mean),
        "metrics": {"test": {"rmse": 0.0, "mae": 0.0}},
        "n_users": n_users,
        "n_movies": n_movies,
        "dim": dim,
    }
    return write_bundle(path, files, manifest)


def random_bundle(path, seed=0, n_users=6, n_movies=9, dim=3):
    """A small bundle of random arrays (about 30% of the pairs rated 4) at ``path``."""
    rng = np.random.default_rng(seed)
    return write_synthetic_bundle(
        path,
        rng.normal(size=(n_users, dim)),
        rng.normal(size=(n_movies, dim)),
        rng.normal(size=n_users),
        rng.normal(size=n_movies),
        seen=(rng.random((n_users, n_movies)) < 0.3) * 4.0,
    )


def plain_bundle(path, seed=0, **sizes):
    """A :func:`random_bundle` in the folder ``path`` itself, not a link to its version: as a copied bundle,
    or one of the versions train publishes in ``artifacts/bundles/``."""
    version = random_bundle(path, seed, **sizes).resolve()
    path.unlink()
    return version.rename(path)


def copy_bundle(source, dest) -> Path:
    """A copy of the bundle at ``source`` as a bundle named ``dest``: a link to its own version, so that it
    can be built or replaced (a plain copied folder cannot: published versions never change)."""
    import shutil

    from embedder.publish import utc_stamp

    dest = Path(dest)
    version = dest.with_name(f"{dest.name}+{utc_stamp()}")
    shutil.copytree(Path(source).resolve(), version)
    dest.symlink_to(version.name)
    return dest


def edit_manifest(path, change) -> None:
    """Apply ``change`` to a bundle's manifest.json in place (checksums untouched)."""
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def rewrite_file_and_manifest(path, name: str, writer) -> None:
    """Replace one file of a bundle and fix its checksum, as a careless (or hostile) tool would."""
    from embedder.bundle import sha256_file

    writer(path / name)
    edit_manifest(path, lambda manifest: manifest["files"][name].update(sha256=sha256_file(path / name)))
