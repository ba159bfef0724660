"""One loaded bundle's answers as the API's dicts, which the pages render too, so both answer alike.
The cluster map is a small hand-written SVG (no matplotlib at request time).
"""

from __future__ import annotations

import csv
import io
from functools import cached_property
from typing import Any

import numpy as np
from flask import current_app, g

from search import BundleError

BROWSE_SHOWN = 8  # movies in each list of the home page
# The best-rated list takes movies with at least this quantile of the rated movies' rating counts
# (never fewer than 20), so that a few lucky ratings do not lead.
BEST_RATED_QUANTILE = 0.9


# Tableau 20 reordered so that the first ten are the strong tones.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip
WIDTH, HEIGHT = 600, 420  # the SVG's size in pixels


def colour(cluster: int) -> str:
    """The colour of a cluster on the map and in its legend."""
    return PALETTE[int(cluster) % len(PALETTE)]


def cluster_map_svg(coords: np.ndarray, labels: np.ndarray, *, max_points: int = 4000) -> str:
    """An SVG scatter of (n, 2) movie coordinates, one colour per cluster label; a fixed-seed sample
    beyond ``max_points`` movies. Non-finite coordinates are left out, and so are movies with label -1
    (no training ratings: not clustered, nothing to place)."""
    coords, labels = np.asarray(coords, dtype=np.float64), np.asarray(labels).astype(np.int64)
    keep = np.flatnonzero(np.isfinite(coords[:, :2]).all(axis=1) & (labels >= 0))
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(0).choice(keep, max_points, replace=False))
    xy, labels, pad = coords[keep, :2], labels[keep], 10.0
    low, high = xy.min(axis=0, initial=np.inf), xy.max(axis=0, initial=-np.inf)  # initial: no movies
    points = pad + (xy - low) / np.where(high > low, high - low, 1.0) * (np.array([WIDTH, HEIGHT]) - 2 * pad)
    points[:, 1] = HEIGHT - points[:, 1]  # y grows downwards
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        '<g fill="none" stroke-linecap="round" stroke-width="4.5" stroke-opacity="0.75">',
    ]
    for cluster in np.unique(labels):
        dots = "".join(f"M{x:.1f} {y:.1f}h0" for x, y in points[labels == cluster])
        parts.append(
            f'<path stroke="{colour(cluster)}" d="{dots}"><title>cluster {int(cluster)}</title></path>'
        )
    parts.append("</g></svg>")
    return "".join(parts)


class WebState:
    """The recommender of one bundle, its catalogue, and the answers made from them."""

    def __init__(self, recommender: Any):
        self.rec = recommender
        self.catalogue = recommender.catalogue

    def recommendations(self, user_id: int, query) -> dict:
        """Top-k movies for a user in ``query.order`` (``score``: the raw predicted rating)."""
        exclude, order = not query.include_seen, self.rec.order_of(query.order)
        answer = self.rec.recommend(user_id, query.k, exclude, query.min_ratings, order)
        items = self.rec.items(answer, self.rec.rated_rows(user_id))
        return {**query.model_dump(), "order": order, "user_id": user_id, "items": items}

    def newcomer(self, ratings: list[tuple[int, float]], k: int, order: str = "relevance") -> dict:
        """Top-k movies for a newcomer from their ratings (folded in; rated movies left out), or the average
        user's (``fallback``); ValueError or UnknownIdError as :meth:`search.Recommender.fold_in`."""
        order = self.rec.order_of(order)
        answer = self.rec.recommend_for_ratings(ratings, k=k, order=order)
        items = self.rec.items(answer, [self.catalogue.row(movie) for movie, _ in ratings])
        return {"k": k, "order": order, "fallback": not len(ratings), "items": items}

    def similar(self, movie_id: int, query) -> dict:
        """The k movies most like one movie (``score``: search.similar's blend), itself excluded."""
        ids, scores = self.rec.similar(movie_id, k=query.k, min_ratings=query.min_ratings)
        return {"movie_id": movie_id, **query.model_dump(), "items": self.catalogue.items(ids, scores)}

    def search(self, query) -> dict:
        """One page of the movies whose title matches ``q``, best match first (``search.titles``)."""
        q, end = query.q, query.offset + query.limit
        found = self.catalogue.find_movies(q, limit=len(self.catalogue.movie_ids)) if q else []
        page = {"query": q, "limit": query.limit, "offset": query.offset, "total": len(found)}
        return {**page, "more": end < len(found), "items": self.catalogue.items(found[query.offset : end])}

    def clusters(self) -> dict:
        """Every cluster's summary (NotBuiltError, a 404, before ``search build``)."""
        found = self.catalogue.clusters()
        return {"n_clusters": len(found), "clusters": found}

    def cluster(self, c: int, sort: str) -> dict:
        """One cluster's summary and all its movies in the asked order (UnknownIdError outside 0..n-1)."""
        members = self.catalogue.cluster_members(c, sort=sort)
        return {**self.catalogue.clusters()[c], "sort": sort, "items": self.catalogue.items(members)}

    def model(self) -> dict:
        """The model's figures, the manifest's metrics and settings, and the per-epoch history."""
        manifest = self.rec.bundle.manifest
        parts = {key: manifest.get(key) or {} for key in ("metrics", "training", "config")}
        parts["clusters"] = {k: v for k, v in (manifest.get("clusters") or {}).items() if k != "sizes"}
        parts["ranking"] = (manifest.get("evaluation") or {}).get("ranking") or {}
        return {"summary": self.summary, **parts, "history": self.history}

    @cached_property
    def summary(self) -> dict:
        """The figures of the home page, the footer and ``/api/v1/model``."""
        rec, bundle, catalogue, manifest = self.rec, self.rec.bundle, self.catalogue, self.rec.bundle.manifest
        test = (manifest.get("metrics") or {}).get("test") or {}
        clusters = manifest.get("clusters") or {}
        return {
            "dataset": (manifest.get("dataset") or {}).get("name"),
            "n_users": len(rec.user_ids),
            "n_movies": len(rec.movie_ids),
            "n_ratings": int(bundle.seen.nnz),
            "dim": int(bundle.dim),
            "test_rmse": test.get("rmse"),
            "test_mae": test.get("mae"),
            "rating_scale": list(bundle.rating_scale),
            "index": rec.index_kind,
            "built": catalogue.built,
            "n_clusters": len(catalogue.clusters()) if catalogue.built else None,
            **{key: clusters.get(key) for key in ("silhouette", "nmi_genres", "nmi_random")},
            "created": manifest.get("created"),
        }

    @cached_property
    def history(self) -> list[dict]:
        """Per-epoch train/validation RMSE and phase from the bundle's ``history.csv`` (empty if none)."""
        if not self.rec.bundle.has("history.csv"):
            return []
        try:
            text = self.rec.bundle.read_bytes("history.csv").decode("utf-8")
        except (BundleError, UnicodeDecodeError) as err:  # changed since loading, or not text
            current_app.logger.warning("not showing the training history: %s", err)
            return []
        rows = csv.DictReader(io.StringIO(text, newline=""))
        # phase: "training" (one run on all training data), or "validation" then "refit"
        return [
            {"epoch": int(row["epoch"]), "train_rmse": float(row["train_rmse"]),
             "val_rmse": float(row["val_rmse"]) if row.get("val_rmse") else None,
             "phase": row.get("phase") or "validation"}
            for row in rows
        ]  # fmt: skip

    @cached_property
    def browse(self) -> dict:
        """The home page's lists: the most rated movies, the best rated among those with at least
        ``best_rated_floor`` ratings, and the clusters by name (none before ``search build``)."""
        movies = self.rec.bundle.movies
        counts = movies["rating_count"].to_numpy()
        floor = max(20, int(np.quantile(counts[counts > 0], BEST_RATED_QUANTILE))) if counts.any() else 20
        order = {"ascending": [False, True], "kind": "stable"}
        most = movies.sort_values(["rating_count", "movie_id"], **order)["movie_id"].to_numpy()
        rated_enough = movies[counts >= floor]
        best = rated_enough.sort_values(["mean_rating", "movie_id"], **order)["movie_id"].to_numpy()
        built = self.catalogue.clusters() if self.catalogue.built else []
        clusters = [{key: c[key] for key in ("cluster", "label", "size")} for c in built]
        return {
            "most_rated": self.catalogue.items(most[:BROWSE_SHOWN]),
            "best_rated": self.catalogue.items(best[:BROWSE_SHOWN]),
            "best_rated_floor": floor,
            "browse_clusters": clusters,
        }

    @cached_property
    def cluster_map(self) -> str:
        """The SVG movie map coloured by cluster; NotBuiltError (a 404) before ``search build``."""
        self.catalogue.clusters()  # NotBuiltError, with the hint to build
        bundle, most = self.rec.bundle, current_app.config["MAP_MAX_POINTS"]
        return cluster_map_svg(
            bundle.array("movie_map.npy"), bundle.array("cluster_labels.npy"), max_points=most
        )


def state() -> WebState:
    """The :class:`WebState` serving this request (pinned when it began: see web/reload.py)."""
    return g.get("movie_web") or current_app.extensions["movie_web"]
