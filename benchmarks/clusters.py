"""Which movie vectors make clusters that follow genres: NMI of K-Means labels with each movie's most
specific genre, beside the same labels shuffled, for several seeds (benchmarks/README.md, "Clusters").

    .venv/bin/python benchmarks/clusters.py --bundle DIR [--clusters 10] [--seeds 3]

Every space goes through the code ``search build`` uses (``kmeans_labels``, ``genre_nmi``); the spectral
ones are ``search.clusters.pattern_vectors`` with other powers of σ.
"""

from __future__ import annotations

import argparse

import numpy as np

from embedder import DEFAULT_BUNDLE
from embedder.bundle import Bundle
from search.clusters import PATTERN_DIMS, PATTERN_POWER, genre_nmi, kmeans_labels, pattern_vectors
from search.similar import unit_rows


def spaces(bundle: Bundle) -> dict:
    """Each candidate space as a function of the seed."""
    q = bundle.model.movie_embeddings
    found = {"q_i (the rating model; before)": lambda seed: q}
    relevance = bundle.relevance()
    if relevance is not None:
        scaled = relevance.movie_factors * relevance.shrinkage
        found["relevance V"] = lambda seed: relevance.movie_factors
        found["relevance V·D"] = lambda seed: scaled
        found["relevance V·D, first 32"] = lambda seed: scaled[:, :32]
        found["[q_i, V·D], each unit"] = lambda seed: np.hstack([unit_rows(q)[0], unit_rows(scaled)[0]])
    for power in (0.0, PATTERN_POWER, 0.25, 1.0):
        name = f"who rated what, {PATTERN_DIMS} dims, σ^{power:g}" + (
            " (in use)" if power == PATTERN_POWER else ""
        )
        found[name] = lambda seed, power=power: pattern_vectors(bundle.seen, seed=seed, power=power)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=DEFAULT_BUNDLE)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    bundle = Bundle.load(args.bundle)
    genres = bundle.movies["genres"]
    print(f"{args.clusters} clusters, seeds 0..{args.seeds - 1}")
    print("| clustered vectors | NMI, mean | range | shuffled labels |\n|---|---:|---:|---:|")
    for name, vectors in spaces(bundle).items():
        figures = [
            genre_nmi(kmeans_labels(vectors(seed), args.clusters, seed), genres, seed)
            for seed in range(args.seeds)
        ]
        nmi = np.array([f["nmi_genres"] for f in figures])
        shuffled = np.mean([f["nmi_random"] for f in figures])
        print(f"| {name} | {nmi.mean():.3f} | {nmi.min():.3f}–{nmi.max():.3f} | {shuffled:.3f} |", flush=True)


if __name__ == "__main__":
    main()
