"""Server memory and start time: RSS, PSS and USS of each gunicorn worker on a bundle.

Starts the production server (``python -m web``: gunicorn, ``web.gunicorn_conf``,
2 gevent workers, the bundle loaded and verified once in the master before it
forks) on 127.0.0.1 against ``--bundle``, times how long it takes until
``/api/v1/healthz`` answers, sends every kind of request a few times (so both
workers build whatever they build lazily: a user's and a newcomer's
recommendations, similar movies, title search, the pages), then reads each
process's ``/proc/PID/smaps_rollup``:

* **RSS**: resident pages, shared ones counted in full in every process;
* **PSS**: each shared page divided among the processes that map it;
* **USS**: pages only this process has (``Private_Clean + Private_Dirty``): what
  one more worker costs.

The peer, measured in the same run: the same server with ``preload_app`` off,
so that each worker loads (and verifies) its own copy of the bundle, as a
server without preloading would. A third run serves the bundle through a link,
publishes a second version of it (files hard-linked, as ``search build`` does)
and measures after every worker has switched to it (hot reload): each worker
then holds what it built from the new version, while the mapped arrays stay
shared.

Target (issue "Large catalogues and batch export"): with 2 workers on a
25M-rating bundle, each worker's USS ≤ 150 MB and the server answering within 5 s.

    .venv/bin/python benchmarks/serve_memory.py --bundle DIR [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_LIMIT_S = 600.0
REQUESTS_EACH = 12
"""Requests of each kind; with 2 workers and the kernel spreading connections,
each worker gets several of every kind."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def _wait_ready(base: str, process: subprocess.Popen, started: float) -> float:
    while time.perf_counter() - started < START_LIMIT_S:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            if _get(f"{base}/api/v1/healthz") == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("the server did not answer in time")


def _exercise(base: str, bundle: Path) -> dict[int, int]:
    """Every kind of request, a few times each; returns the count per status code."""
    import numpy as np

    users = np.load(bundle / "user_ids.npy", mmap_mode="r")
    movies = np.load(bundle / "movie_ids.npy", mmap_mode="r")
    rng = np.random.default_rng(0)
    statuses: dict[int, int] = {}
    for i in range(REQUESTS_EACH):
        user, movie = int(users[rng.integers(len(users))]), int(movies[rng.integers(len(movies))])
        others = [int(m) for m in movies[rng.choice(len(movies), 3, replace=False)]]
        for url, body in (
            (f"{base}/api/v1/users/{user}/recommendations?k=10", None),
            (f"{base}/api/v1/movies/{movie}/similar?k=10", None),
            (f"{base}/api/v1/movies?q=movie&limit=10", None),
            (
                f"{base}/api/v1/recommendations",
                {"ratings": [{"movie_id": m, "rating": 4} for m in others], "k": 10},
            ),
            (f"{base}/", None),
            (f"{base}/users/{user}", None),
            (f"{base}/movies/{movie}", None),
            (f"{base}/clusters", None),
        ):
            code = _get(url, body)
            statuses[code] = statuses.get(code, 0) + 1
    return statuses


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _memory(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of one process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value) / 1024
    return {
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "uss": fields["Private_Clean"] + fields["Private_Dirty"],
    }


def _serving(base: str) -> str:
    with urllib.request.urlopen(f"{base}/api/v1/healthz", timeout=60) as answer:
        return json.loads(answer.read())["bundle"]


def _hot_reload(base: str, link: Path, bundle: Path, folder: Path) -> float:
    """Publish a second version of ``bundle`` (its files hard-linked, as ``search build``
    links unchanged files) behind ``link``; seconds until 20 health checks in a row,
    spread over the workers, name it."""
    version = folder / "version-2"
    version.mkdir()
    for name in os.listdir(bundle):
        os.link(bundle / name, version / name)
    started = time.perf_counter()
    os.symlink(version, folder / "next")
    os.replace(folder / "next", link)
    in_a_row = 0
    while in_a_row < 20:
        if time.perf_counter() - started > START_LIMIT_S:
            raise SystemExit("the workers did not switch to the new version in time")
        in_a_row = in_a_row + 1 if Path(_serving(base)).name == version.name else 0
        time.sleep(0.05)
    return time.perf_counter() - started


def measure(bundle: Path, workers: int, preload: bool, reload: bool = False) -> dict:
    """Start one server, exercise it, read its processes' memory, stop it; with
    ``reload``, publish a new version meanwhile and measure after the switch."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(
        dir=bundle.parent
    ) as folder:  # beside the bundle: hard links need one file system
        served = bundle
        if reload:
            served = Path(folder) / "current"
            os.symlink(bundle.resolve(), served)
        env = {**os.environ, "MOVIE_WEB_BUNDLE": str(served)}
        if preload:
            command = [
                sys.executable,
                "-m",
                "web",
                "--bundle",
                str(served),
                "--port",
                str(port),
                "--workers",
                str(workers),
            ]
        else:
            config = Path(folder) / "no_preload.py"
            config.write_text("from web.gunicorn_conf import *  # noqa: F401,F403\npreload_app = False\n")
            command = [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(config),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "web:create_app()",
            ]
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            ready = _wait_ready(base, process, started)
            # Every worker must be up (each answers healthz itself); then exercise them.
            while len(_children(process.pid)) < workers:
                time.sleep(0.05)
            statuses = _exercise(base, bundle)
            switched = None
            if reload:
                switched = _hot_reload(base, served, bundle, Path(folder))
                for code, count in _exercise(base, bundle).items():
                    statuses[code] = statuses.get(code, 0) + count
            master = _memory(process.pid)
            children = [_memory(pid) for pid in _children(process.pid)]
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    return {
        "ready_s": ready,
        "master": master,
        "workers": children,
        "statuses": statuses,
        "switched_s": switched,
    }


def _row(name: str, run: dict) -> list[str]:
    switched = (
        f"; every worker serving the new version {run['switched_s']:.1f} s after it was published"
        if run["switched_s"]
        else ""
    )
    lines = [f"{name}: answering after {run['ready_s']:.1f} s; answers {run['statuses']}{switched}"]
    lines.append(f"  {'process':10} {'RSS MiB':>9} {'PSS MiB':>9} {'USS MiB':>9}")
    for label, mem in [("master", run["master"])] + [
        (f"worker {i + 1}", m) for i, m in enumerate(run["workers"])
    ]:
        lines.append(f"  {label:10} {mem['rss']:9.1f} {mem['pss']:9.1f} {mem['uss']:9.1f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, required=True, help="a built bundle (python -m search build)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    shapes = f"{manifest['training']['n_train']:,} training ratings" if "training" in manifest else ""
    print(f"bundle {args.bundle} ({shapes}); {os.cpu_count()} cpus")
    ours = measure(args.bundle, args.workers, preload=True)
    peer = measure(args.bundle, args.workers, preload=False)
    reloaded = measure(args.bundle, args.workers, preload=True, reload=True)
    for line in (
        _row("this project (preload in the master, workers share its pages and the mapped arrays)", ours)
        + _row("peer: preload_app off (each worker loads its own copy; the arrays are still mapped)", peer)
        + _row("this project after a hot reload (each worker loads the new version itself)", reloaded)
    ):
        print(line)
    worst = max(w["uss"] for w in ours["workers"])
    peer_worst = max(w["uss"] for w in peer["workers"])
    print(
        f"largest worker USS {worst:.1f} MiB (target <= 150 MB), {worst / peer_worst:.2f}x the peer's {peer_worst:.1f} MiB; "
        f"answering after {ours['ready_s']:.1f} s (target <= 5 s), peer {peer['ready_s']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
