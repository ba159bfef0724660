"""The gunicorn worker the web app runs on: gevent's WSGI server, taking turns.

``worker_class = "web.workers.FairGeventWorker"`` (the default of
:mod:`web.gunicorn_conf`). It is gunicorn's ``gevent_pywsgi`` worker whose
connections take turns: after each request on a keep-alive connection, the
connection's greenlet steps aside so that every other connection with a request
waiting is served first.

Why gevent's WSGI server (``gevent.pywsgi``) rather than gunicorn's own request
handling under gevent (``worker_class = "gevent"``): on the same 2 cores it cost
0.58-0.70 ms of server CPU per API request against 0.75-0.83 ms, and served
2,500-3,100 requests per second against 2,000-2,400 (``benchmarks/web_load.py``).

Why the turn-taking: a greenlet whose next request is already in its socket
buffer never has to wait for the event loop, so without it a few connections
kept a worker while the others queued (p99 220-320 ms at p50 10-13 ms). The
pause must be a positive sleep: gevent resumes a zero sleep before it polls the
sockets again (see ``gevent.sleep``), which only rotates among the connections
that are already running.

Two costs of the handler are cut (py-spy on a worker under
``benchmarks/web_load.py``: 5% and 2% of its time): request headers in plain
``Name: value`` lines are split without the ``email`` package's parser
(:func:`parse_request_headers`), and no access-log entry is built while the
access log is off.

Importing this module imports gevent but patches nothing; gunicorn's gevent
worker monkey-patches the standard library when a worker process starts.
"""

from __future__ import annotations

import io
import re
from http import client
from typing import BinaryIO

import gevent
from gevent.pywsgi import OldMessage, headers_factory
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

TURN_SECONDS = 0.0001
"""How long a connection steps aside after each of its requests: any positive
time makes gevent run its event loop, and so poll every socket, first."""


# A header name (RFC 9110 "token"); a line with any other name takes the standard parser.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# http.client's limits on a header block.
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100


def read_header_lines(rfile: BinaryIO) -> list[bytes]:
    """A request's header lines up to the blank one, with ``http.client``'s limits
    (``LineTooLong`` past 65,536 bytes a line, ``HTTPException`` past 100 lines)."""
    lines = []
    while True:
        line = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise client.HTTPException(f"got more than {MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines


def plain_headers(lines: list[bytes]) -> OldMessage | None:
    """The headers of ``lines`` as the standard parser reads them, if every line is a
    plain ``Name: value`` line; None for anything else (continuation lines, a name
    that is not a token, a stray CR, a missing line end), left to that parser."""
    message = OldMessage()
    for line in lines[:-1]:  # the last is the blank line (or b"" at end of input)
        if line.endswith(b"\r\n"):
            body = line[:-2]
        elif line.endswith(b"\n"):
            body = line[:-1]
        else:
            return None
        name, colon, value = body.partition(b":")
        # A CR alone ends a line for the email parser, so such a line is not plain.
        if not colon or b"\r" in value or not _TOKEN.fullmatch(name):
            return None
        # email's compat32 policy: the value after the colon, leading blanks dropped.
        message.set_raw(name.decode("iso-8859-1"), value.lstrip(b" \t").decode("iso-8859-1"))
    return message


def parse_request_headers(rfile: BinaryIO) -> OldMessage:
    """What gevent's ``pywsgi`` parses a request's headers into, the same, faster.

    ``pywsgi`` hands the header block to ``http.client.parse_headers``, which runs
    the ``email`` package's parser: 17 µs for wrk's one ``Host`` line, 5% of a
    worker's time under load. Plain ``Name: value`` lines (what browsers, curl
    and wrk send) are split here in 4 µs; anything else goes through that parser
    as before. ``tests/web/test_workers.py`` checks that both give the same
    headers for generated header blocks.
    """
    try:
        lines = read_header_lines(rfile)
    except client.LineTooLong:  # as gevent's headers_factory answers it: a 400
        message = OldMessage()
        message.status = "Line too long"
        return message
    message = plain_headers(lines)
    if message is None:  # gevent's own parse, of the same lines
        message = headers_factory(io.BytesIO(b"".join(lines)))
    return message


class FairPyWSGIHandler(PyWSGIHandler):
    """gunicorn's handler for ``gevent.pywsgi``, yielding after every kept-alive
    request, with a faster parse of plain request headers."""

    def MessageClass(self, rfile, *args):  # noqa: N802 (gevent's name)
        return parse_request_headers(rfile)

    def log_request(self):
        """Log the request to gunicorn's access log, if there is one.

        gunicorn's handler builds the log entry (two datetimes, the request's
        headers, a response record) before its logger finds that the access log is
        off, as it is by default: 2% of a worker's time under load. gunicorn 27's
        logger says up front whether it will log; older ones always build it.
        """
        if getattr(self.server.log, "access_log_enabled", True):
            super().log_request()

    def handle_one_request(self):
        result = super().handle_one_request()
        if result is True:  # the connection stays open for another request
            gevent.sleep(TURN_SECONDS)
        return result


class FairGeventWorker(GeventPyWSGIWorker):
    """gunicorn's ``gevent_pywsgi`` worker whose connections take turns."""

    wsgi_handler = FairPyWSGIHandler
