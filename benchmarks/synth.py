"""MovieLens-shaped synthetic ratings with a known best achievable RMSE.

Users and movies have power-law activity and popularity (like the releases: every
user has at least 20 ratings, a few have thousands, most movies have a handful),
and each rating is the biased low-rank model ``μ + b_u + b_i + p_u·q_i`` (rank 8)
plus Gaussian noise, rounded to half stars and clipped to 0.5..5. The RMSE of the
true model's (clipped) predictions against the ratings, the *oracle RMSE*, is the
floor no method can beat on average; it is printed and written beside the files.

The files use the ml-latest layout (``ratings.csv`` with ``userId,movieId,rating,
timestamp`` sorted by user, ``movies.csv`` with ``movieId,title,genres``), so they
go through the same loader as a real release (``python -m embedder train --data DIR``).
Sizes follow ML-25M's shape: ``--ratings 25M`` gives 162,541 users and 59,047
movies, smaller sizes scale both counts down in proportion.

    .venv/bin/python benchmarks/synth.py --ratings 25M --out /tmp/synth-25m
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ML25M_RATINGS, ML25M_USERS, ML25M_MOVIES = 25_000_095, 162_541, 59_047
GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
RANK = 8
MIN_USER_RATINGS = 20


@dataclass
class Synthetic:
    """Generated ratings (rows sorted by user) and the truth behind them."""

    users: np.ndarray  # int32 user ids (1-based)
    movies: np.ndarray  # int32 movie ids (1-based)
    ratings: np.ndarray  # float32, half stars in 0.5..5
    timestamps: np.ndarray  # int64
    genres: list[str]  # per movie id - 1
    oracle_rmse: float


def parse_count(text: str) -> int:
    """``'25M'`` -> 25,000,000; ``'100k'`` -> 100,000; plain digits as they are."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (e.g. 2M, 500k, 100000)")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    value = int(float(match.group(1)) * scale)
    if value < 1_000:
        raise argparse.ArgumentTypeError(f"at least 1,000 ratings, got {text!r}")
    return value


def shape_for(n_ratings: int) -> tuple[int, int]:
    """(users, movies) in ML-25M's proportions for ``n_ratings`` ratings."""
    fraction = n_ratings / ML25M_RATINGS
    users = max(50, round(ML25M_USERS * fraction))
    movies = max(100, round(ML25M_MOVIES * fraction))
    return users, movies


def _user_counts(n_users: int, n_movies: int, n_ratings: int, rng: np.random.Generator) -> np.ndarray:
    """Ratings per user: at least 20, a Pareto tail, summing to ``n_ratings``."""
    floor = min(MIN_USER_RATINGS, max(1, n_ratings // n_users))
    weights = rng.pareto(1.2, n_users) + 0.05
    extra = n_ratings - floor * n_users
    cap = max(floor, n_movies // 3)  # nobody rates everything
    counts = floor + np.minimum(np.floor(weights / weights.sum() * extra), cap - floor).astype(np.int64)
    short = n_ratings - counts.sum()
    while short > 0:  # hand out what the cap and the rounding left, to users below the cap
        room = np.flatnonzero(counts < cap)
        take = rng.choice(room, size=min(short, len(room)), replace=False)
        counts[take] += 1
        short = n_ratings - counts.sum()
    return counts


def _pairs(
    counts: np.ndarray, popularity: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, movie) pairs, ``counts[u]`` per user, movies drawn by popularity.

    Draw with replacement and drop repeats for a few rounds; the heavy users still
    short after that (the rare movies they need come slowly) get an exact weighted
    draw without replacement (Efraimidis-Spirakis keys), one user at a time.
    """
    n_movies = len(popularity)
    cdf = np.cumsum(popularity / popularity.sum())
    need = counts.copy()
    keys = np.empty(0, dtype=np.int64)
    for _ in range(4):
        # Ask for a third more than is missing: the repeats of popular movies are dropped.
        users = np.repeat(np.arange(len(counts), dtype=np.int64), need + need // 3 + 2 * (need > 0))
        movies = np.minimum(np.searchsorted(cdf, rng.random(len(users))), n_movies - 1)
        keys = np.unique(np.concatenate([keys, users * n_movies + movies]))
        keys = _at_most(keys, counts, n_movies, rng)
        need = counts - np.bincount(keys // n_movies, minlength=len(counts))
        if not need.any():
            break
    short = np.flatnonzero(need)
    keys = keys[~np.isin(keys // n_movies, short)]
    log_weights = np.log(popularity)
    exact = [
        u * n_movies
        + np.argpartition(np.log(-np.log(rng.random(n_movies))) - log_weights, counts[u])[: counts[u]]
        for u in short
    ]
    keys = np.sort(np.concatenate([keys, *exact]))
    order = rng.permutation(len(keys))  # within a user the movies come in random order
    keys = keys[order][np.argsort(keys[order] // n_movies, kind="stable")]
    return (keys // n_movies).astype(np.int32), (keys % n_movies).astype(np.int32)


def _at_most(keys: np.ndarray, counts: np.ndarray, n_movies: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted ``keys`` with at most ``counts[u]`` per user, a random subset where there are more."""
    have = np.bincount(keys // n_movies, minlength=len(counts))
    if not (have > counts).any():
        return keys
    keys = keys[rng.permutation(len(keys))]
    keys = keys[np.argsort(keys // n_movies, kind="stable")]
    owner = keys // n_movies
    rank = np.arange(len(keys)) - np.searchsorted(owner, owner)
    return np.sort(keys[rank < counts[owner]])


def generate(n_ratings: int, seed: int = 0, noise: float = 0.75) -> Synthetic:
    """Ratings in ML-25M's proportions from a rank-8 biased model plus noise."""
    rng = np.random.default_rng(seed)
    n_users, n_movies = shape_for(n_ratings)
    n_ratings = min(n_ratings, n_users * n_movies // 3)
    counts = _user_counts(n_users, n_movies, n_ratings, rng)
    popularity = rng.lognormal(
        0.0, 2.0, n_movies
    )  # top movie ~1% of all ratings, median movie ~1/7 of the mean
    u, m = _pairs(counts, popularity, rng)

    # Truth: popular movies rate a little higher, as in MovieLens.
    movie_bias = rng.normal(0.0, 0.4, n_movies) + 0.08 * (np.log(popularity) - np.log(popularity).mean())
    user_bias = rng.normal(0.0, 0.35, n_users)
    P = rng.normal(0.0, 1.0, (n_users, RANK)) * (0.45 / np.sqrt(RANK)) ** 0.5
    Q = rng.normal(0.0, 1.0, (n_movies, RANK)) * (0.45 / np.sqrt(RANK)) ** 0.5
    Q *= np.sqrt(2.0)  # movies carry more of the interaction signal than users
    mean = np.empty(len(u), dtype=np.float64)
    block = 1 << 21
    for start in range(0, len(u), block):
        uu, mm = u[start : start + block], m[start : start + block]
        mean[start : start + block] = (
            3.55 + user_bias[uu] + movie_bias[mm] + np.einsum("ij,ij->i", P[uu], Q[mm])
        )
    observed = np.clip(np.round((mean + rng.normal(0.0, noise, len(mean))) * 2) / 2, 0.5, 5.0)
    oracle = float(np.sqrt(np.mean((np.clip(mean, 0.5, 5.0) - observed) ** 2)))

    dims = np.argmax(Q[:, :4], axis=1)  # genres follow the first factors, loosely
    genres = [
        f"{GENRES[(2 * d) % len(GENRES)]}|{GENRES[(2 * d + 1 + i % 3) % len(GENRES)]}"
        for i, d in enumerate(dims)
    ]
    timestamps = 1_000_000_000 + rng.integers(0, 600_000_000, len(u), dtype=np.int64)
    return Synthetic(u + 1, m + 1, observed.astype(np.float32), timestamps, genres, oracle)


def write(data: Synthetic, out: Path) -> None:
    """Write ``ratings.csv``, ``movies.csv`` (ml-latest layout) and ``truth.json``."""
    out.mkdir(parents=True, exist_ok=True)
    ratings = pa.table(
        {"userId": data.users, "movieId": data.movies, "rating": data.ratings, "timestamp": data.timestamps}
    )
    pacsv.write_csv(ratings, out / "ratings.csv")
    movie_ids = np.arange(1, len(data.genres) + 1, dtype=np.int32)
    movies = pa.table(
        {
            "movieId": movie_ids,
            "title": [f"Synthetic movie {i} (2000)" for i in movie_ids],
            "genres": data.genres,
        }
    )
    pacsv.write_csv(movies, out / "movies.csv")
    truth = {
        "ratings": len(data.ratings),
        "users": int(data.users.max()),
        "movies": len(data.genres),
        "rank": RANK,
        "oracle_rmse": data.oracle_rmse,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")


def ensure(n_ratings: int, out: Path, seed: int = 0) -> dict:
    """Generate into ``out`` unless a finished set of the same size and seed is there; its truth."""
    marker = out / "truth.json"
    if marker.exists():
        truth = json.loads(marker.read_text())
        if truth.get("requested") == n_ratings and truth.get("seed") == seed:
            return truth
    data = generate(n_ratings, seed)
    write(data, out)
    truth = json.loads(marker.read_text()) | {"requested": n_ratings, "seed": seed}
    marker.write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ratings",
        type=parse_count,
        default=parse_count("2M"),
        help="how many ratings (e.g. 2M, 25M; default 2M)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder to write ratings.csv, movies.csv and truth.json into"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    truth = ensure(args.ratings, args.out, args.seed)
    print(
        f"{args.out}: {truth['ratings']:,} ratings, {truth['users']:,} users x {truth['movies']:,} movies, "
        f"oracle RMSE {truth['oracle_rmse']:.4f} ({time.perf_counter() - started:.1f}s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
