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
from search.vectors import item_vectors

ADDED = ["item_vectors.npy", "movie_index.faiss", "cosine_index.faiss", "cluster_labels.npy", "clusters.json", "movie_map.npy"]


def test_build_adds_checksummed_files_and_manifest_keys(built_tiny, tiny_bundle):
    bundle = Bundle.load(built_tiny)  # verifies every checksum, old and new
    for name in ADDED:
        assert bundle.has(name)
        assert bundle.manifest["files"][name]["sha256"] == sha256_file(bundle.path / name)
    n = len(bundle.movie_ids)
    index = faiss.read_index(str(bundle.file("movie_index.faiss")))
    assert isinstance(index, faiss.IndexFlatIP) and index.ntotal == n and index.d == bundle.dim + 2
    np.testing.assert_array_equal(bundle.array("item_vectors.npy"), item_vectors(bundle.movie_embeddings, bundle.movie_biases))
    cosine = faiss.read_index(str(bundle.file("cosine_index.faiss")))
    assert cosine.ntotal == n and cosine.d == bundle.dim
    labels = bundle.array("cluster_labels.npy")
    assert labels.dtype == np.int32 and labels.shape == (n,)
    assert bundle.array("movie_map.npy").shape == (n, 2)
    clusters = bundle.manifest["clusters"]
    assert {"k", "seed", "silhouette", "nmi_genres", "nmi_random"} <= set(clusters)
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
    assert link.is_symlink() and Recommender.load(link).built


def test_build_refuses_bad_cluster_counts(tiny_bundle):
    n = len(Bundle.load(tiny_bundle).movie_ids)
    for bad in (0, n + 1):
        with pytest.raises(ValueError, match="clusters must be a whole number between 1 and"):
            build(tiny_bundle, n_clusters=bad)
