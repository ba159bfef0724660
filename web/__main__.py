"""``python -m web``: serve the UI and API with gunicorn (or Flask's dev server with ``--dev``).

By default this runs gunicorn with the settings of :mod:`web.gunicorn_conf`, so
``python -m web`` and ``gunicorn -c python:web.gunicorn_conf "web:create_app()"``
behave the same. Debug is off unless ``--dev --debug``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from embedder.checks import whole_number_arg

_positive = whole_number_arg(1)
_port = whole_number_arg(1, 65535)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m web``."""
    from web import gunicorn_conf

    parser = argparse.ArgumentParser(prog="python -m web", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", help="bundle folder (default: $MOVIE_WEB_BUNDLE or artifacts/current)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s; 0.0.0.0 exposes it)"
    )
    parser.add_argument("--port", type=_port, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--workers",
        type=_positive,
        default=gunicorn_conf.workers,
        help="gunicorn worker processes (default: %(default)s)",
    )
    parser.add_argument(
        "--worker-class",
        default=gunicorn_conf.worker_class,
        help="gunicorn worker class, e.g. gthread or gevent (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        default=gunicorn_conf.threads,
        help="threads per gthread worker (default: %(default)s)",
    )
    parser.add_argument("--dev", action="store_true", help="Flask's development server instead of gunicorn")
    parser.add_argument(
        "--debug", action="store_true", help="with --dev: debugger and reloader (never on a shared network)"
    )
    return parser


def _gunicorn(app, options: dict) -> None:
    """Serve ``app`` (already built: gunicorn_conf preloads) with gunicorn in this process."""
    from gunicorn.app.base import BaseApplication

    from web import gunicorn_conf

    class Server(BaseApplication):
        def load_config(self) -> None:
            settings = {
                key: getattr(gunicorn_conf, key) for key in dir(gunicorn_conf) if key in self.cfg.settings
            }
            settings.update(options)
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):
            return app

    Server().run()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until interrupted; 2 on bad arguments or a bad bundle."""
    args = build_parser().parse_args(argv)
    if args.debug and not args.dev:
        build_parser().error("--debug needs --dev (gunicorn never runs the debugger)")
    from web import (
        create_app,
    )  # after parsing: --help and a bad flag answer without loading the app's libraries

    try:
        # Built once here, before gunicorn forks its workers (the preload of
        # gunicorn_conf), so a bad bundle is one clear line, not a traceback.
        app = create_app({} if args.bundle is None else {"BUNDLE": args.bundle})
    except ValueError as err:  # BundleError, or a bad MOVIE_WEB_* setting
        print(f"error: {err}", file=sys.stderr)
        return 2
    host = f"[{args.host}]" if ":" in args.host else args.host
    threads = f" x {args.threads} threads" if args.worker_class == "gthread" else ""
    server = (
        "Flask development server" if args.dev else f"gunicorn, {args.workers} x {args.worker_class}{threads}"
    )
    print(
        f"web: serving {app.config['BUNDLE']} ({server}); UI at http://{host}:{args.port}/, "
        f"API at http://{host}:{args.port}/api/v1 (documented at /api/swagger)",
        file=sys.stderr,
        flush=True,
    )
    if args.dev:
        app.run(host=args.host, port=args.port, debug=args.debug, threaded=True)
        return 0
    _gunicorn(
        app,
        {
            "bind": [f"{host}:{args.port}"],
            "workers": args.workers,
            "threads": args.threads,
            "worker_class": args.worker_class,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
