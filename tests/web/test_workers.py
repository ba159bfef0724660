"""The default gunicorn worker (web/workers.py): connections take turns."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import urllib.request

from gevent.pywsgi import headers_factory
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.web.test_app import REPO, _serve, free_port, wait_for
from web.workers import parse_request_headers, plain_headers, read_header_lines

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


# Header blocks of plain "Name: value" lines (mostly), and of lines that are not:
# names with blanks, colons or other bytes, stray CRs, folded lines, bare LF,
# no line end.
_PLAIN = st.tuples(
    st.from_regex(rb"\A[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,8}\Z"),
    st.sampled_from([b": ", b":", b":\t", b": \t "]),
    st.binary(max_size=12).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from([b"\r\n", b"\n"]),
).map(b"".join)
_NAMES = st.sampled_from([b"Host", b"x_b", b"Bad Name", b" Lead", b"N\xe9", b"", b"A:B", b"T\tab"])
_VALUES = st.sampled_from([b"", b" x ", b"\tv", b"a\rb", b"caf\xe9", b"1, 2"])
_ODD = st.one_of(
    st.tuples(_NAMES, st.sampled_from([b": ", b" : "]), _VALUES, st.sampled_from([b"\r\n", b"\r"])).map(b"".join),
    st.tuples(st.sampled_from([b" ", b"\t"]), _VALUES, st.sampled_from([b"\r\n", b"\n"])).map(b"".join),  # folded
)
_LINES = st.one_of(_PLAIN, _PLAIN, _PLAIN, _ODD)


def _parsed(parse, raw: bytes):
    """What a header parser makes of ``raw``: its status and headers, or its error."""
    try:
        message = parse(io.BytesIO(raw))
    except Exception as err:  # noqa: BLE001 (compared, not handled)
        return type(err).__name__
    return message.status, message.items(), [type(d).__name__ for d in message.defects]


@settings(max_examples=400, deadline=None)
@given(lines=st.lists(_LINES, max_size=6), end=st.sampled_from([b"\r\n", b"\n", b""]), rest=st.sampled_from([b"", b"GET / HTTP/1.1\r\n"]))
def test_the_fast_header_parse_reads_every_block_as_the_standard_one_does(lines, end, rest):
    raw = b"".join(lines) + end + rest
    assert _parsed(parse_request_headers, raw) == _parsed(headers_factory, raw)


def test_plain_header_lines_take_the_fast_path_and_others_do_not():
    assert plain_headers(read_header_lines(io.BytesIO(b"Host: 127.0.0.1:8000\r\nAccept: */*\r\n\r\n"))) is not None
    for raw in (b"Host: a\r\n b\r\n\r\n", b"Bad Name: 1\r\n\r\n", b"X: a\rb\r\n\r\n", b"Host: a"):
        assert plain_headers(read_header_lines(io.BytesIO(raw))) is None, raw


def test_header_limits_are_http_clients():
    too_long = b"X: " + b"a" * 70000 + b"\r\n\r\n"
    assert _parsed(parse_request_headers, too_long) == _parsed(headers_factory, too_long) == ("Line too long", [], [])
    too_many = b"X: 1\r\n" * 101 + b"\r\n"
    assert _parsed(parse_request_headers, too_many) == _parsed(headers_factory, too_many) == "HTTPException"
