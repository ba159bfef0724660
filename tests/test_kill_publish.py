"""kill -9 at random moments of a real publish: `current` always loads a complete bundle.

`python -m embedder train` (publishing a new version and moving `current`) and
`python -m search build` through `current` (a new version, then the link moved)
are killed with SIGKILL after a random delay spread over the whole run, 10 trials
each; after every kill `artifacts/current` must load (checksums verified) as the
bundle before or the one after, never anything else.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embedder.bundle import Bundle

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 10


def _timed(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=300)
    return time.monotonic() - started


def _kill_after(command: list[str], delay: float) -> int | None:
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
        return process.returncode  # finished before the kill
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        return None


def _trials(artifacts: Path, command: list[str], seed: int) -> tuple[int, int]:
    """Kill ``command`` at random moments; (killed, finished) counts. Each time,
    ``current`` must load and be either what it was or a complete new bundle."""
    full = _timed(command)
    rng = random.Random(seed)
    killed = finished = 0
    for _ in range(TRIALS):
        before = Bundle.load(artifacts / "current").path
        code = _kill_after(command, rng.uniform(0.2, full * 1.1))
        after = Bundle.load(artifacts / "current")  # raises if half a bundle were reachable
        if code is None:
            killed += 1
        else:
            assert code == 0
            finished += 1
        assert after.path == before or after.path.parent == before.parent
    return killed, finished


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, synthetic_csv):
    root = tmp_path_factory.mktemp("kill") / "artifacts"
    train = [sys.executable, "-m", "embedder", "train", "--data", synthetic_csv, "--artifacts", str(root), "--dim", "4", "--sample-dim", "2", "--sweeps", "20", "--quiet"]
    subprocess.run(train, cwd=ROOT, check=True, capture_output=True, timeout=300)
    return root, train


def test_killing_train_never_leaves_current_on_half_a_bundle(artifacts):
    root, train = artifacts
    killed, _ = _trials(root, train, seed=1)
    assert killed >= TRIALS // 2  # most kills land during the run, not after it


def test_killing_search_build_never_leaves_current_on_half_a_bundle(artifacts):
    root, _ = artifacts
    build = [sys.executable, "-m", "search", "build", "--bundle", str(root / "current"), "--clusters", "3"]
    killed, _ = _trials(root, build, seed=2)
    assert killed >= TRIALS // 2
