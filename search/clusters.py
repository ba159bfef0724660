"""K-Means clusters of movies, what each cluster is about, and how good they are.

Movies are clustered by *who watches them*: K-Means on the L2-normalised :func:`pattern_vectors`, which
agree with genres better than the rating model's ``q_i`` or the relevance model's ``V`` (NMI 0.16 against
0.11 on ML-100K, benchmarks/README.md). Movies without training ratings have a zero vector: their label is
:data:`UNCLUSTERED` (-1), and every figure is over the clustered movies only.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedder.relevance import watched
from search.similar import unit_rows

TOP_MOVIES = 10
SILHOUETTE_SAMPLE = 5000
RANDOM_LABELLINGS = 5
UNCLUSTERED = -1
LABEL_GENRES, LABEL_TITLES = 2, 2  # most genres in a label; titles in a label without one
LABEL_MIN_SHARE, LABEL_MIN_LIFT = 0.25, 1.5  # a genre in a label: this share of the cluster, this lift
PATTERN_DIMS, PATTERN_POWER = 64, 0.15  # of pattern_vectors, chosen by NMI with genres (benchmarks/README.md)
KMEANS_INITS = 5  # K-Means runs from different starts; the best is kept


def pattern_vectors(
    seen: sp.csr_matrix, dims: int = PATTERN_DIMS, seed: int = 0, power: float = PATTERN_POWER
) -> np.ndarray:
    """Each movie's place in who rated what, float32 ``(n_movies, dims)``, zero without training ratings:
    singular vectors 2 to ``dims + 1`` of ``D_u^-½ X D_i^-½`` (``X``: who rated what in ``seen``; ``D``: its
    row and column counts, so that popular movies and busy users do not pull every cluster their way; the
    first, ``√count``, is popularity alone), each scaled by ``σ^power`` (:data:`PATTERN_POWER`): enough for
    strong structure to outweigh noise, too little for the first few to drown the rest (a spectral embedding
    of the graph)."""
    from sklearn.utils.extmath import randomized_svd

    pattern = watched(seen)
    users, movies = np.diff(pattern.indptr), np.bincount(pattern.indices, minlength=pattern.shape[1])
    pattern.data /= np.sqrt(np.repeat(users, users) * movies[pattern.indices], dtype=np.float32)
    _, sigma, vt = randomized_svd(pattern, min(dims + 1, min(pattern.shape)), n_iter=4, random_state=seed)
    return np.where((movies > 0)[:, None], vt[1:].T * sigma[1:] ** power, 0).astype(np.float32)


def kmeans_labels(vectors: np.ndarray, n_clusters: object, seed: int = 0) -> np.ndarray:
    """Seeded K-Means labels (int32, one per row) of the L2-normalised rows; zero rows (movies without
    training ratings) are left out of the fit and get :data:`UNCLUSTERED`. A ValueError names the range of
    ``n_clusters`` unless it is a whole number from 1 to the number of non-zero rows."""
    from sklearn.cluster import KMeans

    unit, zero = unit_rows(vectors)
    n_zero, high = int(np.count_nonzero(zero)), int(np.count_nonzero(~zero))
    whole = isinstance(n_clusters, numbers.Integral) and not isinstance(n_clusters, bool)
    if not whole or not 1 <= n_clusters <= high:
        zeros = f"{n_zero} of {len(zero)} movies have no training ratings (zero vectors)"
        message = f"clusters must be a whole number between 1 and {high}, got {n_clusters!r}"
        raise ValueError(f"{message}: {zeros} and are not clustered" if n_zero else message)
    labels = np.full(len(unit), UNCLUSTERED, np.int32)
    fitted = KMeans(n_clusters=int(n_clusters), n_init=KMEANS_INITS, random_state=seed).fit(unit[~zero])
    labels[~zero] = fitted.labels_
    return labels


def genre_lists(genres: pd.Series) -> list[list[str]]:
    """The '|'-joined genre column as lists; empty, missing and '(no genres listed)' give []."""
    return [
        [g for g in t.split("|") if g and g != "(no genres listed)"] for t in genres.fillna("").astype(str)
    ]


def specific_genre(genres: list[list[str]]) -> list[str]:
    """Each movie's rarest genre in the catalogue (ties by name); '' for none."""
    freq = Counter(g for gs in genres for g in gs)
    return [min(gs, key=lambda g: (freq[g], g)) if gs else "" for gs in genres]


def genre_nmi(labels: np.ndarray, genres: pd.Series, seed: int = 0) -> dict[str, float | int]:
    """How far the clusters follow genres, over the clustered movies: ``nmi_genres``, the NMI of ``labels``
    with each movie's most specific genre (its rarest in the whole catalogue), beside ``nmi_random``, the
    mean NMI of :data:`RANDOM_LABELLINGS` shuffles of the labels (same cluster sizes); and how many
    ``clusters`` and ``unclustered`` movies there are. ``search build`` and the evaluation both use it."""
    from sklearn.metrics import normalized_mutual_info_score as nmi

    keep = np.asarray(labels) != UNCLUSTERED
    target = np.array(specific_genre(genre_lists(genres)), object)[keep]
    labels, rng = np.asarray(labels)[keep], np.random.default_rng(seed)
    shuffled = [nmi(target, rng.permutation(labels)) for _ in range(RANDOM_LABELLINGS)]
    return {
        "clusters": len(np.unique(labels)),
        "unclustered": int(np.count_nonzero(~keep)),
        "nmi_genres": round(float(nmi(target, labels)), 4),
        "nmi_random": round(float(np.mean(shuffled)), 4),
    }


def _genre_mix(inside: Counter, size: int, catalogue: Counter, n: int) -> tuple[list[dict], list[str]]:
    """A cluster's genres (share, catalogue share, lift), those a label may name (:data:`LABEL_MIN_SHARE` of
    the cluster, :data:`LABEL_MIN_LIFT` times their catalogue share) first, then by lift; and those."""
    shares = {g: (k / size, catalogue[g] / n) for g, k in inside.items()}
    mix = [
        dict(genre=g, share=round(share, 4), catalogue_share=round(base, 4), lift=round(share / base, 3))
        for g, (share, base) in shares.items()
    ]
    named = {
        g
        for g, k in inside.items()
        if k >= LABEL_MIN_SHARE * size and k * n >= LABEL_MIN_LIFT * catalogue[g] * size
    }
    mix.sort(key=lambda m: (m["genre"] not in named, -m["lift"], -m["share"], m["genre"]))
    return mix, [m["genre"] for m in mix if m["genre"] in named][:LABEL_GENRES]


def cluster_summaries(labels: np.ndarray, movies: pd.DataFrame, k: int, vectors: np.ndarray) -> list[dict]:
    """One JSON-ready summary per cluster (``cluster``, ``size``, ``label``, ``mean_rating``, ``top_movies``,
    ``genres``). A label names up to :data:`LABEL_GENRES` genres of highest lift that hold in the cluster
    (:func:`_genre_mix`), else its :data:`LABEL_TITLES` most typical movies, "like A, B": those of its
    :data:`TOP_MOVIES` most rated (well known) nearest its centroid in ``vectors`` (typical, not merely
    famous). A genre label several clusters share gets those titles too, then its number: names are unique."""
    labels, unit = np.asarray(labels), unit_rows(vectors)[0]
    genres = genre_lists(movies["genres"])
    clustered = np.flatnonzero(labels != UNCLUSTERED)
    catalogue = Counter(g for r in clustered for g in genres[r])
    counts = movies["rating_count"].to_numpy(np.float64)
    means = movies["mean_rating"].to_numpy(np.float64)
    ids, titles = movies["movie_id"].to_numpy(), movies["title"].to_numpy()
    summaries, names = [], []
    for c in range(k):
        rows = np.flatnonzero(labels == c)
        mix, heading = _genre_mix(
            Counter(g for r in rows for g in genres[r]), len(rows), catalogue, len(clustered)
        )
        top = rows[np.lexsort((rows, -counts[rows]))][:TOP_MOVIES]
        typical = top[np.argsort(-(unit[top] @ unit[rows].sum(axis=0)), kind="stable")][:LABEL_TITLES]
        like = "like " + ", ".join(map(str, titles[typical])) if len(top) else "(no movies)"
        names.append((" / ".join(heading) or like, like))
        rated = rows[np.isfinite(means[rows]) & (counts[rows] > 0)]
        mean = round(float(np.average(means[rated], weights=counts[rated])), 4) if len(rated) else None
        shown = [dict(movie_id=int(ids[r]), title=str(titles[r]), rating_count=int(counts[r])) for r in top]
        summaries.append(
            dict(cluster=c, size=len(rows), label=None, mean_rating=mean, top_movies=shown, genres=mix)
        )
    repeated = Counter(base for base, _ in names)
    bases = [f"{base}, {like}" if repeated[base] > 1 and base != like else base for base, like in names]
    repeated = Counter(bases)
    for summary, base in zip(summaries, bases):
        summary["label"] = f"{base} (cluster {summary['cluster']})" if repeated[base] > 1 else base
    return summaries


def cluster_quality(vectors: np.ndarray, labels: np.ndarray, genres: pd.Series, seed: int = 0) -> dict:
    """Silhouette (the normalised clustered vectors, sampled) and :func:`genre_nmi`'s figures, over the
    clustered movies."""
    from sklearn.metrics import silhouette_score

    keep = np.asarray(labels) != UNCLUSTERED
    unit, clustered = unit_rows(vectors)[0][keep], np.asarray(labels)[keep]
    silhouette = None
    if 2 <= len(np.unique(clustered)) <= len(clustered) - 1:
        sample = min(len(clustered), SILHOUETTE_SAMPLE)
        silhouette = float(silhouette_score(unit, clustered, sample_size=sample, random_state=seed))
    return {
        "silhouette": silhouette if silhouette is not None and math.isfinite(silhouette) else None,
        "silhouette_space": "the clustered vectors, l2-normalised, euclidean",
        **genre_nmi(labels, genres, seed),
        "genre_label": "most specific (rarest in the catalogue) genre of each movie",
    }


def movie_map(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D PCA of the normalised clustered vectors (float32 ``(n, 2)``), for a cluster map."""
    from sklearn.decomposition import PCA

    unit, _ = unit_rows(vectors)
    out = np.zeros((len(unit), 2), np.float32)
    components = min(2, unit.shape[1], len(unit))
    if components:
        out[:, :components] = PCA(n_components=components, random_state=seed).fit_transform(unit)
    return out
