"""Stock gunicorn settings, plain values, for ``gunicorn -c python:web.gunicorn_conf "web:create_app()"``
and ``python -m web``; override them on the command line or with ``GUNICORN_CMD_ARGS``.

gunicorn's own gevent worker: requests go through gunicorn's HTTP parser, which refuses ambiguous framing.
``preload_app``: the bundle is loaded and verified once, in the master, and the workers share its pages.
``keepalive`` is also the deadline for a request's line and headers. gunicorn has none for a body: a client
sending one byte a second holds a connection (about 30 KB of a worker), so ``worker_connections`` is 5,000
(at 1,000, 2,000 slow bodies took every slot and every healthz probe timed out; ``ulimit -n`` must allow it),
and the body deadline is nginx's in front (``web/nginx.conf``); figures: benchmarks/README.md, "Slow bodies".
"""

import os

# One compute thread per worker for BLAS and faiss's OpenMP, set before either library loads (a deployment's
# own value wins): the workers are the parallelism, and threads of their own fight them for the same cores
# (benchmarks/README.md, "Threads per worker").
os.environ.setdefault("OMP_NUM_THREADS", "1")

bind = ["127.0.0.1:8000"]
workers = 2
worker_class = "gevent"
worker_connections = 5000
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
