"""kill -9 at random moments of a real publish: `current` always loads a complete bundle.

`python -m embedder train` (publishing a new version and moving `current`) and
`python -m search build` through `current` (a new version, then the link moved)
are killed with SIGKILL until each has been killed while running ``KILLS`` times
(20 in all), half of them at each kind of moment, in random order:

* anywhere: a random fraction of how long a complete run takes;
* publishing: a random moment from the first new entry under ``artifacts`` (the
  staging folder) to a little past the last change a complete run makes there
  (the rename and the link move): tens of milliseconds of a run of seconds,
  which kills spread over the whole run would almost never reach.

Both lengths are re-measured from every run that ends before its kill, so the
moments follow the machine's speed; a run that ends first is checked but not
counted. After every trial `artifacts/current` must load (checksums verified) as
the bundle it was on before, or as a version that did not exist before and holds
every file a complete run of that command writes.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from embedder.bundle import MANIFEST, Bundle
from tests.conftest import ROOT

KILLS = 10
"""Kills that must land while the command runs, per command, half of each kind."""
SECONDS = 150
"""Bound on one command's trials: 30-65 s each on 2 cores, depending on the machine;
a margin of twice that, so that only a hang fails it."""
POLL = 0.002
# One thread for torch, BLAS and faiss: on 2 cores shared with other work, their
# thread pools make a run's length vary several-fold, and the kill moments with it.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _versions(root: Path) -> set[str]:
    """The bundle folders under ``root`` (those with a manifest)."""
    return {folder for folder, _, files in os.walk(root) if MANIFEST in files}


def _state(root: Path, skip: set[str]) -> set[str]:
    """Every entry under ``root`` (links with their targets), not looking inside
    the folders in ``skip`` (bundle versions, which are never changed)."""
    state = set()
    for folder, dirs, files in os.walk(root):  # os.walk skips folders removed mid-walk
        dirs[:] = [name for name in dirs if os.path.join(folder, name) not in skip]
        for name in dirs + files:
            path = os.path.join(folder, name)
            try:
                state.add(f"{path} -> {os.readlink(path)}" if os.path.islink(path) else path)
            except OSError:
                pass  # renamed away between the listing and the look
    return state


def _run(
    root: Path, command: list[str], kill: tuple[str, float] | None = None
) -> tuple[int, float, float | None]:
    """Run ``command``, SIGKILLing it ``kill = (kind, seconds)`` after its start
    ("anywhere") or after the first new entry under ``root`` ("publishing").

    Returns the exit code, the run's length and, if it added anything under
    ``root``, the time from the first new entry to its last change there.
    """
    skip = _versions(root)
    initial = before = _state(root, skip)
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_at = started + kill[1] if kill and kill[0] == "anywhere" else float("inf")
    first = last = None
    while process.poll() is None:
        now = time.monotonic()
        if now >= kill_at:
            process.kill()
            break
        state = _state(root, skip)
        if state != before:
            before, last = state, now
            if first is None and state - initial:  # the first new entry (a removal may be a clean-up)
                first = now
                if kill and kill[0] == "publishing":
                    kill_at = now + kill[1]
        time.sleep(POLL)
    process.wait(timeout=30)
    ended = time.monotonic()
    if _state(root, skip) != before:  # changes made after the last poll
        last = ended
    error = process.stderr.read().decode()
    process.stderr.close()
    assert process.returncode in (0, -9), error
    return process.returncode, ended - started, None if first is None else last - first


def _kill_until(root: Path, command: list[str], seed: int) -> Counter:
    """SIGKILL ``command`` until ``KILLS`` kills landed while it ran, checking
    ``current`` after every trial; counts of each outcome."""
    _, length, span = _run(root, command)
    lengths, spans = [length], [span]
    complete = set(Bundle.load(root / "current").manifest["files"])
    rng = random.Random(seed)
    kills = dict.fromkeys(("anywhere", "publishing"), 0)
    outcomes: Counter = Counter()
    deadline = time.monotonic() + SECONDS
    while sum(kills.values()) < KILLS:
        assert time.monotonic() < deadline, f"in {SECONDS}s: {dict(outcomes)}"
        kind = rng.choice([kind for kind in kills if kills[kind] < KILLS // 2])
        seconds = (
            rng.uniform(0.02, 1.0) * statistics.median(lengths)
            if kind == "anywhere"
            else rng.uniform(0, 1.5) * statistics.median(spans)
        )
        before = Bundle.load(root / "current").path
        existing = {Path(folder).resolve() for folder in _versions(root)}
        code, length, span = _run(root, command, (kind, seconds))
        after = Bundle.load(root / "current")  # raises if half a bundle were reachable
        if after.path != before:
            assert after.path not in existing, f"current moved to an older version {after.path}"
            assert set(after.manifest["files"]) == complete, sorted(complete ^ set(after.manifest["files"]))
        if code == 0:  # ended before the kill: a complete run, published
            assert after.path != before
            lengths.append(length)
            spans.append(span)
            outcomes["ended first"] += 1
        else:
            kills[kind] += 1
            outcomes[f"{kind}, current {'moved' if after.path != before else 'kept'}"] += 1
    return outcomes


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, synthetic_csv):
    root = tmp_path_factory.mktemp("kill") / "artifacts"
    train = [sys.executable, "-m", "embedder", "train", "--data", synthetic_csv, "--artifacts", str(root)]
    train += ["--dim", "4", "--sample-dim", "2", "--sweeps", "20", "--threads", "1", "--quiet"]
    return root, train


def test_killing_train_never_leaves_current_on_half_a_bundle(artifacts):
    root, train = artifacts
    print("train:", dict(_kill_until(root, train, seed=1)))


def test_killing_search_build_never_leaves_current_on_half_a_bundle(artifacts):
    root, train = artifacts
    if not (root / "current").exists():  # this test run alone
        _run(root, train)
    build = [sys.executable, "-m", "search", "build", "--bundle", str(root / "current"), "--clusters", "3"]
    print("search build:", dict(_kill_until(root, build, seed=2)))
