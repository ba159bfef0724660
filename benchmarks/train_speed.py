"""Training speed on MovieLens 100K: wall time and ratings/s per epoch.

Runs the default training (``python -m embedder train``'s settings) on the
canonical split and prints the time per epoch and the throughput. When the
``bench`` extra is installed, Surprise's SVD and Cornac's biased MF are timed on
the same training part in the same run, and the ratio is printed (absolute times
on a shared machine drift; ratios measured together do not).

    .venv/bin/python benchmarks/train_speed.py [--epochs N] [--repeat N]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from embedder.config import TrainConfig  # noqa: E402
from embedder.data import load_ratings  # noqa: E402
from embedder.split import canonical_split  # noqa: E402
from embedder.train import train  # noqa: E402
from embedder.vocab import Vocabulary  # noqa: E402


def time_ours(train_part, users, movies, scale, epochs: int) -> dict:
    """Fit with the default config for a fixed number of epochs (no early stop)."""
    config = TrainConfig(epochs=epochs, patience=epochs)
    result = train(train_part, config, users, movies, scale, progress=False)
    per_epoch = result.history["seconds"].to_numpy()
    n_fit = int(round(len(train_part) * (1 - config.val_fraction)))
    return {
        "name": f"this project (Adam, d={config.dim})",
        "epochs": len(per_epoch),
        "seconds": float(per_epoch.sum()),
        "per_epoch": float(np.median(per_epoch)),
        "ratings_per_s": n_fit / float(np.median(per_epoch)),
    }


def time_surprise(train_part, epochs: int) -> dict | None:
    """Surprise SVD for the same number of epochs, when installed."""
    try:
        from surprise import SVD, Dataset, Reader
    except ImportError:
        return None
    frame = train_part[["user_id", "movie_id", "rating"]]
    data = Dataset.load_from_df(frame, Reader(rating_scale=(1, 5))).build_full_trainset()
    start = time.perf_counter()
    SVD(n_factors=64, n_epochs=epochs, random_state=0).fit(data)
    seconds = time.perf_counter() - start
    return {"name": "Surprise SVD (d=64)", "epochs": epochs, "seconds": seconds, "per_epoch": seconds / epochs, "ratings_per_s": len(frame) * epochs / seconds}


def time_cornac(train_part, epochs: int) -> dict | None:
    """Cornac biased MF for the same number of epochs, when installed."""
    try:
        import cornac
    except ImportError:
        return None
    triples = list(zip(train_part["user_id"].astype(str), train_part["movie_id"].astype(str), train_part["rating"].astype(float)))
    data = cornac.data.Dataset.from_uir(triples, seed=0)
    model = cornac.models.MF(k=64, max_iter=epochs, learning_rate=0.01, lambda_reg=0.02, use_bias=True, early_stop=False, verbose=False, seed=0)
    start = time.perf_counter()
    model.fit(data)
    seconds = time.perf_counter() - start
    return {"name": "Cornac MF (k=64)", "epochs": epochs, "seconds": seconds, "per_epoch": seconds / epochs, "ratings_per_s": len(triples) * epochs / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15, help="epochs to time (default: %(default)s)")
    args = parser.parse_args()

    data = load_ratings(progress=False)
    train_part, _ = canonical_split(data.ratings)
    users = Vocabulary.from_values(data.ratings["user_id"])
    movies = Vocabulary.from_values(data.ratings["movie_id"])

    start = time.perf_counter()
    rows = [time_ours(train_part, users, movies, data.rating_scale, args.epochs)]
    ours_wall = time.perf_counter() - start
    rows += [row for row in (time_surprise(train_part, args.epochs), time_cornac(train_part, args.epochs)) if row]

    print(f"ML-100K training part: {len(train_part):,} ratings; {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"{'model':<34} {'epochs':>6} {'total s':>8} {'s/epoch':>8} {'ratings/s':>11} {'time vs ours':>12}")
    ours = rows[0]["per_epoch"]
    for row in rows:
        print(f"{row['name']:<34} {row['epochs']:>6} {row['seconds']:>8.2f} {row['per_epoch']:>8.3f} {row['ratings_per_s']:>11,.0f} {row['per_epoch'] / ours:>11.2f}x")
    if len(rows) == 1:
        print("(install the bench extra for Surprise and Cornac peers: pip install -e '.[bench]')")
    print(f"wall time including setup: {ours_wall:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
