"""``python -m search``: every command on a bundle trained in seconds; JSON, tables, exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from search import Recommender
from search.cli import main
from tests.conftest import ROOT


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def subprocess_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def rec(built_tiny):
    return Recommender.load(built_tiny)


@pytest.mark.parametrize("command", [[], ["build"], ["recommend"], ["similar"], ["clusters"]])
def test_every_command_has_help(command):
    result = subprocess_run(*command, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


def test_build_command(tmp_path, tiny_bundle, capsys):
    path = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, path)
    code, out, err = run(capsys, "build", "--bundle", str(path), "--clusters", "3", "--seed", "5")
    assert code == 0 and "3 clusters" in out and "silhouette" in err
    assert Recommender.load(path).bundle.manifest["clusters"]["seed"] == 5
    assert err.endswith(
        f"1 earlier version(s) kept beside it: `python -m embedder bundles --bundle {path} --keep 1` removes them\n"
    )


def test_recommend_json_and_table(built_tiny, rec, capsys):
    user = int(rec.user_ids[4])
    code, out, _ = run(capsys, "recommend", "--bundle", built_tiny, "--user", str(user), "-k", "5", "--json")
    assert code == 0
    data = json.loads(out)
    ids, scores, _ = rec.recommend(user, k=5)
    assert data["user_id"] == user
    assert [i["movie_id"] for i in data["items"]] == ids.tolist()
    assert [i["score"] for i in data["items"]] == pytest.approx(scores.tolist(), abs=1e-6)
    assert {"title", "genres", "rating_count", "mean_rating", "cluster"} <= set(data["items"][0])
    code, out, _ = run(capsys, "recommend", "--bundle", built_tiny, "--user", str(user), "-k", "3")
    assert code == 0
    assert "score" in out and rec.catalogue.movie(int(ids[0]))["title"][:40] in out
    assert len(out.strip().splitlines()) == 3 + 3  # heading, header, rule, rows


def test_recommend_flags_reach_the_api(built_tiny, rec, capsys):
    user = int(rec.user_ids[0])
    code, out, _ = run(
        capsys,
        "recommend",
        "--bundle",
        built_tiny,
        "--user",
        str(user),
        "--include-seen",
        "--min-ratings",
        "60",
        "--json",
    )
    assert code == 0
    got = [i["movie_id"] for i in json.loads(out)["items"]]
    assert got == rec.recommend(user, exclude_seen=False, min_ratings=60)[0].tolist()
    assert all(i["rating_count"] >= 60 for i in json.loads(out)["items"])


def test_similar_by_id_and_by_title(built_tiny, rec, capsys):
    movie = int(rec.movie_ids[0])
    code, out, _ = run(capsys, "similar", "--bundle", built_tiny, "--movie", str(movie), "-k", "4", "--json")
    data = json.loads(out)
    assert code == 0 and data["movie_id"] == movie and len(data["items"]) == 4
    assert [i["movie_id"] for i in data["items"]] == rec.similar(movie, k=4)[0].tolist()
    title = rec.catalogue.movie(movie)["title"]
    code, out, _ = run(
        capsys, "similar", "--bundle", built_tiny, "--movie", title.upper(), "-k", "4", "--json"
    )
    assert code == 0 and json.loads(out)["movie_id"] == movie
    code, out, _ = run(capsys, "similar", "--bundle", built_tiny, "--movie", str(movie))
    assert code == 0 and "who rated them" in out and title in out


def test_ambiguous_title_lists_candidates_and_exits_2(built_tiny, capsys):
    # The tiny bundle's movies are titled "Movie <id>": "ovie 1" is in many, exactly none.
    code, out, err = run(capsys, "similar", "--bundle", built_tiny, "--movie", "ovie 1")
    assert code == 2 and out == ""
    assert err.startswith("error: 'ovie 1' matches") and "pass one id" in err
    assert len(err.strip().splitlines()) > 2


def test_clusters_table_one_cluster_and_json(built_tiny, rec, capsys):
    code, out, _ = run(capsys, "clusters", "--bundle", built_tiny)
    assert code == 0 and "silhouette" in out and "most rated" in out
    code, out, _ = run(capsys, "clusters", "--bundle", built_tiny, "--json")
    data = json.loads(out)
    assert code == 0 and len(data["clusters"]) == 4 and "nmi_random" in data["quality"]
    code, out, _ = run(capsys, "clusters", "--bundle", built_tiny, "--cluster", "1", "--json")
    data = json.loads(out)
    assert code == 0 and [m["movie_id"] for m in data["members"]] == rec.catalogue.cluster_members(1)
    code, out, _ = run(capsys, "clusters", "--bundle", built_tiny, "--cluster", "1", "--limit", "3")
    assert code == 0 and "Cluster 1" in out and "lift" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["recommend", "--user", "99999"], "error: unknown user 99999"),
        (["similar", "--movie", "99999"], "error: unknown movie '99999'"),
        (["similar", "--movie", "no such title"], "error: unknown movie 'no such title'"),
        (["clusters", "--cluster", "99"], "error: unknown cluster 99"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(built_tiny, capsys, args, message):
    code, out, err = run(capsys, *args[:1], "--bundle", built_tiny, *args[1:])
    assert code == 2 and out == ""
    assert err.startswith(message) and len(err.strip().splitlines()) == 1


def test_unbuilt_and_missing_bundles_exit_2(tiny_bundle, tmp_path, capsys):
    code, _, err = run(capsys, "clusters", "--bundle", tiny_bundle)
    assert code == 2 and "python -m search build" in err
    code, _, err = run(capsys, "recommend", "--bundle", str(tmp_path / "none"), "--user", "1")
    assert code == 2 and "no bundle folder" in err


@pytest.mark.parametrize(
    "args",
    [
        ["recommend", "--user", "1", "-k", "0"],
        ["recommend", "--user", "x"],
        ["similar", "--movie", "1", "-k", "two"],
        ["build", "--index", "annoy"],
    ],
)
def test_bad_flags_exit_2_without_traceback(built_tiny, args):
    result = subprocess_run(*args[:1], "--bundle", built_tiny, *args[1:])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "error:" in result.stderr


def test_unknown_user_in_a_real_process_has_no_traceback(built_tiny):
    result = subprocess_run("recommend", "--bundle", built_tiny, "--user", "99999")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown user 99999"


def test_build_takes_a_recall_target_and_records_it(planted_bundle, tmp_path, capsys):
    import json
    import shutil

    from search.cli import main as search_main

    copy = tmp_path / "bundle"
    shutil.copytree(planted_bundle, copy)
    assert (
        search_main(
            ["build", "--bundle", str(copy), "--index", "hnsw", "--recall", "0.99", "--clusters", "3"]
        )
        == 0
    )
    index = json.loads((copy / "manifest.json").read_text())["index"]
    assert index["target_recall"] == 0.99 and index["recall_at_10"] >= 0.99
    for bad in ("0", "1.5", "most"):
        with pytest.raises(SystemExit):
            search_main(["build", "--bundle", str(copy), "--recall", bad])
        assert "argument --recall" in capsys.readouterr().err


def test_a_misspelled_rated_title_is_taken_and_shown(films_bundle, capsys):
    code, out, err = run(capsys, "recommend", "--bundle", films_bundle, "--rate", "Starwarz=5", "--json")
    assert code == 0 and json.loads(out)["ratings"] == [{"movie_id": 101, "rating": 5.0}]
    assert "--rate 'Starwarz=5': Starwarz → Star Wars (1977) (movie 101)" in err


def test_an_ambiguous_rated_title_exits_2_with_the_candidates(films_bundle, capsys):
    code, out, err = run(capsys, "recommend", "--bundle", films_bundle, "--rate", "godfather=4")
    assert code == 2 and out == ""
    assert err.startswith(
        "error: --rate 'godfather=4': 'godfather' matches 2 movies; pass its id with --rate"
    )
    assert "104  Godfather, The (1972)" in err and "105  Godfather: Part II, The (1974)" in err
