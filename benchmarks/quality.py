"""Side-by-side quality on a MovieLens release's canonical split: this project, Surprise, Cornac and myFM.

Every model is fitted on the same training part (``embedder.data.canonical_split``
of ``embedder.data.load_ratings()``) in the same run, and scored by the same code
(``search.evaluate``):

* RMSE and MAE on the test part, predictions clipped to the rating scale; an id
  unseen in training falls back to μ plus the known bias, as every peer does;
* NDCG@10 with relevance meaning a test rating ≥ 4 and candidates being the
  movies the user has not rated in training.

The peers' fitted parameters are read into the same model object
(``embedder.model.MFModel``: μ, biases, user and movie vectors; SVD++'s
implicit-feedback term is folded into the user vectors, myFM's samples laid side
by side), so every model is ranked by identical code; a sample of each peer's own
predictions is checked against the mapped ones.
Fit time is the wall time of the fit call alone; this project's includes its
validation run and its refit.

    .venv/bin/python benchmarks/quality.py [--data PATH] [--skip-peers] [--json PATH]

``--data``: any release ``python -m embedder train --data`` reads (default: MovieLens 100K).

The peers come with the ``bench`` extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from embedder.config import TrainConfig  # noqa: E402
from embedder.data import (
    canonical_split,  # noqa: E402
    load_ratings,  # noqa: E402
)
from embedder.metrics import rating_errors  # noqa: E402
from embedder.model import MFModel  # noqa: E402
from embedder.train import train  # noqa: E402
from embedder.vocab import Vocabulary  # noqa: E402
from search.evaluate import HeldOut, held_out_rows, ranking_metrics_by_mask  # noqa: E402


class Split:
    """The canonical split, the vocabularies and what scoring needs, built once."""

    def __init__(self, path: str | None = None):
        data = load_ratings(path, progress=False)
        self.name, self.scale = data.name, data.rating_scale
        self.train, self.test = canonical_split(data.ratings)
        self.users = Vocabulary.from_values(data.ratings["user_id"], "user")
        self.movies = Vocabulary.from_values(
            list(set(data.ratings["movie_id"].tolist()) | set(data.movies["movie_id"].tolist())), "movie"
        )
        self.held_out: HeldOut = held_out_rows(self.test, self.users, self.movies)
        rows = held_out_rows(self.train, self.users, self.movies)
        self.seen = sp.csr_matrix(
            (rows.ratings, (rows.users, rows.movies)), shape=(len(self.users), len(self.movies))
        )

    def factors(self, mu, user_index: dict, movie_index: dict, P, Q, bu, bi) -> MFModel:
        """A peer's parameters laid out on our rows; rows it never saw stay zero (the fallback)."""
        arrays = {}
        for name, vocab, index_map, vectors, biases in (
            ("user", self.users, user_index, P, bu),
            ("movie", self.movies, movie_index, Q, bi),
        ):
            index = np.array([index_map.get(raw, -1) for raw in vocab.ids.tolist()], dtype=np.int64)
            known = index >= 0
            rows = np.zeros((len(vocab), vectors.shape[1]), np.float32)
            rows[known] = vectors[index[known]]
            bias = np.zeros(len(vocab), np.float32)
            bias[known] = np.asarray(biases).ravel()[index[known]]
            arrays[name] = (rows, bias)
        (users, user_biases), (movies, movie_biases) = arrays["user"], arrays["movie"]
        return MFModel(
            float(mu), users, movies, user_biases, movie_biases, self.scale, self.users, self.movies
        )


def score(split: Split, model: MFModel) -> dict:
    """RMSE, MAE and the ranking figures of a model on the test part."""
    errors = rating_errors(model.predict(split.held_out.users, split.held_out.movies), split.held_out.ratings)
    ranking = ranking_metrics_by_mask(
        model.scores, split.seen, split.held_out, {"": np.ones(len(split.movies), bool)}
    )[""]
    return {
        **errors,
        "ndcg": ranking["ndcg"],
        "precision": ranking["precision"],
        "coverage": ranking["coverage"],
    }


def ours(split: Split, config: TrainConfig) -> tuple[MFModel, float, dict]:
    """This project's training; returns the exported model, the fit time and notes."""
    start = time.perf_counter()
    result = train(split.train, config, split.users, split.movies, split.scale, progress=False)
    seconds = time.perf_counter() - start
    return (
        result.model,
        seconds,
        {"validation_rmse": round(result.validation_rmse, 4), "best": result.best_epoch},
    )


def surprise_model(split: Split, algorithm: str) -> tuple[MFModel, float, dict]:
    """Surprise's SVD or SVD++ with their default settings."""
    from surprise import SVD, Dataset, Reader, SVDpp

    reader = Reader(rating_scale=split.scale)
    trainset = Dataset.load_from_df(
        split.train[["user_id", "movie_id", "rating"]], reader
    ).build_full_trainset()
    algo = {"SVD": SVD, "SVD++": SVDpp}[algorithm](random_state=0)
    start = time.perf_counter()
    algo.fit(trainset)
    seconds = time.perf_counter() - start
    users = {trainset.to_raw_uid(u): u for u in trainset.all_users()}
    movies = {trainset.to_raw_iid(i): i for i in trainset.all_items()}
    P = np.array(algo.pu, dtype=np.float64)
    if algorithm == "SVD++":  # the user vector is p_u + |N(u)|^-1/2 Σ_{j ∈ N(u)} y_j
        for u in trainset.all_users():
            rated = [j for j, _ in trainset.ur[u]]
            P[u] += algo.yj[rated].sum(0) / np.sqrt(len(rated))
    model = split.factors(trainset.global_mean, users, movies, P, np.asarray(algo.qi), algo.bu, algo.bi)
    _check_against(model, split, lambda u, m: algo.predict(u, m).est)
    return model, seconds, {"k": algo.n_factors, "epochs": algo.n_epochs}


def _check_against(model: MFModel, split: Split, predict: Callable[[int, int], float], n: int = 500) -> None:
    """The mapped parameters must predict what the peer itself predicts."""
    sample = split.test.sample(n, random_state=0)
    theirs = np.array([predict(u, m) for u, m in zip(sample["user_id"], sample["movie_id"], strict=True)])
    rows = held_out_rows(sample, split.users, split.movies)
    mine = model.predict(rows.users, rows.movies)
    if not np.allclose(mine, theirs, atol=1e-4):
        raise AssertionError(
            f"mapped parameters disagree with the peer (max diff {np.abs(mine - theirs).max():.2e})"
        )


def cornac_mf(split: Split, k: int) -> tuple[MFModel, float, dict]:
    """Cornac's biased MF with its README settings (k=10 there), at dimension k."""
    import cornac

    triples = list(
        zip(
            split.train["user_id"].tolist(),
            split.train["movie_id"].tolist(),
            split.train["rating"].astype(float).tolist(),
            strict=True,
        )
    )
    data = cornac.data.Dataset.from_uir(triples, seed=123)
    mf = cornac.models.MF(
        k=k, max_iter=25, learning_rate=0.01, lambda_reg=0.02, use_bias=True, seed=123, verbose=False
    )
    start = time.perf_counter()
    mf.fit(data)
    seconds = time.perf_counter() - start
    model = split.factors(
        mf.global_mean, data.uid_map, data.iid_map, mf.u_factors, mf.i_factors, mf.u_biases, mf.i_biases
    )
    return model, seconds, {"k": k, "epochs": 25}


def _normalised(pattern: sp.csr_matrix) -> sp.csr_matrix:
    """Each row of a 0/1 pattern scaled by ``|row|^-½`` (SVD++'s normalisation)."""
    counts = np.asarray(pattern.sum(1)).ravel()
    return sp.diags(1.0 / np.sqrt(np.maximum(counts, 1))) @ pattern


def myfm_model(
    split: Split, implicit: bool, rank: int = 16, n_iter: int = 200
) -> tuple[MFModel, float, dict]:
    """myFM's Bayesian factorization machine (Gibbs sampling), ids alone or with
    who-rated-what: each rating also carries the movies its user rated and the users
    who rated its movie (training part only), each set scaled by ``|set|^-½``.

    Per sample, the FM's user-side features sum to one vector ``a_u`` and the movie
    side's to ``b_i``, so the FM is ``w0 + (linear + within-side pairs)_u + (…)_i +
    a_u·b_i``: a biased MF. The samples' vectors side by side (scaled by ``1/√S``)
    are its posterior mean as one factorization, which the shared scoring ranks.
    """
    import myfm

    n_users, n_movies = len(split.users), len(split.movies)
    pattern = sp.csr_matrix(
        (np.ones(split.seen.nnz), split.seen.indices, split.seen.indptr), shape=split.seen.shape
    )
    sides = {
        "user": [sp.identity(n_users, format="csr")] + ([_normalised(pattern)] if implicit else []),
        "movie": [sp.identity(n_movies, format="csr")]
        + ([_normalised(pattern.T.tocsr())] if implicit else []),
    }
    features = {name: sp.hstack(blocks).tocsr() for name, blocks in sides.items()}
    rows = held_out_rows(split.train, split.users, split.movies)
    blocks = lambda users, movies: [
        myfm.RelationBlock(users, features["user"]),
        myfm.RelationBlock(movies, features["movie"]),
    ]
    fm = myfm.MyFMRegressor(rank=rank, random_seed=42)
    start = time.perf_counter()
    fm.fit(
        None,
        rows.ratings.astype(np.float64),
        X_rel=blocks(rows.users, rows.movies),
        n_iter=n_iter,
        group_shapes=[block.shape[1] for name in ("user", "movie") for block in sides[name]],
    )
    seconds = time.perf_counter() - start
    V, w, w0 = fm.V_samples, fm.w_samples, fm.w0_samples
    width = features["user"].shape[1]
    vectors, biases = {}, {}
    for name, X, cols in (
        ("user", features["user"], slice(0, width)),
        ("movie", features["movie"], slice(width, None)),
    ):
        a = np.stack([X @ v[cols] for v in V])  # (S, n, rank): the side's vector per sample
        squares = np.stack([X.multiply(X) @ (v[cols] ** 2).sum(1) for v in V])  # Σ x_f² ‖v_f‖²
        linear = np.stack([X @ wi[cols] for wi in w])
        biases[name] = (linear + 0.5 * ((a**2).sum(2) - squares)).mean(0)
        vectors[name] = np.concatenate(list(a), axis=1) / np.sqrt(len(V))
    # The features are laid out on our rows already (one-hot of our user and movie rows).
    model = MFModel(
        float(np.mean(w0)),
        vectors["user"],
        vectors["movie"],
        biases["user"],
        biases["movie"],
        split.scale,
        split.users,
        split.movies,
    )
    checked = held_out_rows(split.test.sample(500, random_state=0), split.users, split.movies)
    theirs = np.clip(fm.predict(None, blocks(checked.users, checked.movies)), *split.scale)
    if not np.allclose(model.predict(checked.users, checked.movies), theirs, atol=1e-4):
        raise AssertionError("mapped myFM parameters disagree with myFM's own predictions")
    return model, seconds, {"k": rank, "samples": len(V)}


def table(rows: list[dict]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| model | test RMSE | test MAE | fit time (s) | NDCG@10 | P@10 | coverage |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['rmse']:.4f} | {row['mae']:.4f} | {row['seconds']:.1f} | "
            f"{row['ndcg']:.4f} | {row['precision']:.4f} | {row['coverage']:.3f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="a MovieLens release (folder or zip; default: MovieLens 100K)")
    parser.add_argument("--skip-peers", action="store_true", help="only this project's models")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()

    split = Split(args.data)
    runs: list[tuple[str, Callable[[], tuple[MFModel, float, dict]]]] = [
        (
            "this project, default (Gibbs, posterior mean, who rated what on both sides)",
            lambda: ours(split, TrainConfig()),
        ),
        ("this project, --implicit none (ids only)", lambda: ours(split, TrainConfig(implicit="none"))),
        ("this project, --method adam", lambda: ours(split, TrainConfig(method="adam"))),
    ]
    if not args.skip_peers:
        runs += [
            ("Surprise SVD (defaults)", lambda: surprise_model(split, "SVD")),
            ("Surprise SVD++ (defaults)", lambda: surprise_model(split, "SVD++")),
            ("Cornac MF (README: k=10, 25 epochs)", lambda: cornac_mf(split, 10)),
            ("Cornac MF (k=128, 25 epochs)", lambda: cornac_mf(split, 128)),
            ("myFM Bayesian FM, ids only (rank 16, 200 samples)", lambda: myfm_model(split, implicit=False)),
            (
                "myFM Bayesian FM, + who rated what (rank 16, 200 samples)",
                lambda: myfm_model(split, implicit=True),
            ),
        ]
    rows = []
    for name, run in runs:
        try:
            model, seconds, notes = run()
        except ImportError as err:
            print(f"skipped {name}: {err} (install the bench extra)", file=sys.stderr)
            continue
        rows.append({"name": name, "seconds": seconds, **score(split, model), **notes})
        print(f"done: {name} ({seconds:.1f}s)", file=sys.stderr)

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{os.cpu_count()} cores, Python {platform.python_version()}, CPU"
    print(
        f"{split.name}, canonical split: {len(split.train):,} training / {len(split.test):,} test ratings; {stamp}; {machine}"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"date": stamp, "machine": machine, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
