"""Stock gunicorn settings, plain values, for ``gunicorn -c python:web.gunicorn_conf "web:create_app()"``
and ``python -m web``; override them on the command line or with ``GUNICORN_CMD_ARGS``.

gunicorn's own gevent worker: requests go through gunicorn's HTTP parser, which refuses ambiguous framing.
``preload_app``: the bundle is loaded and verified once, in the master, and the workers share its pages.
``keepalive`` is also the deadline for a request's line and headers; a slow body is bounded by
``MAX_CONTENT_LENGTH`` and ``worker_connections`` (a reverse proxy is the place for a deadline).
"""

bind = ["127.0.0.1:8000"]
workers = 2
worker_class = "gevent"
worker_connections = 1000
threads = 4  # per worker, for gthread workers only
preload_app = True
keepalive = 2
timeout = 30
graceful_timeout = 10
# gunicorn's defaults but for the header count (browsers send about 20): 431 or 414 beyond.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
# gunicorn 27's control socket is not used, and two servers on one machine would contend for its path.
control_socket_disable = True
