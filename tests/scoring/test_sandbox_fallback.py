"""The sandbox at every isolation level this machine can run, bubblewrap forced off included: each attack class
(write outside the run directory, fork bomb, network, secrets in the environment, memory bomb, infinite loop)
is contained as far as the level's summary line claims, and as root the code runs as an unprivileged uid."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import archon_search
from archon_search.core.errors import ArchonError
from archon_search.scoring.sandbox import (
    MAX_PROCESSES,
    SANDBOX_ENV,
    UNPRIVILEGED_UID,
    Isolation,
    _closed_to_others,
    _info,
    _run,
    describe_isolation,
    detect_isolation,
    strongest_allowed,
)

PROJECT = Path(archon_search.__file__).resolve().parents[1]
AS_ROOT = os.geteuid() == 0
#: bwrap and unshare as detected with nothing stronger allowed; the last runs a Python every user can read,
#: as a pip install into /usr/local or /opt is, where this machine's own interpreter may live under /root.
LEVELS = ["bwrap", "unshare", "none", "none-readable-python"]


def _readable_python() -> str | None:
    for path in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(path) and _closed_to_others(path) is None:
            return path
    return None


@functools.cache
def _detect(strongest: str, python: str) -> Isolation:
    return detect_isolation(strongest)


@pytest.fixture(params=LEVELS)
def level(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Isolation:
    wrapper = request.param
    if wrapper == "none-readable-python":
        python = _readable_python()
        if python is None:
            pytest.skip("no Python here that every user can read")
        monkeypatch.setattr(sys, "executable", python)
        wrapper = "none"
    if wrapper != "none" and not shutil.which(wrapper):
        pytest.skip(f"{wrapper} is not installed")
    iso = _detect(wrapper, sys.executable)
    if iso.wrapper != wrapper:
        pytest.skip(f"{wrapper} does not run here (detection fell back to {iso.wrapper})")
    return iso


def _attack(iso: Isolation, code: str, timeout_s: float = 10, memory_mb: int = 512):
    return _run(code, iso, timeout_s=timeout_s, memory_mb=memory_mb, cpu_s=None, files=None)


def _can_mount_namespaces() -> bool:
    return subprocess.run(["unshare", "--mount", "true"], check=False, capture_output=True).returncode == 0


def test_as_root_without_bubblewrap_the_code_runs_as_nobody(level: Isolation) -> None:
    if not AS_ROOT:
        pytest.skip("only root drops to another uid")
    if level.wrapper == "none" and _closed_to_others(sys.executable):
        pytest.skip(f"uid {UNPRIVILEGED_UID} cannot reach {sys.executable} without a mount namespace")
    assert level.uid == UNPRIVILEGED_UID
    result = _attack(level, "import os\nprint(os.getuid(), os.getgid(), os.getgroups())")
    assert result.stdout.split() == [str(UNPRIVILEGED_UID), str(UNPRIVILEGED_UID), "[]"]


@pytest.mark.skipif(not AS_ROOT or not shutil.which("unshare"), reason="needs root and unshare")
def test_unshare_reaches_an_interpreter_under_a_closed_home_as_nobody() -> None:
    if not _can_mount_namespaces():
        pytest.skip("no mount namespaces here")
    assert detect_isolation("unshare") == Isolation("unshare", UNPRIVILEGED_UID)


def test_a_write_outside_the_run_directory_fails(level: Isolation) -> None:
    info = _info(level)
    if not info["filesystem_read_only"] and info["runs_as_uid"] == os.geteuid():
        pytest.skip("the code runs as this user on a writable filesystem: it can write what we can")
    # a directory any user can enter, holding a file only its owner may change
    shared = Path(tempfile.mkdtemp(dir="/tmp"))
    kept = shared / "kept.txt"
    kept.write_text("original")
    shared.chmod(0o755)
    kept.chmod(0o644)
    targets = [PROJECT / "pwned-by-sandbox.txt", Path("/root/pwned-by-sandbox.txt"), shared / "new.txt"]
    code = (
        "import sys\n"
        f"for path in {[str(t) for t in targets]!r}:\n"
        "    try:\n        open(path, 'w').write('x')\n        print('wrote', path)\n"
        "    except OSError as exc:\n        print('refused', path, type(exc).__name__)\n"
        f"try:\n    open({str(kept)!r}, 'a').write('x')\n    print('appended')\n"
        "except OSError as exc:\n    print('refused append', type(exc).__name__)\n"
    )
    try:
        result = _attack(level, code)
        assert "wrote" not in result.stdout and "appended" not in result.stdout
        assert result.stdout.count("refused") == len(targets) + 1
        assert not any(t.exists() for t in targets)
        assert kept.read_text() == "original"
    finally:
        for target in targets[:2]:
            target.unlink(missing_ok=True)
        shutil.rmtree(shared)


FORKS = """
import os, time
forked = 0
for _ in range(300):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(20)
        os._exit(0)
    forked += 1
print(forked)
"""


def test_three_hundred_forks_are_stopped_by_the_process_limit(level: Isolation) -> None:
    if not _info(level)["process_limit_enforced"]:
        pytest.skip("running as root with no unprivileged uid: the kernel applies no process limit")
    result = _attack(level, FORKS, timeout_s=10)
    assert not result.timed_out
    # the limit counts every process of the uid, so other processes of a non-root user leave fewer forks
    assert int(result.stdout) < MAX_PROCESSES


def test_the_network_is_blocked_exactly_where_the_summary_says(level: Isolation) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\nprint('connected')"
        result = _attack(level, code)
    blocked = _info(level)["network_isolated"]
    assert ("connected" not in result.stdout) == blocked
    assert ("network NOT blocked" in describe_isolation(level, level.wrapper)) == (not blocked)


def test_secrets_in_the_environment_stay_out(level: Isolation, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sandbox-secret")
    info = _info(level)
    code = (
        "import os\nprint(os.environ.get('OPENAI_API_KEY'))\n"
        f"try:\n    print(open('/proc/{os.getpid()}/environ').read())\n"
        "except OSError as exc:\n    print('refused', type(exc).__name__)\n"
    )
    result = _attack(level, code)
    assert result.stdout.splitlines()[0] == "None"
    if info["pid_namespace"] or info["runs_as_uid"] != os.geteuid():
        # the parent's environment holds the key: another uid may not read it, a PID namespace does not show it
        assert "sk-sandbox-secret" not in result.stdout


def test_a_memory_bomb_fails(level: Isolation) -> None:
    result = _attack(level, "x = bytearray(10 * 1024 ** 3)\nprint('allocated')", memory_mb=256)
    assert not result.ok and "allocated" not in result.stdout
    assert "MemoryError" in result.stderr


def test_an_infinite_loop_is_killed(level: Isolation) -> None:
    result = _attack(level, "while True:\n    pass", timeout_s=1.5)
    assert result.timed_out and not result.ok


def test_the_summary_names_the_level_and_the_way_to_the_strongest(level: Isolation) -> None:
    line = describe_isolation(level, level.wrapper)
    assert "\n" not in line and line.startswith("sandbox: ")
    if level.wrapper == "bwrap":
        assert "bubblewrap (read-only filesystem, no network" in line
    else:
        assert f"bubblewrap skipped (ARCHON_SANDBOX={level.wrapper}): unset it and install bubblewrap" in line
    assert ("uid 65534 (nobody)" in line) == (_info(level)["runs_as_uid"] == UNPRIVILEGED_UID)


def test_the_wrapper_can_be_capped_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SANDBOX_ENV, raising=False)
    assert strongest_allowed() == "bwrap"
    monkeypatch.setenv(SANDBOX_ENV, "None")
    assert strongest_allowed() == "none"
    assert detect_isolation("none").wrapper == "none"
    bwrap_missing = describe_isolation(Isolation("none", None)) if not shutil.which("bwrap") else None
    assert bwrap_missing is None or "bubblewrap not found: install it (apt-get install bubblewrap)" in bwrap_missing
    monkeypatch.setenv(SANDBOX_ENV, "docker")
    with pytest.raises(ArchonError, match="ARCHON_SANDBOX must be one of bwrap, unshare, none, not 'docker'"):
        strongest_allowed()
