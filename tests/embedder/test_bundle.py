"""Bundle export/load round trip, atomic writes, and refusal of corrupt bundles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedder.bundle import Bundle, BundleError, npy_writer, point_current, update_bundle, write_bundle
from embedder.metrics import rating_errors
from embedder.split import canonical_split
from tests.conftest import edit_manifest, random_bundle, rewrite_file_and_manifest, write_synthetic_bundle

ROOT = Path(__file__).resolve().parents[2]


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
    assert np.array_equal(bundle.user_embeddings, P.astype(np.float32))
    assert np.array_equal(bundle.movie_ids, np.arange(101, 106))
    assert bundle.global_mean == 3.0 and bundle.rating_scale == (1.0, 5.0)
    expected = np.clip(3.0 + P[1] @ Q[2], 1, 5)
    assert bundle.predict(np.array([2]), np.array([103]))[0] == pytest.approx(expected, abs=1e-5)
    # Fallback: an unknown user gets μ + b_i (b_i is 0 here), unknown movie μ + b_u.
    assert bundle.predict(np.array([999]), np.array([103]))[0] == pytest.approx(3.0)


def _link_out(path: Path) -> None:
    """Move a file out of the bundle and leave a link to it (its checksum still matches)."""
    outside = path.parent / "outside.npy"
    (path / "user_ids.npy").rename(outside)
    (path / "user_ids.npy").symlink_to(outside)


def _huge_header(path: Path) -> None:
    header = (path / "user_biases.npy").read_bytes()
    rewrite_file_and_manifest(path, "user_biases.npy", lambda p: p.write_bytes(header.replace(b"(6,)", b"(10000000000000,)".ljust(4))))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "movie_biases.npy").unlink(), "movie_biases.npy: missing"),
        (lambda p: (p / "manifest.json").unlink(), "manifest.json: missing"),
        (lambda p: (p / "manifest.json").write_text("{not json"), "manifest.json: not valid JSON"),
        (lambda p: (p / "user_ids.npy").write_bytes((p / "user_ids.npy").read_bytes()[:-8] + b"\x00" * 8), "user_ids.npy: checksum mismatch"),
        (_link_out, "user_ids.npy: is a symbolic link"),
        (lambda p: edit_manifest(p, lambda m: m["files"].update({"user_ids.npy": "abc"})), "the entry of 'user_ids.npy' must be an object"),
        (lambda p: edit_manifest(p, lambda m: m.update(rating_scale=[5])), "'rating_scale' must be \\[lowest, highest\\]"),
        (lambda p: edit_manifest(p, lambda m: m.update(rating_scale=[5, 1])), "'rating_scale' must be"),
        (lambda p: edit_manifest(p, lambda m: m.update(global_mean="abc")), "manifest.json: 'global_mean' must be a finite number"),
        (lambda p: edit_manifest(p, lambda m: m.pop("global_mean")), "manifest.json: 'global_mean' must be a finite number"),
        (_huge_header, "user_biases.npy: unreadable .npy file"),
    ],
)
def test_damaged_or_malformed_bundles_are_one_error_naming_the_file(tmp_path, damage, message):
    path = random_bundle(tmp_path / "b")
    damage(path)
    with pytest.raises(BundleError, match=message):
        Bundle.load(path)


def test_shape_mismatch_is_refused_even_with_a_valid_checksum(tmp_path):
    path = random_bundle(tmp_path / "b")
    rewrite_file_and_manifest(path, "movie_biases.npy", npy_writer(np.zeros(4, np.float32)))
    with pytest.raises(BundleError, match="movie_biases.npy: has 4 rows, expected 9"):
        Bundle.load(path)


def test_object_arrays_are_refused(tmp_path):
    path = random_bundle(tmp_path / "b")
    objects = np.array([{"evil": 1}] * 6, dtype=object)
    rewrite_file_and_manifest(path, "user_ids.npy", lambda p: np.save(p, objects, allow_pickle=True))
    with pytest.raises(BundleError, match="user_ids.npy: cannot be loaded without pickle"):
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
    before = Bundle.load(path).user_embeddings.copy()

    def explode(_path):
        raise RuntimeError("disk on fire")

    files = {"user_embeddings.npy": npy_writer(np.zeros((6, 3), np.float32)), "movie_biases.npy": explode}
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_bundle(path, files, {"global_mean": 0.0, "rating_scale": [1, 5]})
    with pytest.raises(RuntimeError, match="disk on fire"):
        update_bundle(path, files, {})
    assert np.array_equal(Bundle.load(path).user_embeddings, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"], "temporary folders must be cleaned up"


def test_a_killed_writer_leaves_the_previous_bundle(tmp_path):
    path = random_bundle(tmp_path / "b", seed=2)
    before = Bundle.load(path).movie_embeddings.copy()
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
    assert np.array_equal(Bundle.load(path).movie_embeddings, before)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "b"]
    assert all(name.startswith(".b.tmp-") for name in leftovers), leftovers


def test_update_through_a_link_publishes_a_new_version_and_leaves_the_old_one(tmp_path):
    path = random_bundle(tmp_path / "b")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    link = point_current(tmp_path / "current", path)
    new = update_bundle(link, {"cluster_labels.npy": npy_writer(np.arange(9, dtype=np.int32))}, {"clusters": {"k": 3}})
    bundle = Bundle.load(link)
    assert bundle.path == new.resolve() != path.resolve() and os.readlink(link) == new.name and new.name.startswith("b+")
    assert bundle.array("cluster_labels.npy").tolist() == list(range(9))
    assert bundle.manifest["clusters"] == {"k": 3} and "updated" in bundle.manifest
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # the old version is untouched
    assert (new / "user_ids.npy").stat().st_ino == (path / "user_ids.npy").stat().st_ino  # hard-linked
    again = update_bundle(link, {}, {"note": 1})
    assert again.name.startswith("b+") and again != new  # versions of b, not of b+...


def test_update_of_a_folder_replaces_it_in_place(tmp_path):
    path = random_bundle(tmp_path / "b")
    assert update_bundle(path, {}, {"note": 1}) == path.resolve()
    assert Bundle.load(path).manifest["note"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_an_interrupted_replacement_says_where_the_old_bundle_is(tmp_path):
    path = random_bundle(tmp_path / "b")
    path.rename(tmp_path / ".b.old-1234abcd")  # as a crash between the two renames leaves it
    with pytest.raises(BundleError, match=r"a replacement was interrupted and the previous bundle is at .*\.b\.old-1234abcd"):
        Bundle.load(path)


def test_point_current_switches_the_link(tmp_path):
    first = random_bundle(tmp_path / "one", seed=1)
    second = random_bundle(tmp_path / "two", seed=2)
    link = point_current(tmp_path / "current", first)
    assert Bundle.load(link).path == first.resolve()
    point_current(link, second)
    assert Bundle.load(link).path == second.resolve()


def test_files_read_after_loading_are_checked_again(tmp_path):
    path = random_bundle(tmp_path / "b")
    update_bundle(path, {"notes.json": lambda p: p.write_text('{"a": 1}')}, {})
    bundle = Bundle.load(path)
    assert bundle.json("notes.json") == {"a": 1}
    (path / "notes.json").write_text('{"a": 2}')
    with pytest.raises(BundleError, match="notes.json: checksum mismatch"):
        bundle.json("notes.json")
    (path / "notes.json").unlink()
    (path / "notes.json").symlink_to(path / "manifest.json")
    with pytest.raises(BundleError, match="notes.json: unreadable after the bundle was loaded"):
        bundle.read_bytes("notes.json")
