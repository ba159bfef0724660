"""Helpers shared by the embedder tests: models trained on synthetic ratings with a
known answer (one fit per method for the whole session), small rating sets for the
sampler, and an artifacts folder to list and prune."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from embedder.config import TrainConfig
from embedder.data import canonical_split
from embedder.publish import point_current
from embedder.train import TrainResult, train
from embedder.vocab import Vocabulary
from tests.conftest import edit_manifest, make_low_rank_ratings, plain_bundle

NOISE = 0.1
"""Standard deviation of the noise in :func:`fit_synthetic`'s ratings: the RMSE of the truth."""
SCALE = (-10.0, 20.0)
"""A rating scale wide enough that clipping never hides an error."""
UNRATED_USER, UNRATED_MOVIE = 150, 100
"""Ids in :func:`fit_synthetic`'s vocabularies whose ratings were all removed (rows in the middle)."""
CONFIGS = {
    "gibbs": TrainConfig(method="gibbs", dim=8, sample_dim=4, sweeps=60, seed=1),
    "adam": TrainConfig(method="adam", dim=8, epochs=60, reg=0.01, lr=0.01, patience=5, seed=1),
}
"""Each method's configuration for :func:`fit_synthetic`: small and fast, yet near the noise floor."""


class SyntheticFit(NamedTuple):
    """A model trained on the canonical split of synthetic low-rank ratings."""

    config: TrainConfig
    result: TrainResult
    train: pd.DataFrame
    test: pd.DataFrame
    truth: dict[str, np.ndarray]
    users: Vocabulary
    movies: Vocabulary


def vocabularies(frame: pd.DataFrame) -> tuple[Vocabulary, Vocabulary]:
    """The user and the movie vocabulary of a ratings frame."""
    return Vocabulary.from_values(frame["user_id"], "user"), Vocabulary.from_values(
        frame["movie_id"], "movie"
    )


def low_rank_rows(
    n_users: int, n_movies: int, density: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic low-rank ratings as a sampler takes them: user rows, movie rows, float32 ratings."""
    frame, _ = make_low_rank_ratings(n_users=n_users, n_movies=n_movies, density=density, seed=seed)
    return (
        frame["user_id"].to_numpy() - 1,
        frame["movie_id"].to_numpy() - 1,
        frame["rating"].to_numpy(np.float32),
    )


def fit_synthetic(config: TrainConfig) -> SyntheticFit:
    """Train on the canonical split of the default synthetic ratings (noise :data:`NOISE`),
    over vocabularies that also hold :data:`UNRATED_USER` and :data:`UNRATED_MOVIE`."""
    frame, truth = make_low_rank_ratings(noise=NOISE)
    users, movies = vocabularies(frame)
    rated = frame[(frame["user_id"] != UNRATED_USER) & (frame["movie_id"] != UNRATED_MOVIE)]
    train_part, test_part = canonical_split(rated)
    result = train(train_part, config, users, movies, SCALE, progress=False)
    return SyntheticFit(config, result, train_part, test_part, truth, users, movies)


@pytest.fixture(scope="session")
def gibbs_fit() -> SyntheticFit:
    return fit_synthetic(CONFIGS["gibbs"])


@pytest.fixture(scope="session")
def adam_fit() -> SyntheticFit:
    return fit_synthetic(CONFIGS["adam"])


NEWEST_FIRST = ["c-newest", "b-newer", "d-middle", "a-oldest", "e-no-created"]
"""The bundles of make_artifacts by created time: names deliberately not in that order."""
OLD_LEFTOVERS = {"bundles/.f-crashed.tmp-old00001", ".current.tmp-old00002"}
YOUNG_LEFTOVERS = {"bundles/.g-writing.tmp-young001", "bundles/.h-slow.tmp-active01", ".current.tmp-young002"}


def _set_mtime(path: Path, when: float) -> None:
    os.utime(path, (when, when), follow_symlinks=False)


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def make_artifacts(root: Path) -> Path:
    """An artifacts folder as train leaves it after a few runs and crashes.

    bundles/: five bundles, one without a ``created`` field (its folder's mtime,
    2025-12-01, makes it the oldest) and one without metrics; ``current`` on
    ``a-oldest``; ``notes`` (no manifest); ``alias``, a link to a 2020 bundle
    outside; staging leftovers two or three hours old, young, and one with an old
    folder but a file written just now; an aside folder ``.c-newest.old-*`` that is
    not a leftover. artifacts/: the old and young ``.current.tmp-*`` links, notes.txt.
    """
    artifacts, now = root / "artifacts", time.time()
    bundles = artifacts / "bundles"
    created = {
        "a-oldest": "2026-01-01",
        "d-middle": "2026-02-01",
        "b-newer": "2026-03-01",
        "c-newest": "2026-04-01",
        "e-no-created": None,
    }
    for seed, (name, day) in enumerate(created.items()):
        path = plain_bundle(bundles / name, seed=seed)

        def change(manifest, day=day, seed=seed):
            manifest["metrics"]["test"]["rmse"] = 0.9 + seed / 100
            manifest.pop("created")
            if day:
                manifest["created"] = f"{day}T00:00:00+00:00"

        edit_manifest(path, change)
    edit_manifest(bundles / "b-newer", lambda manifest: manifest.pop("metrics"))
    _set_mtime(bundles / "e-no-created", _timestamp("2025-12-01T00:00:00+00:00"))
    point_current(artifacts / "current", bundles / "a-oldest")
    (bundles / "notes").mkdir()
    (bundles / "notes" / "todo.txt").write_text("retrain\n")
    _set_mtime(bundles / "notes", _timestamp("2025-06-01T00:00:00+00:00"))
    elsewhere = plain_bundle(root / "elsewhere", seed=9)
    edit_manifest(elsewhere, lambda manifest: manifest.update(created="2020-01-01T00:00:00+00:00"))
    (bundles / "alias").symlink_to(elsewhere)
    _set_mtime(bundles / "alias", _timestamp("2025-05-01T00:00:00+00:00"))
    for name, age in [
        (".f-crashed.tmp-old00001", 2),
        (".g-writing.tmp-young001", 0),
        (".h-slow.tmp-active01", 0),
        (".c-newest.old-1a2b3c4d", 5),
    ]:
        (bundles / name).mkdir()
        (bundles / name / "user_ids.npy").write_bytes(b"partial")
        _set_mtime(bundles / name / "user_ids.npy", now - age * 3600)
        _set_mtime(bundles / name, now - 2 * 3600)  # a writer busy on a file does not touch its folder
    (artifacts / ".current.tmp-old00002").symlink_to(elsewhere)  # removing it must not follow it
    _set_mtime(artifacts / ".current.tmp-old00002", now - 3 * 3600)
    (artifacts / ".current.tmp-young002").symlink_to("bundles/c-newest")
    (artifacts / "notes.txt").write_text("keep me\n")
    _set_mtime(artifacts / "notes.txt", now - 30 * 86400)
    return artifacts
