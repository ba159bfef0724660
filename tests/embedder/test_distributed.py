"""One chain shared by two processes (torch.distributed, gloo on 127.0.0.1).

The warm-up passes are deterministic, so two processes must reproduce one
process's factors; sampling then differs only in each process's own noise, and
the replicated state (factors, μ, α, the stopping rule) must stay identical in
both processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from embedder.distributed import Group
from embedder.gibbs import GibbsSampler
from tests.conftest import ROOT
from tests.embedder.conftest import low_rank_rows

N_USERS, N_MOVIES, DIM = 37, 23, 3  # odd sizes: the last shard is shorter


def _ratings():
    return low_rank_rows(N_USERS, N_MOVIES, density=0.5, seed=11)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sampler() -> GibbsSampler:
    return GibbsSampler(N_USERS, N_MOVIES, DIM, _ratings(), init_std=0.3, seed=5, implicit="both")


def _run_chain(sampler: GibbsSampler) -> dict[str, np.ndarray]:
    sampler.warm_up(ridge=5.0)
    sampler.warm_up(ridge=5.0)
    # Composite rows: own rows plus the implicit parts, whose draws need every process.
    state = {
        "warm_X": sampler.Xc.numpy().copy(),
        "warm_Y": sampler.Yc.numpy().copy(),
        "warm_rmse": sampler.training_rmse(),
    }
    for _ in range(3):
        sampler.sweep()
    state.update(
        X=sampler.Xc.numpy(),
        Y=sampler.Yc.numpy(),
        mu=sampler.mu,
        alpha=sampler.alpha,
        rmse=sampler.training_rmse(),
    )
    return state


def _worker(rank: int, port: int, out: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        sampler = _sampler()
        mine = sampler.users.n_rows, sampler.movies.n_rows, len(sampler.ratings)
        np.savez(Path(out) / f"rank{rank}.npz", rows=np.array(mine), **_run_chain(sampler))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=2, join=True)
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(2)]


def test_shards_cover_every_row_once():
    group = Group()
    for size in (1, 2, 3, 4):
        group.size = size
        ranges = []
        for rank in range(size):
            group.rank = rank
            ranges.append(group.shard(10))
        assert ranges[0][0] == 0 and ranges[-1][1] == 10
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_each_process_keeps_only_the_ratings_of_its_rows(two_processes):
    u, m, r = _ratings()
    users = [int(p["rows"][0]) for p in two_processes]
    movies = [int(p["rows"][1]) for p in two_processes]
    ratings = [int(p["rows"][2]) for p in two_processes]
    assert users == [19, 18] and movies == [12, 11]
    assert sum(ratings) == len(r) and ratings[0] == int((u < 19).sum())


def test_two_processes_reproduce_the_warm_up_of_one(two_processes):
    alone = _run_chain(_sampler())
    for state in two_processes:
        np.testing.assert_allclose(state["warm_X"], alone["warm_X"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state["warm_Y"], alone["warm_Y"], rtol=1e-5, atol=1e-6)
        assert float(state["warm_rmse"]) == pytest.approx(alone["warm_rmse"], rel=1e-5)


def test_the_processes_share_one_chain_state(two_processes):
    first, second = two_processes
    for name in ("X", "Y", "mu", "alpha", "rmse"):
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    alone = _run_chain(_sampler())
    # Same chain, different row noise: not the same draws, but as good a fit.
    assert not np.allclose(first["X"], alone["X"])
    assert float(first["rmse"]) == pytest.approx(alone["rmse"], rel=0.25)


def test_torchrun_trains_one_bundle_with_two_processes(tmp_path, synthetic_csv):
    out = tmp_path / "bundle"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc-per-node=2",
        "--master-addr=127.0.0.1",
        f"--master-port={_free_port()}",
        "-m",
        "embedder",
        "train",
        "--data",
        synthetic_csv,
        "--out",
        str(out),
        "--dim",
        "8",
        "--sample-dim",
        "4",
        "--quiet",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test RMSE") == 1  # the first process alone exports and prints
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["world_size"] == 2
    # The synthetic ratings have noise 0.1 around a spread of about 0.8.
    assert manifest["metrics"]["test"]["rmse"] < 0.3
    assert not (tmp_path / "artifacts").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", out.resolve().name]  # a link, its version
