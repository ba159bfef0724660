"""Fixtures for the search tests: bundles with a planted answer, built copies, brute force."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from embedder.vocab import Vocabulary
from search.similar import EMBEDDING_WEIGHT
from tests.conftest import write_synthetic_bundle

N_GROUPS = 5
PER_GROUP = 40
DIM = 16


def planted_arrays(seed: int = 0) -> dict:
    """Movies in ``N_GROUPS`` tight groups around random directions; users random.

    Group g's movies have genre ``G{g}`` (plus a shared "Drama"), and each user rates
    mostly the movies of one group (who rated what follows the groups too), so
    clusters, genres and "movies like this" all have a known answer.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_GROUPS, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    groups = np.repeat(np.arange(N_GROUPS), PER_GROUP)
    scale = rng.uniform(0.5, 1.5, size=(len(groups), 1))  # norms vary: cosine must not care
    movies = (centres[groups] + rng.normal(0, 0.08, size=(len(groups), DIM))) * scale
    n_users = 120
    users = rng.normal(0, 0.7, size=(n_users, DIM))
    favourite = np.arange(n_users) % N_GROUPS
    rates = rng.random((n_users, len(groups))) < np.where(favourite[:, None] == groups, 0.6, 0.03)
    seen = sp.csr_matrix(np.where(rates, rng.integers(1, 6, rates.shape), 0))
    return {
        "groups": groups,
        "user_embeddings": users.astype(np.float32),
        "movie_embeddings": movies.astype(np.float32),
        "user_biases": rng.normal(0, 0.3, n_users).astype(np.float32),
        "movie_biases": rng.normal(0, 0.3, len(groups)).astype(np.float32),
        "seen": seen,
        "titles": [f"Planted {g} movie {i} ({1950 + i})" for i, g in enumerate(groups)],
        "genres": [f"Drama|G{g}" for g in groups],
        "rating_counts": rng.integers(0, 300, len(groups)),
    }


@pytest.fixture(scope="session")
def planted() -> dict:
    """The planted arrays (read-only by convention)."""
    return planted_arrays()


def write_planted_bundle(path, arrays: dict) -> None:
    """Write a bundle (not built) of :func:`planted_arrays`-shaped ``arrays`` at ``path``."""
    write_synthetic_bundle(
        path,
        arrays["user_embeddings"],
        arrays["movie_embeddings"],
        arrays["user_biases"],
        arrays["movie_biases"],
        global_mean=3.4,
        seen=arrays["seen"],
        titles=arrays["titles"],
        genres=arrays["genres"],
        rating_counts=arrays["rating_counts"],
    )


@pytest.fixture(scope="session")
def planted_bundle(tmp_path_factory, planted) -> str:
    """A bundle written straight from :func:`planted_arrays`; not built."""
    path = tmp_path_factory.mktemp("planted") / "bundle"
    write_planted_bundle(path, planted)
    return str(path)


def built_copy(source: str, dest: Path, **options) -> str:
    """Copy a bundle and run ``build`` on the copy (bundles from fixtures stay untouched)."""
    from search.build import build

    shutil.copytree(source, dest)
    build(dest, **options)
    return str(dest)


@pytest.fixture(scope="session")
def built_planted(tmp_path_factory, planted_bundle) -> str:
    """The planted bundle, built with ``N_GROUPS`` clusters."""
    return built_copy(planted_bundle, tmp_path_factory.mktemp("built") / "planted", n_clusters=N_GROUPS)


@pytest.fixture(scope="session")
def built_tiny(tmp_path_factory, tiny_bundle) -> str:
    """The trained tiny bundle, built with the default options."""
    return built_copy(tiny_bundle, tmp_path_factory.mktemp("built") / "tiny", n_clusters=4)


def brute_force_scores(path: str) -> np.ndarray:
    """``μ + b_u + b_i + p_u·q_i`` for all pairs, in float64, straight from the .npy files."""
    import json

    folder = Path(path)
    load = lambda name: np.load(folder / name, allow_pickle=False).astype(np.float64)
    mu = json.loads((folder / "manifest.json").read_text())["global_mean"]
    biases = load("user_biases.npy")[:, None] + load("movie_biases.npy")[None, :]
    return mu + biases + load("user_embeddings.npy") @ load("movie_embeddings.npy").T


def dense_blend(embeddings: np.ndarray, seen: sp.spmatrix) -> np.ndarray:
    """search.similar's score of every pair, float64, from dense arrays; NaN where not defined."""
    q = embeddings.astype(np.float64)
    c = (seen.toarray() != 0).astype(np.float64)  # users x movies, who rated what
    with np.errstate(invalid="ignore", divide="ignore"):
        unit_q = q / np.linalg.norm(q, axis=1, keepdims=True)
        unit_c = c / np.linalg.norm(c, axis=0, keepdims=True)
    return EMBEDDING_WEIGHT * unit_q @ unit_q.T + (1 - EMBEDDING_WEIGHT) * unit_c.T @ unit_c


def assert_exact_topk(ids_row, scores_row, reference_row, movie_ids, k, excluded=(), tol=1e-4) -> None:
    """One result row is an exact top-k of ``reference_row`` (scores by movie row), ties aside.

    Checks: scores are the reference scores of the returned movies; best first;
    no excluded movie; as long as the candidates allow; and nothing left out
    scores higher than the last one returned (up to ``tol``, which is "ties aside").
    """
    ids_row = np.asarray(ids_row)
    valid = ids_row >= 0
    rows = Vocabulary(movie_ids, "movie").numbers(ids_row[valid])
    np.testing.assert_allclose(scores_row[valid], reference_row[rows], atol=tol)
    assert np.all(np.diff(scores_row[valid]) <= tol)
    assert not set(rows.tolist()) & set(excluded)
    assert len(set(rows.tolist())) == len(rows)
    allowed = np.setdiff1d(np.arange(len(reference_row)), list(excluded))
    assert valid.sum() == min(k, len(allowed))
    left_out = np.setdiff1d(allowed, rows)
    if left_out.size and rows.size:
        assert reference_row[left_out].max() <= reference_row[rows].min() + tol


def assert_same_topk(ids_a, scores_a, ids_b, scores_b, tol=1e-5) -> None:
    """Two answers agree: scores to ``tol`` (GEMM blocking changes the last bit), and
    the same ids except where float rounding swapped two movies scoring within ``tol``."""
    ids_a, ids_b = np.asarray(ids_a), np.asarray(ids_b)
    assert ids_a.shape == ids_b.shape
    np.testing.assert_allclose(scores_a, scores_b, atol=tol)
    for row_a, row_b, s in zip(ids_a, ids_b, np.asarray(scores_b)):
        for j in np.flatnonzero(row_a != row_b):
            near = np.abs(s - s[j]) <= tol
            assert row_a[j] in set(row_b[near].tolist()) or np.isclose(s[j], s[-1], atol=tol), (row_a, row_b)
