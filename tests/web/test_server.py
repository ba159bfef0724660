"""The production server (gunicorn's own worker and HTTP parser) against raw sockets.

Each test talks to a real ``python -m web`` on 127.0.0.1 (fixture ``live_server``,
whose teardown checks the log holds no traceback) with Python's ``socket``, so
nothing between the test and gunicorn fixes up the bytes.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import time
import urllib.request

import pytest

from tests.web.conftest import free_port, serve, wait_for
from web import gunicorn_conf as conf

# A request behind the ambiguous one: if the server took the ambiguous framing
# (e.g. read a body of the wrong length), it would answer this one too.
FOLLOWER = b"GET /api/v1/healthz HTTP/1.1\r\nHost: t\r\n\r\n"

AMBIGUOUS = {
    "two content-lengths": b"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "content-length and transfer-encoding": (
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "space before colon": b"Content-Length : 5\r\n\r\nabcde",
    "line without colon": b"Content-Length 5\r\n\r\nabcde",
    "bare CR in a value": b"X-Note: a\rb\r\nContent-Length: 5\r\n\r\nabcde",
    "underscore in content-length": b"Content-Length: 1_0\r\n\r\n0123456789",
}

GET = b"GET /api/v1/healthz HTTP/1.1\r\nHost: t\r\n"


def headers(count: int) -> bytes:
    """``count`` distinct header lines."""
    return b"".join(b"X-H%d: v\r\n" % i for i in range(count))


def request_line(length: int) -> bytes:
    """A GET request line of ``length`` bytes (CRLF not counted)."""
    return b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1\r\n"


# Over gunicorn's limits (web/gunicorn_conf.py): (request, the one status expected).
OVER_LIMITS = {
    "101 headers": (GET + headers(100) + b"\r\n", b"431"),
    "limit_request_fields + 1 headers": (GET + headers(conf.limit_request_fields) + b"\r\n", b"431"),
    "header line over limit_request_field_size": (
        GET + b"X-Long: " + b"a" * conf.limit_request_field_size + b"\r\n\r\n",
        b"431",
    ),
    "request line over limit_request_line": (
        request_line(conf.limit_request_line + 1) + b"Host: t\r\n\r\n",
        b"414",
    ),
}

# At the limits exactly: (request, status). The request line's path does not exist.
AT_LIMITS = {
    "limit_request_fields headers": (
        GET + headers(conf.limit_request_fields - 2) + b"Connection: close\r\n\r\n",
        b"200",
    ),
    "request line of limit_request_line": (
        request_line(conf.limit_request_line) + b"Host: t\r\nConnection: close\r\n\r\n",
        b"404",
    ),
}

HALF_OPEN = 300
HALF_REQUEST = b"GET /api/v1/hea"
ABOVE_CAPACITY = 100
"""Half-open connections beyond one worker's ``worker_connections``: they wait in
the listen backlog, kept under 128 (an older kernel's cap on it)."""
MARGIN = 3.0
"""Seconds allowed past ``keepalive`` for the server to cut the half-open
connections and answer."""


def read_all(sock: socket.socket, seconds: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (or ``seconds`` pass)."""
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def closed_quietly(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds``, sending nothing."""
    sock.settimeout(max(seconds, 0.1))
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("framing", AMBIGUOUS.values(), ids=AMBIGUOUS.keys())
def test_ambiguous_framing_gets_one_400(live_server, framing):
    _, port, _ = live_server
    request = b"POST /api/v1/healthz HTTP/1.1\r\nHost: t\r\n" + framing + FOLLOWER
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = read_all(sock)
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert answer.split(b" ", 2)[1] in (b"400", b"431"), answer


@pytest.mark.parametrize("request_, status", OVER_LIMITS.values(), ids=OVER_LIMITS.keys())
def test_a_request_over_a_limit_gets_one_refusal(live_server, request_, status):
    _, port, _ = live_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_ + FOLLOWER)
        answer = read_all(sock)
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert answer.split(b" ", 2)[1] == status, answer[:200]


@pytest.mark.parametrize("request_, status", AT_LIMITS.values(), ids=AT_LIMITS.keys())
def test_a_request_at_the_limits_is_served(live_server, request_, status):
    _, port, _ = live_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_)
        answer = read_all(sock)
    assert answer.count(b"HTTP/1.1 ") == 1 and answer.split(b" ", 2)[1] == status, answer[:200]


def test_a_plain_request_still_works_on_the_raw_socket(live_server):
    _, port, _ = live_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(FOLLOWER.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in answer


def test_half_open_connections_below_capacity_do_not_delay_a_health_check(live_server):
    base, port, _ = live_server
    held = []
    try:
        for _ in range(HALF_OPEN):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(HALF_REQUEST)  # and never the rest
            held.append(sock)
        started = time.monotonic()
        with urllib.request.urlopen(base + "/api/v1/healthz", timeout=5) as response:
            assert response.status == 200
        assert time.monotonic() - started < 3
        # The server gives up on a half-sent request after its header-read
        # timeout (keepalive): the connection is closed, with nothing sent.
        assert closed_quietly(held[0], conf.keepalive + MARGIN)
    finally:
        for sock in held:
            sock.close()


@contextlib.contextmanager
def open_files(count: int):
    """Raise this process's soft limit on open files to at least ``count`` (processes
    started inside inherit it); restored on the way out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count:
        pytest.skip(f"needs {count} open files; the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_half_open_connections_above_capacity_delay_a_health_check_by_keepalive_at_most(built_bundle):
    """Above capacity the health check waits in the listen backlog until the worker
    cuts the half-open connections it holds (at ``keepalive``), then is answered.

    (Each further full worker's worth of half-open connections ahead of it adds
    another ``keepalive``, up to the backlog's length; beyond that a new
    connection waits for the kernel's SYN retries.)
    """
    count = conf.worker_connections + ABOVE_CAPACITY  # the server runs one worker
    held: list[socket.socket] = []
    with open_files(count + 256):  # the test's sockets here, the worker's in the server
        port = free_port()
        process = serve(built_bundle, port)
        try:
            wait_for(f"http://127.0.0.1:{port}/api/v1/healthz", process)
            opened = time.monotonic()
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(HALF_REQUEST)
                held.append(sock)
            started = time.monotonic()
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/v1/healthz", timeout=conf.keepalive + MARGIN
            ) as response:
                assert response.status == 200
            waited = time.monotonic() - started
            print(f"healthz behind {count} half-open connections: {waited:.2f}s")
            assert waited < conf.keepalive + MARGIN
            # the first ones were cut, with nothing sent, keepalive after they were opened
            assert closed_quietly(held[0], conf.keepalive + MARGIN - (time.monotonic() - opened))
        finally:
            for sock in held:
                sock.close()
            process.terminate()
            _, stderr = process.communicate(timeout=30)
    assert "Traceback" not in stderr and "Too many open files" not in stderr, stderr


POST = b"POST /api/v1/recommendations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
LIMIT = 1 << 20  # MAX_CONTENT_LENGTH's default (web/__init__.py)

# Bodies gunicorn's parser or the app must refuse: (request, the one status expected).
BAD_BODIES = {
    "chunk size zz": (CHUNKED + b"zz\r\nabc\r\n0\r\n\r\n", b"400"),
    "chunk size -5": (CHUNKED + b"-5\r\nabc\r\n0\r\n\r\n", b"400"),
    "chunk size 0x10": (CHUNKED + b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", b"400"),
    "chunk size with a leading space": (CHUNKED + b" 27\r\n" + b"a" * 39 + b"\r\n0\r\n\r\n", b"400"),
    "chunk without its CRLF": (CHUNKED + b"2\r\n{}XX0\r\n\r\n", b"400"),
    "bad trailer line": (CHUNKED + b"2\r\n{}\r\n0\r\nbad trailer\r\n\r\n", b"400"),
    "gzip, chunked": (POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", b"501"),
    "HTTP/1.1 without Host": (b"GET /api/v1/healthz HTTP/1.1\r\n\r\n", b"400"),
    "content-length 10**20": (POST + b"Content-Length: 100000000000000000000\r\n\r\n{}", b"413"),
    "content-length one over the limit": (
        POST + b"Content-Length: %d\r\n\r\n" % (LIMIT + 1) + b" " * 100,
        b"413",
    ),
    "chunked body over the limit": (
        CHUNKED + (b"80000\r\n" + b" " * 0x80000 + b"\r\n") * 3 + b"0\r\n\r\n",
        b"413",
    ),
    "JSON nested 1,000 deep": (POST + b"Content-Length: 2000\r\n\r\n" + b"[" * 1000 + b"]" * 1000, b"400"),
    "JSON nested 100,000 deep": (
        POST + b"Content-Length: 200000\r\n\r\n" + b"[" * 100_000 + b"]" * 100_000,
        b"400",
    ),
}


@pytest.mark.parametrize("request_, status", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_bad_body_or_framing_gets_one_refusal_and_no_traceback(live_server, request_, status):
    _, port, _ = live_server  # its teardown checks that the log holds no traceback
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_)
        answer = read_all(sock)
    assert answer.count(b"HTTP/1.1 ") == 1 and answer.split(b" ", 2)[1] == status, answer[:300]
    if status == b"400" and b"JSON" in request_:
        assert b"nested too deeply" in answer


def test_a_chunked_body_under_the_limit_is_served(live_server, rec):
    _, port, _ = live_server
    body = b'{"ratings": [{"movie_id": %d, "rating": 4}], "k": 3}' % int(rec.movie_ids[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            CHUNKED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"fallback":false' in answer
