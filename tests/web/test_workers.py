"""The default gunicorn worker (web/workers.py): connections take turns."""

from __future__ import annotations

import socket

from tests.web.test_app import _serve, free_port, wait_for

PIPELINED = 100
# A title search takes milliseconds; a hundred of them keep a worker busy for a
# good fraction of a second, and their short answers fit the socket buffers, so
# the worker never has to wait on a full socket (which would also let others in).
SLOW = b"GET /api/v1/movies?q=a&limit=1 HTTP/1.1\r\nHost: t\r\n\r\n"
QUICK = b"GET /api/v1/healthz HTTP/1.1\r\nHost: t\r\n\r\n"


def _read_one_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_a_connection_with_requests_queued_does_not_starve_another(built_bundle):
    port = free_port()
    server = _serve(built_bundle, port)  # one worker, the default worker class
    try:
        wait_for(f"http://127.0.0.1:{port}/api/v1/healthz", server)
        with socket.create_connection(("127.0.0.1", port)) as greedy, socket.create_connection(("127.0.0.1", port)) as other:
            greedy.sendall(SLOW * PIPELINED)  # all already waiting in the worker's buffer
            other.sendall(QUICK)
            assert b" 200 " in _read_one_response(other)
            greedy.setblocking(False)
            answered = b""
            try:
                while chunk := greedy.recv(1 << 20):
                    answered += chunk
            except BlockingIOError:
                pass
        # Served in turn, the quick request came after a few of the queued ones,
        # not after all of them.
        assert answered.count(b"HTTP/1.1 200") < PIPELINED // 2, answered.count(b"HTTP/1.1 200")
    finally:
        server.terminate()
        server.communicate(timeout=30)
