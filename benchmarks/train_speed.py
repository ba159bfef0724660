"""Training at real sizes: whole-process wall time, peak memory and test RMSE against Cornac.

Each contender runs as its own process on the same data, is timed from start to
exit (loading, splitting, fitting, and for this project exporting the bundle), and
its peak RSS is read from the kernel's accounting of that child alone. All of them
are scored on the same canonical split (``train_test_split(test_size=0.2,
random_state=42)`` over the rows in file order), RMSE clipped to the rating scale.

* this project: ``python -m embedder train --data DIR --out TMP`` (the defaults);
* Cornac's MF (k=64), 25 epochs with its other defaults, and 50 epochs with λ=0.05,
  the peer the targets are set against (needs the ``bench`` extra).

``--ratings 100k`` uses MovieLens 100K; other sizes (``2M``, ``5M``, ``25M``) use
MovieLens-shaped synthetic ratings from ``benchmarks/synth.py``, generated once into
``--cache`` and reused. Absolute times on a shared machine drift; the ratios
printed are measured in the same run, and ``--repeats N`` runs N interleaved rounds
and compares the medians (the spread of the rounds is printed too).

    .venv/bin/python benchmarks/train_speed.py --ratings 5M
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import synth  # noqa: E402

CORNAC_RUNS = {"Cornac MF k=64, 25 epochs": (25, 0.02), "Cornac MF k=64, 50 epochs, λ=0.05": (50, 0.05)}


def run_measured(command: list[str]) -> tuple[float, int, str]:
    """Run ``command``; its wall time in seconds, peak RSS in bytes and stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, stdout=out, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"{' '.join(command)} failed with status {os.waitstatus_to_exitcode(status)}:\n{text}"
        )
    return wall, usage.ru_maxrss * 1024, text


def ours(data: str, out: Path) -> dict:
    """The default training, as a user runs it."""
    wall, rss, _ = run_measured(
        [sys.executable, "-m", "embedder", "train", "--data", data, "--out", str(out), "--quiet"]
    )
    manifest = json.loads((out / "manifest.json").read_text())
    training = manifest["training"]
    detail = f"{training.get('warm_up_passes', 0)} warm-up + {training['best_epoch']} sweeps, fit {training['seconds']:.0f}s"
    return {
        "name": "this project (default)",
        "wall": wall,
        "rss": rss,
        "rmse": manifest["metrics"]["test"]["rmse"],
        "detail": detail,
    }


def cornac(data: str, epochs: int, reg: float, name: str) -> dict:
    """One Cornac MF run in its own process (see :func:`cornac_child`)."""
    command = [sys.executable, __file__, "--cornac-child", data, "--epochs", str(epochs), "--reg", str(reg)]
    wall, rss, text = run_measured(command)
    child = json.loads(text.strip().splitlines()[-1])
    return {
        "name": name,
        "wall": wall,
        "rss": rss,
        "rmse": child["rmse"],
        "detail": f"fit {child['fit']:.0f}s",
    }


def cornac_child(data: str, epochs: int, reg: float) -> None:
    """Load and split as this project does, fit Cornac MF, print its test RMSE as JSON."""
    import cornac
    import numpy as np

    from embedder.data import canonical_split, load_ratings

    loaded = load_ratings(data, progress=False)
    train, test = canonical_split(loaded.ratings)
    triples = list(zip(train["user_id"].tolist(), train["movie_id"].tolist(), train["rating"].tolist()))
    dataset = cornac.data.Dataset.from_uir(triples, seed=0)
    del triples
    model = cornac.models.MF(
        k=64, max_iter=epochs, learning_rate=0.01, lambda_reg=reg, use_bias=True, early_stop=False, seed=0
    )
    started = time.perf_counter()
    model.fit(dataset)
    fit = time.perf_counter() - started
    # Unknown users or movies fall back to μ plus the known bias, as this project does.
    users = np.array([dataset.uid_map.get(u, -1) for u in test["user_id"].tolist()])
    movies = np.array([dataset.iid_map.get(i, -1) for i in test["movie_id"].tolist()])
    known_u, known_m = users >= 0, movies >= 0
    predicted = np.full(len(test), float(model.global_mean))
    predicted[known_u] += model.u_biases[users[known_u]]
    predicted[known_m] += model.i_biases[movies[known_m]]
    both = known_u & known_m
    predicted[both] += np.einsum("ij,ij->i", model.u_factors[users[both]], model.i_factors[movies[both]])
    low, high = loaded.rating_scale
    rmse = float(np.sqrt(np.mean((np.clip(predicted, low, high) - test["rating"].to_numpy()) ** 2)))
    print(json.dumps({"rmse": rmse, "fit": fit}))


def warm_file_cache(data: str) -> None:
    """Read the data files once, untimed: otherwise whoever runs first pays for
    reading them from disk and the others read them from the file cache."""
    folder = Path(data)
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ratings", default="100k", help="'100k' (MovieLens 100K) or a synthetic size such as 2M, 5M, 25M"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "movie-embeddings-synth",
        help="where synthetic sets are kept (default: %(default)s)",
    )
    parser.add_argument("--skip-peers", action="store_true", help="time this project only")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="interleaved rounds; medians are compared (default: %(default)s)",
    )
    parser.add_argument("--cornac-child", metavar="DATA", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reg", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cornac_child:
        cornac_child(args.cornac_child, args.epochs, args.reg)
        return 0

    if args.ratings.lower() == "100k":
        data, label = "ml-100k", "MovieLens 100K"
    else:
        count = synth.parse_count(args.ratings)
        folder = args.cache / f"synth-{args.ratings}"
        truth = synth.ensure(count, folder)
        data = str(folder)
        label = (
            f"synthetic {truth['ratings']:,} ratings, {truth['users']:,} users x {truth['movies']:,} movies, "
            f"oracle RMSE {truth['oracle_rmse']:.4f}"
        )
    print(
        f"{label}; {os.cpu_count()} cpus, {platform.machine()}, Python {platform.python_version()}",
        flush=True,
    )
    contenders = [lambda: ours(data, Path(tmp) / f"bundle-{uuid.uuid4().hex[:8]}")]
    if not args.skip_peers:
        contenders += [
            lambda e=epochs, r=reg, n=name: cornac(data, e, r, n)
            for name, (epochs, reg) in CORNAC_RUNS.items()
        ]
    warm_file_cache(data)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(
            args.repeats
        ):  # interleaved, so a slow spell of the machine hits every contender
            rounds.append([run() for run in contenders])
            if args.repeats > 1:
                print(
                    f"round {round_no + 1}: " + ", ".join(f"{row['wall']:.1f}s" for row in rounds[-1]),
                    flush=True,
                )
    rows = [_summary([r[c] for r in rounds]) for c in range(len(contenders))]
    if args.repeats > 1:
        print(f"wall s: the median of {args.repeats} rounds (their range)")
    print(f"{'run':<36} {'wall s':>7} {'peak RSS':>9} {'test RMSE':>9}  detail")
    for row in rows:
        print(
            f"{row['name']:<36} {row['wall']:>7.1f}{row['range']} {row['rss'] / 2**30:>7.2f}Gi {row['rmse']:>9.4f}  {row['detail']}"
        )
    if len(rows) > 1:
        best_at = min(range(1, len(rows)), key=lambda c: rows[c]["rmse"])
        best, mine = rows[best_at], rows[0]
        ratios = sorted(r[0]["wall"] / r[best_at]["wall"] for r in rounds)
        each = f"; per round {', '.join(f'{x:.2f}x' for x in ratios)}" if len(ratios) > 1 else ""
        print(
            f"vs Cornac's best ({best['name']}): RMSE {mine['rmse'] - best['rmse']:+.4f} (target <= -0.005), "
            f"wall time {mine['wall'] / best['wall']:.2f}x (target <= 1.00x){each}"
        )
    return 0


def _summary(runs: list[dict]) -> dict:
    """One contender over the rounds: median wall time (with its range), largest peak RSS."""
    walls = sorted(run["wall"] for run in runs)
    shown = f" ({walls[0]:.1f}-{walls[-1]:.1f})" if len(walls) > 1 else ""
    return {
        **runs[0],
        "wall": float(np.median(walls)),
        "range": shown,
        "rss": max(run["rss"] for run in runs),
    }


if __name__ == "__main__":
    raise SystemExit(main())
