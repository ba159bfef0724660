"""What one loaded bundle gives the app: the recommender, its catalogue, and figures
computed once (so a request never reads the bundle from disk again, but for the
training curve's picture, which is streamed from the bundle's own file)."""

from __future__ import annotations

import csv
import io
from functools import cached_property
from typing import Any

import numpy as np
from flask import current_app, g

from search import BundleError, NotBuiltError
from web.charts import cluster_map_svg

BROWSE_SHOWN = 8
"""Movies in each list of the home page."""
BEST_RATED_QUANTILE = 0.9
"""The best-rated list takes movies with at least this quantile of the rating counts of
rated movies (never fewer than 20), so that a few lucky ratings do not lead."""


def bundle_summary(rec: Any) -> dict:
    """The figures of the home page and the footer, from the recommender ``rec`` and its bundle."""
    bundle, catalogue, manifest = rec.bundle, rec.catalogue, rec.bundle.manifest
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


class WebState:
    """The recommender of one bundle, its catalogue, and what the views derive from them."""

    def __init__(self, recommender: Any):
        self.rec = recommender
        self.catalogue = recommender.catalogue

    @cached_property
    def summary(self) -> dict:
        """The model's figures (:func:`bundle_summary`)."""
        return bundle_summary(self.rec)

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
        number = lambda text: float(text) if text else None  # noqa: E731
        return [
            {
                "epoch": int(row["epoch"]),
                "train_rmse": float(row["train_rmse"]),
                "val_rmse": number(row.get("val_rmse")),
                # "training" (one run on all training data), or "validation" then "refit"
                "phase": row.get("phase") or "validation",
            }
            for row in csv.DictReader(io.StringIO(text, newline=""))
        ]

    @cached_property
    def browse_choice(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The home page's lists: the ids of the most rated movies, of the best rated among
        those with at least the returned floor of ratings, and that floor."""
        movies = self.rec.bundle.movies
        counts = movies["rating_count"].to_numpy()
        floor = max(20, int(np.quantile(counts[counts > 0], BEST_RATED_QUANTILE))) if counts.any() else 20
        order = {"ascending": [False, True], "kind": "stable"}
        most = movies.sort_values(["rating_count", "movie_id"], **order)
        best = movies[counts >= floor].sort_values(["mean_rating", "movie_id"], **order)
        return most["movie_id"].to_numpy()[:BROWSE_SHOWN], best["movie_id"].to_numpy()[:BROWSE_SHOWN], floor

    @cached_property
    def cluster_names(self) -> dict[int, str]:
        """Each cluster's label, so pages name clusters; empty before ``search build``."""
        try:
            return {int(c["cluster"]): str(c["label"]) for c in self.catalogue.clusters()}
        except NotBuiltError:
            return {}

    @cached_property
    def cluster_map(self) -> str:
        """The SVG movie map (``movie_map.npy``, 2-D PCA) coloured by cluster; NotBuiltError
        (a 404) before ``search build``."""
        self.catalogue.clusters()  # NotBuiltError, with the hint to build
        bundle, most = self.rec.bundle, current_app.config["MAP_MAX_POINTS"]
        return cluster_map_svg(
            bundle.array("movie_map.npy"), bundle.array("cluster_labels.npy"), max_points=most
        )


def state() -> WebState:
    """The :class:`WebState` serving the current request (pinned when it began, so a hot
    reload never mixes two bundles in one answer; see web/reload.py)."""
    return g.get("movie_web") or current_app.extensions["movie_web"]
