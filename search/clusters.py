"""K-Means clusters of movies, what each cluster is about, and how good they are.

Movies are clustered by *direction* of taste: K-Means on L2-normalised ``q_i``,
the cosine space of the embeddings (one part of "movies like this",
:mod:`search.similar`).  Raw embeddings would put rarely-rated movies, which
regularisation shrinks towards zero, into one cluster of "obscure" movies
whatever their content.

Movies with a zero embedding (no training ratings: the model's documented
fallback, see docs/design.md, "The bundle") have no direction and are **not
clustered**: K-Means runs on the other movies, and their label is
:data:`UNCLUSTERED` (-1): put in a cluster, they would fill it with movies
that have nothing in common.  Every figure below (sizes, summaries, genre
shares and lifts, silhouette, NMI) is over the clustered movies only.

Labels (:func:`cluster_summaries`), unique within one clustering:

* A label names the genres of highest lift (share in the cluster / share among
  all clustered movies), at most :data:`LABEL_GENRES` of them, but only genres
  held by at least :data:`LABEL_MIN_SHARE` (15%) of the cluster's movies, so a
  rare genre that a handful of movies make "over-represented" never headlines a
  cluster, and only genres more common in the cluster than overall (lift above
  1), so a big genre such as Drama is not named where it is under-represented.
  With no such genre the label is ``(mixed genres)``; with no genres at all,
  ``(no genres)``.
* When several clusters would get the same label, each of them (not just the
  later ones: no cluster owns a label by accident of its number) gets its most
  rated movie's title appended, ``"Drama / Romance, like Emma (1996)"``.  If
  that still leaves two labels equal (two movies with the same title, an empty
  cluster), those get `` (cluster C)`` appended.  So the labels depend only on the
  clustering and the movie table: deterministic.

Quality, stored in the manifest: the silhouette (sampled), and the NMI between
cluster labels and each movie's most specific genre (its rarest genre in the
catalogue), next to the NMI of a random labelling with the same cluster sizes,
so the figure can be read without knowing what NMI is typical.

Tested in ``tests/search/test_clusters.py`` (and the bundle side in
``tests/search/test_build.py``).
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
UNCLUSTERED = -1
LABEL_GENRES = 2
LABEL_MIN_SHARE = 0.15
_SHARE_SLACK = 1e-9  # 3 of 20 movies is 15%, whatever float rounding says


def check_clusters(n_clusters: object, zero: np.ndarray) -> int:
    """``n_clusters`` as an int between 1 and the number of movies with a non-zero
    embedding (``zero`` marks the others); a ValueError naming the range otherwise."""
    n_zero = int(np.count_nonzero(zero))
    try:
        return check_int(n_clusters, "clusters", 1, len(zero) - n_zero)
    except ValueError as err:
        if n_zero:
            raise ValueError(f"{err}: {n_zero} of {len(zero)} movies have no training ratings (a zero embedding) and are not clustered") from None
        raise


def kmeans_labels(embeddings: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Seeded K-Means labels (int32, one per row) of the L2-normalised rows.

    Zero rows (movies without training ratings) are left out of the fit and get
    :data:`UNCLUSTERED` (-1); ``n_clusters`` may be at most the number of other rows.
    """
    from sklearn.cluster import KMeans

    unit, zero = normalize_rows(embeddings)
    n_clusters = check_clusters(n_clusters, zero)
    labels = np.full(len(unit), UNCLUSTERED, np.int32)
    model = KMeans(n_clusters=n_clusters, n_init=5, random_state=seed).fit(unit[~zero])
    labels[~zero] = model.labels_
    return labels


def genre_lists(genres: pd.Series) -> list[list[str]]:
    """The '|'-joined genre column as lists; empty, missing and '(no genres listed)' give []."""
    return [[g for g in text.split("|") if g and g != "(no genres listed)"] for text in genres.fillna("").astype(str)]


def specific_genre(genres: list[list[str]]) -> list[str]:
    """Each movie's rarest genre in the catalogue (ties by name); '' for none."""
    freq = Counter(g for gs in genres for g in gs)
    return [min(gs, key=lambda g: (freq[g], g)) if gs else "" for gs in genres]


def genre_nmi(labels: np.ndarray, genres: pd.Series, seed: int = 0) -> tuple[float, float]:
    """NMI of cluster ``labels`` with each movie's most specific genre, and the mean
    NMI of :data:`RANDOM_LABELLINGS` shuffles of the labels (a shuffle keeps the
    cluster sizes, which NMI is sensitive to), over the clustered movies only.

    The most specific genre is the rarest in the whole catalogue, clustered or not.
    """
    from sklearn.metrics import normalized_mutual_info_score

    labels = np.asarray(labels)
    keep = labels != UNCLUSTERED
    target = np.asarray(specific_genre(genre_lists(genres)), dtype=object)[keep]
    labels = labels[keep]
    rng = np.random.default_rng(seed)
    nmi = float(normalized_mutual_info_score(target, labels))
    shuffled = [normalized_mutual_info_score(target, rng.permutation(labels)) for _ in range(RANDOM_LABELLINGS)]
    return nmi, float(np.mean(shuffled))


def _clean_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _nameable(count: int, size: int, catalogue_count: int, catalogue_size: int) -> bool:
    """Whether a label may name a genre held by ``count`` of a cluster's ``size`` movies
    and ``catalogue_count`` of all ``catalogue_size`` clustered movies: at least
    :data:`LABEL_MIN_SHARE` of the cluster, and more common there than overall."""
    return count / size + _SHARE_SLACK >= LABEL_MIN_SHARE and count * catalogue_size > catalogue_count * size


def _unique_labels(bases: list[str], top_titles: list[str | None]) -> list[str]:
    """Make cluster labels unique (rules in the module docstring): every label that
    several clusters share gets the cluster's most rated title, then its number."""
    repeated = Counter(bases)
    labels = [f"{base}, like {title}" if repeated[base] > 1 and title else base for base, title in zip(bases, top_titles)]
    repeated = Counter(labels)
    return [f"{label} (cluster {c})" if repeated[label] > 1 else label for c, label in enumerate(labels)]


def cluster_summaries(labels: np.ndarray, movies: pd.DataFrame, n_clusters: int) -> list[dict]:
    """One JSON-ready summary per cluster, over the clustered movies only
    (rows labelled :data:`UNCLUSTERED` are left out of every figure).

    Keys: ``cluster``, ``size``, ``label`` (unique; the rule is in the module
    docstring), ``mean_rating`` (over all training ratings of its movies; null
    without any), ``top_movies`` (most rated first: movie_id, title,
    rating_count) and ``genres`` (share in the cluster, ``catalogue_share``: share
    among all clustered movies, and their ratio, the lift; genres held by at
    least :data:`LABEL_MIN_SHARE` of the cluster with a lift above 1 first, then
    highest lift first, so the label's genres head the list).
    """
    labels = np.asarray(labels)
    genres = genre_lists(movies["genres"])
    clustered = np.flatnonzero(labels != UNCLUSTERED)
    catalogue = Counter(g for r in clustered for g in genres[r])
    n = len(clustered)
    counts = movies["rating_count"].to_numpy(np.float64)
    means = movies["mean_rating"].to_numpy(np.float64)
    summaries, bases = [], []
    for c in range(n_clusters):
        rows = np.flatnonzero(labels == c)
        inside = Counter(g for r in rows for g in genres[r])
        mix = []
        for genre, count in inside.items():
            share, base = count / len(rows), catalogue[genre] / n
            mix.append({"genre": genre, "share": round(share, 4), "catalogue_share": round(base, 4), "lift": round(share / base, 3)})
        named = {m["genre"] for m in mix if _nameable(inside[m["genre"]], len(rows), catalogue[m["genre"]], n)}
        mix.sort(key=lambda m: (m["genre"] not in named, -m["lift"], -m["share"], m["genre"]))
        rated = rows[np.isfinite(means[rows]) & (counts[rows] > 0)]
        weight = counts[rated].sum()
        mean = float((means[rated] * counts[rated]).sum() / weight) if weight > 0 else None
        order = rows[np.lexsort((rows, -counts[rows]))][:TOP_MOVIES]
        heading = [m["genre"] for m in mix if m["genre"] in named][:LABEL_GENRES]
        bases.append(" / ".join(heading) if heading else "(mixed genres)" if mix else "(no genres)")
        summaries.append(
            {
                "cluster": c,
                "size": len(rows),
                "label": None,
                "mean_rating": None if mean is None else round(mean, 4),
                "top_movies": [
                    {"movie_id": int(movies["movie_id"].iat[r]), "title": str(movies["title"].iat[r]), "rating_count": int(counts[r])}
                    for r in order
                ],
                "genres": mix,
            }
        )
    tops = [s["top_movies"][0]["title"] if s["top_movies"] else None for s in summaries]
    for summary, label in zip(summaries, _unique_labels(bases, tops)):
        summary["label"] = label
    return summaries


def cluster_quality(embeddings: np.ndarray, labels: np.ndarray, genres: pd.Series, seed: int = 0) -> dict:
    """Silhouette (cosine space, sampled) and NMI with genres beside a random baseline,
    over the clustered movies (label :data:`UNCLUSTERED` left out).

    The NMI is :func:`genre_nmi`'s, which ``search.evaluate`` reports too.
    """
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    nmi, random = genre_nmi(labels, genres, seed)
    keep = labels != UNCLUSTERED
    unit, _ = normalize_rows(embeddings)
    unit, labels = unit[keep], labels[keep]
    n_labels = len(np.unique(labels))
    silhouette = None
    if 2 <= n_labels <= len(labels) - 1:
        sample = min(len(labels), SILHOUETTE_SAMPLE)
        silhouette = float(silhouette_score(unit, labels, sample_size=sample, random_state=seed))
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
