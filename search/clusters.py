"""K-Means clusters of movies, what each cluster is about, and how good they are.

Movies are clustered by *direction* of taste: K-Means on L2-normalised ``q_i`` (raw embeddings would put the
rarely-rated movies, which regularisation shrinks towards zero, in one cluster whatever their content).
Movies with a zero embedding (no training ratings) have no direction: their label is :data:`UNCLUSTERED`
(-1), and every figure is over the clustered movies only.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter

import numpy as np
import pandas as pd

from search.similar import unit_rows

TOP_MOVIES = 10
SILHOUETTE_SAMPLE = 5000
RANDOM_LABELLINGS = 5
UNCLUSTERED = -1
LABEL_GENRES = 2
LABEL_MIN_SHARE = 0.15
_SHARE_SLACK = 1e-9  # 3 of 20 movies is 15%, whatever float rounding says


def check_clusters(n_clusters: object, zero: np.ndarray) -> int:
    """``n_clusters`` as an int from 1 to the number of movies with a non-zero embedding (``zero`` marks
    the others); a ValueError naming the range otherwise."""
    n_zero, high = int(np.count_nonzero(zero)), int(np.count_nonzero(~zero))
    whole = isinstance(n_clusters, numbers.Integral) and not isinstance(n_clusters, bool)
    if not whole or not 1 <= n_clusters <= high:
        zeros = f"{n_zero} of {len(zero)} movies have no training ratings (zero embeddings)"
        message = f"clusters must be a whole number between 1 and {high}, got {n_clusters!r}"
        raise ValueError(f"{message}: {zeros} and are not clustered" if n_zero else message)
    return int(n_clusters)


def kmeans_labels(embeddings: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Seeded K-Means labels (int32, one per row) of the L2-normalised rows; zero rows are left out of the
    fit and get :data:`UNCLUSTERED`."""
    from sklearn.cluster import KMeans

    unit, zero = unit_rows(embeddings)
    labels = np.full(len(unit), UNCLUSTERED, np.int32)
    fitted = KMeans(n_clusters=check_clusters(n_clusters, zero), n_init=5, random_state=seed).fit(unit[~zero])
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


def genre_nmi(labels: np.ndarray, genres: pd.Series, seed: int = 0) -> tuple[float, float]:
    """NMI of the clustered movies' ``labels`` with each one's most specific genre (its rarest in the whole
    catalogue), and the mean NMI of :data:`RANDOM_LABELLINGS` shuffles of the labels (same cluster sizes)."""
    from sklearn.metrics import normalized_mutual_info_score as nmi

    keep = np.asarray(labels) != UNCLUSTERED
    target = np.array(specific_genre(genre_lists(genres)), object)[keep]
    labels, rng = np.asarray(labels)[keep], np.random.default_rng(seed)
    shuffled = [nmi(target, rng.permutation(labels)) for _ in range(RANDOM_LABELLINGS)]
    return float(nmi(target, labels)), float(np.mean(shuffled))


def _genre_mix(inside: Counter, size: int, catalogue: Counter, n: int) -> tuple[list[dict], list[str]]:
    """A cluster's genres (share, catalogue share, lift), the nameable ones (at least
    :data:`LABEL_MIN_SHARE` of the cluster, more common there than overall) first, then by lift; and those."""
    shares = {g: (k / size, catalogue[g] / n) for g, k in inside.items()}
    mix = [
        dict(genre=g, share=round(share, 4), catalogue_share=round(base, 4), lift=round(share / base, 3))
        for g, (share, base) in shares.items()
    ]
    named = {
        g
        for g, k in inside.items()
        if k / size + _SHARE_SLACK >= LABEL_MIN_SHARE and k * n > catalogue[g] * size
    }
    mix.sort(key=lambda m: (m["genre"] not in named, -m["lift"], -m["share"], m["genre"]))
    return mix, [m["genre"] for m in mix if m["genre"] in named][:LABEL_GENRES]


def cluster_summaries(labels: np.ndarray, movies: pd.DataFrame, n_clusters: int) -> list[dict]:
    """One JSON-ready summary per cluster (``cluster``, ``size``, ``label``, ``mean_rating``, ``top_movies``,
    ``genres``). A label names up to :data:`LABEL_GENRES` genres of highest lift, each held by
    :data:`LABEL_MIN_SHARE` of the cluster, else ``(mixed genres)`` or ``(no genres)``; a label several
    clusters share gets the cluster's most rated title, then its number: labels are unique."""
    labels = np.asarray(labels)
    genres = genre_lists(movies["genres"])
    clustered = np.flatnonzero(labels != UNCLUSTERED)
    catalogue = Counter(g for r in clustered for g in genres[r])
    counts = movies["rating_count"].to_numpy(np.float64)
    means = movies["mean_rating"].to_numpy(np.float64)
    ids, titles = movies["movie_id"].to_numpy(), movies["title"].to_numpy()
    summaries, bases = [], []
    for c in range(n_clusters):
        rows = np.flatnonzero(labels == c)
        mix, heading = _genre_mix(
            Counter(g for r in rows for g in genres[r]), len(rows), catalogue, len(clustered)
        )
        bases.append(" / ".join(heading) if heading else "(mixed genres)" if mix else "(no genres)")
        rated = rows[np.isfinite(means[rows]) & (counts[rows] > 0)]
        weight = counts[rated].sum()
        mean = round(float((means[rated] * counts[rated]).sum() / weight), 4) if weight > 0 else None
        top = rows[np.lexsort((rows, -counts[rows]))][:TOP_MOVIES]
        shown = [dict(movie_id=int(ids[r]), title=str(titles[r]), rating_count=int(counts[r])) for r in top]
        summaries.append(
            dict(cluster=c, size=len(rows), label=None, mean_rating=mean, top_movies=shown, genres=mix)
        )
    repeated = Counter(bases)
    tops = [s["top_movies"][0]["title"] if s["top_movies"] else None for s in summaries]
    bases = [f"{base}, like {top}" if repeated[base] > 1 and top else base for base, top in zip(bases, tops)]
    repeated = Counter(bases)
    for summary, base in zip(summaries, bases):
        summary["label"] = f"{base} (cluster {summary['cluster']})" if repeated[base] > 1 else base
    return summaries


def cluster_quality(embeddings: np.ndarray, labels: np.ndarray, genres: pd.Series, seed: int = 0) -> dict:
    """Silhouette (normalised embeddings, sampled) and :func:`genre_nmi` beside its random baseline, over
    the clustered movies."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    nmi, random = genre_nmi(labels, genres, seed)
    keep = labels != UNCLUSTERED
    unit, labels = unit_rows(embeddings)[0][keep], labels[keep]
    silhouette = None
    if 2 <= len(np.unique(labels)) <= len(labels) - 1:
        sample = min(len(labels), SILHOUETTE_SAMPLE)
        silhouette = float(silhouette_score(unit, labels, sample_size=sample, random_state=seed))
    return {
        "silhouette": silhouette if silhouette is not None and math.isfinite(silhouette) else None,
        "silhouette_space": "l2-normalised movie embeddings, euclidean",
        "nmi_genres": round(nmi, 4),
        "nmi_random": round(random, 4),
        "genre_label": "most specific (rarest in the catalogue) genre of each movie",
    }


def movie_map(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D PCA of the normalised movie embeddings (float32 ``(n, 2)``), for a cluster map."""
    from sklearn.decomposition import PCA

    unit, _ = unit_rows(embeddings)
    out = np.zeros((len(unit), 2), np.float32)
    components = min(2, unit.shape[1], len(unit))
    if components:
        out[:, :components] = PCA(n_components=components, random_state=seed).fit_transform(unit)
    return out
