"""Listing and pruning the published bundles (embedder/artifacts.py, ``python -m embedder bundles``)."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from embedder.artifacts import (
    BUNDLE,
    LEFTOVER,
    LINK,
    NOT_A_BUNDLE,
    list_bundles,
    list_versions,
    prune_bundles,
    prune_versions,
)
from embedder.bundle import Bundle, BundleError
from tests.embedder.conftest import NEWEST_FIRST, OLD_LEFTOVERS, YOUNG_LEFTOVERS, make_artifacts


def _names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_list_bundles_describes_every_entry(tmp_path):
    artifacts = make_artifacts(tmp_path)
    rows = list_bundles(artifacts)
    entries = [row for row in rows if row.kind != LEFTOVER]
    assert [(row.name, row.kind) for row in entries] == [(name, BUNDLE) for name in NEWEST_FIRST] + [
        ("notes", NOT_A_BUNDLE),
        ("alias", LINK),
    ]
    by_name = {row.name: row for row in entries}
    assert by_name["c-newest"].created == datetime(2026, 4, 1, tzinfo=timezone.utc)
    assert by_name["e-no-created"].created == datetime(2025, 12, 1, tzinfo=timezone.utc)  # the folder's mtime
    assert [row.name for row in rows if row.current] == ["a-oldest"]
    assert by_name["c-newest"].test_rmse == pytest.approx(0.93) and by_name[
        "a-oldest"
    ].test_rmse == pytest.approx(0.90)
    assert by_name["b-newer"].test_rmse is None
    folder = artifacts / "bundles" / "d-middle"
    assert by_name["d-middle"].bytes == sum(path.stat().st_size for path in folder.iterdir())
    assert by_name["alias"].bytes is None  # a link is not followed, not even to measure it
    leftovers = {str(row.path.relative_to(artifacts)) for row in rows if row.kind == LEFTOVER}
    assert leftovers == OLD_LEFTOVERS | YOUNG_LEFTOVERS  # .c-newest.old-* is no staging leftover


@pytest.mark.parametrize("keep", [1, 2, 3, 10])
def test_prune_keeps_the_newest_bundles_and_the_current_one(tmp_path, keep):
    artifacts = make_artifacts(tmp_path)
    result = prune_bundles(artifacts, keep)
    kept = set(NEWEST_FIRST[:keep]) | {"a-oldest"}
    assert {row.name for row in result.removed if row.kind == BUNDLE} == set(NEWEST_FIRST) - kept
    visible = {name for name in _names(artifacts / "bundles") if not name.startswith(".")}
    assert visible == kept | {"notes", "alias"}
    assert Bundle.load(artifacts / "current").path == (artifacts / "bundles" / "a-oldest").resolve()


def test_prune_spares_young_leftovers_non_bundles_links_and_everything_else(tmp_path):
    artifacts = make_artifacts(tmp_path)
    result = prune_bundles(artifacts, 1)
    removed = {str(row.path.relative_to(artifacts)) for row in result.removed if row.kind == LEFTOVER}
    assert removed == OLD_LEFTOVERS
    hidden = {f"bundles/{name}" for name in _names(artifacts / "bundles") if name.startswith(".")}
    assert hidden == {"bundles/.c-newest.old-1a2b3c4d"} | (YOUNG_LEFTOVERS - {".current.tmp-young002"})
    assert _names(artifacts) == {"bundles", "current", ".current.tmp-young002", "notes.txt"}
    assert (artifacts / "bundles" / "notes" / "todo.txt").read_text() == "retrain\n"
    assert (artifacts / "bundles" / "alias").is_symlink()
    assert (
        Bundle.load(tmp_path / "elsewhere").manifest["created"].startswith("2020")
    )  # neither link was followed
    assert {row.name for row in result.kept if row.kind in (LINK, NOT_A_BUNDLE)} == {"alias", "notes"}


def test_listing_a_missing_artifacts_folder_is_an_error_and_an_empty_one_lists_nothing(tmp_path):
    with pytest.raises(BundleError, match="nowhere: no artifacts folder"):
        list_bundles(tmp_path / "nowhere")
    with pytest.raises(BundleError, match="nowhere: no artifacts folder"):
        prune_bundles(tmp_path / "nowhere", 1)
    (tmp_path / "empty").mkdir()
    assert list_bundles(tmp_path / "empty") == []
    with pytest.raises(ValueError, match="keep must be at least 1"):
        prune_bundles(tmp_path / "empty", 0)


def test_an_entry_that_vanishes_while_listing_is_skipped(tmp_path, monkeypatch):
    import embedder.artifacts as artifacts_module

    artifacts = make_artifacts(tmp_path)
    entries = artifacts_module._entries
    # As when a writer renames its staging folder into place between reading the folder and looking at it.
    monkeypatch.setattr(
        artifacts_module,
        "_entries",
        lambda folder: entries(folder) + [folder / ".gone.tmp-1234", folder / "gone"],
    )
    names = {row.name for row in list_bundles(artifacts)}
    assert "gone" not in names and ".gone.tmp-1234" not in names and set(NEWEST_FIRST) <= names


def test_prune_never_removes_what_a_link_points_at(tmp_path):
    """After `search build` through current (a new version beside a-oldest, current moved to it), a link of
    the user's own in artifacts/ protects its bundle too, and so does a hidden one a writer may be about to
    make current."""
    from embedder.bundle import update_bundle

    artifacts = make_artifacts(tmp_path)
    bundles = artifacts / "bundles"
    new = update_bundle(artifacts / "current", {}, {"note": "built"})
    (artifacts / "best").symlink_to("bundles/d-middle")
    rows = {row.name: row for row in list_bundles(artifacts)}
    assert new.parent == bundles and new.name.startswith("a-oldest+")
    assert rows[new.name].current and rows[new.name].kind == BUNDLE and not rows["a-oldest"].current
    result = prune_bundles(artifacts, 1)
    kept = {row.name for row in result.kept if row.kind == BUNDLE}
    # The newest is the current one; d-middle is linked from best, c-newest from .current.tmp-young002.
    assert kept == {new.name, "d-middle", "c-newest"}
    assert not (bundles / ".f-crashed.tmp-old00001").exists()  # the publish cleared the old leftover already
    assert Bundle.load(artifacts / "current").manifest["note"] == "built"
    assert Bundle.load(artifacts / "best").path == (bundles / "d-middle").resolve()


def _versions_of_mine(tmp_path):
    """``mine`` written, then replaced twice (as `search build --bundle mine` does): the
    link ``mine`` on the newest of three versions; ``best`` links the oldest; other
    bundles (``mine2``, and ``mine+v0`` as a user named it), a leftover of mine2's and
    an old leftover of mine's writers beside them."""
    from embedder.bundle import update_bundle
    from tests.conftest import plain_bundle, random_bundle

    mine = random_bundle(tmp_path / "mine", seed=1)
    first = update_bundle(mine, {}, {"note": "first build"})
    newest = update_bundle(mine, {}, {"note": "second build"})
    oldest = sorted(path for path in tmp_path.glob("mine+*") if path not in (first, newest))[0]
    (tmp_path / "best").symlink_to(oldest.name)
    plain_bundle(tmp_path / "mine2", seed=2)
    plain_bundle(tmp_path / "mine+v0", seed=3)  # named so by the user: no version of mine
    for leftover in (f".{newest.name}.tmp-old00001", ".mine2.tmp-old00002"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "user_ids.npy").write_bytes(b"partial")
        for path in (tmp_path / leftover / "user_ids.npy", tmp_path / leftover):
            os.utime(path, (time.time() - 7200,) * 2)
    return mine, oldest, first, newest


def test_list_versions_names_the_versions_of_one_bundle_only(tmp_path):
    mine, oldest, first, newest = _versions_of_mine(tmp_path)
    rows = list_versions(mine)
    assert [(row.name, row.kind) for row in rows] == [
        (newest.name, BUNDLE),
        (first.name, BUNDLE),
        (oldest.name, BUNDLE),
        ("mine", LINK),
        (f".{newest.name}.tmp-old00001", LEFTOVER),
    ]
    assert [row.name for row in rows if row.current] == [newest.name]
    assert [row.name for row in list_versions(oldest) if row.current] == [
        oldest.name
    ]  # a version named directly
    with pytest.raises(BundleError, match="no bundle there"):
        list_versions(tmp_path / "missing")


def test_versions_count_their_own_bytes_apart_from_the_files_they_share(tmp_path):
    mine, oldest, first, newest = _versions_of_mine(tmp_path)
    rows = {row.name: row for row in list_versions(mine)}
    for version in (oldest, first, newest):
        files = list(version.iterdir())
        row = rows[version.name]
        assert row.bytes == sum(path.stat().st_size for path in files)
        # Each update rewrites the manifest only; the arrays are hard links shared by all three.
        assert row.own_bytes == (version / "manifest.json").stat().st_size < row.bytes
    prune_versions(mine, 1)  # removes the middle one; the newest and the linked oldest still share the arrays
    remaining = [row for row in list_versions(mine) if row.kind == BUNDLE]
    assert [row.name for row in remaining] == [newest.name, oldest.name]
    assert all(row.own_bytes < row.bytes for row in remaining)


def test_prune_versions_keeps_the_newest_the_served_and_the_linked(tmp_path):
    mine, oldest, first, newest = _versions_of_mine(tmp_path)
    result = prune_versions(mine, 1)
    assert {row.name for row in result.removed} == {first.name, f".{newest.name}.tmp-old00001"}
    assert _names(tmp_path) == {
        "mine",
        newest.name,
        oldest.name,
        "best",
        "mine2",
        "mine+v0",
        ".mine2.tmp-old00002",
    }
    assert (
        Bundle.load(mine).manifest["note"] == "second build" and Bundle.load(tmp_path / "best").path == oldest
    )
    assert prune_versions(mine, 1).removed == []
