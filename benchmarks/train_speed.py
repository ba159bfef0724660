"""Training speed on MovieLens 100K: wall time and ratings/s per pass.

Times a pass (a Gibbs sweep, an Adam epoch) of this project's two methods on the
canonical split, prints the throughput and the wall time of the default training. When the
``bench`` extra is installed, Surprise's SVD and Cornac's biased MF are timed on
the same training part in the same run, and the ratio is printed (absolute times
on a shared machine drift; ratios measured together do not).

    .venv/bin/python benchmarks/train_speed.py [--epochs N]
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


def time_ours(train_part, users, movies, scale, method: str, passes: int) -> dict:
    """One validation run of ``method`` for a fixed number of passes (no refit, no early stop).

    A pass is a Gibbs sweep or an Adam epoch: each visits every fitted rating once.
    """
    config = TrainConfig(method=method, sweeps=passes, epochs=passes, patience=passes, refit=False)
    result = train(train_part, config, users, movies, scale, progress=False)
    per_pass = result.history["seconds"].to_numpy()
    n_fit = int(round(len(train_part) * (1 - config.val_fraction)))
    label = f"sample d={config.sample_dim}" if method == "gibbs" else f"d={config.dim}"
    return {
        "name": f"this project, {method} ({label})",
        "epochs": len(per_pass),
        "seconds": float(per_pass.sum()),
        "per_epoch": float(np.median(per_pass)),
        "ratings_per_s": n_fit / float(np.median(per_pass)),
    }


def time_default(data) -> float:
    """Wall time of the default ``train`` (validation run + refit), as ``make run`` does it."""
    train_part, _ = canonical_split(data.ratings)
    users = Vocabulary.from_values(data.ratings["user_id"])
    movies = Vocabulary.from_values(data.ratings["movie_id"])
    start = time.perf_counter()
    train(train_part, TrainConfig(), users, movies, data.rating_scale, progress=False)
    return time.perf_counter() - start


def fit_surprise_svd(train_part, **options) -> float | None:
    """Seconds Surprise's SVD takes to fit the training part with ``options``; None
    when Surprise is not installed."""
    try:
        from surprise import SVD, Dataset, Reader
    except ImportError:
        return None
    frame = train_part[["user_id", "movie_id", "rating"]]
    data = Dataset.load_from_df(frame, Reader(rating_scale=(1, 5))).build_full_trainset()
    start = time.perf_counter()
    SVD(random_state=0, **options).fit(data)
    return time.perf_counter() - start


def time_surprise(train_part, epochs: int) -> dict | None:
    """Surprise SVD for the same number of epochs, when installed."""
    seconds = fit_surprise_svd(train_part, n_factors=64, n_epochs=epochs)
    if seconds is None:
        return None
    return {"name": "Surprise SVD (d=64)", "epochs": epochs, "seconds": seconds, "per_epoch": seconds / epochs, "ratings_per_s": len(train_part) * epochs / seconds}


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
    parser.add_argument("--epochs", type=int, default=30, help="passes (sweeps or epochs) to time (default: %(default)s)")
    args = parser.parse_args()

    data = load_ratings(progress=False)
    train_part, _ = canonical_split(data.ratings)
    users = Vocabulary.from_values(data.ratings["user_id"])
    movies = Vocabulary.from_values(data.ratings["movie_id"])

    # The default training first: peers that leave OpenMP threads spinning after
    # they return (Cornac) slowed it by a second when it ran last.
    ours_default = time_default(data)
    rows = [time_ours(train_part, users, movies, data.rating_scale, method, args.epochs) for method in ("gibbs", "adam")]
    rows += [row for row in (time_surprise(train_part, args.epochs), time_cornac(train_part, args.epochs)) if row]

    print(f"ML-100K training part: {len(train_part):,} ratings; {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"{'model (one pass = a sweep or an epoch)':<40} {'passes':>6} {'total s':>8} {'s/epoch':>8} {'ratings/s':>11} {'time vs ours':>12}")
    ours = rows[0]["per_epoch"]
    for row in rows:
        print(f"{row['name']:<40} {row['epochs']:>6} {row['seconds']:>8.2f} {row['per_epoch']:>8.3f} {row['ratings_per_s']:>11,.0f} {row['per_epoch'] / ours:>11.2f}x")
    if len(rows) == 1:
        print("(install the bench extra for Surprise and Cornac peers: pip install -e '.[bench]')")
    print(f"default training (python -m embedder train: validation run + refit, side by side): {ours_default:.1f}s")
    peer = fit_surprise_svd(train_part)  # its own defaults
    if peer is not None:
        print(f"Surprise SVD with its defaults (100 factors, 20 epochs, no model selection): {peer:.1f}s ({ours_default / peer:.2f}x ours)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
