"""gunicorn settings for the web app: stock settings only, as plain values.

Use with ``gunicorn -c python:web.gunicorn_conf "web:create_app()"``; ``python -m web``
and the repository's ``gunicorn.conf.py`` read the same module. Override any of them on
the command line or with ``GUNICORN_CMD_ARGS`` (e.g. ``--workers 4``).

* gunicorn's own ``gevent`` worker, so requests go through gunicorn's HTTP parser, which
  refuses ambiguous framing, malformed chunking (400) and transfer codings other than
  chunked (501).
* ``preload_app``: the bundle is loaded and verified once, in the master (a bad bundle
  stops the server at once), and the workers share its pages.
* ``keepalive`` is also the gevent worker's deadline for a request's line and headers.
  gunicorn has no deadline for reading a body: a client that sends its body slowly is
  bounded by ``MAX_CONTENT_LENGTH`` (web/__init__.py) and ``worker_connections`` only;
  a reverse proxy (nginx's ``client_body_timeout``) is the place for one.
"""

bind = ["127.0.0.1:8000"]
workers = 2
worker_class = "gevent"
worker_connections = 1000
threads = 4
"""Threads per worker; used by ``gthread`` workers only."""
preload_app = True
keepalive = 2
timeout = 30
graceful_timeout = 10
# gunicorn's defaults but for the header count (browsers send about 20): 431 or 414 beyond.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
accesslog = None
errorlog = "-"
loglevel = "info"
# gunicorn 27's control socket is not used, and two servers on one machine would contend for its path.
control_socket_disable = True
