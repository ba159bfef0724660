"""nginx in front of gunicorn with ``web/nginx.conf`` as it is (issue 30: a deadline for reading a body).

gunicorn has no body deadline, and a slow body holds one of a worker's ``worker_connections``; nginx reads
every body before gunicorn sees the request, and cuts one that stalls. Each test checks nginx's answer
and, beside it, what gunicorn alone does with the same bytes, so that each can fail. Runs where nginx is
installed (``.ci/run`` installs it); with REQUIRE_NGINX=1 a missing nginx fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.web.conftest import NGINX_CONF, REPO, free_port, nginx_in_front, wait_for
from web import DEFAULTS

if shutil.which("nginx") is None:
    if os.environ.get("REQUIRE_NGINX") == "1":
        pytest.fail("REQUIRE_NGINX=1 but nginx is not installed (apt-get install nginx)", pytrace=False)
    pytest.skip("nginx is not installed (apt-get install nginx)", allow_module_level=True)

CONNECTIONS = 40
"""gunicorn's worker_connections in these tests (one worker), so that a few slow bodies fill it."""
SLOW = CONNECTIONS + 20
MARGIN = 3.0


def setting(name: str) -> str:
    """A directive's value in web/nginx.conf."""
    return re.search(rf"^\s*{name}\s+([^;]+);", NGINX_CONF.read_text(), re.M)[1]


BODY_TIMEOUT = float(setting("client_body_timeout").removesuffix("s"))


def head(length: int) -> bytes:
    return (
        b"POST /api/v1/recommendations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def answer_or_close(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sends before closing ``sock`` (b"" for a bare close), or None if it is still open
    after ``seconds``."""
    sock.settimeout(max(seconds, 0.1))
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        return None if not data else data
    return data


@contextlib.contextmanager
def slow_bodies(port: int, count: int):
    """``count`` connections that sent a POST's headers (Content-Length 1000) and one body byte."""
    held = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(head(1000) + b"{")
            held.append(sock)
        yield held
    finally:
        for sock in held:
            sock.close()


def healthz_seconds(port: int, timeout: float) -> float | None:
    """How long ``/api/v1/healthz`` took to answer 200, or None if it did not within ``timeout``."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/api/v1/healthz")
        assert connection.getresponse().status == 200
    except TimeoutError:
        return None
    finally:
        connection.close()
    return time.monotonic() - started


@pytest.fixture(scope="module")
def fronted(built_bundle, tmp_path_factory):
    """gunicorn (the production settings but one worker of CONNECTIONS connections) and nginx in front:
    ``(nginx's port, gunicorn's port)``. Neither log may hold a traceback or an nginx error ([emerg], [crit])."""
    upstream, port = free_port(), free_port()
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:web.gunicorn_conf", "--bind", f"127.0.0.1:{upstream}",
         "--workers", "1", "--worker-connections", str(CONNECTIONS), "web:create_app()"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "MOVIE_WEB_BUNDLE": built_bundle},
    )  # fmt: skip
    nginx = nginx_in_front(port, upstream, tmp_path_factory.mktemp("nginx"))
    try:
        wait_for(f"http://127.0.0.1:{upstream}/api/v1/healthz", gunicorn)
        wait_for(f"http://127.0.0.1:{port}/api/v1/healthz", nginx, 20)
        yield port, upstream
    finally:
        for process in (nginx, gunicorn):
            process.terminate()
        nginx_log = nginx.communicate(timeout=30)[1]
        gunicorn_log = gunicorn.communicate(timeout=30)[1]
    assert "Traceback" not in gunicorn_log, gunicorn_log
    assert "[emerg]" not in nginx_log and "[crit]" not in nginx_log, nginx_log


def test_the_app_is_served_through_nginx(fronted, rec):
    port, upstream = fronted
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/healthz", timeout=10) as response:
        assert json.loads(response.read())["bundle"]
    body = b'{"ratings": [{"movie_id": %d, "rating": 4}], "k": 3}' % int(rec.movie_ids[0])
    for framing in (b"Content-Length: %d\r\n\r\n%s" % (len(body), body), b"Transfer-Encoding: chunked\r\n\r\n"
                    + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)):  # fmt: skip
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /api/v1/recommendations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\n" + framing
            )
            answer = answer_or_close(sock, 10)
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"fallback":false' in answer, answer[:300]


def test_a_stalled_body_is_cut_by_nginx_and_held_by_gunicorn_alone(fronted):
    """The body deadline is nginx's client_body_timeout: the same stalled body sent to gunicorn directly
    is still open past it."""
    port, upstream = fronted
    started = time.monotonic()
    with slow_bodies(port, 1) as (via_nginx,), slow_bodies(upstream, 1) as (direct,):
        assert answer_or_close(via_nginx, BODY_TIMEOUT + MARGIN) is not None
        cut_after = time.monotonic() - started
        assert answer_or_close(direct, 0.5) is None  # gunicorn alone: still waiting for the body
    assert BODY_TIMEOUT - 1 <= cut_after <= BODY_TIMEOUT + MARGIN, cut_after


def test_slow_bodies_through_nginx_leave_gunicorns_connections_free(fronted):
    """More slow bodies than gunicorn has connections: through nginx healthz still answers at once;
    sent to gunicorn directly, they take every connection and healthz waits."""
    port, upstream = fronted
    with slow_bodies(port, SLOW):
        time.sleep(0.5)
        waited = healthz_seconds(port, 5)
        assert waited is not None and waited < 1.0, waited
    with slow_bodies(upstream, SLOW):
        time.sleep(0.5)
        assert healthz_seconds(upstream, 2) is None


@pytest.mark.parametrize("length, status", [(DEFAULTS["MAX_CONTENT_LENGTH"] + 1, b"413"), (10**20, b"400")])
def test_a_body_over_the_limit_is_refused_by_nginx(fronted, length, status):
    """nginx's client_max_body_size is the app's MAX_CONTENT_LENGTH (413 above, before reading the body); a
    Content-Length past a 64-bit count is a 400."""
    assert setting("client_max_body_size") == f"{DEFAULTS['MAX_CONTENT_LENGTH'] >> 20}m"
    port, _ = fronted
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head(length) + b"{")
        answer = sock.recv(4096)  # nginx answers at once, then waits a while for the body to drain
    assert answer.split(b" ", 2)[1] == status, answer
