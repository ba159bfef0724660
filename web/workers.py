"""The gunicorn worker the web app runs on: gevent's WSGI server, taking turns.

``worker_class = "web.workers.FairGeventWorker"`` (the default of
:mod:`web.gunicorn_conf`). It is gunicorn's ``gevent_pywsgi`` worker with one
change: after each request on a keep-alive connection, the connection's greenlet
steps aside so that every other connection with a request waiting is served
first.

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

Importing this module imports gevent but patches nothing; gunicorn's gevent
worker monkey-patches the standard library when a worker process starts.
"""

from __future__ import annotations

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

TURN_SECONDS = 0.0001
"""How long a connection steps aside after each of its requests: any positive
time makes gevent run its event loop, and so poll every socket, first."""


class FairPyWSGIHandler(PyWSGIHandler):
    """gunicorn's handler for ``gevent.pywsgi``, yielding after every kept-alive request."""

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
