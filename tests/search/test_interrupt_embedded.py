"""Ctrl-C or SIGTERM stops a run or an eval on the embedded model within 5 seconds, mid-generation: the model stops
decoding instead of finishing answers nobody will read, and the interrupted trial is marked so a resume reruns it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from run_states import trial_states

pytestmark = [pytest.mark.embedded, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_WITHIN_S = 5.0


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    return subprocess.Popen(
        [sys.executable, "-m", "archon_search", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(worker: subprocess.Popen, sig: signal.Signals) -> float:
    """Send `sig`; the seconds until the process exited."""
    sent = time.monotonic()
    worker.send_signal(sig)
    try:
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    return time.monotonic() - sent


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_run_stops_within_seconds_and_its_trial_is_rerun_on_resume(tmp_path, sig):
    out = tmp_path / "run"
    # long answers, so the signal lands while the model is decoding
    space = tmp_path / "space.yaml"
    space.write_text("max_tokens: 512\ngenerator: {units: [1, 1], samples: [2, 2]}\nfuser: {layers: [0, 0]}\n")
    args = ["run", "--budget", "2", "--bench", "arith", "--trials", "3", "--limit", "4", "--space", str(space)]
    worker = _start([*args, "--no-cache", "--out", str(out)], tmp_path)
    deadline = time.monotonic() + 600
    while "SCORING" not in trial_states(out) and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.2)
    assert worker.poll() is None, worker.stderr.read()[-2000:]
    time.sleep(1.0)  # well into the trial's generations
    took = _stop(worker, sig)
    assert took < STOP_WITHIN_S, f"took {took:.1f} s to stop"
    assert worker.returncode != 0
    study = optuna.load_study(study_name="arith-b2", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state for t in study.get_trials()]
    # the interrupted trial is failed (a resume enqueues its rerun), none is left running
    assert TrialState.RUNNING not in states and states.count(TrialState.FAIL) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_an_eval_stops_within_seconds(tmp_path, sig):
    arch = tmp_path / "arch.yaml"
    arch.write_text("name: long\nlayers:\n  - generator: {model: embedded, samples: 4, max_tokens: 512}\n")
    worker = _start(
        ["eval", str(arch), "--bench", "arith", "--limit", "8", "--no-cache", "--out", str(tmp_path)], tmp_path
    )
    time.sleep(15)  # the model loads, then decodes
    assert worker.poll() is None, worker.stderr.read()[-2000:]
    took = _stop(worker, sig)
    assert took < STOP_WITHIN_S, f"took {took:.1f} s to stop"
