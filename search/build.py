"""``python -m search build``: add the movie index, the cosine index, the clusters and the similar-movie
table to a bundle, in one new version (:func:`embedder.bundle.update_bundle`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from embedder.bundle import Bundle, bytes_writer, json_writer, npy_writer, update_bundle
from search.clusters import (
    KMEANS_INITS,
    UNCLUSTERED,
    cluster_quality,
    cluster_summaries,
    kmeans_labels,
    movie_map,
    pattern_vectors,
)
from search.index import COSINE_INDEX_FILE, INDEX_FILE, IndexConfig, build_index, index_bytes, tune_index
from search.similar import EMBEDDING_WEIGHT, SIMILAR_FILES, Similarity, neighbour_table, unit_rows
from search.topk import top_k

DEFAULT_CLUSTERS = 10
RECALL_K = 10
RECALL_QUERIES = 1000
"""Sampled users whose recall@10 against exact search is measured."""


def build(
    path: str | os.PathLike,
    n_clusters: int = DEFAULT_CLUSTERS,
    index: str | IndexConfig = "flat",
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Build the search files of the bundle at ``path`` and add them to it: ``n_clusters`` K-Means clusters
    of who rated what (:func:`search.clusters.pattern_vectors`; 1 to the number of movies with training
    ratings), the ``index`` (``"flat"``, ``"hnsw"``, ``"ivf"`` or an :class:`IndexConfig`), all seeded by
    ``seed``; ``log`` gets one line per step. Returns the manifest fields added."""
    say = log or (lambda line: None)
    config = index if isinstance(index, IndexConfig) else IndexConfig(kind=index, seed=seed)
    bundle = Bundle.load(path)
    model = bundle.model
    n_movies = len(bundle.movie_ids)
    unit, zero = unit_rows(model.movie_embeddings)

    started = time.perf_counter()
    took = lambda: f"{time.perf_counter() - started:.1f}s"  # noqa: E731
    vectors = pattern_vectors(bundle.seen, seed=seed)
    labels = kmeans_labels(vectors, n_clusters, seed)  # before the index: a bad n_clusters fails fast
    quality = cluster_quality(vectors, labels, bundle.movies["genres"], seed)
    say(
        f"clusters: k={n_clusters} of who rated what ({vectors.shape[1]} spectral dimensions, {took()}), "
        f"silhouette {quality['silhouette']}, "
        f"NMI with genres {quality['nmi_genres']} (random labelling {quality['nmi_random']}); "
        f"{quality['unclustered']:,} movies without training ratings not clustered (label {UNCLUSTERED})"
    )
    started = time.perf_counter()
    items, users = model.item_vectors(), model.user_vectors()
    movie_index = build_index(items, config)
    rng = np.random.default_rng(config.seed)
    queries = users[np.sort(rng.choice(len(users), min(len(users), RECALL_QUERIES), replace=False))]
    k = min(RECALL_K, n_movies)
    tuned = tune_index(movie_index, queries, top_k(queries, items, k)[0], config.target_recall)
    say(f"index: {config.kind} over {n_movies:,} x {items.shape[1]} ({took()}), {tuned}")
    cosine = faiss.IndexFlatIP(unit.shape[1])
    cosine.add(unit)

    started = time.perf_counter()
    neighbours, similarities = neighbour_table(Similarity(model.movie_embeddings, bundle.seen))
    say(f"movies like this: the {neighbours.shape[1]} most similar of each movie ({took()})")

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
            "k": int(n_clusters),
            "seed": int(seed),
            "method": f"KMeans (n_init={KMEANS_INITS}) on who rated what, not q_i: L2-normalised "
            f"{vectors.shape[1]} dims of search.clusters.pattern_vectors; movies without training ratings "
            "are not clustered (-1)",
            **quality,
            "sizes": np.bincount(labels[labels != UNCLUSTERED], minlength=n_clusters).tolist(),
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
        "clusters.json": json_writer(cluster_summaries(labels, bundle.movies, n_clusters, vectors)),
        "movie_map.npy": npy_writer(movie_map(vectors, seed)),
        SIMILAR_FILES[0]: npy_writer(neighbours),
        SIMILAR_FILES[1]: npy_writer(similarities),
    }
    update_bundle(Path(path), files, manifest)
    return manifest
