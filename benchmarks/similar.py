""" "Movies like this" (search/similar.py): genre agreement by blend weight, and what it costs.

Quality: ``search.evaluate.neighbour_agreement`` (top 10, mean genre Jaccard
against random neighbours, seed 42 as in the manifest) with
``search.similar.EMBEDDING_WEIGHT`` set to each weight in turn: 1 is the cosine of
``q_i`` alone (what "movies like this" was before), 0 who rated what alone.

Cost (``--cost``): the memory of the movie -> raters index (``Recommender.warm``),
one ``similar`` call for the most rated and the median movie (best of 5), and
``neighbour_agreement`` at both floors with the weight in use.

    .venv/bin/python benchmarks/similar.py --bundle DIR [--cost]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import search.similar
from embedder.bundle import Bundle
from search import Recommender
from search.evaluate import DEFAULT_MIN_RATINGS, genre_sets, neighbour_agreement
from search.similar import Similarity, neighbour_table

SEED = 42
WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)


def rss_mib() -> float:
    """This process's resident memory."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--cost", action="store_true", help="time and memory instead of the weight sweep")
    args = parser.parse_args()
    bundle = Bundle.load(args.bundle)
    genres = genre_sets(bundle.movies["genres"])
    counts = bundle.movies["rating_count"].to_numpy()
    # A new Similarity per call: the weight is read when scoring, and each sweep step sets it.
    agreement = lambda floor: neighbour_agreement(
        Similarity(bundle.model.movie_embeddings, bundle.seen), genres, counts >= floor, seed=SEED
    )
    if not args.cost:
        chosen = search.similar.EMBEDDING_WEIGHT
        print(f"{'weight of cos(q)':>16}  {'floor 20: model / random = ratio':>34}  {'floor 0: ratio':>14}")
        for weight in WEIGHTS:
            search.similar.EMBEDDING_WEIGHT = weight
            high, low = agreement(DEFAULT_MIN_RATINGS), agreement(0)
            mark = "  (in use)" if weight == chosen else ""
            print(
                f"{weight:>16g}  {high['model']:.4f} / {high['random']:.4f} = {high['model'] / high['random']:.3f}x"
                f"  {low['model'] / low['random']:>13.3f}x{mark}"
            )
        return
    rec = Recommender(bundle)
    before, started = rss_mib(), time.perf_counter()
    rec.warm()
    index = sum(a.nbytes for a in rec._similarity._raters)
    print(
        f"warm: {time.perf_counter() - started:.2f} s, RSS +{rss_mib() - before:.0f} MiB "
        f"(raters index {index / 2**20:.0f} MiB, {bundle.seen.nnz:,} training ratings)"
    )
    rated = np.flatnonzero(counts > 0)
    rated = rated[np.argsort(-counts[rated], kind="stable")]
    for name, row in (("most rated", rated[0]), ("median", rated[len(rated) // 2])):
        movie, times = int(bundle.movie_ids[row]), []
        for _ in range(5):
            started = time.perf_counter()
            rec.similar(movie, k=10)
            times.append(time.perf_counter() - started)
        print(f"similar, {name} movie ({counts[row]:,} ratings): {min(times) * 1e3:.1f} ms")
    started = time.perf_counter()
    table = neighbour_table(rec._similarity)
    print(
        f"neighbour_table (what search build stores): {time.perf_counter() - started:.1f} s, "
        f"{sum(a.nbytes for a in table) / 2**20:.0f} MiB"
    )
    for floor in (0, DEFAULT_MIN_RATINGS):
        started = time.perf_counter()
        figures = agreement(floor)
        print(
            f"neighbour_agreement, floor {floor}: {time.perf_counter() - started:.1f} s ({figures['movies']:,} queries)"
        )


if __name__ == "__main__":
    main()
