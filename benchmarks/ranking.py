"""Top-10 quality against ranking peers, same split, same protocol, same run.

Protocol (the project's own, ``python -m embedder evaluate``): the canonical split
of ``--data``; a test rating >= 4 is relevant; movies a user rated in training are
never recommended; users with at least one relevant test movie are scored
(a sample of ``--max-users`` above that); NDCG@10 with binary relevance, Recall@10,
and catalogue coverage of the top-10 lists.

Peers, each fitted on the training part, their settings chosen on a validation part
carved from training (never on test):
* most popular (training rating count);
* item-kNN: cosine similarity of who rated what, all neighbours;
* EASE (Steck 2019), lambda from a grid (skipped above ``--max-ease-movies``: its
  dense movies x movies inverse does not fit);
* implicit's ALS, factors / regularization / alpha from a grid.
This project: the bundle of ``python -m embedder train --data ... --out`` (trained
here unless ``--bundle`` names one trained on the same data), scored from its
``.npy`` files in both orders: relevance (the default) and predicted rating.

    .venv/bin/python benchmarks/ranking.py [--data ml-100k|PATH] [--bundle DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embedder.data import canonical_split, load_ratings, validation_split  # noqa: E402

K = 10


def matrix(frame: pd.DataFrame, users: pd.Index, movies: pd.Index) -> sp.csr_matrix:
    """Binary users x movies CSR of the frame's rows (ids outside the vocabularies dropped)."""
    rows, cols = users.get_indexer(frame["user_id"]), movies.get_indexer(frame["movie_id"])
    keep = (rows >= 0) & (cols >= 0)
    values = np.ones(int(keep.sum()), np.float32)
    out = sp.csr_matrix((values, (rows[keep], cols[keep])), shape=(len(users), len(movies)))
    out.data[:] = 1.0
    return out


def top10_figures(score, seen: sp.csr_matrix, relevant: sp.csr_matrix, users: np.ndarray, block=1024) -> dict:
    """NDCG@10, Recall@10 and coverage of ``score(user_rows) -> scores`` on ``users``."""
    discounts = 1.0 / np.log2(np.arange(K) + 2.0)
    ndcg, recall, shown = [], [], set()
    for start in range(0, len(users), block):
        rows = users[start : start + block]
        scores = np.array(score(rows), dtype=np.float32)
        rated = seen[rows]
        scores[np.repeat(np.arange(len(rows)), np.diff(rated.indptr)), rated.indices] = -np.inf
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1, kind="stable"), 1)
        truth = relevant[rows].toarray() > 0
        hits, n_relevant = np.take_along_axis(truth, top, 1), truth.sum(1)
        ndcg.append((hits @ discounts) / np.cumsum(discounts)[np.minimum(n_relevant, K) - 1])
        recall.append(hits.sum(1) / n_relevant)
        shown.update(np.unique(top).tolist())
    return {
        "ndcg": float(np.concatenate(ndcg).mean()),
        "recall": float(np.concatenate(recall).mean()),
        "coverage": len(shown) / seen.shape[1],
    }


def line(name: str, figures: dict, settings) -> str:
    return (
        f"  {name:<38} {figures['ndcg']:.4f}  {figures['recall']:.4f}  {figures['coverage']:.3f}  {settings}"
    )


def scored_users(relevant: sp.csr_matrix, limit: int, seed: int = 0) -> np.ndarray:
    users = np.flatnonzero(np.diff(relevant.indptr))
    return np.sort(np.random.default_rng(seed).permutation(users)[:limit]) if len(users) > limit else users


# Peers: each returns score(user_rows) for a training matrix X.


def popularity(X, **_):
    counts = np.asarray(X.sum(axis=0)).ravel()
    return lambda rows: np.broadcast_to(counts, (len(rows), len(counts)))


def item_knn(X, **_):
    norms = np.sqrt(np.asarray(X.sum(axis=0)).ravel()) + 1e-9
    normalised = (X @ sp.diags(1.0 / norms)).tocsc()
    similarity = (normalised.T @ normalised).tocsr()
    similarity.setdiag(0)
    return lambda rows: (X[rows] @ similarity).toarray()


def ease(X, lam, **_):
    gram = (X.T @ X).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    inverse = np.linalg.inv(gram)
    weights = (-inverse / np.diag(inverse)).astype(np.float32)
    weights[np.diag_indices_from(weights)] = 0
    return lambda rows: X[rows] @ weights


def als(X, factors, regularization, alpha, **_):
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    model = AlternatingLeastSquares(
        factors=factors, regularization=regularization, alpha=alpha, iterations=15, random_state=0
    )
    with threadpool_limits(1, "blas"):  # implicit's advice: its own threads, not BLAS's
        model.fit(X, show_progress=False)
    users, items = model.user_factors, model.item_factors
    return lambda rows: users[rows] @ items.T


PEERS = {
    "most popular": (popularity, [{}]),
    "item-kNN cosine": (item_knn, [{}]),
    "EASE": (ease, [{"lam": lam} for lam in (100, 200, 300, 500, 1000, 2000)]),
    "implicit ALS": (
        als,
        [
            {"factors": f, "regularization": r, "alpha": a}
            for f, r, a in itertools.product((32, 64, 128), (1.0, 10.0, 30.0), (1.0, 5.0))
        ],
    ),
}


def bundle_scorers(bundle: Path, users: pd.Index, movies: pd.Index) -> dict:
    """This project's two orders, from the bundle's ``.npy`` files, on the benchmark's rows."""
    load = lambda name: np.load(bundle / name, allow_pickle=False)
    manifest = json.loads((bundle / "manifest.json").read_text())
    user_rows = pd.Index(load("user_ids.npy")).get_indexer(users)
    movie_rows = pd.Index(load("movie_ids.npy")).get_indexer(movies)
    if (user_rows < 0).any() or (movie_rows < 0).any():
        raise SystemExit(f"{bundle} was not trained on this data: ids are missing")
    p, q = load("user_embeddings.npy")[user_rows], load("movie_embeddings.npy")[movie_rows]
    bu, bi = load("user_biases.npy")[user_rows], load("movie_biases.npy")[movie_rows]
    mu = np.float32(manifest["global_mean"])
    rating = lambda rows: p[rows] @ q.T + (mu + bu[rows])[:, None] + bi
    scorers = {"this project, by predicted rating": rating}
    if "relevance" in manifest:
        watch_users = load("relevance_user_factors.npy")[user_rows]
        watch_movies = load("relevance_movie_factors.npy")[movie_rows]
        beta = manifest["relevance"]["rating_weight"]
        scorers["this project, by relevance (default)"] = lambda rows: (
            watch_users[rows] @ watch_movies.T + beta * rating(rows)
        )
    chosen = {
        key: manifest.get("relevance", {}).get(key) for key in ("rank", "regularization", "rating_weight")
    }
    return scorers, chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-100k", help="'ml-100k' or a MovieLens release / CSV path")
    parser.add_argument("--bundle", type=Path, help="a bundle trained on --data (default: train one here)")
    parser.add_argument("--max-users", type=int, default=5000, help="users scored at most (a fixed sample)")
    parser.add_argument("--max-ease-movies", type=int, default=20000, help="skip EASE above this many movies")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(PEERS), help="peers to leave out")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    data = load_ratings(args.data, progress=False)
    train, test = canonical_split(data.ratings)
    fit_part, validation = validation_split(train, 0.1, 0)
    users, movies = (
        pd.Index(np.unique(data.ratings["user_id"])),
        pd.Index(np.unique(data.ratings["movie_id"])),
    )
    X, X_fit = matrix(train, users, movies), matrix(fit_part, users, movies)
    relevant = matrix(test[test["rating"] >= 4], users, movies)
    relevant_val = matrix(validation[validation["rating"] >= 4], users, movies)
    test_users, val_users = scored_users(relevant, args.max_users), scored_users(relevant_val, args.max_users)
    print(
        f"{args.data}: {len(users):,} users, {len(movies):,} movies, {len(train):,} training ratings; "
        f"{len(test_users):,} test users scored"
    )

    rows = []
    for name, (make, grid) in PEERS.items():
        if name in args.skip or (make is ease and len(movies) > args.max_ease_movies):
            continue
        started = time.perf_counter()
        chosen = grid[0]
        if len(grid) > 1:
            on_validation = [
                (top10_figures(make(X_fit, **s), X_fit, relevant_val, val_users)["ndcg"], i)
                for i, s in enumerate(grid)
            ]
            chosen = grid[max(on_validation)[1]]
        figures = top10_figures(make(X, **chosen), X, relevant, test_users)
        rows.append({"model": name, "settings": chosen, **figures, "seconds": time.perf_counter() - started})
        print(line(name, figures, chosen))

    with tempfile.TemporaryDirectory() as scratch:
        bundle = args.bundle
        if bundle is None:
            bundle = Path(scratch) / "bundle"
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "embedder",
                    "train",
                    "--data",
                    args.data,
                    "--out",
                    str(bundle),
                    "--quiet",
                ],
                check=True,
            )
            print(f"  (trained this project's bundle in {time.perf_counter() - started:.1f} s)")
        scorers, settings = bundle_scorers(bundle, users, movies)
        for name, score in scorers.items():
            figures = top10_figures(score, X, relevant, test_users)
            rows.append({"model": name, "settings": settings, **figures})
            print(line(name, figures, settings))

    peers = [row for row in rows if not row["model"].startswith("this project")]
    ours = next((row for row in rows if row["model"].endswith("(default)")), None)
    if peers and ours:
        best = max(peers, key=lambda row: row["ndcg"])
        best_recall = max(row["recall"] for row in peers)
        print(
            f"achieved: default NDCG@10 {ours['ndcg']:.4f} = {ours['ndcg'] / best['ndcg']:.3f}x the best "
            f"peer "
            f"({best['model']}, {best['ndcg']:.4f}); Recall@10 {ours['recall']:.4f} against the best peer's "
            f"{best_recall:.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
