"""The cluster map as a small, hand-written SVG (no matplotlib at request time): each cluster is one
``<path>`` of zero-length segments drawn with round caps, which render as dots.
"""

from __future__ import annotations

import numpy as np

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
