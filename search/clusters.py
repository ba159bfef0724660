"""K-Means clusters of movies, what each cluster is about, and how good they are.

Movies are clustered by *direction* of taste: K-Means on L2-normalised ``q_i``,
the space where "movies like this" (cosine) lives.  Raw embeddings would put
rarely-rated movies, which regularisation shrinks towards zero, into one cluster
of "obscure" movies whatever their content.  Movies with a zero embedding (no
training ratings) do not take part in the fit and get the cluster nearest to
the origin.

Quality, stored in the manifest: the silhouette (sampled), and the NMI between
cluster labels and each movie's most specific genre (its rarest genre in the
catalogue), next to the NMI of a random labelling with the same cluster sizes,
so the figure can be read without knowing what NMI is typical.

Tested in ``tests/search/test_clusters.py``.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd

from search.validate import check_int
from search.vectors import normalize_rows

TOP_MOVIES = 10
SILHOUETTE_SAMPLE = 5000
RANDOM_LABELLINGS = 5


def kmeans_labels(embeddings: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Seeded K-Means labels (int32, one per row) of the L2-normalised rows."""
    from sklearn.cluster import KMeans

    n_clusters = check_int(n_clusters, "clusters", 1, len(embeddings))
    unit, zero = normalize_rows(embeddings)
    fit = unit[~zero] if (~zero).sum() >= n_clusters else unit
    model = KMeans(n_clusters=n_clusters, n_init=5, random_state=seed).fit(fit)
    return model.predict(unit).astype(np.int32)


def genre_lists(genres: pd.Series) -> list[list[str]]:
    """The '|'-joined genre column as lists; empty, missing and '(no genres listed)' give []."""
    out = []
    for text in genres.fillna("").astype(str):
        out.append([g for g in text.split("|") if g and g != "(no genres listed)"])
    return out


def specific_genre(genres: list[list[str]]) -> list[str]:
    """Each movie's rarest genre in the catalogue (ties by name); '' for none."""
    freq = Counter(g for gs in genres for g in gs)
    return [min(gs, key=lambda g: (freq[g], g)) if gs else "" for gs in genres]


def _clean_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def cluster_summaries(labels: np.ndarray, movies: pd.DataFrame, n_clusters: int, top: int = TOP_MOVIES) -> list[dict]:
    """One JSON-ready summary per cluster.

    Keys: ``cluster``, ``size``, ``label`` (its two genres of highest lift),
    ``mean_rating`` (over all training ratings of its movies; null without any),
    ``top_movies`` (most rated first: movie_id, title, rating_count) and
    ``genres`` (share in the cluster, share in the catalogue and their ratio,
    the lift; highest lift first, genres held by at least 10% of the cluster
    before the rest, so one odd movie does not headline a cluster).
    """
    genres = genre_lists(movies["genres"])
    catalogue = Counter(g for gs in genres for g in gs)
    n = len(movies)
    counts = movies["rating_count"].to_numpy(np.float64)
    means = movies["mean_rating"].to_numpy(np.float64)
    summaries = []
    for c in range(n_clusters):
        rows = np.flatnonzero(labels == c)
        inside = Counter(g for r in rows for g in genres[r])
        mix = []
        for genre, count in inside.items():
            share, base = count / len(rows), catalogue[genre] / n
            mix.append({"genre": genre, "share": round(share, 4), "catalogue_share": round(base, 4), "lift": round(share / base, 3)})
        mix.sort(key=lambda m: (m["share"] < 0.1, -m["lift"], -m["share"], m["genre"]))
        rated = rows[np.isfinite(means[rows]) & (counts[rows] > 0)]
        weight = counts[rated].sum()
        mean = float((means[rated] * counts[rated]).sum() / weight) if weight > 0 else None
        order = rows[np.lexsort((rows, -counts[rows]))][:top]
        summaries.append(
            {
                "cluster": c,
                "size": len(rows),
                "label": " / ".join(m["genre"] for m in mix[:2]) or "(no genres)",
                "mean_rating": None if mean is None else round(mean, 4),
                "top_movies": [
                    {"movie_id": int(movies["movie_id"].iat[r]), "title": str(movies["title"].iat[r]), "rating_count": int(counts[r])}
                    for r in order
                ],
                "genres": mix,
            }
        )
    return summaries


def cluster_quality(embeddings: np.ndarray, labels: np.ndarray, genres: pd.Series, seed: int = 0) -> dict:
    """Silhouette (cosine space, sampled) and NMI with genres beside a random baseline."""
    from sklearn.metrics import normalized_mutual_info_score, silhouette_score

    unit, _ = normalize_rows(embeddings)
    n_labels = len(np.unique(labels))
    silhouette = None
    if 2 <= n_labels <= len(labels) - 1:
        sample = min(len(labels), SILHOUETTE_SAMPLE)
        silhouette = float(silhouette_score(unit, labels, sample_size=sample, random_state=seed))
    target = specific_genre(genre_lists(genres))
    rng = np.random.default_rng(seed)
    nmi = float(normalized_mutual_info_score(target, labels))
    # A permutation keeps the cluster sizes, which NMI is sensitive to.
    random = float(np.mean([normalized_mutual_info_score(target, rng.permutation(labels)) for _ in range(RANDOM_LABELLINGS)]))
    return {
        "silhouette": _clean_float(silhouette),
        "silhouette_space": "l2-normalised movie embeddings, euclidean",
        "nmi_genres": round(nmi, 4),
        "nmi_random": round(random, 4),
        "genre_label": "most specific (rarest in the catalogue) genre of each movie",
    }


def movie_map(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D PCA of the normalised movie embeddings (float32 ``(n, 2)``), for a cluster map."""
    from sklearn.decomposition import PCA

    unit, _ = normalize_rows(embeddings)
    out = np.zeros((len(unit), 2), np.float32)
    components = min(2, unit.shape[1], len(unit))
    if components:
        out[:, :components] = PCA(n_components=components, random_state=seed).fit_transform(unit)
    return out
