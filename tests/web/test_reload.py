"""Hot reload (web/reload.py): the app follows the `current` link to each new bundle,
refuses a damaged one and keeps serving, and answers throughout."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from embedder.bundle import Bundle
from embedder.publish import point_current
from search import Recommender
from tests.conftest import random_bundle
from tests.embedder.test_bundle import _seen
from tests.web.conftest import free_port, make_app, serve, wait_for


@pytest.fixture
def artifacts(tmp_path):
    """Three bundles: two good ones and one whose checksum no longer matches; current -> a."""
    root = tmp_path / "artifacts"
    good = {
        name: random_bundle(root / "bundles" / name, seed=seed, n_users=12, n_movies=20).resolve()
        for seed, name in enumerate("ab")
    }
    bad = random_bundle(root / "bundles" / "bad", seed=5, n_users=12, n_movies=20).resolve()
    (bad / "movie_biases.npy").write_bytes((bad / "movie_biases.npy").read_bytes()[:-4] + b"\0\0\0\0")
    point_current(root / "current", good["a"])
    return root, good, bad


def _top(bundle_path, user: int) -> list[int]:
    ids, _, _ = Recommender.load(bundle_path).recommend(user, k=5)
    return ids.tolist()


def test_the_app_follows_current_and_refuses_a_damaged_bundle(artifacts):
    root, good, bad = artifacts
    client = make_app(root / "current", RELOAD_SECONDS=1e-6).test_client()
    user = int(Bundle.load(good["a"]).user_ids[0])
    recommended = lambda: [
        i["movie_id"] for i in client.get(f"/api/v1/users/{user}/recommendations?k=5").get_json()["items"]
    ]
    health = lambda: client.get("/api/v1/healthz").get_json()
    assert health()["bundle"] == str(good["a"]) and health()["last_refusal"] is None
    assert recommended() == _top(good["a"], user)

    point_current(root / "current", good["b"])
    assert recommended() == _top(good["b"], user) != _top(good["a"], user)
    assert health()["bundle"] == str(good["b"])

    point_current(root / "current", bad)
    assert recommended() == _top(good["b"], user)  # the damaged one is refused; b keeps serving
    refusal = health()["last_refusal"]
    assert (
        health()["bundle"] == str(good["b"])
        and refusal["bundle"] == str(bad)
        and "checksum mismatch" in refusal["error"]
    )

    point_current(root / "current", good["a"])
    assert recommended() == _top(good["a"], user) and health()["last_refusal"] is None


def test_a_bundle_whose_loading_fails_unexpectedly_is_refused_without_failing_requests(
    artifacts, monkeypatch, caplog
):
    """Not a BundleError (a bug, or a malformed file no check knows yet): still a refusal, never a 500."""
    root, good, _ = artifacts
    client = make_app(root / "current", RELOAD_SECONDS=1e-6).test_client()
    user = int(Bundle.load(good["a"]).user_ids[0])
    expected = _top(good["a"], user)
    loading = Recommender.load.__func__

    def load(cls, path, *args, **kwargs):
        if Path(path).resolve() == good["b"].resolve():
            raise AttributeError("'list' object has no attribute 'get'")
        return loading(cls, path, *args, **kwargs)

    monkeypatch.setattr(Recommender, "load", classmethod(load))
    point_current(root / "current", good["b"])
    for _ in range(3):
        response = client.get(f"/api/v1/users/{user}/recommendations?k=5")
        assert (
            response.status_code == 200 and [i["movie_id"] for i in response.get_json()["items"]] == expected
        )
    health = client.get("/api/v1/healthz").get_json()
    assert health["bundle"] == str(good["a"]) and health["last_refusal"]["bundle"] == str(good["b"])
    assert health["last_refusal"]["error"] == "AttributeError: 'list' object has no attribute 'get'"
    assert (
        sum("not serving" in record.getMessage() for record in caplog.records) == 1
    )  # logged once, not per request


def test_without_reload_the_app_keeps_its_bundle(artifacts):
    root, good, _ = artifacts
    client = make_app(root / "current", RELOAD_SECONDS=0).test_client()
    point_current(root / "current", good["b"])
    assert client.get("/api/v1/healthz").get_json()["bundle"] == str(good["a"])


@pytest.mark.parametrize("value", [-1, float("nan"), "soon", True])
def test_a_bad_reload_setting_is_refused(artifacts, value):
    root, *_ = artifacts
    with pytest.raises(ValueError, match="RELOAD_SECONDS"):
        make_app(root / "current", RELOAD_SECONDS=value)


def _out_of_range(bundle: Path) -> Path:
    """``bundle`` with a seen.npz column index of 10**6, re-hashed: checksums right, contents out of range."""
    _seen(lambda matrix: matrix.indices.__setitem__(0, 10**6))(bundle)
    return bundle


@pytest.mark.parametrize("damage", ["checksum", "out of range"])
def test_a_live_server_switches_under_load_without_failing_a_request(artifacts, damage):
    """a -> b under load, then a damaged bundle (issue 30: before range checks, seen.npz's 10**6 made every
    worker die with SIGSEGV): refused, b keeps serving, no request fails."""
    root, good, bad = artifacts
    if damage == "out of range":
        bad = _out_of_range(
            random_bundle(root / "bundles" / "range", seed=6, n_users=12, n_movies=20).resolve()
        )
    error = {"checksum": "checksum mismatch", "out of range": "seen.npz: unreadable"}[damage]
    port = free_port()
    process = serve(
        str(root / "current"), port, "--workers", "2", env_extra={"MOVIE_WEB_RELOAD_SECONDS": "0.2"}
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    user = int(Bundle.load(good["a"]).user_ids[0])
    failures, answers, stop = [], [], threading.Event()

    def load() -> None:  # a bounded stream of requests from 4 clients until told to stop
        for _ in range(400):
            if stop.is_set():
                return
            try:
                with urllib.request.urlopen(
                    f"{base}/users/{user}/recommendations?k=5", timeout=10
                ) as response:
                    answers.append([i["movie_id"] for i in json.loads(response.read())["items"]])
            except OSError as err:
                failures.append(repr(err))

    try:
        wait_for(f"{base}/healthz", process)
        clients = [threading.Thread(target=load) for _ in range(4)]
        for c in clients:
            c.start()
        time.sleep(0.5)
        point_current(root / "current", good["b"])
        time.sleep(1.5)
        point_current(root / "current", bad)
        time.sleep(1.0)
        stop.set()
        for c in clients:
            c.join(timeout=30)
        healths = [
            json.loads(urllib.request.urlopen(f"{base}/healthz", timeout=10).read()) for _ in range(20)
        ]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert not failures, failures[:3]
    assert _top(good["a"], user) in answers and answers[-1] == _top(good["b"], user)
    assert {h["bundle"] for h in healths} == {str(good["b"])}
    assert all(h["last_refusal"] and h["last_refusal"]["bundle"] == str(bad) for h in healths)
    assert all(error in h["last_refusal"]["error"] for h in healths), healths[0]["last_refusal"]
    assert "Traceback" not in stderr and "not serving" in stderr


def _workers(master: int) -> list[int]:
    """The pids of a gunicorn master's worker processes."""
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def test_a_worker_restarted_after_a_crash_serves_the_last_accepted_bundle(artifacts):
    """a -> b (accepted) -> bad (refused); then a worker dies and gunicorn forks another from
    the master, which loaded a: the new worker must serve b, as the others do."""
    root, good, bad = artifacts
    port = free_port()
    process = serve(
        str(root / "current"), port, "--workers", "2", env_extra={"MOVIE_WEB_RELOAD_SECONDS": "0.1"}
    )
    health = f"http://127.0.0.1:{port}/api/v1/healthz"
    served = lambda: json.loads(urllib.request.urlopen(health, timeout=10).read())["bundle"]  # noqa: E731
    try:
        wait_for(health, process)
        point_current(root / "current", good["b"])
        deadline = time.monotonic() + 30
        while {served() for _ in range(20)} != {str(good["b"])} and time.monotonic() < deadline:
            time.sleep(0.2)
        point_current(root / "current", bad)
        time.sleep(1)
        before = _workers(process.pid)
        os.kill(before[0], signal.SIGKILL)
        while len(set(_workers(process.pid)) - set(before)) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        wait_for(health, process)
        time.sleep(0.5)  # one reload period, so the new worker has checked the state file
        answers = [served() for _ in range(40)]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert set(answers) == {str(good["b"])}, answers
    assert "Traceback" not in stderr
