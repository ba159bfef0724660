"""``python -m search build``: add the index, cosine index and clusters to a bundle.

Files added (atomically, with sha256 in the manifest, through
:func:`embedder.bundle.update_bundle`):

===================== ============================================================
item_vectors.npy      float32 ``(n_movies, d + 2)``: ``[q_i, b_i, 1]``
movie_index.faiss     the movie index over those rows (flat, hnsw or ivf)
cosine_index.faiss    ``IndexFlatIP`` over L2-normalised ``q_i`` (zero rows stay
                      zero), for tools that want a faiss index; the Recommender
                      recomputes these vectors at load (milliseconds) and
                      searches them with numpy, which is exact and as fast for
                      one query
cluster_labels.npy    int32 ``(n_movies,)``: the movie's cluster, or -1 for a movie
                      with a zero embedding (no training ratings), which is
                      not clustered (:mod:`search.clusters`)
clusters.json         one summary per cluster, over clustered movies only (see
                      :mod:`search.clusters`; labels are unique)
movie_map.npy         float32 ``(n_movies, 2)``: 2-D PCA for a cluster map
similar_movies.npy    int32 ``(n_movies, TABLE_WIDTH)``: each movie's most similar
                      movies (rows), best first, -1 padded
                      (:func:`search.similar.neighbour_table`), so "movies like
                      this" is a lookup instead of a count over every co-rater
similar_scores.npy    float32, the same shape: their similarities (``-inf`` padded)
===================== ============================================================

Manifest keys added: ``index`` (kind, metric, shape, search parameters,
measured recall@10), ``clusters`` (k, seed, silhouette, nmi_genres,
nmi_random, sizes, unclustered: the movies labelled -1, ...; sizes and figures
count clustered movies only) and ``similar`` (the table's files, width and blend
weight).

Tested in ``tests/search/test_build.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from embedder.bundle import Bundle, bytes_writer, json_writer, npy_writer, update_bundle
from embedder.model import MFModel
from search.clusters import UNCLUSTERED, check_clusters, cluster_quality, cluster_summaries, kmeans_labels, movie_map
from search.index import (
    COSINE_INDEX_FILE,
    INDEX_FILE,
    IndexConfig,
    build_index,
    index_bytes,
    tune_index,
)
from search.similar import EMBEDDING_WEIGHT, SIMILAR_FILES, Similarity, neighbour_table
from search.topk import BlockedTopK
from search.vectors import normalize_rows

DEFAULT_CLUSTERS = 10
RECALL_K = 10


def _recall_queries(model: MFModel, config: IndexConfig) -> np.ndarray:
    """A seeded sample of user query vectors for measuring recall."""
    users = model.user_vectors()
    rng = np.random.default_rng(config.seed)
    take = min(len(users), config.recall_queries)
    return users[np.sort(rng.choice(len(users), take, replace=False))]


def build(
    path: str | os.PathLike,
    n_clusters: int = DEFAULT_CLUSTERS,
    index: str | IndexConfig = "flat",
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Build the search files of the bundle at ``path`` and add them to it.

    Parameters
    ----------
    path:
        Bundle folder, or a link to one (``artifacts/current``).
    n_clusters:
        K-Means clusters, 1 to the number of movies with a non-zero embedding
        (movies without training ratings are not clustered).
    index:
        ``"flat"`` (exact, default), ``"hnsw"`` or ``"ivf"``, or an :class:`IndexConfig`.
    seed:
        Seeds K-Means, the silhouette sample, IVF training and the recall sample.
    log:
        Called with one line per step (the CLI prints them to stderr).

    Returns
    -------
    dict
        The manifest fields added: ``{"index": ..., "clusters": ...}``.
    """
    say = log or (lambda line: None)
    config = index if isinstance(index, IndexConfig) else IndexConfig(kind=index, seed=seed)
    bundle = Bundle.load(path)
    model = bundle.model
    n_movies = len(bundle.movie_ids)
    unit, zero = normalize_rows(model.movie_embeddings)
    n_clusters = check_clusters(n_clusters, zero)  # before the index: fail fast

    started = time.perf_counter()
    items = model.item_vectors()
    movie_index = build_index(items, config)
    queries = _recall_queries(model, config)
    k = min(RECALL_K, n_movies)
    exact, _ = BlockedTopK(items).search(queries, k)
    tuned = tune_index(movie_index, queries, exact, config.target_recall)
    say(f"index: {config.kind} over {n_movies:,} x {items.shape[1]} ({time.perf_counter() - started:.1f}s), {tuned}")

    cosine = faiss.IndexFlatIP(unit.shape[1])
    cosine.add(unit)

    started = time.perf_counter()
    labels = kmeans_labels(model.movie_embeddings, n_clusters, seed)
    summaries = cluster_summaries(labels, bundle.movies, n_clusters)
    quality = cluster_quality(model.movie_embeddings, labels, bundle.movies["genres"], seed)
    unclustered = int(np.count_nonzero(labels == UNCLUSTERED))
    say(
        f"clusters: k={n_clusters} ({time.perf_counter() - started:.1f}s), silhouette {quality['silhouette']}, "
        f"NMI with genres {quality['nmi_genres']} (random labelling {quality['nmi_random']}); "
        f"{unclustered:,} movies without training ratings not clustered (label {UNCLUSTERED})"
    )

    started = time.perf_counter()
    neighbours, similarities = neighbour_table(Similarity(model.movie_embeddings, bundle.seen))
    say(f"movies like this: the {neighbours.shape[1]} most similar of each movie ({time.perf_counter() - started:.1f}s)")

    manifest = {
        "index": {
            "kind": config.kind,
            "file": INDEX_FILE,
            "metric": "inner_product",
            "vectors": "item_vectors.npy: [q_i, b_i, 1]; query [p_u, 1, mu + b_u]; score = predicted rating",
            "n": int(n_movies),
            "dim": int(items.shape[1]),
            "params": {key: v for key, v in tuned.items() if not key.startswith("recall")},
            f"recall_at_{k}": tuned.get(f"recall_at_{k}", 1.0),
            "recall_queries": len(queries),
            "target_recall": config.target_recall if config.kind != "flat" else None,
            "cosine": {"file": COSINE_INDEX_FILE, "zero_norm_movies": int(zero.sum())},
        },
        "clusters": {
            "k": n_clusters,
            "seed": int(seed),
            "method": "scikit-learn KMeans on L2-normalised movie embeddings (n_init=5); "
            "movies with a zero embedding (no training ratings) are not clustered (label -1)",
            **quality,
            "sizes": np.bincount(labels[labels != UNCLUSTERED], minlength=n_clusters).tolist(),
            "unclustered": unclustered,
        },
        "similar": {
            "files": list(SIMILAR_FILES),
            "width": int(neighbours.shape[1]),
            "embedding_weight": EMBEDDING_WEIGHT,
        },
    }
    files = {
        "item_vectors.npy": npy_writer(items),
        INDEX_FILE: bytes_writer(index_bytes(movie_index)),
        COSINE_INDEX_FILE: bytes_writer(index_bytes(cosine)),
        "cluster_labels.npy": npy_writer(labels.astype(np.int32)),
        "clusters.json": json_writer(summaries),
        "movie_map.npy": npy_writer(movie_map(model.movie_embeddings, seed)),
        SIMILAR_FILES[0]: npy_writer(neighbours),
        SIMILAR_FILES[1]: npy_writer(similarities),
    }
    update_bundle(Path(path), files, manifest)
    return manifest
