"""The production server (gunicorn's own worker and HTTP parser) against raw sockets.

Each test talks to a real ``python -m web`` on 127.0.0.1 (fixture ``live_server``)
with Python's ``socket``, so nothing between the test and gunicorn fixes up the
bytes.
"""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest

# A request behind the ambiguous one: if the server took the ambiguous framing
# (e.g. read a body of the wrong length), it would answer this one too.
FOLLOWER = b"GET /api/v1/healthz HTTP/1.1\r\nHost: t\r\n\r\n"

AMBIGUOUS = {
    "two content-lengths": b"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "content-length and transfer-encoding": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "space before colon": b"Content-Length : 5\r\n\r\nabcde",
    "line without colon": b"Content-Length 5\r\n\r\nabcde",
    "bare CR in a value": b"X-Note: a\rb\r\nContent-Length: 5\r\n\r\nabcde",
    "underscore in content-length": b"Content-Length: 1_0\r\n\r\n0123456789",
}

HALF_OPEN = 300
HALF_REQUEST = b"GET /api/v1/hea"


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


@pytest.mark.parametrize("framing", AMBIGUOUS.values(), ids=AMBIGUOUS.keys())
def test_ambiguous_framing_gets_one_400(live_server, framing):
    _, port, _ = live_server
    request = b"POST /api/v1/healthz HTTP/1.1\r\nHost: t\r\n" + framing + FOLLOWER
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = read_all(sock)
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert answer.split(b" ", 2)[1] in (b"400", b"431"), answer


def test_a_plain_request_still_works_on_the_raw_socket(live_server):
    _, port, _ = live_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(FOLLOWER.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in answer


def test_half_open_connections_do_not_stop_the_server(live_server):
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
        assert read_all(held[0], seconds=10) == b""
    finally:
        for sock in held:
            sock.close()

