"""What one app holds: the recommender and its catalogue, its limits, and figures computed once.

Everything here is built when first asked for and then kept, so a request never
reads the bundle from disk again (except the training curve image, which is
streamed from the bundle's own file).
"""

from __future__ import annotations

import csv
import io
import logging
import threading
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np
from flask import current_app, g

from search import BundleError, NotBuiltError
from web.charts import cluster_map_svg


def bundle_summary(rec: Any) -> dict:
    """The figures of the home page and the footer: dataset, sizes, test RMSE/MAE,
    index kind and clusters, from the recommender ``rec`` and its bundle."""
    bundle, catalogue = rec.bundle, rec.catalogue
    manifest = bundle.manifest
    test = (manifest.get("metrics") or {}).get("test") or {}
    dataset = manifest.get("dataset") or {}
    clusters = manifest.get("clusters") or {}
    return {
        "dataset": dataset.get("name"),
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
        "silhouette": clusters.get("silhouette"),
        "nmi_genres": clusters.get("nmi_genres"),
        "nmi_random": clusters.get("nmi_random"),
        "created": manifest.get("created"),
    }


BROWSE_SHOWN = 8
"""Movies in each list of the home page."""
BEST_RATED_QUANTILE = 0.9
"""The home page's best-rated list takes movies with at least this quantile of the
rating counts of rated movies (never fewer than 20), so that a few lucky ratings
do not lead."""


class WebState:
    """The recommender of one app, its catalogue, and what the views derive from them."""

    def __init__(self, recommender: Any, config: Mapping[str, Any]):
        self.rec = recommender
        self.catalogue = recommender.catalogue
        """Titles, movie rows and clusters (:class:`search.Catalogue`) of the same bundle."""
        self.map_max_points = int(config["MAP_MAX_POINTS"])
        self._lock = threading.Lock()
        self._map_svg: str | None = None

    @cached_property
    def summary(self) -> dict:
        """The model's figures (:func:`bundle_summary`), computed once."""
        return bundle_summary(self.rec)

    @cached_property
    def history(self) -> list[dict]:
        """Per-epoch train/validation RMSE from the bundle's ``history.csv`` (empty if none),
        with the training phase of each row."""
        bundle = self.rec.bundle
        if not bundle.has("history.csv"):
            return []
        try:
            text = bundle.read_bytes("history.csv").decode("utf-8")
        except (BundleError, UnicodeDecodeError) as err:  # changed since loading, or not text: no history
            logging.getLogger(__name__).warning("not showing the training history: %s", err)
            return []
        rows = []
        for row in csv.DictReader(io.StringIO(text, newline="")):
            try:
                rows.append(
                    {
                        "epoch": int(row["epoch"]),
                        "train_rmse": float(row["train_rmse"]),
                        "val_rmse": float(row["val_rmse"]) if row.get("val_rmse") not in (None, "") else None,
                        # "training" (one run on all training data), or "validation" then "refit"
                        "phase": row.get("phase") or "validation",
                    }
                )
            except (KeyError, TypeError, ValueError):
                continue  # a malformed line is left out of the picture, not a 500
        return rows

    @cached_property
    def browse_choice(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The home page's movie lists, chosen once: the ids of the :data:`BROWSE_SHOWN` most
        rated movies, of the best rated among those with at least the returned floor of
        ratings, and that floor."""
        movies = self.rec.bundle.movies
        counts = movies["rating_count"].to_numpy()
        floor = (
            max(20, int(np.quantile(counts[counts > 0], BEST_RATED_QUANTILE))) if (counts > 0).any() else 20
        )
        most = movies.sort_values(["rating_count", "movie_id"], ascending=[False, True], kind="stable").head(
            BROWSE_SHOWN
        )
        widely = movies[counts >= floor].sort_values(
            ["mean_rating", "movie_id"], ascending=[False, True], kind="stable"
        )
        return most["movie_id"].to_numpy(), widely.head(BROWSE_SHOWN)["movie_id"].to_numpy(), floor

    @cached_property
    def cluster_names(self) -> dict[int, str]:
        """Each cluster's label (``clusters.json``), so pages name clusters instead of
        numbering them; empty before ``search build``."""
        try:
            return {int(c["cluster"]): str(c["label"]) for c in self.catalogue.clusters()}
        except NotBuiltError:
            return {}

    @property
    def has_training_curve(self) -> bool:
        """Whether the bundle lists a ``training_curve.png``."""
        return self.rec.bundle.has("training_curve.png")

    def training_curve(self) -> bytes:
        """The picture's bytes, checked against the bundle's checksum (BundleError if it
        changed or went away after loading)."""
        return self.rec.bundle.read_bytes("training_curve.png")

    def cluster_map(self) -> str:
        """The SVG picture of the movie map (``movie_map.npy``, 2-D PCA written by
        ``search build``) coloured by cluster, drawn once.

        Raises ``search.NotBuiltError`` (a 404) before the bundle is built.
        """
        self.catalogue.clusters()  # raises NotBuiltError with the hint to build
        with self._lock:
            if self._map_svg is None:
                bundle = self.rec.bundle
                labels = bundle.array("cluster_labels.npy")
                self._map_svg = cluster_map_svg(
                    bundle.array("movie_map.npy"), labels, max_points=self.map_max_points
                )
        return self._map_svg


def state() -> WebState:
    """The :class:`WebState` serving the current request (pinned when it began, so a
    hot reload never mixes two bundles in one answer; see web/reload.py)."""
    return g.get("movie_web") or current_app.extensions["movie_web"]
