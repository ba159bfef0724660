"""gunicorn settings for the web app on a small machine (2 cores).

Use with ``gunicorn -c python:web.gunicorn_conf "web:create_app()"``; ``python -m web``
reads the same module. Every value can be overridden on the command line or
with ``GUNICORN_CMD_ARGS``; ``WEB_CONCURRENCY`` sets the workers,
``MOVIE_WEB_WORKER_CLASS`` the worker class (any gunicorn accepts: ``gevent``,
``gthread``, ...),
``MOVIE_WEB_THREADS`` the threads of a ``gthread`` worker, ``MOVIE_WEB_BIND`` the
address.

Why these defaults (``benchmarks/web_load.py``, ML-100K bundle, wrk with 32
keep-alive connections on the same 2 cores; the machine is shared, so compare
figures measured in the same run). ``--sweep --duration 10 --no-peer --wrk-threads 1``, every
setting with ``reuse_port``, 2026-11-22 13:58 UTC:

=========================  =======  =======  =======  ====================
workers                     req/s   p50 ms   p99 ms   server CPU ms/req
=========================  =======  =======  =======  ====================
FairGeventWorker 2          2,560     12.3     20.4        0.70
FairGeventWorker 3          2,498     11.1     27.9        0.72
gevent 2                    2,147      1.8    391.7        0.83
gevent_pywsgi 2             2,451     13.5    419.5        0.72
gthread 2 x 2               1,598     18.3     45.1        1.07
gthread 2 x 4               1,641     18.0     45.1        1.06
gthread 3 x 2               1,625     16.9     52.6        1.13
sync 4                      1,546     20.1     59.8        1.12 (+ a new connection per request)
=========================  =======  =======  =======  ====================

* **2 workers, one per core.** A request is mostly Python (HTTP parsing,
  routing, JSON), which holds the GIL, so processes, not threads, give
  parallelism; more workers only add context switches on 2 cores.
* **gevent, and gevent's WSGI server** (``web.workers.FairGeventWorker``). With
  ``gthread`` workers (4 threads) a request cost the server 0.88–1.18 ms of CPU:
  a ``gthread`` worker hands every request from its poll thread to a pool thread
  and back (a pipe write, two epoll calls, blocking-mode toggles and GIL
  hand-offs between five threads: 15–30 system calls a request under
  ``strace``). A gevent worker reads, answers and writes on one thread (5 system
  calls): 0.75–0.83 ms with gunicorn's request handling (``gevent``), 0.58–0.70
  ms with ``gevent.pywsgi``'s (the default here). The app does no I/O of its own
  while answering (numpy and faiss run in memory), so a greenlet never blocks
  another for long.
* **Connections take turns** (:mod:`web.workers`): a gevent worker otherwise keeps
  serving a connection whose next request is already waiting, and starves the
  others (p50 4 ms but p99 300 ms in one run). gunicorn's plain ``gevent`` and
  ``gevent_pywsgi`` workers do not take turns.
* **``reuse_port``: one listening socket per worker**, and the kernel spreads new
  connections evenly over them. With one shared socket, whichever worker wakes
  first accepts: 29 of wrk's 32 connections went to one worker, doubling the
  latency spread. As two sockets with ``SO_REUSEPORT`` could also share the port
  with another copy of this server started by the same user, :func:`on_starting`
  first checks that the port is free.
* **``preload_app`` and ``gc.freeze()``** before forking: the bundle is loaded
  (and verified) once, in the master, so a bad bundle stops the server at once
  with the error naming the file, and the workers share its memory pages. Freezing
  its ~100,000 objects keeps the garbage collector from walking them again: a
  full collection in a worker took 54 ms, a stall for every request in flight.
* **One BLAS/OpenMP thread per process:** a request's maths is one small
  matrix-vector product; letting BLAS split it across threads in every worker
  makes the workers fight over the 2 cores.
* No access log by default: one log line per request is a measurable share of a
  request. Turn it on with ``--access-logfile -``.
"""

import errno
import gc
import logging
import os
import socket

# Before numpy or faiss load (they read these once, at import).
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

bind = [os.environ.get("MOVIE_WEB_BIND", "127.0.0.1:8000")]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("MOVIE_WEB_WORKER_CLASS", "web.workers.FairGeventWorker")
threads = int(os.environ.get("MOVIE_WEB_THREADS", "4"))
"""Threads per worker; used by ``gthread`` workers only."""
reuse_port = True
preload_app = True
keepalive = 5
timeout = 30
graceful_timeout = 10
accesslog = None
errorlog = "-"
loglevel = "info"
# gunicorn 27's control socket (~/.gunicorn/gunicorn.ctl) is not used here, and
# two servers on one machine would contend for its one path.
control_socket_disable = True


def check_port_free(address) -> None:
    """Raise RuntimeError (gunicorn prints it and exits 1) if a TCP ``(host, port)``
    already has a listener: with ``reuse_port`` the workers' binds would
    otherwise join it silently. Unix socket paths are left to gunicorn."""
    if not isinstance(address, tuple):
        return
    host, port = address[0], address[1]
    if port == 0:
        return  # a fresh port per socket: nothing to collide with
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR (as gunicorn sets it) so that connections still in
        # TIME_WAIT from an earlier run do not count; a listener still does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise RuntimeError(f"{host}:{port} is already in use (is another server running?)") from None
            raise RuntimeError(f"cannot bind {host}:{port}: {err.strerror}") from None


def on_starting(server) -> None:
    """Refuse to start on a port another server listens on (see ``reuse_port``)."""
    if server.cfg.reuse_port:
        for address in server.cfg.address:
            check_port_free(address)


def when_ready(server) -> None:
    # With reuse_port the workers bind, so gunicorn's own "Listening at" is empty.
    server.log.info("Serving on %s (%s workers, %s)", ", ".join(server.cfg.bind), server.cfg.workers, server.cfg.worker_class_str)


def pre_fork(server, worker) -> None:
    """Move everything loaded so far out of the garbage collector's reach."""
    gc.freeze()


def worker_exit(server, worker) -> None:
    """Leave logging with nothing to tidy at interpreter exit in a gevent worker.

    gevent's monkey-patching turns logging's module lock into one that needs gevent's
    thread module, which interpreter shutdown clears before the last log handlers are
    collected; each collected handler then printed an "Exception ignored ...
    TypeError" traceback as the worker stopped. Flushing and closing the handlers
    now, and emptying logging's list of them, leaves nothing to remove later.
    """
    if any(cls.__module__ == "gunicorn.workers.ggevent" for cls in type(worker).__mro__):
        logging.shutdown()
        logging._handlerList.clear()  # read by logging's handler-removal callback
