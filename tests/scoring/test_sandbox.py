"""The sandbox: limits, timeout, a clean environment, and the isolation sandbox_info reports."""

from __future__ import annotations

import ast
import asyncio
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from archon_search.scoring.sandbox import MAX_OUTPUT_CHARS, Isolation, _run, arun_python, run_python, sandbox_info

INFO = sandbox_info()
needs_network_isolation = pytest.mark.skipif(
    not INFO["network_isolated"], reason="neither bwrap nor unshare can isolate the network here"
)
# Without a process limit a fork bomb could take the whole machine down, so those tests are not run then.
needs_process_limit = pytest.mark.skipif(
    not INFO["process_limit_enforced"], reason="running as root with no unprivileged uid to run as (install bwrap)"
)
needs_fs_protection = pytest.mark.skipif(
    not INFO["filesystem_read_only"] and INFO["runs_as_uid"] == 0,
    reason="no read-only filesystem (bwrap) and running as root",
)


def _sandbox_processes() -> list[int]:
    """Processes still running the sandbox launcher (none should outlive a run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"runpy.run_path" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _none_left() -> bool:
    deadline = time.monotonic() + 5
    while _sandbox_processes():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_runs_a_program_and_captures_output() -> None:
    result = run_python("import sys\nprint('out')\nprint('err', file=sys.stderr)\nraise SystemExit(3)")
    assert (result.returncode, result.stdout, result.stderr, result.timed_out) == (3, "out\n", "err\n", False)
    assert not result.ok
    assert run_python("print(sum(range(10)))").stdout == "45\n"


def test_files_are_written_next_to_the_program_and_importable() -> None:
    result = run_python(
        "import helper\nprint(helper.X, open('data/in.txt').read())",
        files={"helper.py": "X = 41 + 1\n", "data/in.txt": "hi"},
    )
    assert result.ok and result.stdout == "42 hi\n"
    with pytest.raises(ValueError):
        run_python("pass", files={"../escape.py": ""})


def test_working_directory_is_fresh_and_removed() -> None:
    first = run_python("import os\nopen('left.txt', 'w').write('x')\nprint(os.getcwd())")
    second = run_python("import os\nprint(os.getcwd(), os.listdir('.'))")
    assert first.ok and second.ok
    assert not Path(first.stdout.strip()).exists()
    assert "left.txt" not in second.stdout


def test_infinite_loop_is_killed_at_the_timeout() -> None:
    started = time.perf_counter()
    result = run_python("while True:\n    pass", timeout_s=1.5)
    assert result.timed_out and not result.ok
    assert result.returncode != 0
    assert 1.5 <= result.duration_s < 10 and time.perf_counter() - started < 15
    assert _none_left()


@needs_process_limit
def test_fork_bomb_is_contained_and_cleaned_up() -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run_python(bomb, timeout_s=2)
    assert not result.ok
    assert _none_left()
    assert run_python("print('still fine')").stdout == "still fine\n"


@needs_process_limit
def test_process_count_is_limited() -> None:
    result = run_python("import os\nwhile True:\n    os.fork()\n", timeout_s=5)
    assert not result.timed_out
    assert "BlockingIOError" in result.stderr or "Resource temporarily unavailable" in result.stderr


def test_ten_gigabyte_allocation_fails() -> None:
    result = run_python("x = bytearray(10 * 1024 ** 3)\nprint('allocated')", memory_mb=256)
    assert not result.ok and "allocated" not in result.stdout
    assert "MemoryError" in result.stderr


def test_api_keys_in_the_environment_do_not_reach_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    result = run_python("import os\nprint(repr(os.environ.get('OPENAI_API_KEY')))\nprint(sorted(os.environ))")
    assert result.ok
    assert "sk-test-secret" not in result.stdout
    assert result.stdout.splitlines()[0] == "None"
    assert set(ast.literal_eval(result.stdout.splitlines()[1])) <= {"PATH", "LANG"}


@needs_fs_protection
def test_write_outside_its_directory_fails(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    target = tmp_path / "pwned.txt"
    result = run_python(f"open({str(target)!r}, 'w').write('x')\nprint('wrote')")
    assert not result.ok and "wrote" not in result.stdout
    assert not target.exists()


@needs_network_isolation
def test_network_connection_to_loopback_fails() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\nprint('connected')"
        result = run_python(code, timeout_s=10)
    assert not result.ok and "connected" not in result.stdout
    assert "Error" in result.stderr


def test_output_is_truncated() -> None:
    result = run_python(f"print('a' * {3 * MAX_OUTPUT_CHARS})\nprint('end')")
    assert result.ok
    assert len(result.stdout) < MAX_OUTPUT_CHARS + 200
    assert "bytes cut" in result.stdout and result.stdout.startswith("aaa") and result.stdout.endswith("end\n")


def test_async_runs_overlap() -> None:
    async def main() -> list:
        return await asyncio.gather(*(arun_python(f"import time\ntime.sleep(0.5)\nprint({i})") for i in range(4)))

    started = time.perf_counter()
    results = asyncio.run(main())
    assert [r.stdout for r in results] == ["0\n", "1\n", "2\n", "3\n"]
    assert time.perf_counter() - started < 4 * 0.5 + 1.5


def test_sandbox_info_describes_the_isolation() -> None:
    assert INFO["wrapper"] in ("bwrap", "unshare", "none")
    assert INFO["network_isolated"] == (INFO["wrapper"] != "none")
    if os.geteuid() == 0 and INFO["process_limit_enforced"]:
        assert INFO["runs_as_uid"] != 0


@pytest.mark.parametrize("wrapper", ["bwrap", "unshare", "none"])
def test_each_fallback_wrapper_runs_code_and_cuts_the_network(wrapper: str) -> None:
    if wrapper != "none" and not shutil.which(wrapper):
        pytest.skip(f"{wrapper} is not installed")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        code = (
            "import socket\nprint('ran')\n"
            f"socket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=3)\nprint('connected')"
        )
        result = _run(code, Isolation(wrapper, None), timeout_s=10, memory_mb=512, cpu_s=None, files=None)
    assert result.stdout.startswith("ran\n")
    assert ("connected" in result.stdout) == (wrapper == "none")
