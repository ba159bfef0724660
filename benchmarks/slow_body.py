"""Slow request bodies against the server: does ``/api/v1/healthz`` still answer while they hold?

Starts gunicorn on 127.0.0.1 with ``web.gunicorn_conf`` (the production settings, as ``web_load.py``
does) on a built copy of the bundle, opens ``--connections`` connections that each send the headers of
``POST /api/v1/recommendations`` with ``Content-Length: 1000`` and then one body byte a second
(``--interval``; none finishes within the run), and while they hold, probes ``/api/v1/healthz``
(``--probes`` requests spread over ``--seconds``, each given ``--probe-timeout`` seconds). Prints the
probes' p50, p99 and max and the failed probes, beside the same probes with no slow connections (the
peer figure, same server, same run), what the server answered the slow connections, and the server
processes' RSS before and while the slow connections hold.

    .venv/bin/python benchmarks/slow_body.py --bundle /tmp/b100r
    .venv/bin/python benchmarks/slow_body.py --bundle /tmp/b100r --worker-connections 1000   # the old setting
    .venv/bin/python benchmarks/slow_body.py --bundle /tmp/b100r --front nginx   # web/nginx.conf in front
    .venv/bin/python benchmarks/slow_body.py --bundle /tmp/b100r --front nginx --interval 10   # stalled bodies

``--front nginx`` puts nginx (``apt-get install -y nginx``) with ``web/nginx.conf`` between the clients
and gunicorn; the slow connections and the probes go to nginx. The benchmark raises its own soft limit on
open files when ``--connections`` needs it (the servers it starts inherit it). Target (issue 30): with
2,000 slow bodies, healthz p99 <= 1 s and no failed probe. Figures: ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from web_load import REPO, built_copy, free_port, start_gunicorn, stop, wait_ready  # noqa: E402

from tests.web.conftest import nginx_in_front  # noqa: E402

HEALTHZ = "/api/v1/healthz"
TARGET_P99_S = 1.0


def head(length: int) -> bytes:
    """A POST's request line and headers, announcing a JSON body of ``length`` bytes."""
    return (
        b"POST /api/v1/recommendations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def raise_open_files(count: int) -> None:
    """This process's soft limit on open files raised to ``count`` (the servers started later inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        if hard != resource.RLIM_INFINITY and hard < count:
            raise SystemExit(f"{count} open files needed; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


def group_rss_mib(pgid: int) -> list[float]:
    """The RSS (MiB) of every live process in a process group, largest first."""
    sizes = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if int(stat[2]) == pgid:
            kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
            sizes.append(kib / 1024)
    return sorted(sizes, reverse=True)


def probe_once(port: int, timeout: float) -> tuple[float, str | None]:
    """Seconds one GET of healthz took, and why it failed (None when it got a 200)."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", HEALTHZ)
        response = connection.getresponse()
        response.read()
        error = None if response.status == 200 else f"status {response.status}"
    except OSError as err:
        error = type(err).__name__
    finally:
        connection.close()
    return time.perf_counter() - started, error


def probe_series(port: int, count: int, seconds: float, timeout: float) -> dict:
    """``count`` probes, one every ``seconds / count`` (a slow probe delays the next one)."""
    times, errors = [], []
    interval = seconds / count
    for i in range(count):
        started = time.perf_counter()
        took, error = probe_once(port, timeout)
        times.append(took)
        if error:
            errors.append(error)
        time.sleep(max(0.0, interval - (time.perf_counter() - started)))
    return {
        "p50": float(np.percentile(times, 50)),
        "p99": float(np.percentile(times, 99)),
        "max": max(times),
        "failed": len(errors),
        "errors": sorted(set(errors)),
        "count": count,
    }


class SlowBodies:
    """``count`` connections to 127.0.0.1:``port`` sending a body one byte every ``interval`` seconds until
    stopped; what the server answers a connection (or its close) ends it and is counted."""

    def __init__(self, port: int, count: int, length: int, interval: float) -> None:
        self.port, self.count, self.length, self.interval = port, count, length, interval
        self.opened = self.refused = self.cut = 0
        self.answers: dict[bytes, int] = {}
        self.stopping = asyncio.Event()

    async def one(self) -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
        except (OSError, asyncio.TimeoutError):
            self.refused += 1
            return
        self.opened += 1
        watch = asyncio.ensure_future(reader.read(64))  # anything the server answers, or its close
        try:
            writer.write(head(self.length))
            for _ in range(self.length - 1):  # one byte short: the body never completes
                await writer.drain()
                await asyncio.wait({watch}, timeout=self.interval)
                if self.stopping.is_set():
                    return
                if watch.done():
                    status = (watch.result() or b"(closed)").split(b"\r\n", 1)[0]
                    self.answers[status] = self.answers.get(status, 0) + 1
                    self.cut += 1
                    return
                writer.write(b" ")
        except OSError:
            self.cut += 1
        finally:
            watch.cancel()
            writer.close()

    async def open_all(self) -> list[asyncio.Task]:
        """Start every connection, 100 at a time, and wait until each has connected or failed to."""
        tasks = []
        for start in range(0, self.count, 100):
            before = self.opened + self.refused
            batch = [asyncio.ensure_future(self.one()) for _ in range(min(100, self.count - start))]
            tasks += batch
            while self.opened + self.refused < before + len(batch):
                await asyncio.sleep(0.01)
        return tasks


def line(name: str, result: dict) -> str:
    errors = f" ({', '.join(result['errors'])})" if result["errors"] else ""
    return (
        f"{name:<44} p50 {result['p50'] * 1000:8.1f} ms  p99 {result['p99'] * 1000:8.1f} ms  "
        f"max {result['max'] * 1000:8.1f} ms  failed {result['failed']}/{result['count']}{errors}"
    )


async def run(args, port: int, pgids: list[int]) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(5):  # warm up the workers
        probe_once(port, args.probe_timeout)
    peer = await loop.run_in_executor(None, probe_series, port, args.probes, args.seconds, args.probe_timeout)
    print(line("healthz, no slow connections (peer)", peer), flush=True)
    before = [group_rss_mib(pgid) for pgid in pgids]
    slow = SlowBodies(port, args.connections, args.body_length, args.interval)
    started = time.monotonic()
    tasks = await slow.open_all()
    print(
        f"opened {slow.opened} slow-body connections in {time.monotonic() - started:.1f} s "
        f"({slow.refused} refused or timed out on connect)",
        flush=True,
    )
    await asyncio.sleep(2)
    held = await loop.run_in_executor(None, probe_series, port, args.probes, args.seconds, args.probe_timeout)
    during = [group_rss_mib(pgid) for pgid in pgids]
    still_open = slow.opened - slow.cut
    print(line(f"healthz, {args.connections:,} slow bodies opened", held), flush=True)
    slow.stopping.set()
    await asyncio.gather(*tasks)
    answers = ", ".join(
        f"{count} x {status.decode(errors='replace')}" for status, count in slow.answers.items()
    )
    print(f"slow connections cut by the server during the run: {slow.cut} ({answers or 'none'}); "
          f"{still_open} were still open when the probes ended")  # fmt: skip
    for name, b, d in zip(["gunicorn", "nginx"], before, during):
        print(f"{name} RSS MiB per process, before -> while held: "
              + ", ".join(f"{x:.0f} -> {y:.0f}" for x, y in zip(b, d)))  # fmt: skip
    met = held["p99"] <= TARGET_P99_S and held["failed"] == 0
    print(
        f"target (healthz p99 <= {TARGET_P99_S:g} s, no failed probe, while {args.connections:,} slow bodies "
        f"hold): {'MET' if met else 'NOT MET'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, default=REPO / "artifacts" / "current", help="bundle (%(default)s)"
    )
    parser.add_argument("--connections", type=int, default=2000, help="slow-body connections (%(default)s)")
    parser.add_argument(
        "--body-length", type=int, default=1000, help="Content-Length announced (%(default)s)"
    )
    parser.add_argument("--interval", type=float, default=1, help="seconds between body bytes (%(default)s)")
    parser.add_argument("--probes", type=int, default=50, help="healthz probes per phase (%(default)s)")
    parser.add_argument(
        "--seconds", type=float, default=20, help="seconds the probes spread over (%(default)s)"
    )
    parser.add_argument("--probe-timeout", type=float, default=5, help="seconds per probe (%(default)s)")
    parser.add_argument(
        "--worker-connections", type=int, help="override web.gunicorn_conf's worker_connections"
    )
    parser.add_argument("--front", choices=["none", "nginx"], default="none", help="a proxy in front")
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= 20_000 or not 1 <= args.probes <= 1000 or args.seconds > 300:
        parser.error("keep it bounded: 1-20,000 connections, 1-1,000 probes, at most 300 s")
    if args.front == "nginx" and shutil.which("nginx") is None:
        raise SystemExit("nginx is not installed: apt-get install -y nginx")
    raise_open_files(args.connections + 1024)

    from web import gunicorn_conf

    with tempfile.TemporaryDirectory(prefix="slow-body-") as tmp:
        workdir = Path(tmp)
        bundle = built_copy(args.bundle.resolve(), workdir)
        env = {**os.environ, "MOVIE_WEB_BUNDLE": str(bundle), "PYTHONPATH": str(REPO)}
        if args.worker_connections:
            env["GUNICORN_CMD_ARGS"] = f"--worker-connections {args.worker_connections}"
        connections = args.worker_connections or gunicorn_conf.worker_connections
        upstream = free_port()
        log = workdir / "gunicorn.log"
        server = start_gunicorn(
            "web:create_app()", upstream, gunicorn_conf.worker_class, gunicorn_conf.workers, 1, env, log
        )
        processes, port = [server], upstream
        try:
            wait_ready(f"http://127.0.0.1:{upstream}{HEALTHZ}", server, log)
            if args.front == "nginx":
                port = free_port()
                nginx = nginx_in_front(port, upstream, workdir / "nginx")
                processes.append(nginx)
                try:
                    wait_ready(f"http://127.0.0.1:{port}{HEALTHZ}", nginx, log, 30)
                except SystemExit:
                    raise SystemExit(f"nginx did not start: {nginx.stderr.read() if nginx.poll() else ''}")
            front = " behind nginx (web/nginx.conf)" if args.front == "nginx" else ""
            print(
                f"bundle {bundle}; gunicorn {gunicorn_conf.workers} x {gunicorn_conf.worker_class}, "
                f"worker_connections {connections}, keepalive {gunicorn_conf.keepalive} s{front}; "
                f"{args.connections:,} slow bodies (Content-Length {args.body_length}, 1 byte every {args.interval:g} s); "
                f"{args.probes} probes over {args.seconds:g} s each, timeout {args.probe_timeout:g} s; "
                f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            asyncio.run(run(args, port, [p.pid for p in processes]))
        finally:
            for process in reversed(processes):
                stop(process)
        tail = [row for row in log.read_text().splitlines() if "Traceback" in row or "Too many" in row]
        if tail:
            print(f"gunicorn log: {len(tail)} lines with a traceback or 'Too many open files'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
