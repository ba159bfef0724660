"""Fixtures for the web tests: built bundles, apps, clients, and the browser gate.

Bundles are built with the real CLI (``python -m search build``) on copies, so
the session-scoped ``tiny_bundle`` stays untouched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tests.conftest import write_synthetic_bundle

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
XSS_TITLE = "<script>alert(1)</script> Evil & Co (1999)"
XSS_GENRE = "<img src=x onerror=alert(2)>"


def search_build(path: Path, clusters: int) -> None:
    """Run ``python -m search build`` on the bundle at ``path``."""
    done = subprocess.run(
        [sys.executable, "-m", "search", "build", "--bundle", str(path), "--clusters", str(clusters)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def make_app(bundle, **settings):
    """An app over ``bundle``; the overrides beat any MOVIE_WEB_* in the environment."""
    from web import create_app

    return create_app(overrides={"BUNDLE": str(bundle), "TESTING": True, **settings})


@pytest.fixture(scope="session")
def built_bundle(tiny_bundle, tmp_path_factory) -> str:
    """A copy of ``tiny_bundle`` with index and 4 clusters built."""
    path = tmp_path_factory.mktemp("web-built") / "bundle"
    shutil.copytree(tiny_bundle, path)
    search_build(path, 4)
    return str(path)


@pytest.fixture(scope="session")
def app(built_bundle):
    """The app over the built tiny bundle (shared: views keep no per-request state)."""
    return make_app(built_bundle)


@pytest.fixture
def client(app):
    """A test client of :func:`app`."""
    return app.test_client()


@pytest.fixture(scope="session")
def rec(app):
    """The app's own recommender, to compare answers with."""
    return app.extensions["movie_web"].rec


@pytest.fixture(scope="session")
def unbuilt_app(tiny_bundle):
    """The app over the bundle as training left it: no clusters."""
    return make_app(tiny_bundle)


@pytest.fixture(scope="session")
def xss_bundle(tmp_path_factory) -> str:
    """A built bundle whose titles and genres are HTML: every page must escape them."""
    rng = np.random.default_rng(7)
    n_users, n_movies, dim = 12, 30, 4
    titles = [
        XSS_TITLE if i % 3 == 0 else f"Quote \"{i}\" 'x' <b>bold</b> ({1990 + i})" for i in range(n_movies)
    ]
    seen = sp.random(
        n_users, n_movies, density=0.3, format="csr", random_state=7, data_rvs=lambda n: rng.integers(1, 6, n)
    )
    path = tmp_path_factory.mktemp("web-xss") / "bundle"
    write_synthetic_bundle(
        path,
        rng.normal(size=(n_users, dim)),
        rng.normal(size=(n_movies, dim)),
        titles=titles,
        genres=[f"Drama|{XSS_GENRE}"] * n_movies,
        seen=seen,
    )
    search_build(path, 3)
    return str(path)


@pytest.fixture(scope="session")
def xss_app(xss_bundle):
    """The app over :func:`xss_bundle`."""
    return make_app(xss_bundle)


# --------------------------------------------------------------------------- real server


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, seconds: float = 60) -> bytes:
    """The body of ``url`` once the server ``process`` answers it (AssertionError
    if the server exits or does not answer in ``seconds``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {seconds}s")


def serve(bundle: str, port: int, *options: str, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m web`` (gunicorn with the production settings) on 127.0.0.1:``port``,
    one worker unless ``options`` say otherwise; ``env_extra`` adds to its environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "web", "--bundle", bundle, "--port", str(port), "--workers", "1", *options],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env_extra or {})},
    )


NGINX_CONF = REPO / "web" / "nginx.conf"
"""The documented nginx front (README, "Web UI and JSON API"): listens on 8080, gunicorn upstream on 8000."""


def nginx_in_front(listen: int, upstream: int, folder: Path) -> subprocess.Popen:
    """nginx running ``web/nginx.conf`` as it is but for its two addresses: it listens on
    127.0.0.1:``listen`` and passes to gunicorn on 127.0.0.1:``upstream``; its files (pid, temporary
    bodies) under ``folder``, its log on the process's stderr."""
    text = NGINX_CONF.read_text()
    for default, port in (("127.0.0.1:8080", listen), ("127.0.0.1:8000", upstream)):
        assert text.count(default) == 1, f"{NGINX_CONF} no longer has one {default}"
        text = text.replace(default, f"127.0.0.1:{port}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nginx.conf").write_text(text)
    return subprocess.Popen(
        ["nginx", "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def live_server(built_bundle):
    """A running production server over the built bundle: ``(base URL, port, process)``.

    After the module's tests the server is stopped; its log must hold no traceback.
    """
    port = free_port()
    process = serve(built_bundle, port)
    try:
        wait_for(f"http://127.0.0.1:{port}/api/v1/healthz", process)
        yield f"http://127.0.0.1:{port}", port, process
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


# --------------------------------------------------------------------------- browser gate


def browser_missing() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    return None


def browser_required() -> bool:
    """REQUIRE_BROWSER=1 (CI): a browser test that cannot run fails instead of skipping."""
    return os.environ.get("REQUIRE_BROWSER") == "1"


def pytest_collection_modifyitems(config, items):
    """Skip ``browser`` tests when chromium or playwright is missing (unless required)."""
    reason = browser_missing()
    if reason is None or browser_required():
        return
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """With REQUIRE_BROWSER=1, fail a ``browser`` test at once (before its
    fixtures train and build bundles) when chromium or playwright is missing."""
    if item.get_closest_marker("browser") and browser_required():
        reason = browser_missing()
        if reason is not None:
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}", pytrace=False)
