"""``build``: files and manifest keys added atomically, with checksums that still verify."""

from __future__ import annotations

import os
import shutil

import faiss
import numpy as np
import pytest

import search.build as build_module
from embedder.bundle import Bundle, sha256_file
from search import Recommender
from search.build import build
from search.clusters import UNCLUSTERED, kmeans_labels, pattern_vectors
from tests.search.conftest import N_GROUPS, PER_GROUP, built_copy, write_planted_bundle
from tests.search.test_clusters import ZERO_AT, assert_planted_partition, planted_with_zero_rows

ADDED = [
    "item_vectors.npy",
    "movie_index.faiss",
    "cosine_index.faiss",
    "cluster_labels.npy",
    "clusters.json",
    "movie_map.npy",
]


def test_build_adds_checksummed_files_and_manifest_keys(built_tiny, tiny_bundle):
    bundle = Bundle.load(built_tiny)  # verifies every checksum, old and new
    for name in ADDED:
        assert bundle.has(name)
        assert bundle.manifest["files"][name]["sha256"] == sha256_file(bundle.path / name)
    n = len(bundle.movie_ids)
    index = faiss.read_index(str(bundle.file("movie_index.faiss")))
    assert isinstance(index, faiss.IndexFlatIP) and index.ntotal == n and index.d == bundle.dim + 2
    np.testing.assert_array_equal(bundle.array("item_vectors.npy"), bundle.model.item_vectors())
    cosine = faiss.read_index(str(bundle.file("cosine_index.faiss")))
    assert cosine.ntotal == n and cosine.d == bundle.dim
    labels = bundle.array("cluster_labels.npy")
    assert labels.dtype == np.int32 and labels.shape == (n,)
    assert bundle.array("movie_map.npy").shape == (n, 2)
    clusters = bundle.manifest["clusters"]
    assert {"k", "seed", "silhouette", "nmi_genres", "nmi_random", "unclustered"} <= set(clusters)
    zero = np.diff(bundle.seen.tocsc().indptr) == 0  # no training ratings
    assert np.array_equal(labels == UNCLUSTERED, zero) and clusters["unclustered"] == int(zero.sum())
    # what was clustered, and what the manifest says it was: who rated what, not the embeddings
    np.testing.assert_array_equal(labels, kmeans_labels(pattern_vectors(bundle.seen, seed=0), 4, seed=0))
    assert "who rated what, not q_i" in clusters["method"] and "pattern_vectors" in clusters["method"]
    assert sum(clusters["sizes"]) == n - clusters["unclustered"]
    assert clusters["k"] == 4 and len(bundle.json("clusters.json")) == 4
    assert bundle.manifest["index"]["kind"] == "flat" and bundle.manifest["index"]["recall_at_10"] == 1.0
    # the original fixture is untouched
    assert not Bundle.load(tiny_bundle).has("movie_index.faiss")


def test_a_failed_build_leaves_the_bundle_as_it_was(tmp_path, tiny_bundle, monkeypatch):
    path = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, path)
    before = {p.name: sha256_file(p) for p in path.iterdir()}

    def broken_writer(obj):
        def write(target):
            target.write_text("half")
            raise OSError("disk full")

        return write

    monkeypatch.setattr(build_module, "json_writer", broken_writer)
    with pytest.raises(OSError, match="disk full"):
        build(path, n_clusters=3)
    assert {p.name: sha256_file(p) for p in path.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging folder left behind
    Bundle.load(path)


def test_build_through_a_link_and_rebuild(tmp_path, tiny_bundle):
    real = tmp_path / "bundles" / "one"
    shutil.copytree(tiny_bundle, real)
    link = tmp_path / "current"
    os.symlink(real, link)
    build(link, n_clusters=2, seed=1)
    build(link, n_clusters=3, seed=2)  # replaces its own files
    bundle = Bundle.load(link)
    assert bundle.manifest["clusters"]["k"] == 3 and bundle.manifest["clusters"]["seed"] == 2
    assert link.is_symlink() and Recommender.load(link).catalogue.built


def test_build_refuses_bad_cluster_counts(tiny_bundle):
    n = len(Bundle.load(tiny_bundle).movie_ids)
    for bad in (0, n + 1):
        with pytest.raises(ValueError, match="clusters must be a whole number between 1 and"):
            build(tiny_bundle, n_clusters=bad)


@pytest.fixture(scope="module")
def padded() -> dict:
    """The planted arrays with movies that have no training ratings (zero rows) added."""
    from tests.search.conftest import planted_arrays

    return planted_with_zero_rows(planted_arrays())


@pytest.fixture(scope="module")
def padded_bundle(tmp_path_factory, padded) -> str:
    """A bundle of :func:`padded`, not built."""
    path = tmp_path_factory.mktemp("padded") / "bundle"
    write_planted_bundle(path, padded)
    return str(path)


@pytest.fixture(scope="module")
def built_padded(tmp_path_factory, padded_bundle) -> str:
    return built_copy(padded_bundle, tmp_path_factory.mktemp("built") / "padded", n_clusters=N_GROUPS)


def test_movies_without_ratings_are_not_clustered(built_padded, padded):
    bundle = Bundle.load(built_padded)  # checksums verify
    zero = padded["zero"]
    labels = bundle.array("cluster_labels.npy")
    assert labels.dtype == np.int32 and labels.shape == (len(zero),)
    assert np.array_equal(labels == -1, zero)
    assert bundle.relevance() is None  # no relevance model (as before it existed): the same clusters
    assert_planted_partition(labels[~zero], padded["groups"][~zero])
    clusters = bundle.manifest["clusters"]
    assert clusters["unclustered"] == len(ZERO_AT)
    assert clusters["sizes"] == [PER_GROUP] * N_GROUPS
    # silhouette in the clustered space: positive, not large (most of its 64 dimensions are noise here)
    assert clusters["nmi_genres"] == 1.0 and clusters["silhouette"] > 0
    summaries = bundle.json("clusters.json")
    assert [s["size"] for s in summaries] == clusters["sizes"]
    assert sorted(s["label"] for s in summaries) == [
        f"G{g}" for g in range(N_GROUPS)
    ]  # unique, and the planted genre
    assert bundle.array("movie_map.npy").shape == (len(zero), 2)


def test_the_catalogue_reads_a_bundle_with_unclustered_movies(built_padded, padded):
    catalogue = Recommender.load(built_padded).catalogue
    zero_ids = set(catalogue.movie_ids[padded["zero"]].tolist())
    members = [catalogue.cluster_members(c) for c in range(N_GROUPS)]
    assert [len(m) for m in members] == [PER_GROUP] * N_GROUPS
    assert not zero_ids & {m for ms in members for m in ms}
    assert sum(s["size"] for s in catalogue.clusters()) == N_GROUPS * PER_GROUP
    assert len(catalogue.clusters()) == N_GROUPS


def test_the_catalogue_reports_no_cluster_for_unclustered_movies(built_padded, padded):
    catalogue = Recommender.load(built_padded).catalogue
    zero_ids = catalogue.movie_ids[padded["zero"]].tolist()
    clustered = int(catalogue.movie_ids[~padded["zero"]][0])
    assert catalogue.cluster_of(clustered) in range(N_GROUPS)
    assert [catalogue.cluster_of(m) for m in zero_ids] == [None] * len(zero_ids)
    assert [catalogue.movie(m)["cluster"] for m in zero_ids] == [None] * len(zero_ids)
    rows = catalogue.items([zero_ids[0], clustered, -1, zero_ids[-1]])
    assert [r["cluster"] is None for r in rows] == [True, False, True]


def test_build_counts_only_clustered_movies_for_k(tmp_path, padded_bundle):
    path = tmp_path / "bundle"
    shutil.copytree(padded_bundle, path)
    before = {p.name: sha256_file(p) for p in path.iterdir()}
    clustered = N_GROUPS * PER_GROUP
    with pytest.raises(
        ValueError,
        match=f"between 1 and {clustered}, got {clustered + 1}: {len(ZERO_AT)} of {clustered + len(ZERO_AT)} movies have no training ratings",
    ):
        build(path, n_clusters=clustered + 1)
    assert {p.name: sha256_file(p) for p in path.iterdir()} == before
