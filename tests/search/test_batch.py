"""Every user's top-K to parquet (``python -m search recommend-all``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from threadpoolctl import threadpool_info

from search.batch import Shard, write_recommendations
from search.cli import main
from search.recommender import Recommender


@pytest.fixture(scope="module")
def rec(planted_bundle):
    return Recommender.load(planted_bundle)


def _brute_force(rec: Recommender, k: int) -> pd.DataFrame:
    """Top-k of every user from float64 predictions over all unseen movies."""
    b, model = rec.bundle, rec.bundle.model
    scores = (
        model.global_mean
        + model.user_biases[:, None].astype(np.float64)
        + model.movie_biases[None, :]
        + model.user_embeddings.astype(np.float64) @ model.movie_embeddings.T
    )
    scores[b.seen.toarray() != 0] = -np.inf
    rows = []
    for u, row in enumerate(scores):
        order = np.argsort(-row, kind="stable")[:k]
        order = order[np.isfinite(row[order])]
        rows += [(int(b.user_ids[u]), r + 1, int(b.movie_ids[m]), row[m]) for r, m in enumerate(order)]
    return pd.DataFrame(rows, columns=["user_id", "rank", "movie_id", "score"])


def test_the_file_holds_every_users_top_k_by_predicted_rating(rec, tmp_path):
    done = write_recommendations(rec, tmp_path / "all.parquet", k=7, order="rating")
    table = pq.read_table(done.path)
    assert [f.name for f in table.schema] == ["user_id", "rank", "movie_id", "score", "relevance"]
    got = table.to_pandas()
    expected = _brute_force(rec, 7)
    assert done.users == len(rec.user_ids) and done.rows == len(got) == len(expected)
    assert (
        got[["user_id", "rank", "movie_id"]].to_numpy().tolist()
        == expected[["user_id", "rank", "movie_id"]].to_numpy().tolist()
    )
    np.testing.assert_allclose(got["score"], expected["score"], atol=1e-4)  # score == predicted rating
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_workers_write_the_same_file_as_one(rec, tmp_path):
    one = pq.read_table(
        write_recommendations(rec, tmp_path / "one.parquet", k=5, batch_size=7).path
    ).to_pandas()
    two = pq.read_table(
        write_recommendations(rec, tmp_path / "two.parquet", k=5, batch_size=7, workers=2).path
    ).to_pandas()
    pd.testing.assert_frame_equal(two, one)


def test_shards_together_are_the_whole_file_once(rec, tmp_path):
    whole = write_recommendations(rec, tmp_path / "all.parquet", k=3).path
    parts = [
        pq.read_table(
            write_recommendations(rec, tmp_path / f"{i}.parquet", k=3, shard=Shard(i, 3)).path
        ).to_pandas()
        for i in range(3)
    ]
    assert all(len(p) for p in parts)
    users = [set(p["user_id"]) for p in parts]
    assert not (users[0] & users[1] or users[1] & users[2] or users[0] & users[2])
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), pq.read_table(whole).to_pandas())


def test_a_failed_write_leaves_the_old_file_and_no_leftovers(rec, tmp_path, monkeypatch):
    out = tmp_path / "all.parquet"
    write_recommendations(rec, out, k=2)
    before = out.read_bytes()

    def broken(*args, **kwargs):
        yield next(iter(Recommender.recommend_all(rec, k=2, batch_size=10)))
        raise RuntimeError("disk full")

    monkeypatch.setattr(rec, "recommend_all", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_recommendations(rec, out, k=2, batch_size=10)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.parquet"]


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "2", "1/2/3", "-1/2"])
def test_bad_shards_are_refused(text):
    with pytest.raises(ValueError, match="I/N"):
        Shard.parse(text)


def test_shard_rows_split_the_users_evenly():
    spans = [Shard(i, 4).rows(10) for i in range(4)]
    assert [(s.start, s.stop) for s in spans] == [(0, 2), (2, 5), (5, 7), (7, 10)]


def test_cli_writes_the_file_and_names_bad_arguments(planted_bundle, tmp_path, capsys):
    out = tmp_path / "k4.parquet"
    assert (
        main(
            [
                "recommend-all",
                "--bundle",
                planted_bundle,
                "--out",
                str(out),
                "-k",
                "4",
                "--shard",
                "2/2",
                "--quiet",
            ]
        )
        == 0
    )
    assert "(shard 2/2)" in capsys.readouterr().out
    assert pq.read_table(out).num_rows > 0
    blas_before = [pool["num_threads"] for pool in threadpool_info()]
    one = tmp_path / "one.parquet"
    assert (
        main(
            [
                "recommend-all",
                "--bundle",
                planted_bundle,
                "--out",
                str(one),
                "-k",
                "4",
                "--shard",
                "2/2",
                "--quiet",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert (
        pq.read_table(one).to_pandas().equals(pq.read_table(out).to_pandas())
    )  # the default (a worker a core) writes the same rows
    assert [
        pool["num_threads"] for pool in threadpool_info()
    ] == blas_before  # the command's BLAS limit ended with it
    with pytest.raises(SystemExit):
        main(["recommend-all", "--bundle", planted_bundle, "--out", str(out), "--workers", "0"])
    assert "argument --workers" in capsys.readouterr().err
    assert main(["recommend-all", "--bundle", planted_bundle, "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert (
        main(["recommend-all", "--bundle", planted_bundle, "--out", str(tmp_path / "no" / "x.parquet")]) == 2
    )
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["recommend-all", "--bundle", planted_bundle, "--out", str(out), "--shard", "3/2"])
    assert "argument --shard" in capsys.readouterr().err
