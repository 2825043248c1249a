"""Two `archon-search` workers sharing one study on a real PostgreSQL server that this test starts."""

from __future__ import annotations

import itertools
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from archon_search.search.study import with_driver

REPO_ROOT = Path(__file__).resolve().parents[2]
TRIALS = 14
PASSWORD = "not-a-real-secret"

pytestmark = pytest.mark.postgres


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("starting a cluster as the postgres user needs root and runuser")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("there is no postgres user")
    return found[-1].parent


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway cluster on a free loopback port, with a password-protected role and database; stopped at the end."""
    bindir = _postgres_bin()
    base = Path(tempfile.mkdtemp(prefix="archon-pg-"))
    shutil.chown(base, user="postgres", group="postgres")
    data, port = base / "data", _free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"]

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, cwd=base)

    run(str(bindir / "initdb"), "-D", str(data), "--auth-local=trust", "--auth-host=scram-sha-256", "-U", "postgres")
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-o", options, "start")
    try:
        psql = [str(bindir / "psql"), "-h", str(base), "-p", str(port), "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c"]
        run(*psql, f"CREATE ROLE archon LOGIN PASSWORD '{PASSWORD}'")
        run(*psql, "CREATE DATABASE archon_study OWNER archon")
        yield f"postgresql://archon:{PASSWORD}@127.0.0.1:{port}/archon_study"
    finally:
        stop = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
        subprocess.run(stop, check=False, capture_output=True, cwd=base)
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_share_one_study_without_losing_or_repeating_a_trial(postgres_url, tmp_path):
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "perf.landscape",
                "--storage",
                postgres_url,
                "--study",
                "shared",
                "--trials",
                str(TRIALS),
                "--items",
                "24",
                "--latency-ms",
                "20",
                "--out",
                str(tmp_path / f"worker-{i}"),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-2000:]
    trials = optuna.load_study(study_name="shared", storage=with_driver(postgres_url)).get_trials()
    counted = [t for t in trials if "discarded" not in t.user_attrs]
    assert len(counted) == TRIALS
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in counted)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    names = [t.user_attrs["baseline"] for t in counted if "baseline" in t.user_attrs]
    assert sorted(names) == sorted(set(names)) == ["self-consistency-6", "single-alpha", "single-beta"]
    spans = sorted((t.datetime_start, t.datetime_complete) for t in counted)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)), "the workers never overlapped"
    for i in range(2):
        run = json.loads((tmp_path / f"worker-{i}" / "run.json").read_text())
        assert PASSWORD not in json.dumps(run)
        assert run["storage"].startswith("postgresql://archon@127.0.0.1:")
        assert len(run["trials"]) == TRIALS
        assert (tmp_path / f"worker-{i}" / "report.md").is_file()
