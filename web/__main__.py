"""``python -m web``: serve the UI and API with gunicorn (or Flask's dev server with ``--dev``).

gunicorn runs with :mod:`web.gunicorn_conf`, as ``gunicorn -c python:web.gunicorn_conf "web:create_app()"``
does. Debug is off unless ``--dev --debug``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from embedder.checks import whole_number_arg
from web import gunicorn_conf as conf


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m web``."""
    parser = argparse.ArgumentParser(prog="python -m web", description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--bundle", help="bundle folder (default: $MOVIE_WEB_BUNDLE or artifacts/current)")
    add("--host", default="127.0.0.1", help="address to bind (default: %(default)s; 0.0.0.0 exposes it)")
    add("--port", type=whole_number_arg(1, 65535), default=8000, help="port (default: %(default)s)")
    add("--workers", type=whole_number_arg(1), default=conf.workers, help="worker processes (%(default)s)")
    add("--worker-class", default=conf.worker_class, help="gunicorn worker class (default: %(default)s)")
    add("--threads", type=whole_number_arg(1), default=conf.threads, help="threads per gthread worker")
    add("--dev", action="store_true", help="Flask's development server instead of gunicorn")
    add("--debug", action="store_true", help="with --dev: debugger and reloader (never on a shared network)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until interrupted; 2 on bad arguments or a bad bundle."""
    args = build_parser().parse_args(argv)
    if args.debug and not args.dev:
        build_parser().error("--debug needs --dev (gunicorn never runs the debugger)")
    from web import create_app  # after parsing: --help and a bad flag load none of the app's libraries

    try:  # built before gunicorn forks its workers, so a bad bundle is one clear line
        app = create_app({} if args.bundle is None else {"BUNDLE": args.bundle})
    except ValueError as err:  # BundleError, or a bad MOVIE_WEB_* setting
        print(f"error: {err}", file=sys.stderr)
        return 2
    host = f"[{args.host}]" if ":" in args.host else args.host
    server = "Flask development server" if args.dev else f"gunicorn, {args.workers} x {args.worker_class}"
    url = f"http://{host}:{args.port}"
    where = f"UI at {url}/, API docs at {url}/api/swagger"
    print(f"web: serving {app.config['BUNDLE']} ({server}); {where}", file=sys.stderr)
    if args.dev:
        app.run(host=args.host, port=args.port, debug=args.debug, threaded=True)
    else:
        from gunicorn.app.base import BaseApplication

        options = {"workers": args.workers, "threads": args.threads, "worker_class": args.worker_class}
        settings = {**vars(conf), "bind": [f"{host}:{args.port}"], **options}

        class Server(BaseApplication):  # serves the app built above (gunicorn_conf preloads)
            def load_config(self) -> None:
                for key in settings.keys() & self.cfg.settings.keys():
                    self.cfg.set(key, settings[key])

            def load(self):
                return app

        Server().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
