"""Quality metrics as plain numpy functions. Ranking metrics take a matrix of recommended item indexes
(one row per user, best first, -1 padding a short list)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rating_errors(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Root mean squared and mean absolute error: ``{"rmse": …, "mae": …}``."""
    error = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def hits_at_k(recommended: np.ndarray, relevant_rows: np.ndarray, relevant_items: np.ndarray) -> np.ndarray:
    """Boolean matrix: is ``recommended[r, j]`` among the pairs ``(relevant_rows[t], relevant_items[t])``?"""
    recommended = np.asarray(recommended, dtype=np.int64)
    n_items = int(max(recommended.max(initial=0), np.max(relevant_items, initial=0))) + 1
    keys = np.asarray(relevant_rows, dtype=np.int64) * n_items + np.asarray(relevant_items, dtype=np.int64)
    rows = np.arange(len(recommended), dtype=np.int64)[:, None]
    return np.isin(rows * n_items + recommended, keys) & (recommended >= 0)


def precision_at_k(hits: np.ndarray) -> float:
    """Mean over rows of (relevant items in the top k) / k."""
    hits = np.asarray(hits, dtype=bool)
    return float(hits.sum(1).mean() / hits.shape[1])


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """Mean over rows of (relevant items in the top k) / (relevant items of the row), skipping rows
    without relevant items."""
    hits, n_relevant = np.asarray(hits, dtype=bool), np.asarray(n_relevant)
    keep = n_relevant > 0
    return float((hits[keep].sum(1) / n_relevant[keep]).mean())


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """Mean over rows of DCG@k / ideal DCG@k with binary relevance, ``DCG = Σ_j hit_j / log2(j + 2)``,
    skipping rows without relevant items."""
    hits, n_relevant = np.asarray(hits, dtype=bool), np.asarray(n_relevant)
    keep = n_relevant > 0
    hits, n_relevant = hits[keep], n_relevant[keep]
    discounts = 1.0 / np.log2(np.arange(hits.shape[1]) + 2.0)
    dcg = hits @ discounts
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, hits.shape[1]) - 1]
    return float((dcg / ideal).mean())


def catalogue_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalogue's ``n_items`` that appear in at least one top-k list."""
    recommended = np.asarray(recommended)
    return float(len(np.unique(recommended[recommended >= 0])) / n_items)


def mean_jaccard(queries: np.ndarray, neighbours: np.ndarray, sets: Sequence[frozenset]) -> float:
    """Mean Jaccard similarity ``|a ∩ b| / |a ∪ b|`` between the set of each query and of each of its
    ``neighbours[r]`` (``sets[i]``: item i's genres, say); two empty sets count as 0."""
    values = [
        len(sets[q] & sets[n]) / max(len(sets[q] | sets[n]), 1)
        for q, row in zip(np.asarray(queries), np.asarray(neighbours), strict=True)
        for n in row
    ]
    return float(np.mean(values)) if values else float("nan")
