"""The default gunicorn worker (web/workers.py): connections take turns."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request

from tests.web.test_app import REPO, _serve, free_port, wait_for

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


def test_the_access_log_still_records_requests_when_it_is_turned_on(built_bundle, tmp_path):
    # The worker skips building log entries only while the access log is off.
    port, log = free_port(), tmp_path / "access.log"
    command = [sys.executable, "-m", "gunicorn", "-c", "python:web.gunicorn_conf", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    command += ["--access-logfile", str(log), "web:create_app()"]
    server = subprocess.Popen(command, cwd=REPO, env={**os.environ, "MOVIE_WEB_BUNDLE": built_bundle}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/api/v1/healthz", server)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/movies/1", timeout=5) as response:
            assert response.status == 200
    finally:
        server.terminate()
        server.communicate(timeout=30)
    lines = log.read_text().splitlines()
    assert any('"GET /api/v1/movies/1 HTTP/1.1" 200' in line for line in lines), lines
