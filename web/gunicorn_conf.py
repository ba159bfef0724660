"""gunicorn settings for the web app on a small machine (2 cores).

Use with ``gunicorn -c python:web.gunicorn_conf "web:create_app()"``; ``python -m web``
reads the same module. Every value can be overridden on the command line or
with ``GUNICORN_CMD_ARGS``; ``WEB_CONCURRENCY`` and ``MOVIE_WEB_THREADS`` set
the workers and threads, ``MOVIE_WEB_BIND`` the address.

Why these defaults: ``benchmarks/web_load.py --sweep`` on the 2-core machine,
ML-100K bundle, wrk with 32 connections on the same cores (8 s per setting; the
machine was shared, load average 5-7, so read the ranking, not the figures):

=================  =======  =======  ===========
worker x threads    req/s   p50 ms   CPU ms/req
=================  =======  =======  ===========
gthread 2 x 4       1,581     17.6        0.82
gthread 2 x 2       1,428     16.3        1.01
gthread 4 x 1         951     26.0        1.16
gthread 3 x 2       1,152     18.9        1.11
gthread 2 x 1         695     36.9        1.08
gthread 3 x 1         264    138.1        2.42
sync 4 x 1            265    120.5        2.37
=================  =======  =======  ===========

* ``gthread`` workers keep connections alive; the ``sync`` worker closes every
  connection after one response, and a new TCP connection per request costs
  more than the request itself (2.4 ms of CPU per request above).
* 2 workers, one per core: a request is mostly Python (HTTP parsing, routing,
  JSON), which holds the GIL, so processes, not threads, give parallelism; a
  third or fourth worker only adds context switches on 2 cores.
* 4 threads per worker: with 1 thread a worker serves its keep-alive
  connections one at a time and latency climbs; 4 kept both cores busy at the
  lowest CPU cost per request; more only add GIL contention.
* ``preload_app``: the bundle is loaded (and verified) once, in the master,
  before forking, so a bad bundle stops the server at once with the error
  naming the file, and the workers share its arrays' memory pages. No thread
  pool (BLAS's or faiss's OpenMP) has run a parallel job before the fork.
* One BLAS/OpenMP thread per process: a request's maths is one small
  matrix-vector product; letting BLAS split it across threads in every worker
  makes the workers fight over the 2 cores.
"""

import os

# Before numpy or faiss load (they read these once, at import).
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

bind = [os.environ.get("MOVIE_WEB_BIND", "127.0.0.1:8000")]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("MOVIE_WEB_THREADS", "4"))
preload_app = True
keepalive = 5
timeout = 30
graceful_timeout = 10
# No access log by default: one log line per request is a measurable share of
# a 1 ms request. Turn it on with --access-logfile -.
accesslog = None
errorlog = "-"
loglevel = "info"
# gunicorn 27's control socket (~/.gunicorn/gunicorn.ctl) is not used here, and
# two servers on one machine would contend for its one path.
control_socket_disable = True
