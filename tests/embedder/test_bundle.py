"""Bundle export/load round trip, atomic writes, and refusal of corrupt bundles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from embedder.bundle import Bundle, BundleError, json_writer, npy_writer, update_bundle, write_bundle
from embedder.data import canonical_split
from embedder.metrics import rating_errors
from embedder.publish import point_current
from tests.conftest import (
    ROOT,
    edit_manifest,
    plain_bundle,
    random_bundle,
    rewrite_file_and_manifest,
    write_synthetic_bundle,
)


def test_trained_bundle_round_trips_and_its_test_rmse_is_recomputable(tiny_bundle, synthetic_csv):
    bundle = Bundle.load(tiny_bundle)
    ratings = pd.read_csv(synthetic_csv)
    _, test = canonical_split(ratings)
    u = bundle.user_vocab.numbers(test["user_id"].to_numpy(), missing="negative")
    m = bundle.movie_vocab.numbers(test["movie_id"].to_numpy(), missing="negative")
    known_u, known_m = u >= 0, m >= 0
    # Recompute μ + b_u + b_i + p_u·q_i from the .npy files alone, with the documented fallback.
    P = np.load(Path(tiny_bundle) / "user_embeddings.npy")
    Q = np.load(Path(tiny_bundle) / "movie_embeddings.npy")
    bu = np.load(Path(tiny_bundle) / "user_biases.npy")
    bi = np.load(Path(tiny_bundle) / "movie_biases.npy")
    raw = (
        bundle.manifest["global_mean"]
        + np.where(known_u, bu[u], 0)
        + np.where(known_m, bi[m], 0)
        + np.where(known_u & known_m, np.einsum("ij,ij->i", P[u], Q[m]), 0)
    )
    predicted = np.clip(raw, *bundle.manifest["rating_scale"])
    recomputed = rating_errors(predicted, test["rating"].to_numpy())
    assert recomputed["rmse"] == pytest.approx(bundle.manifest["metrics"]["test"]["rmse"], abs=1e-5)
    assert recomputed["mae"] == pytest.approx(bundle.manifest["metrics"]["test"]["mae"], abs=1e-5)
    for name in ("history.csv", "training_curve.png", "model.pt", "movies.parquet", "seen.npz"):
        assert bundle.has(name)
    assert bundle.seen.nnz == len(ratings) - len(test)
    assert bundle.manifest["config"]["dim"] == 8
    assert bundle.manifest["metrics"]["test"]["rmse"] < 0.5


def test_model_pt_loads_with_weights_only(tiny_bundle):
    import torch

    payload = torch.load(Path(tiny_bundle) / "model.pt", weights_only=True)
    assert set(payload) == {"state_dict", "user_ids", "movie_ids"}
    assert payload["state_dict"]["user_factors.weight"].shape[1] == 8
    assert np.array_equal(payload["movie_ids"].numpy(), np.load(Path(tiny_bundle) / "movie_ids.npy"))


def test_round_trip_of_arrays(tmp_path):
    rng = np.random.default_rng(0)
    P, Q = rng.normal(size=(4, 2)), rng.normal(size=(5, 2))
    bundle = Bundle.load(write_synthetic_bundle(tmp_path / "b", P, Q, global_mean=3.0))
    assert np.array_equal(bundle.model.user_embeddings, P.astype(np.float32))
    assert np.array_equal(bundle.movie_ids, np.arange(101, 106))
    assert bundle.model.global_mean == 3.0 and bundle.rating_scale == (1.0, 5.0)
    expected = np.clip(3.0 + P[1] @ Q[2], 1, 5)
    assert bundle.model.predict_ids(np.array([2]), np.array([103]))[0] == pytest.approx(expected, abs=1e-5)
    # Fallback: an unknown user gets μ + b_i (b_i is 0 here), unknown movie μ + b_u.
    assert bundle.model.predict_ids(np.array([999]), np.array([103]))[0] == pytest.approx(3.0)


def _link_out(path: Path) -> None:
    """Move a file out of the bundle and leave a link to it (its checksum still matches)."""
    outside = path.parent / "outside.npy"
    (path / "user_ids.npy").rename(outside)
    (path / "user_ids.npy").symlink_to(outside)


def _huge_header(path: Path) -> None:
    header = (path / "user_biases.npy").read_bytes()
    rewrite_file_and_manifest(
        path,
        "user_biases.npy",
        lambda p: p.write_bytes(header.replace(b"(6,)", b"(10000000000000,)".ljust(4))),
    )


def _manifest_link_out(path: Path) -> None:
    """A valid manifest, moved out of the bundle and linked back in."""
    outside = path.parent / "outside.json"
    (path / "manifest.json").rename(outside)
    (path / "manifest.json").symlink_to(outside)


def _fifo(path: Path) -> None:
    (path / "user_ids.npy").unlink()
    os.mkfifo(path / "user_ids.npy")  # opened without blocking, then refused


def _manifest_text(old: str, new: str):
    return lambda path: (path / "manifest.json").write_text(
        (path / "manifest.json").read_text().replace(old, new, 1)
    )


def _clusters(content: str, labels=np.zeros(9, np.int32)):
    """Add clusters (as search build would) whose clusters.json holds ``content``, checksum fixed."""
    files = {"cluster_labels.npy": npy_writer(labels), "clusters.json": lambda f: f.write_text(content)}
    return lambda path: update_bundle(path, files, {})


def _loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)


def _seen(change):
    """Rewrite seen.npz with ``change(matrix)`` applied to its arrays, and re-hash it, as a hostile publisher would."""

    def write(target: Path) -> None:
        matrix = sp.load_npz(target)
        change(matrix)
        sp.save_npz(target, matrix, compressed=False)

    return lambda path: rewrite_file_and_manifest(path, "seen.npz", write)


def _similar(rows: np.ndarray):
    files = {
        "similar_movies.npy": npy_writer(rows),
        "similar_scores.npy": npy_writer(np.zeros(rows.shape, np.float32)),
    }
    return lambda path: update_bundle(path, files, {})


def _deep_manifest(path: Path) -> None:
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(
        text.replace('"global_mean"', '"deep": ' + "[" * 100_000 + "]" * 100_000 + ', "global_mean"')
    )


GOOD_SUMMARY = {
    "cluster": 0,
    "size": 9,
    "label": "Drama",
    "mean_rating": 3.5,
    "top_movies": [{"movie_id": 101, "title": "Movie 101", "rating_count": 10}],
    "genres": [],
}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "movie_biases.npy").unlink(), "movie_biases.npy: missing"),
        (lambda p: (p / "manifest.json").unlink(), "manifest.json: missing"),
        (lambda p: (p / "manifest.json").write_text("{not json"), "manifest.json: not valid JSON"),
        (
            lambda p: (p / "user_ids.npy").write_bytes((p / "user_ids.npy").read_bytes()[:-8] + b"\x00" * 8),
            "user_ids.npy: checksum mismatch",
        ),
        (_link_out, "user_ids.npy: is a symbolic link"),
        (
            lambda p: edit_manifest(p, lambda m: m["files"].update({"user_ids.npy": "abc"})),
            'manifest.json: files.user_ids.npy: Input should be a valid dictionary, got "abc"',
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(rating_scale=[5])),
            "manifest.json: rating_scale: List should have at least 2 items",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(rating_scale=[5, 1])),
            r"manifest.json: rating_scale must be \[lowest, highest\], got \[5, 1\]",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(global_mean="abc")),
            'manifest.json: global_mean: Input should be a valid number, got "abc"',
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.pop("global_mean")),
            "manifest.json: global_mean: Field required",
        ),
        (_huge_header, "user_biases.npy: unreadable"),
        (_manifest_link_out, "manifest.json: is a symbolic link"),
        (_fifo, "user_ids.npy: not a regular file"),
        (
            lambda p: edit_manifest(p, lambda m: m["files"].update({"../x": {"sha256": "0"}})),
            "../x: file names in manifest.json must be plain names",
        ),
        (
            _manifest_text('"global_mean": 3.5', '"global_mean": NaN'),
            "manifest.json: NaN is not a finite number",
        ),
        (
            _manifest_text('"global_mean": 3.5', '"global_mean": 1e999'),
            "manifest.json: 1e999 is not a finite number",
        ),
        # An int beyond the float range: JSON parses it exactly, yet no float holds it.
        (
            _manifest_text('"global_mean": 3.5', '"global_mean": ' + "9" * 400),
            "manifest.json: global_mean: Input should be a valid number, got 9999",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(metrics={"test": {"rmse": 10**400}})),
            "manifest.json: metrics.test.rmse: Input should be a valid number",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(index=[1])),
            r"manifest.json: index: Input should be a valid dictionary, got \[1\]",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(index={"kind": "hnsw", "params": 3})),
            "manifest.json: index.params: Input should be a valid dictionary, got 3",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(metrics="x")),
            "manifest.json: metrics: Input should be a valid dictionary",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(metrics={"test": {"rmse": "low"}})),
            'manifest.json: metrics.test.rmse: Input should be a valid number, got "low"',
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(dataset=[1])),
            "manifest.json: dataset: Input should be a valid dictionary",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(training=5)),
            "manifest.json: training: Input should be a valid dictionary",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(config={"method": ["gibbs"]})),
            "manifest.json: config.method: Input should be a valid string",
        ),
        (
            lambda p: edit_manifest(
                p, lambda m: m.update(evaluation={"ranking": {"0": {"model": {"ndcg": "high"}}}})
            ),
            "manifest.json: evaluation.ranking.0.model.ndcg: Input should be a valid number",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(clusters=None)),
            "manifest.json: clusters: Input should be a valid dictionary, got null",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m["files"]["user_ids.npy"].pop("sha256")),
            "manifest.json: files.user_ids.npy.sha256: Field required",
        ),
        (lambda p: edit_manifest(p, lambda m: m.pop("files")), "manifest.json: files: Field required"),
        (
            lambda p: (p / "manifest.json").write_text("[1, 2]"),
            "manifest.json: must be a JSON object, got list",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(created=5)),
            "manifest.json: created: Input should be a valid string, got 5",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m.update(clusters={"k": "8"})),
            'manifest.json: clusters.k: Input should be a valid integer, got "8"',
        ),
        (_clusters('{"0": 5}'), "clusters.json: the file: Input should be a valid list"),
        (_clusters("[5]"), "clusters.json: \\[0\\]: Input should be a valid dictionary"),
        (
            _clusters(json.dumps([{**GOOD_SUMMARY, "size": "nine"}])),
            "clusters.json: \\[0\\].size: Input should be a valid integer",
        ),
        (
            _clusters(json.dumps([{**GOOD_SUMMARY, "size": True}])),
            r"clusters.json: \[0\].size: Input should be a valid integer",
        ),
        (
            _clusters(json.dumps([{**GOOD_SUMMARY, "size": -1}])),
            r"clusters.json: \[0\].size: Input should be greater than or equal to 0",
        ),
        (
            _clusters(json.dumps([{**GOOD_SUMMARY, "cluster": 3}])),
            "clusters.json: \\[0\\].cluster must be its position, 0, got 3",
        ),
        (
            _clusters(json.dumps([{**GOOD_SUMMARY, "genres": [{"genre": "Drama", "share": "all"}]}])),
            "clusters.json: \\[0\\].genres\\[0\\].share: Input should be a valid number",
        ),
        (_clusters('[{"cluster": 0, "mean_rating": NaN}]'), "clusters.json: NaN is not a finite number"),
        (_clusters("{bad"), "clusters.json: not valid JSON"),
        (
            lambda p: rewrite_file_and_manifest(
                p, "movie_ids.npy", npy_writer(np.r_[101, np.arange(101, 109)])
            ),
            "movie_ids.npy: ids are not unique",
        ),
        # Issue 30: whatever a reader indexes with is range-checked; and no traceback, one line naming the file.
        (_seen(lambda m: m.indices.__setitem__(0, 10**6)), "seen.npz: unreadable \\(indices must be < 9\\)"),
        (_seen(lambda m: m.indices.__setitem__(0, -1)), "seen.npz: unreadable"),
        (_seen(lambda m: m.indptr.__setitem__(1, m.indptr[-1] + 5)), "seen.npz: unreadable"),
        (
            _seen(lambda m: m.indptr.__setitem__(slice(1, 3), [m.indptr[2], m.indptr[1] - 1])),
            "seen.npz: unreadable",
        ),
        (
            lambda p: rewrite_file_and_manifest(
                p, "seen.npz", lambda f: sp.save_npz(f, sp.random(6, 9, 0.3, "csc"))
            ),
            "seen.npz: unreadable \\(a csc matrix, expected csr\\)",
        ),
        (
            lambda p: rewrite_file_and_manifest(
                p, "seen.npz", lambda f: sp.save_npz(f, sp.random(6, 8, 0.3, "csr"))
            ),
            "seen.npz: shape \\(6, 8\\), expected \\(6, 9\\)",
        ),
        (
            _clusters(json.dumps([GOOD_SUMMARY]), np.r_[0, 0, 999, np.zeros(6)].astype(np.int32)),
            "cluster_labels.npy: values must be from -1 to 0",
        ),
        (
            _clusters(json.dumps([GOOD_SUMMARY]), np.full(9, -2, np.int32)),
            "cluster_labels.npy: values must be from -1 to 0",
        ),
        (
            _clusters(json.dumps([GOOD_SUMMARY]), np.zeros(9, np.int64)),
            "cluster_labels.npy: expected int32 with 1 dimension",
        ),
        (
            _clusters(json.dumps([GOOD_SUMMARY]), np.zeros(8, np.int32)),
            "cluster_labels.npy: has 8 rows, expected 9",
        ),
        (
            lambda p: update_bundle(p, {"cluster_labels.npy": npy_writer(np.zeros(9, np.int32))}, {}),
            "cluster_labels.npy: values must be from -1 to -1",
        ),
        (_similar(np.full((9, 3), 9, np.int32)), "similar_movies.npy: values must be from -1 to 8"),
        (_similar(np.full((9, 3), -2, np.int32)), "similar_movies.npy: values must be from -1 to 8"),
        (
            lambda p: update_bundle(
                p,
                {
                    "similar_movies.npy": npy_writer(np.zeros((9, 3), np.int32)),
                    "similar_scores.npy": npy_writer(np.zeros((9, 2), np.float32)),
                },
                {},
            ),
            "similar_scores.npy: has 2 columns, expected 3",
        ),
        (
            lambda p: rewrite_file_and_manifest(p, "user_ids.npy", npy_writer(np.r_[1, 2, 3, 4, 5, 5])),
            "user_ids.npy: ids are not unique",
        ),
        (
            lambda p: rewrite_file_and_manifest(
                p, "movie_embeddings.npy", npy_writer(np.full((9, 3), np.nan, np.float32))
            ),
            "movie_embeddings.npy: contains NaN",
        ),
        (_deep_manifest, "manifest.json: not valid JSON \\(maximum recursion depth exceeded"),
        (_loop, "b: no bundle folder there \\(Symlink loop"),
        (lambda p: ((p / "seen.npz").unlink(), (p / "seen.npz").mkdir()), "seen.npz: not a regular file"),
    ],
)
@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mapped"])
def test_damaged_or_malformed_bundles_are_one_error_naming_the_file(tmp_path, damage, message, mmap):
    path = random_bundle(tmp_path / "b")
    damage(path)
    with pytest.raises(BundleError, match=message):
        Bundle.load(path, mmap=mmap)


def test_a_mapped_bundle_holds_the_same_arrays_read_only(tmp_path):
    path = random_bundle(tmp_path / "b")
    read, mapped = Bundle.load(path), Bundle.load(path, mmap=True)
    for name in (
        "user_embeddings",
        "movie_embeddings",
        "user_biases",
        "movie_biases",
        "user_ids",
        "movie_ids",
    ):
        # The model and its vocabularies hold the mapped arrays themselves, not copies.
        owner = (lambda bundle: bundle) if name.endswith("_ids") else (lambda bundle: bundle.model)
        copy, shared = getattr(owner(read), name), getattr(owner(mapped), name)
        assert type(shared) is np.ndarray and shared.dtype == copy.dtype and np.array_equal(shared, copy)
        assert not shared.flags.writeable and isinstance(shared.base, np.memmap)
        with pytest.raises(ValueError, match="read-only"):
            shared[...] = 0
    pairs = np.array([0, 1]), np.array([1, 0])
    assert np.array_equal(
        mapped.model.predict_ids(mapped.user_ids[pairs[0]], mapped.movie_ids[pairs[1]]),
        read.model.predict_ids(read.user_ids[pairs[0]], read.movie_ids[pairs[1]]),
    )


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mapped"])
def test_extra_arrays_are_loaded_with_the_bundle_and_mapped_in_a_mapped_bundle(tmp_path, mmap):
    path = random_bundle(tmp_path / "b")
    labels = np.arange(len(Bundle.load(path).movie_ids), dtype=np.int32)
    update_bundle(path, {"labels.npy": npy_writer(labels)}, {})
    bundle = Bundle.load(path, mmap=mmap)
    array = bundle.array("labels.npy")
    assert np.array_equal(array, labels) and bundle.array("labels.npy") is array  # read once, at load
    assert isinstance(array.base, np.memmap) == mmap and array.flags.writeable == (not mmap)
    with pytest.raises(BundleError, match="absent.npy: not in this bundle"):
        bundle.array("absent.npy")


def test_well_formed_clusters_load(tmp_path):
    path = random_bundle(tmp_path / "b")
    _clusters(json.dumps([GOOD_SUMMARY]))(path)
    assert Bundle.load(path).json("clusters.json") == [GOOD_SUMMARY]


def test_a_manifest_is_written_as_strict_json_or_not_at_all(tmp_path):
    path = random_bundle(tmp_path / "b", seed=1)
    before = (path / "manifest.json").read_bytes()
    figures = {"evaluation": {"similar": {"20": {"model": float("nan")}}}}
    with pytest.raises(
        BundleError,
        match=r"manifest.json: evaluation.similar.20.model is nan; JSON holds finite numbers only",
    ):
        update_bundle(path, {}, figures)
    with pytest.raises(BundleError, match=r"notes.json: a.1 is inf"):
        update_bundle(path, {"notes.json": json_writer({"a": [0, float("inf")]})}, {})
    assert (path / "manifest.json").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "b",
        os.readlink(path),
    ]


def test_shape_mismatch_is_refused_even_with_a_valid_checksum(tmp_path):
    path = random_bundle(tmp_path / "b")
    rewrite_file_and_manifest(path, "movie_biases.npy", npy_writer(np.zeros(4, np.float32)))
    with pytest.raises(BundleError, match="movie_biases.npy: has 4 rows, expected 9"):
        Bundle.load(path)


def test_object_arrays_are_refused(tmp_path):
    path = random_bundle(tmp_path / "b")
    objects = np.array([{"evil": 1}] * 6, dtype=object)
    rewrite_file_and_manifest(path, "user_ids.npy", lambda p: np.save(p, objects, allow_pickle=True))
    with pytest.raises(
        BundleError,
        match="user_ids.npy: unreadable \\(Object arrays cannot be loaded when allow_pickle=False",
    ):
        Bundle.load(path)
    with pytest.raises(BundleError, match="object array"):
        npy_writer(objects)


def test_wrong_schema_version_is_refused(tmp_path):
    path = random_bundle(tmp_path / "b")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="schema_version 99"):
        Bundle.load(path)


def test_an_exception_between_files_leaves_the_previous_bundle(tmp_path):
    path = random_bundle(tmp_path / "b", seed=1)
    before = Bundle.load(path).model.user_embeddings.copy()

    def explode(_path):
        raise RuntimeError("disk on fire")

    files = {"user_embeddings.npy": npy_writer(np.zeros((6, 3), np.float32)), "movie_biases.npy": explode}
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_bundle(path, files, {"global_mean": 0.0, "rating_scale": [1, 5]})
    with pytest.raises(RuntimeError, match="disk on fire"):
        update_bundle(path, files, {})
    assert np.array_equal(Bundle.load(path).model.user_embeddings, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", os.readlink(path)], (
        "temporary folders must be cleaned up"
    )


def test_a_killed_writer_leaves_the_previous_bundle(tmp_path):
    path = random_bundle(tmp_path / "b", seed=2)
    before = Bundle.load(path).model.movie_embeddings.copy()
    script = textwrap.dedent(
        f"""
        import sys, time
        import numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from embedder.bundle import npy_writer, write_bundle

        def stall(path):
            print("writing", flush=True)
            time.sleep(60)

        files = {{"movie_embeddings.npy": npy_writer(np.zeros((9, 3), np.float32)), "seen.npz": stall}}
        write_bundle({str(path)!r}, files, {{"global_mean": 0.0, "rating_scale": [1, 5]}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert np.array_equal(Bundle.load(path).model.movie_embeddings, before)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("b", os.readlink(path))]
    assert all(name.startswith(".b.tmp-") for name in leftovers), leftovers


def test_update_through_a_link_publishes_a_new_version_and_leaves_the_old_one(tmp_path):
    path = random_bundle(tmp_path / "b")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    link = point_current(tmp_path / "current", path)
    new = update_bundle(
        link, {"labels.npy": npy_writer(np.arange(9, dtype=np.int32))}, {"clusters": {"k": 3}}
    )
    bundle = Bundle.load(link)
    assert (
        bundle.path == new.resolve() != path.resolve()
        and os.readlink(link) == new.name
        and new.name.startswith("b+")
    )
    assert bundle.array("labels.npy").tolist() == list(range(9))
    assert bundle.manifest["clusters"] == {"k": 3} and "updated" in bundle.manifest
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # the old version is untouched
    assert (new / "user_ids.npy").stat().st_ino == (path / "user_ids.npy").stat().st_ino  # hard-linked
    again = update_bundle(link, {}, {"note": 1})
    assert again.name.startswith("b+") and again != new  # versions of b, not of b+...


def _versions(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(name + "+"))


def test_update_of_a_named_bundle_moves_its_link_to_a_new_version_and_keeps_the_old(tmp_path):
    path = random_bundle(tmp_path / "b")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    new = update_bundle(path, {}, {"note": 1})
    old, newest = _versions(tmp_path, "b")
    assert new == tmp_path / newest and path.is_symlink() and os.readlink(path) == newest
    assert Bundle.load(path).manifest["note"] == 1 and Bundle.load(path).path == new
    assert {
        p.name: p.read_bytes() for p in (tmp_path / old).iterdir()
    } == before  # the old content, kept as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", old, newest]  # nothing hidden left behind
    again = update_bundle(path, {}, {"note": 2})
    assert (
        again.name.startswith("b+")
        and Bundle.load(path).manifest["note"] == 2
        and len(_versions(tmp_path, "b")) == 3
    )


def test_a_named_bundle_is_a_link_to_its_versions_and_every_write_a_new_version(tmp_path):
    path = random_bundle(tmp_path / "X", seed=1)
    assert path == tmp_path / "X" and path.is_symlink()  # made a link by its first publish
    random_bundle(tmp_path / "X", seed=2)
    random_bundle(tmp_path / "X", seed=3)
    versions = _versions(tmp_path, "X")
    assert (
        len(versions) == 3
        and os.readlink(path) == versions[-1]
        and sorted(p.name for p in tmp_path.iterdir()) == ["X", *versions]
    )
    seeds = [Bundle.load(tmp_path / name).model.user_embeddings[0, 0] for name in versions]
    assert seeds == [
        Bundle.load(random_bundle(tmp_path / f"s{seed}", seed=seed)).model.user_embeddings[0, 0]
        for seed in (1, 2, 3)
    ]


def test_a_name_ending_in_a_stamp_is_a_version_written_once_in_place(tmp_path):
    path = random_bundle(tmp_path / "ml-100k-20260101T000000000000Z")
    assert path.is_dir() and not path.is_symlink() and Bundle.load(path).path == path
    with pytest.raises(
        BundleError, match="ml-100k-20260101T000000000000Z: is a published version, which never changes"
    ):
        update_bundle(path, {}, {"note": 1})


def test_a_folder_that_is_not_a_bundle_is_never_replaced_and_a_copied_bundle_becomes_a_link(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"cat")
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        BundleError,
        match="photos: is a folder but not a bundle \\(no manifest.json\\); refusing to replace it",
    ):
        random_bundle(tmp_path / "photos")
    with pytest.raises(BundleError, match="file: is a file, not a bundle folder"):
        random_bundle(tmp_path / "file")
    assert (tmp_path / "photos" / "cat.jpg").read_bytes() == b"cat" and sorted(
        p.name for p in tmp_path.iterdir()
    ) == ["file", "photos"]
    (tmp_path / "empty").mkdir()
    assert Bundle.load(random_bundle(tmp_path / "empty")).path.name.startswith(
        "empty+"
    )  # an empty folder becomes the link
    copy = plain_bundle(tmp_path / "copy", seed=5)
    before = Bundle.load(copy).model.user_embeddings.copy()
    assert Bundle.load(update_bundle(copy, {}, {"note": 1})).manifest["note"] == 1 and copy.is_symlink()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("copy+") and p.resolve() != copy.resolve()]
    assert len(kept) == 1 and np.array_equal(Bundle.load(kept[0]).model.user_embeddings, before)


CRASH = """
import os, sys
sys.path.insert(0, {root!r})
import embedder.bundle as bundle
from tests.conftest import random_bundle

calls = [0]

def crash_after(step):  # do the step, then die as a kill -9 would when it is the Nth
    def run(*args):
        step(*args)
        calls[0] += 1
        if calls[0] == {n}:
            os._exit(9)
    return run

os.rename, os.replace = crash_after(os.rename), crash_after(os.replace)
"""

PUBLISH = {
    # train --out X, X a bundle written before: (path named, its writer)
    "write over a named bundle": ("x", "random_bundle({x!r}, seed=4)"),
    # search build --bundle X
    "update a named bundle": ("x", "bundle.update_bundle({x!r}, {{}}, {{'note': 'new'}})"),
    # search build through current
    "update through current": ("current", "bundle.update_bundle({current!r}, {{}}, {{'note': 'new'}})"),
}


def _is_new(bundle: Bundle, old: Bundle) -> bool:
    return bundle.manifest.get("note") == "new" or not np.array_equal(
        bundle.model.user_embeddings, old.model.user_embeddings
    )


@pytest.mark.parametrize("how", PUBLISH)
def test_a_crash_between_the_steps_of_a_replacement_leaves_the_old_or_the_new_bundle(tmp_path, how):
    """os._exit right after each rename or link move of a publish: the named path loads a complete bundle,
    the old one or the new one, and the other path stays on the old one."""
    outcomes = []
    for n in range(1, 4):
        root = tmp_path / str(n)
        paths = {"x": random_bundle(root / "bundles" / "X", seed=3, n_users=12, n_movies=20)}
        paths["current"] = point_current(root / "current", paths["x"])
        old = Bundle.load(paths["x"])
        named, writer = PUBLISH[how]
        script = CRASH.format(root=str(ROOT), n=n) + writer.format(
            **{key: str(path) for key, path in paths.items()}
        )
        code = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert code.returncode in (0, 9), code.stderr
        loaded = {key: Bundle.load(path) for key, path in paths.items()}  # raises unless complete
        assert not _is_new(loaded["current" if named == "x" else "x"], old)
        outcomes.append(("new" if _is_new(loaded[named], old) else "old", code.returncode))
    assert outcomes == [("old", 9), ("new", 9), ("new", 0)], outcomes


def test_a_publish_removes_old_staging_leftovers_and_spares_young_ones(tmp_path):
    bundles = tmp_path / "bundles"
    random_bundle(bundles / "a")
    old_time = time.time() - 2 * 3600
    leftovers = {}
    for name, age in [
        (".old.tmp-abcd1234", old_time),
        (".young.tmp-efgh5678", time.time()),
        (".busy.tmp-ijkl9012", old_time),
    ]:
        (bundles / name).mkdir()
        (bundles / name / "user_ids.npy").write_bytes(b"partial")
        os.utime(bundles / name / "user_ids.npy", (age, age))
        os.utime(bundles / name, (old_time, old_time))
        leftovers[name] = bundles / name
    os.utime(leftovers[".busy.tmp-ijkl9012"] / "user_ids.npy")  # a writer at work on an old folder
    (bundles / ".nested.tmp-mnop3456" / "sub").mkdir(parents=True)  # not ours: staging folders are flat
    (bundles / ".notes.tmp-x").mkdir()  # not our naming
    (tmp_path / ".current.tmp-qrst7890").symlink_to("bundles/a")
    (tmp_path / ".current.tmp-uvwx1234").symlink_to("bundles/a")
    for name in (".current.tmp-qrst7890", ".nested.tmp-mnop3456", ".notes.tmp-x"):
        entry = tmp_path / name if name.startswith(".current") else bundles / name
        os.utime(entry, (old_time, old_time), follow_symlinks=False)
    random_bundle(bundles / "b")  # the next publish into the same folder
    point_current(tmp_path / "current", bundles / "b")
    names = sorted(p.name for p in bundles.iterdir() if "+" not in p.name)  # less the versions of a and b
    assert names == [
        ".busy.tmp-ijkl9012",
        ".nested.tmp-mnop3456",
        ".notes.tmp-x",
        ".young.tmp-efgh5678",
        "a",
        "b",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".current.tmp-uvwx1234", "bundles", "current"]


def test_point_current_switches_the_link(tmp_path):
    first = random_bundle(tmp_path / "one", seed=1)
    second = random_bundle(tmp_path / "two", seed=2)
    link = point_current(tmp_path / "current", first)
    assert Bundle.load(link).path == first.resolve()
    point_current(link, second)
    assert Bundle.load(link).path == second.resolve()


def test_files_read_after_loading_are_checked_again(tmp_path):
    path = random_bundle(tmp_path / "b")
    update_bundle(
        path, {"notes.json": lambda p: p.write_text('{"a": 1}'), "notes.txt": lambda p: p.write_text("a")}, {}
    )
    bundle = Bundle.load(path)
    assert bundle.json("notes.json") == {"a": 1} and bundle.read_bytes("notes.txt") == b"a"
    (path / "notes.txt").write_text("b")
    with pytest.raises(
        BundleError, match="notes.txt: checksum mismatch \\(the file changed after the bundle was loaded\\)"
    ):
        bundle.read_bytes("notes.txt")
    (path / "notes.txt").unlink()
    (path / "notes.txt").symlink_to(path / "manifest.json")
    with pytest.raises(BundleError, match="notes.txt: unreadable after the bundle was loaded"):
        bundle.read_bytes("notes.txt")
