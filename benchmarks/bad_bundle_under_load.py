"""A bundle with right checksums but out-of-range contents, published under a running server under load.

Issue 30's crash case: ``seen.npz`` with one column index set to 10**6 and ``cluster_labels.npy`` with a
label of 999, the manifest re-hashed as a buggy writer or a hostile publisher would (the damage is done
by the test suite's own helpers, ``tests/embedder/test_bundle.py``; ``--damage`` picks one of the two).
Serves a built copy of the bundle (``--bundle``, ML-100K) through ``artifacts/current`` in a scratch
folder with gunicorn and ``web.gunicorn_conf`` (2 gevent workers, hot reload every 2 s as by default),
drives it with ``--clients`` threads for ``--duration`` seconds (recommendations, similar movies, a
movie, a cluster: every request must answer 200), and halfway through points ``current`` at the damaged
bundle. Prints requests sent and failed (must be 0), the bundle served before and after (must stay the
old one), the refusal healthz reports, and the worker pids before and after (no worker may die).

    .venv/bin/python benchmarks/bad_bundle_under_load.py --bundle /tmp/b100r [--duration 20] [--clients 4]
    .venv/bin/python benchmarks/bad_bundle_under_load.py --bundle /tmp/b100r --damage labels   # 999 alone
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from web_load import REPO, built_copy, free_port, start_gunicorn, stop, wait_ready  # noqa: E402

from embedder.bundle import Bundle, BundleError  # noqa: E402
from embedder.publish import point_current  # noqa: E402
from tests.conftest import copy_bundle  # noqa: E402
from tests.embedder.test_bundle import _clusters, _seen  # noqa: E402


def damage(bundle: Path, what: str) -> None:
    """Out-of-range contents with right checksums: a cluster label of 999 and/or a seen.npz column of 10**6."""
    if what in ("both", "labels"):
        labels = np.load(bundle / "cluster_labels.npy")
        labels[len(labels) // 2] = 999
        _clusters((bundle / "clusters.json").read_text(), labels)(bundle)  # a new version, both files hashed
    if what in ("both", "seen"):
        _seen(lambda matrix: matrix.indices.__setitem__(0, 10**6))(bundle)  # rewritten in place, re-hashed


def workers(master: int) -> list[int]:
    """The pids of a gunicorn master's worker processes."""
    return sorted(int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split())


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, default=REPO / "artifacts" / "current", help="bundle (%(default)s)"
    )
    parser.add_argument("--duration", type=float, default=20, help="seconds of load (%(default)s)")
    parser.add_argument(
        "--damage",
        choices=["both", "seen", "labels"],
        default="both",
        help="what is out of range (%(default)s)",
    )
    parser.add_argument("--clients", type=int, default=4, help="client threads (%(default)s)")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 64 or not 2 <= args.duration <= 600:
        parser.error("keep it bounded: 1-64 clients, 2-600 seconds")

    from web import gunicorn_conf

    with tempfile.TemporaryDirectory(prefix="bad-bundle-") as tmp:
        workdir = Path(tmp)
        root = workdir / "artifacts"
        good = copy_bundle(built_copy(args.bundle.resolve(), workdir), root / "bundles" / "good")
        bad = copy_bundle(good, root / "bundles" / "bad")
        damage(bad, args.damage)
        try:
            Bundle.load(bad)
            raise SystemExit(f"{bad}: the damaged bundle loads; nothing to test")
        except BundleError as err:
            print(f"damaged bundle {bad.resolve().name}: Bundle.load refuses it: {err}")
        point_current(root / "current", good)
        good_path, bad_path = str(good.resolve()), str(bad.resolve())

        port = free_port()
        base = f"http://127.0.0.1:{port}/api/v1"
        env = {**os.environ, "MOVIE_WEB_BUNDLE": str(root / "current"), "PYTHONPATH": str(REPO)}
        log = workdir / "gunicorn.log"
        server = start_gunicorn(
            "web:create_app()", port, gunicorn_conf.worker_class, gunicorn_conf.workers, 1, env, log
        )
        loaded = Bundle.load(good)
        users, movies = loaded.user_ids, loaded.movie_ids
        clusters = len(json.loads((good / "clusters.json").read_text()))
        sent, failures, lock, stopping = [0], [], threading.Lock(), threading.Event()

        def client(seed: int) -> None:
            rng = np.random.default_rng(seed)
            while not stopping.is_set():
                kind = rng.integers(4)
                user, movie = int(rng.choice(users)), int(rng.choice(movies))
                path = [
                    f"/users/{user}/recommendations?k=10",
                    f"/movies/{movie}/similar?k=10",
                    f"/movies/{movie}",
                    f"/clusters/{int(rng.integers(clusters))}",
                ][kind]
                try:
                    with urllib.request.urlopen(base + path, timeout=10) as response:
                        response.read()
                        error = None if response.status == 200 else f"{response.status} {path}"
                except OSError as err:
                    error = f"{err!r} {path}"
                with lock:
                    sent[0] += 1
                    if error:
                        failures.append(error)

        try:
            wait_ready(f"{base}/healthz", server, log)
            before = get_json(f"{base}/healthz")
            pids_before = workers(server.pid)
            print(
                f"serving {before['bundle']} ({before['n_users']} users, {before['n_movies']} movies) with gunicorn "
                f"{gunicorn_conf.workers} x {gunicorn_conf.worker_class}, workers {pids_before}; "
                f"{args.clients} clients for {args.duration:g} s; {os.cpu_count()} cpus, "
                f"load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            threads = [threading.Thread(target=client, args=(seed,)) for seed in range(args.clients)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            time.sleep(args.duration / 2)
            point_current(root / "current", bad)
            print(f"published the damaged bundle at {time.monotonic() - started:.1f} s", flush=True)
            time.sleep(args.duration / 2)
            stopping.set()
            for thread in threads:
                thread.join(30)
            healths = [get_json(f"{base}/healthz") for _ in range(20)]
            pids_after = workers(server.pid)
        finally:
            stop(server)
        served = {h["bundle"] for h in healths}
        refusals = {(h["last_refusal"] or {}).get("bundle") for h in healths}
        errors = {(h["last_refusal"] or {}).get("error") for h in healths}
        tracebacks = log.read_text().count("Traceback")
        print(
            f"requests sent {sent[0]:,}, failed {len(failures)}" + (f": {failures[:3]}" if failures else "")
        )
        print(
            f"served after, 20 healthz probes: {sorted(served)} "
            f"({'the old one' if served == {good_path} else 'NOT the old one'})"
        )
        print(f"refusal reported: {sorted(map(str, refusals))} ({'the damaged one' if refusals == {bad_path} else 'NOT'}), "
              f"error {sorted(map(str, errors))}")  # fmt: skip
        print(f"workers before {pids_before}, after {pids_after}; tracebacks in the server log: {tracebacks}")
        held = not failures and served == {good_path} and refusals == {bad_path} and pids_before == pids_after
        print(
            f"result: {'HELD' if held else 'NOT HELD'} (0 failed requests, old bundle served, no worker died)"
        )
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
