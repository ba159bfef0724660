"""gunicorn settings for the web app on a small machine (2 cores).

Use with ``gunicorn -c python:web.gunicorn_conf "web:create_app()"``;
``python -m web`` and the repository's ``gunicorn.conf.py`` read the same
module. These are plain values: override any of them on the command line or
with ``GUNICORN_CMD_ARGS`` (e.g. ``--workers 4``). Importing this module
changes nothing: no environment variable, no process-wide setting; the hooks
below act only inside a running gunicorn.

Why these values (figures: ``benchmarks/README.md``, ``web_load.py``):

* **gunicorn's own ``gevent`` worker**, so requests go through gunicorn's HTTP
  parser (``gunicorn.http``), which rejects ambiguous framing (duplicate or
  malformed ``Content-Length``, ``Content-Length`` with ``Transfer-Encoding``,
  header lines without a colon, stray CRs) with a 400. (``gevent_pywsgi`` and
  ``geventlet`` would hand parsing to another library.) A gevent worker reads,
  answers and writes on one thread; ``gthread`` hands each request to a pool
  thread and back, costing more CPU a request, and a pool thread blocks on a
  half-sent request until the client gives up.
* **Slow or half-open requests are cut off after** ``keepalive`` **seconds**:
  gunicorn's gevent worker reads every request's line and headers under a
  ``gevent.Timeout`` of ``keepalive``, so a slowloris client holds each of its
  connections for at most that long, and each worker serves
  ``worker_connections`` connections at once. Above that, each worker's worth of
  half-open connections queued ahead delays a new request by one ``keepalive``:
  hence a short one, gunicorn's own default.
* **Connections take turns** (:func:`post_request`): a gevent worker otherwise
  keeps serving a connection whose next request is already in its buffer, and
  the others queue behind it, which stretches the tail latency under load.
* **2 workers, one per core.** A request is mostly Python, which holds the GIL;
  more processes only add context switches on 2 cores.
* **``reuse_port``: one listening socket per worker**, so the kernel spreads new
  connections evenly. As ``SO_REUSEPORT`` would also let a second copy of this
  server share the port silently, :func:`on_starting` first checks it is free.
* **``preload_app`` and ``gc.freeze()``** before forking: the bundle is loaded
  and verified once, in the master (a bad bundle stops the server at once), the
  workers share its pages (and those of the similar-movies index and the
  catalogue's title index, which ``create_app`` builds there:
  ``Recommender.warm``), and the collector never
  walks its objects again.
* **One faiss (OpenMP) thread per worker** (:func:`post_fork`): a request's
  search is one small query; splitting it over threads in every worker makes
  the workers fight over the 2 cores.
* **Request limits:** at most 50 header lines (gunicorn allows 100; browsers
  send about 20), a request line of 4094 bytes and header lines of 8190 bytes
  (gunicorn's defaults, set here so that they are deliberate); beyond them a
  request gets one 431 or 414.
* **Quiet logs:** a rejected request is one warning line (no traceback), and
  there is no access log by default (``--access-logfile -`` turns it on).
"""

import errno
import gc
import os
import socket
import sys

bind = ["127.0.0.1:8000"]
workers = 2
worker_class = "gevent"
worker_connections = 1000
"""Connections one gevent worker serves at once (a slowloris client holds one
for ``keepalive`` seconds at most)."""
threads = 4
"""Threads per worker; used by ``gthread`` workers only."""
reuse_port = True
preload_app = True

# The header-read timeout of gunicorn's gevent worker, and the idle time
# allowed between requests on one connection.
keepalive = 2
# A worker that answers no heartbeat for this long (a request stuck in Python) is restarted.
timeout = 30
graceful_timeout = 10

# The longest API URL (a search query of MAX_QUERY_LENGTH, percent-encoded) is
# well under 2 KiB; browsers send about 20 headers.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190

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
    """Say where the server listens (with ``reuse_port`` the workers bind, so
    gunicorn's own "Listening at" line is empty)."""
    server.log.info("Serving on %s (%s workers, %s)", ", ".join(server.cfg.bind), server.cfg.workers, server.cfg.worker_class_str)


def pre_fork(server, worker) -> None:
    """Move everything loaded so far out of the garbage collector's reach."""
    gc.freeze()


def post_fork(server, worker) -> None:
    """One OpenMP thread for faiss in each worker (the preloaded app loaded it)."""
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(1)


TURN_SECONDS = 0.0001
"""How long a gevent connection steps aside after each request: any positive
time makes gevent poll every socket first (a zero sleep resumes before polling)."""


def _is_gevent(worker) -> bool:
    """Whether ``worker`` is one of gunicorn's gevent workers."""
    return any(cls.__module__ == "gunicorn.workers.ggevent" for cls in type(worker).__mro__)


def post_request(worker, req, environ, resp) -> None:
    """In a gevent worker, let every other connection with a request waiting go
    before this connection's next request."""
    if _is_gevent(worker):
        import gevent  # loaded already: the worker runs on it

        gevent.sleep(TURN_SECONDS)


def worker_exit(server, worker) -> None:
    """Unfreeze what :func:`pre_fork` froze, so that interpreter exit collects it.

    Frozen objects escape that collection and their modules are cleared one by one
    instead; in a gevent worker gevent's thread module then goes before the log
    handler flask keeps (``default_handler``), and logging's clean-up callback for
    it fails on its gevent-patched lock ("Exception ignored"). The pid check skips
    the master, where gunicorn also calls this hook for a worker already gone.
    """
    if os.getpid() == worker.pid:
        gc.unfreeze()
