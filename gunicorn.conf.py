# Read automatically by `gunicorn "web:create_app()"` run from the repository root,
# so the plain production command gets the settings tuned for 2 cores.
from web.gunicorn_conf import *  # noqa: F401,F403
