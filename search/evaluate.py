"""Quality figures of an exported model, from its arrays alone (evaluation sits above what it judges).

:func:`quality_report` scores a model on the canonical test part next to baselines fitted on the same
training ratings: rating error, top-K ranking (without and with a ``min_ratings`` floor), "movies like this"
and clusters. Training passes the report to export; :func:`evaluate_bundle` recomputes it from a bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedder import metrics
from embedder.bundle import Bundle, BundleError
from embedder.data import canonical_split, load_ratings
from embedder.model import MFModel
from embedder.relevance import RelevanceModel
from search.clusters import genre_lists, genre_nmi
from search.similar import Similarity
from search.topk import select_topk

K = 10
"""Length of the ranked lists and neighbour lists."""
RELEVANT_RATING = 4.0
"""A test rating at least this high makes the movie relevant to the user."""
DEFAULT_MIN_RATINGS = 20
"""The floor reported next to no floor."""
MAX_USERS = 5_000
"""Ranking is scored on at most this many users (a seeded sample): more would only narrow a small interval."""
MAX_QUERIES = 1_000
"""Neighbour agreement is scored on at most this many query movies (a seeded sample)."""
QUERY_BLOCK = 500  # query movies scored at once: a query's co-raters cost the rating counts of its raters
BASELINE_REG = (15.0, 10.0)
"""Damping of the biases-only baseline (user, movie), Surprise's BaselineOnly defaults."""


class HeldOut(NamedTuple):
    """The test ratings as row indexes (-1 for ids the model does not know)."""

    users: np.ndarray
    movies: np.ndarray
    ratings: np.ndarray


def fit_biases(seen: sp.csr_matrix, scale: tuple[float, float], iterations: int = 10) -> MFModel:
    """The biases-only baseline: damped alternating means ``b_i = Σ (r - μ - b_u) / (λ_i + n_i)`` and
    ``b_u = Σ (r - μ - b_i) / (λ_u + n_u)`` of the training ratings."""
    coo = seen.tocoo()
    users, movies, ratings = coo.row, coo.col, coo.data.astype(np.float64)
    mu = float(ratings.mean())
    reg_user, reg_movie = BASELINE_REG
    n_users, n_movies = seen.shape
    count_user, count_movie = np.bincount(users, minlength=n_users), np.bincount(movies, minlength=n_movies)
    bu = np.zeros(n_users)
    for _ in range(iterations):
        bi = np.bincount(movies, ratings - mu - bu[users], n_movies) / (reg_movie + count_movie)
        bu = np.bincount(users, ratings - mu - bi[movies], n_users) / (reg_user + count_user)
    return MFModel.biases(mu, bu.astype(np.float32), bi.astype(np.float32), scale)


def movie_means(seen: sp.csr_matrix, scale: tuple[float, float]) -> MFModel:
    """The popularity baseline for ratings: each movie's mean training rating (μ if none)."""
    mu = float(seen.data.mean())
    counts = np.diff(seen.tocsc().indptr)
    sums = np.asarray(seen.sum(0)).ravel()
    bi = np.where(counts > 0, sums / np.maximum(counts, 1) - mu, 0.0)
    return MFModel.biases(mu, np.zeros(seen.shape[0], np.float32), bi.astype(np.float32), scale)


def _sample(values: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``values``, a seeded sample in order."""
    if len(values) <= limit:
        return values
    return np.sort(np.random.default_rng(seed).choice(values, limit, replace=False))


def ranking_metrics_by_mask(
    scorer: Callable[[np.ndarray], np.ndarray] | np.ndarray,
    seen: sp.csr_matrix,
    test: HeldOut,
    masks: dict[str, np.ndarray],
    k: int = K,
    seed: int = 0,
    block: int = 512,
) -> dict[str, dict[str, float]]:
    """Precision, Recall, NDCG @ k and catalogue coverage of ``scorer``'s top-k lists among the movies of
    each of ``masks`` and not in ``seen``, over the users with a relevant test rating. ``scorer(user_rows)``
    scores every movie, or is one score per movie for every user (a baseline such as popularity)."""
    known = (test.users >= 0) & (test.movies >= 0) & (test.ratings >= RELEVANT_RATING)
    rel_users, rel_movies = test.users[known], test.movies[known]
    users = _sample(np.unique(rel_users), MAX_USERS, seed)
    keep = np.isin(rel_users, users)
    local = np.searchsorted(users, rel_users[keep])
    width = min(k, seen.shape[1])
    recommended = {name: np.full((len(users), width), -1, dtype=np.int64) for name in masks}
    if not callable(scorer):
        order = np.asarray(scorer, dtype=np.float32)
        scorer = lambda rows: np.broadcast_to(order, (len(rows), len(order)))
    for start in range(0, len(users), block):
        rows = users[start : start + block]
        scores = np.array(scorer(rows), dtype=np.float32)
        rated = seen[rows]
        scores[np.repeat(np.arange(len(rows)), np.diff(rated.indptr)), rated.indices] = -np.inf
        for name, allowed in masks.items():
            candidates = scores if allowed.all() else np.where(allowed, scores, np.float32(-np.inf))
            recommended[name][start : start + block] = select_topk(candidates, k)[0]
    n_relevant, figures = np.bincount(local, minlength=len(users)), {}
    for name, lists in recommended.items():
        hits = metrics.hits_at_k(lists, local, rel_movies[keep])
        figures[name] = {
            "precision": metrics.precision_at_k(hits),
            "recall": metrics.recall_at_k(hits, n_relevant),
            "ndcg": metrics.ndcg_at_k(hits, n_relevant),
            "coverage": metrics.catalogue_coverage(lists, seen.shape[1]),
            "users": int(len(lists)),
        }
    return figures


def genre_sets(genres: pd.Series) -> list[frozenset]:
    """Each movie's genres ('A|B|C') as a set (:func:`search.clusters.genre_lists`)."""
    return [frozenset(names) for names in genre_lists(genres)]


def neighbour_agreement(
    similar: Similarity, genres: list[frozenset], candidates: np.ndarray, k: int = K, seed: int = 0
) -> dict[str, float | None]:
    """Mean genre Jaccard of each movie with its k nearest neighbours by :mod:`search.similar`, and with k
    random other movies, among the comparable ``candidates`` (a boolean mask); ``None`` for both when there
    are no more than k such movies."""
    pool = np.flatnonzero(candidates & similar.comparable)
    if len(pool) <= k:
        return {"model": None, "random": None, "movies": int(len(pool))}
    queries = _sample(np.arange(len(pool)), MAX_QUERIES, seed)
    nearest = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), QUERY_BLOCK):
        rows = queries[start : start + QUERY_BLOCK]
        similarity = similar.block_scores(pool[rows])[:, pool]  # the movie itself is -inf
        nearest[start : start + len(rows)] = pool[select_topk(similarity, k)[0]]
    rng = np.random.default_rng(seed)
    # k distinct random others: draw from the pool without the query, shifting past it.
    draws = np.stack([rng.choice(len(pool) - 1, k, replace=False) for _ in queries])
    random_neighbours = pool[draws + (draws >= queries[:, None])]
    return {
        "model": metrics.mean_jaccard(pool[queries], nearest, genres),
        "random": metrics.mean_jaccard(pool[queries], random_neighbours, genres),
        "movies": int(len(queries)),
    }


def quality_report(
    model: MFModel,
    seen: sp.csr_matrix,
    movies: pd.DataFrame,
    test: HeldOut,
    min_ratings: int = DEFAULT_MIN_RATINGS,
    cluster_labels: np.ndarray | None = None,
    seed: int = 0,
    relevance: RelevanceModel | None = None,
) -> dict[str, Any]:
    """Every figure of the module docstring, as a JSON-ready dict; the baselines are fitted on ``seen``, the
    training ratings, and ``movies`` is the movie table in row order."""
    biases, popularity = fit_biases(seen, model.rating_scale), movie_means(seen, model.rating_scale)
    baselines = {
        "model": model,
        "global_mean": MFModel.constant(popularity.global_mean, *seen.shape, model.rating_scale),
        "biases": biases,
        "popularity": popularity,
    }
    rating = {
        name: metrics.rating_errors(f.predict(test.users, test.movies), test.ratings)
        for name, f in baselines.items()
    }
    counts = movies["rating_count"].to_numpy()
    # The baselines rank movies in one order for everyone: b_i (b_u is one constant per user), counts.
    scorers = {"model": model.scores, "biases": biases.movie_biases, "popularity": counts}
    if relevance is not None:
        weight = np.float32(relevance.rating_weight)
        watch = lambda rows: (
            relevance.watch_scores(relevance.user_factors[rows]) + weight * model.scores(rows)
        )
        scorers = {"relevance": watch, **scorers}
    genres = genre_sets(movies["genres"])
    similar = Similarity(model.movie_embeddings, seen)
    floors = sorted({0, int(min_ratings)})
    by_scorer = {
        name: ranking_metrics_by_mask(scorer, seen, test, {str(f): counts >= f for f in floors}, seed=seed)
        for name, scorer in scorers.items()
    }
    return {
        "protocol": {
            "k": K,
            "relevant": f"test rating >= {RELEVANT_RATING:g}",
            "candidates": "movies the user has not rated in training",
            "min_ratings": int(min_ratings),
            "baselines": "fitted on the same training ratings; biases damped (user 15, movie 10); "
            "popularity = movie mean rating / rating count",
        },
        "rating": rating,
        "ranking": {str(f): {name: figures[str(f)] for name, figures in by_scorer.items()} for f in floors},
        "similar": {
            str(floor): neighbour_agreement(similar, genres, counts >= floor, seed=seed) for floor in floors
        },
        "clusters": genre_nmi(cluster_labels, movies["genres"], seed)  # the figures search build stores
        if cluster_labels is not None
        else {"note": "no cluster_labels.npy yet: run python -m search build"},
    }


def held_out_rows(test: pd.DataFrame, users, movies) -> HeldOut:
    """Map a test frame's ids to rows of the given vocabularies (-1 when unknown)."""
    return HeldOut(
        users.numbers(test["user_id"].to_numpy(), missing="negative"),
        movies.numbers(test["movie_id"].to_numpy(), missing="negative"),
        test["rating"].to_numpy(np.float64),
    )


def evaluate_bundle(path: str | Path, min_ratings: int = DEFAULT_MIN_RATINGS) -> dict[str, Any]:
    """Reload the bundle's dataset, re-split it canonically, and score the bundle from its stored arrays
    alone, so the figures match the manifest's only if the files do."""
    bundle = Bundle.load(path)
    dataset = bundle.manifest["dataset"]
    data = load_ratings(dataset["data_arg"], progress=False)
    if data.checksum != dataset["checksum"]:
        raise BundleError(
            f"manifest.json: dataset checksum {dataset['checksum'][:12]}… does not match "
            f"the data at {dataset['data_arg']} ({data.checksum[:12]}…)"
        )
    train, test = canonical_split(data.ratings, source=data.source)
    model = bundle.model
    metrics_by_part = {
        name: metrics.rating_errors(
            model.predict_ids(part["user_id"].to_numpy(), part["movie_id"].to_numpy()),
            part["rating"].to_numpy(),
        )
        for name, part in (("train", train), ("test", test))
    }
    labels = bundle.array("cluster_labels.npy") if bundle.has("cluster_labels.npy") else None
    held_out = held_out_rows(test, model.user_vocab, model.movie_vocab)
    quality = quality_report(
        model, bundle.seen, bundle.movies, held_out, min_ratings, labels, relevance=bundle.relevance()
    )
    flat = {
        f"{part}_{key}": round(value, 4)
        for part, values in metrics_by_part.items()
        for key, value in values.items()
    }
    flat["manifest_test_rmse"] = round(bundle.manifest["metrics"]["test"]["rmse"], 4)
    return dict(
        bundle=str(bundle.path), dataset=dataset["name"], metrics=metrics_by_part, flat=flat, quality=quality
    )


def format_report(quality: dict[str, Any]) -> str:
    """The quality report as plain-text tables."""
    protocol, clusters, k = quality["protocol"], quality["clusters"], quality["protocol"]["k"]
    lines = [f"{'rating error (test)':<24}{'RMSE':>8}{'MAE':>8}"]
    lines += [f"  {name:<22}{v['rmse']:>8.4f}{v['mae']:>8.4f}" for name, v in quality["rating"].items()]
    lines += ["", f"ranking @{k} (relevant: {protocol['relevant']}; candidates: {protocol['candidates']})"]
    lines.append(f"  {'min_ratings':<12}{'scorer':<12}{'P@10':>8}{'R@10':>8}{'NDCG@10':>9}{'coverage':>10}")
    figures = "{precision:>8.4f}{recall:>8.4f}{ndcg:>9.4f}{coverage:>10.3f}"
    for floor, rows in quality["ranking"].items():
        lines += [f"  {floor:<12}{name:<12}" + figures.format(**v) for name, v in rows.items()]
    lines += ["", f"movies like this: mean genre Jaccard of the top-{k} neighbours"]
    for floor, v in quality["similar"].items():
        compared = "model {model:.4f}   random {random:.4f}   ({movies} movies)"
        figures = "too few movies to compare ({movies})" if v["model"] is None else compared
        lines.append(f"  min_ratings {floor:<6} " + figures.format(**v))
    if "nmi_genres" in clusters:
        nmi = f"{clusters['nmi_genres']:.4f}   shuffled labels {clusters['nmi_random']:.4f}"
        lines += ["", f"clusters: NMI with the most specific genre {nmi}   ({clusters['clusters']} clusters)"]
    else:
        lines += ["", f"clusters: {clusters['note']}"]
    return "\n".join(lines)
