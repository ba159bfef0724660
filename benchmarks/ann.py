"""Approximate search for large catalogues: recall@10 and speed of HNSW and IVF against exact search.

    .venv/bin/python benchmarks/ann.py --movies 100k          # or 1M (the issue's target size; long)

Catalogue: movie rows that look like trained embeddings, not i.i.d. noise (on
which no index beats brute force): clustered directions in a low-dimensional
subspace of d=64, norms and biases that grow with log-popularity, bias
augmented as the product indexes them (``embedder.model.MFModel.item_vectors``:
d+2 columns). Queries: user rows drawn the same way (``user_vectors``).

For each index, built with the product's own code (``search.index.build_index``
and the settings ``python -m search build --index hnsw|ivf`` uses), the search
depth (HNSW ``efSearch``, IVF ``nprobe``) runs up a ladder; each depth reports
recall@10 against exact search on the same queries, queries per second for
single queries and for one batch, beside the build time and the serialised size.
The target (issue "Large catalogues and batch export"): **recall@10 ≥ 0.95 at ≥
20x the exact QPS on 1M movies**; the table marks the first depth that reaches
the recall and its speed-up, the depth ``build`` would choose.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402

from embedder.model import MFModel  # noqa: E402
from search.index import IndexConfig, apply_params, build_index, index_bytes, recall_at  # noqa: E402

DIM, SUBSPACE, CLUSTERS, K = 64, 16, 200, 10
SIZES = {"100k": 100_000, "1M": 1_000_000}


def catalogue(n_movies: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bias-augmented movie rows and user queries shaped like a trained model's."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(DIM, SUBSPACE)))[0]  # a 16-dimensional subspace of R^64
    centres = rng.normal(size=(CLUSTERS, SUBSPACE))
    popularity = rng.lognormal(0.0, 1.5, n_movies)
    scale = 0.3 + 0.2 * np.log1p(popularity)  # popular movies have longer vectors
    labels = rng.integers(0, CLUSTERS, n_movies)
    inner = centres[labels] + 0.5 * rng.normal(size=(n_movies, SUBSPACE))
    movies = (inner @ basis.T + 0.05 * rng.normal(size=(n_movies, DIM))) * scale[:, None] / np.sqrt(SUBSPACE)
    biases = 0.3 * np.log1p(popularity) - 0.5 + 0.2 * rng.normal(size=n_movies)
    users = (rng.normal(size=(n_queries, SUBSPACE)) @ basis.T) * 0.6 / np.sqrt(SUBSPACE)
    user_biases = 0.3 * rng.normal(size=n_queries)
    as32 = lambda array: array.astype(np.float32)  # noqa: E731
    model = MFModel(3.5, as32(users), as32(movies), as32(user_biases), as32(biases), (0.5, 5.0))
    return model.item_vectors(), model.user_vectors()


def qps(index: faiss.Index, queries: np.ndarray, single: int) -> tuple[float, float]:
    """Queries per second one at a time (the first ``single``) and as one batch."""
    started = time.perf_counter()
    for q in queries[:single]:
        index.search(q[None, :], K)
    one = single / (time.perf_counter() - started)
    started = time.perf_counter()
    index.search(queries, K)
    return one, len(queries) / (time.perf_counter() - started)


def ladder(index: faiss.Index) -> list[dict]:
    if isinstance(index, faiss.IndexHNSW):
        return [{"efSearch": ef} for ef in (16, 32, 64, 128, 256, 512)]
    if isinstance(index, faiss.IndexIVF):
        return [{"nprobe": p} for p in (1, 2, 4, 8, 16, 32, 64, 128) if p <= index.nlist]
    return [{}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", choices=list(SIZES), default="100k")
    parser.add_argument(
        "--queries", type=int, default=1000, help="queries for recall and batch QPS (default: %(default)s)"
    )
    parser.add_argument(
        "--single", type=int, default=200, help="queries timed one at a time (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n = SIZES[args.movies]
    items, queries = catalogue(n, args.queries, args.seed)
    print(
        f"{n:,} movies x d={items.shape[1]} (bias augmented), {args.queries} queries, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads"
    )
    exact = build_index(items, IndexConfig(kind="flat"))
    _, truth = exact.search(queries, K)
    flat_one, flat_batch = qps(exact, queries, args.single)
    print(
        f"{'index':<6} {'depth':<14} {'recall@10':>9} {'QPS 1-by-1':>11} {'x exact':>8} {'QPS batch':>10} {'x exact':>8}  build s, size MiB"
    )
    print(
        f"{'flat':<6} {'-':<14} {1.0:>9.4f} {flat_one:>11,.0f} {1.0:>8.2f} {flat_batch:>10,.0f} {1.0:>8.2f}  0, {len(index_bytes(exact)) / 2**20:.0f}"
    )
    for kind in ("hnsw", "ivf"):
        started = time.perf_counter()
        index = build_index(items, IndexConfig(kind=kind))
        built, size = time.perf_counter() - started, len(index_bytes(index)) / 2**20
        chosen = False
        for params in ladder(index):
            apply_params(index, params)
            _, found = index.search(queries, K)
            recall = recall_at(found, truth)
            one, batch = qps(index, queries, args.single)
            mark = ""
            if recall >= 0.95 and not chosen:
                chosen, mark = True, "  <- first at recall >= 0.95"
            depth = ", ".join(f"{k} {v}" for k, v in params.items())
            print(
                f"{kind:<6} {depth:<14} {recall:>9.4f} {one:>11,.0f} {one / flat_one:>8.2f} {batch:>10,.0f} {batch / flat_batch:>8.2f}  {built:.0f}, {size:.0f}{mark}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
