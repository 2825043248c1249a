"""Running untrusted Python (model-written code and tests) in a separate, limited and isolated process.

Each run gets a fresh temporary directory, an environment holding only PATH and LANG, `python -I`, resource
limits (CPU time, address space, process count, file size), a wall-clock timeout that kills the whole process
tree, and the strongest isolation this machine offers, detected once on first use (see `sandbox_info`):

- `bwrap` (bubblewrap): no network, own PID namespace, a read-only view of the filesystem in which /tmp,
  /var/tmp, /root, /home and /run are empty (home directories hold credentials) and only the run's directory
  is writable;
- `unshare`: no network and its own PID namespace, the filesystem as the process's user sees it;
- `none`: resource limits and the timeout only.

When started as root the sandboxed code also drops to the `nobody` user, because the kernel does not apply
RLIMIT_NPROC (the fork-bomb guard) to root. The limits are applied inside the sandbox by a small launcher that
runs before the untrusted code, not in `preexec_fn`: `preexec_fn` is unsafe in threaded programs (and scoring
runs in worker threads), and RLIMIT_NPROC must be set inside the user namespace to count only the sandbox's
processes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, ParamSpec, TypeVar

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: stdout and stderr are each cut to this many characters (head and tail kept).
MAX_OUTPUT_CHARS = 20_000
#: No file the sandbox writes (its stdout and stderr included) may grow past this.
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Processes (threads count too) the sandboxed user may have at once.
MAX_PROCESSES = 32
#: Who runs the code when we are root (the `nobody` user of most Linux systems).
UNPRIVILEGED_UID = 65534
#: Emptied inside the bwrap sandbox: home directories and scratch areas may hold keys or other users' data.
HIDDEN_DIRS = ("/tmp", "/var/tmp", "/root", "/home", "/run")
MAIN_FILE = "main.py"

# Runs first inside the sandbox, as `python -I -c _LAUNCHER UID NPROC AS_BYTES CPU_S FSIZE MAIN`: drop to the
# unprivileged user, set the limits, drop what wrappers add to the environment (bwrap sets PWD), then run
# MAIN as __main__ with the working directory importable.
_LAUNCHER = """
import os, resource, runpy, sys
_uid, _nproc, _as, _cpu, _fsize = (int(a) for a in sys.argv[1:6])
if _uid >= 0:
    os.setgroups([])
    os.setgid(_uid)
    os.setuid(_uid)
resource.setrlimit(resource.RLIMIT_NPROC, (_nproc, _nproc))
resource.setrlimit(resource.RLIMIT_AS, (_as, _as))
resource.setrlimit(resource.RLIMIT_CPU, (_cpu, _cpu + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (_fsize, _fsize))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
for _key in set(os.environ) - {"PATH", "LANG"}:
    del os.environ[_key]
sys.argv = [sys.argv[6]]
sys.path.insert(0, os.getcwd())
runpy.run_path(sys.argv[0], run_name="__main__")
"""

_PROBE = "import json, math\nprint('ok')\n"


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed run did. `returncode` is negative when a signal ended it (e.g. -9 after a timeout)."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float

    @property
    def ok(self) -> bool:
        """True when the program finished in time and exited with status 0."""
        return self.returncode == 0 and not self.timed_out


@dataclass(frozen=True)
class Isolation:
    """How runs are wrapped: `wrapper` is bwrap, unshare or none; `uid` is the user the code runs as, or None."""

    wrapper: str
    uid: int | None


def run_python(
    source: str,
    *,
    timeout_s: float = 10,
    memory_mb: int = 512,
    cpu_s: int | None = None,
    files: Mapping[str, str] | None = None,
) -> SandboxResult:
    """Run `source` as a Python program in the sandbox and return its exit status and (truncated) output.

    `files` are extra files (relative path -> text) written next to the program, importable by it.
    `cpu_s` defaults to the wall-clock timeout rounded up.
    """
    return _run(source, _isolation(), timeout_s=timeout_s, memory_mb=memory_mb, cpu_s=cpu_s, files=files)


def _in_worker_thread(fn: Callable[_P, _R]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """`fn` as a coroutine function with the same parameters (and defaults) that runs it in a worker thread."""

    @functools.wraps(fn)
    async def in_thread(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return await asyncio.to_thread(fn, *args, **kwargs)

    return in_thread


#: `run_python` in a worker thread, so the event loop keeps serving other questions meanwhile.
arun_python = _in_worker_thread(run_python)


def sandbox_info() -> dict[str, Any]:
    """Which isolation is active here, e.g. for `python -c 'from archon_search.sandbox import sandbox_info; ...'`."""
    iso = _isolation()
    as_root = os.geteuid() == 0
    return {
        "wrapper": iso.wrapper,
        "network_isolated": iso.wrapper in ("bwrap", "unshare"),
        "pid_namespace": iso.wrapper in ("bwrap", "unshare"),
        "filesystem_read_only": iso.wrapper == "bwrap",
        "runs_as_uid": iso.uid if iso.uid is not None else os.geteuid(),
        "process_limit_enforced": not as_root or iso.uid is not None,
        "limits": {"max_processes": MAX_PROCESSES, "max_file_bytes": MAX_FILE_BYTES},
    }


@functools.cache
def _isolation() -> Isolation:
    """The strongest wrapper that runs a probe program here, preferring an unprivileged uid when root."""
    wrappers = [w for w in ("bwrap", "unshare") if shutil.which(w)] + ["none"]
    uids: list[int | None] = [UNPRIVILEGED_UID, None] if os.geteuid() == 0 else [None]
    for wrapper in wrappers:
        for uid in uids:
            candidate = Isolation(wrapper, uid)
            result = _run(_PROBE, candidate, timeout_s=20, memory_mb=512, cpu_s=None, files=None)
            if result.ok and result.stdout.strip() == "ok":
                log.info("sandbox isolation: %s, uid %s", wrapper, uid if uid is not None else os.geteuid())
                return candidate
            log.debug("sandbox probe %s failed: %s", candidate, result.stderr.strip()[-300:])
    log.warning("no sandbox isolation works here; untrusted code runs with resource limits only")
    return Isolation("none", None)


def _run(
    source: str,
    iso: Isolation,
    *,
    timeout_s: float,
    memory_mb: int,
    cpu_s: int | None,
    files: Mapping[str, str] | None,
) -> SandboxResult:
    if files and MAIN_FILE in files:
        raise ValueError(f"files may not contain {MAIN_FILE}: the program itself is written there")
    workdir = Path(tempfile.mkdtemp(prefix="archon-sandbox-")).resolve()
    try:
        _write_files(workdir, {**(files or {}), MAIN_FILE: source}, iso.uid)
        cpu = cpu_s if cpu_s is not None else max(1, math.ceil(timeout_s))
        launcher = [
            sys.executable,
            "-I",
            "-c",
            _LAUNCHER,
            str(iso.uid if iso.uid is not None else -1),
            str(MAX_PROCESSES),
            str(memory_mb * 1024 * 1024),
            str(cpu),
            str(MAX_FILE_BYTES),
            MAIN_FILE,
        ]
        command = _wrap(iso.wrapper, launcher, workdir)
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": os.environ.get("LANG", "C.UTF-8")}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            proc = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid)
                proc.wait()
            duration = time.perf_counter() - started
            # Without a PID namespace, children the program left behind would outlive it.
            _kill_group(proc.pid)
            return SandboxResult(proc.returncode, _read(out), _read(err), timed_out, duration)
    finally:
        _remove(workdir)


def _wrap(wrapper: str, launcher: list[str], workdir: Path) -> list[str]:
    if wrapper == "bwrap":
        return ["bwrap", *_bwrap_mounts(workdir), *_BWRAP_FLAGS, "--chdir", str(workdir), "--", *launcher]
    if wrapper == "unshare":
        # --kill-child ties the namespace's first process to unshare, so killing the group empties the namespace.
        user = [] if os.geteuid() == 0 else ["--map-root-user"]
        return ["unshare", "--net", "--pid", "--fork", "--kill-child", *user, "--", *launcher]
    return launcher


_BWRAP_FLAGS = (
    "--unshare-net",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--die-with-parent",
    "--new-session",
)


def _bwrap_mounts(workdir: Path) -> list[str]:
    """A read-only root with HIDDEN_DIRS emptied, the interpreter put back read-only, and the workdir writable."""
    hidden = [d for d in HIDDEN_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for d in hidden:
        args += ["--tmpfs", d]
    python_dirs = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(sys.executable))}
    for target in sorted(python_dirs):
        if any(_is_under(target, d) for d in hidden):
            args += [*_parents_in(target, hidden), "--ro-bind", target, target]
    args += [*_parents_in(str(workdir), hidden), "--bind", str(workdir), str(workdir)]
    for d in hidden:
        args += ["--remount-ro", d]
    return args


def _parents_in(target: str, hidden: list[str]) -> list[str]:
    """bwrap arguments creating `target`'s missing parents inside an emptied dir as 0755: bwrap's own default,
    0700, would keep the unprivileged uid out."""
    root = next((d for d in hidden if _is_under(target, d)), None)
    if root is None:
        return []
    parents = [p for p in PurePosixPath(target).parents if _is_under(str(p), root) and str(p) != root]
    return [arg for p in reversed(parents) for arg in ("--perms", "0755", "--dir", str(p))]


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _write_files(workdir: Path, files: Mapping[str, str], uid: int | None) -> None:
    for name, text in files.items():
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"sandbox file names must be relative paths inside the run directory, not {name!r}")
        path = workdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if uid is not None:
        for path in [workdir, *workdir.rglob("*")]:
            os.chown(path, uid, uid)


def _unlock(directory: Path) -> None:
    """Give back owner permissions the sandboxed code took away from its own directories, so they can be removed."""
    try:
        os.chmod(directory, 0o700)
        subdirs = [Path(e.path) for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for sub in subdirs:
        _unlock(sub)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read(fh: IO[bytes]) -> str:
    """The output, or its head and tail around a marker when it is longer than MAX_OUTPUT_CHARS."""
    size = fh.seek(0, os.SEEK_END)
    fh.seek(0)
    if size <= MAX_OUTPUT_CHARS:
        return fh.read().decode("utf-8", errors="replace")
    half = MAX_OUTPUT_CHARS // 2
    head = fh.read(half).decode("utf-8", errors="replace")
    fh.seek(size - half)
    tail = fh.read().decode("utf-8", errors="replace")
    return f"{head}\n... [{size - 2 * half} bytes cut] ...\n{tail}"


def _remove(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
    if not workdir.exists():
        return
    _unlock(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    if workdir.exists():
        log.warning("could not remove sandbox directory %s", workdir)
