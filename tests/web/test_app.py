"""The app factory, its configuration, the command line and the real server."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from embedder.bundle import BundleError
from tests.web.conftest import REPO, free_port, serve, wait_for
from web import DEFAULTS, create_app
from web.state import cluster_map_svg


def test_config_precedence_defaults_mapping_environment_overrides(built_bundle, tiny_bundle):
    app = create_app({"BUNDLE": built_bundle}, environ={})
    assert app.config["K_MAX"] == DEFAULTS["K_MAX"] and app.config["BUNDLE"] == built_bundle
    app = create_app({"BUNDLE": built_bundle, "K_MAX": 50}, environ={})
    assert app.config["K_MAX"] == 50
    env = {"MOVIE_WEB_K_MAX": "20", "MOVIE_WEB_BUNDLE": tiny_bundle}
    app = create_app({"BUNDLE": built_bundle, "K_MAX": 50}, environ=env)
    assert app.config["K_MAX"] == 20 and app.config["BUNDLE"] == tiny_bundle
    assert app.extensions["movie_web"].rec.catalogue.built is False  # the environment's bundle was loaded
    app = create_app(
        {"K_MAX": 50}, overrides={"K_MAX": 7, "K_DEFAULT": 5, "BUNDLE": built_bundle}, environ=env
    )
    assert app.config["K_MAX"] == 7 and app.config["BUNDLE"] == built_bundle
    user = int(app.extensions["movie_web"].rec.user_ids[0])
    assert (
        "less than or equal to 7"
        in app.test_client().get(f"/api/v1/users/{user}/recommendations?k=8").get_json()["error"]
    )


def test_environment_is_read_by_default(built_bundle, monkeypatch):
    monkeypatch.setenv("MOVIE_WEB_BUNDLE", built_bundle)
    monkeypatch.setenv("MOVIE_WEB_K_DEFAULT", "3")
    app = create_app()
    assert app.config["BUNDLE"] == built_bundle and app.config["K_DEFAULT"] == 3
    assert app.config["DEBUG"] is False


def test_bad_settings_stop_the_app(built_bundle):
    with pytest.raises(ValueError, match="MOVIE_WEB_K_MAX"):
        create_app({"BUNDLE": built_bundle}, environ={"MOVIE_WEB_K_MAX": "lots"})
    with pytest.raises(ValueError, match="K_DEFAULT"):
        create_app({"BUNDLE": built_bundle, "K_DEFAULT": 200}, environ={})
    with pytest.raises(ValueError, match="SEARCH_LIMIT_MAX must be an integer of at least 1"):
        create_app({"BUNDLE": built_bundle, "SEARCH_LIMIT_MAX": 0}, environ={})


def test_missing_bundle_names_it(tmp_path):
    with pytest.raises(BundleError, match="no bundle folder"):
        create_app({"BUNDLE": str(tmp_path / "nowhere")}, environ={})


def test_bundle_defaults_to_artifacts_current():
    assert DEFAULTS["BUNDLE"] == "artifacts/current"


def test_import_loads_nothing_heavy_and_never_torch(built_bundle):
    """`import web` loads no bundle, no faiss; serving a request never imports torch."""
    code = f"""
import sys
import web
assert 'faiss' not in sys.modules and 'search.recommender' not in sys.modules, 'import web must stay light'
app = web.create_app(overrides={{"BUNDLE": {built_bundle!r}}})
client = app.test_client()
for url in ["/", "/api/v1/healthz", "/clusters", "/clusters/map.svg", "/model"]:
    assert client.get(url).status_code == 200, url
user = int(app.extensions["movie_web"].rec.user_ids[0])
assert client.get(f"/users/{{user}}").status_code == 200
assert 'torch' not in sys.modules, 'web imported torch'
print('ok')
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_cli_help_and_bad_flags():
    done = subprocess.run(
        [sys.executable, "-m", "web", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for flag in ("--bundle", "--host", "--port", "--workers", "--threads", "--dev"):
        assert flag in done.stdout
    assert "127.0.0.1" in done.stdout and "8000" in done.stdout
    for bad in (["--port", "0"], ["--workers", "x"], ["--debug"]):
        done = subprocess.run(
            [sys.executable, "-m", "web", *bad], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2 and "error" in done.stderr, bad


@pytest.mark.parametrize(
    "options",
    [(), ("--worker-class", "gevent"), ("--worker-class", "gthread", "--threads", "2")],
    ids=["default", "gevent", "gthread"],
)
def test_python_m_web_runs_gunicorn_on_localhost(built_bundle, options):
    port = free_port()
    process = serve(built_bundle, port, *options)
    try:
        body = wait_for(f"http://127.0.0.1:{port}/api/v1/healthz", process)
        assert b'"status":"ok"' in body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert b"Movie title" in response.read()
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert f"UI at http://127.0.0.1:{port}/" in stderr and "gunicorn" in stderr.lower()
    assert f"Using worker: {options[1] if options else 'gevent'}" in stderr
    assert f"Listening at: http://127.0.0.1:{port} " in stderr  # the address, as the log gives it
    # Stopping is clean: no traceback from a worker's interpreter shutdown.
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


def test_python_m_web_with_a_bad_bundle_exits_with_its_name(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "web", "--bundle", str(tmp_path / "none"), "--port", str(free_port())],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "no bundle folder" in done.stderr


def test_gunicorn_conf_defaults():
    from web import gunicorn_conf

    assert gunicorn_conf.bind == ["127.0.0.1:8000"]
    assert (
        gunicorn_conf.worker_class == "gevent" and gunicorn_conf.workers >= 1 and gunicorn_conf.threads >= 1
    )
    assert gunicorn_conf.preload_app
    # Stock settings only: no server hooks (per request, per fork or at start).
    assert not [name for name in dir(gunicorn_conf) if callable(getattr(gunicorn_conf, name))]
    # Request limits and the header-read timeout; tests/web/test_server.py sends requests at and over them.
    assert (
        gunicorn_conf.limit_request_line,
        gunicorn_conf.limit_request_fields,
        gunicorn_conf.limit_request_field_size,
    ) == (4094, 50, 8190)
    assert gunicorn_conf.keepalive == 2
    # Issue 30: 2,000 slow bodies must leave room for healthz (benchmarks/slow_body.py; they took all of 2 x 1,000).
    assert gunicorn_conf.worker_connections == 5000 and gunicorn_conf.workers * 5000 > 2 * 2000


# --------------------------------------------------------------------------- chart


def test_cluster_map_svg():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(500, 2)).astype(np.float32)
    coords[3] = np.nan
    labels = rng.integers(0, 3, 500)
    svg = ET.fromstring(cluster_map_svg(coords, labels))
    paths = svg.findall(".//{http://www.w3.org/2000/svg}path")
    assert len(paths) == 3 and sum(p.get("d").count("M") for p in paths) == 499
    sampled = ET.fromstring(cluster_map_svg(coords, labels, max_points=100))
    assert sum(p.get("d").count("M") for p in sampled.iter("{http://www.w3.org/2000/svg}path")) == 100
    ET.fromstring(cluster_map_svg(np.zeros((1, 2)), np.zeros(1)))  # one point, no span
