"""Running untrusted Python (model-written code and tests) in a separate, limited and isolated process.

Each run gets a fresh temporary directory, an environment holding only PATH and LANG, `python -I`, stdin
from /dev/null, resource limits (CPU time, address space, process count, file size), a wall-clock timeout
that kills the whole process tree, and the strongest isolation this machine offers, detected once on first
use (see `sandbox_info` and `isolation_summary`):

- `bwrap` (bubblewrap): no network, own PID namespace, a read-only view of the filesystem in which /tmp,
  /var/tmp, /root, /home and /run are empty (home directories hold credentials) and only the run's directory
  is writable;
- `unshare`: no network and its own PID namespace; when root, also a private mount namespace in which the
  same directories (and /dev/shm) are emptied, so the unprivileged user can reach the interpreter (often
  installed under /root) and nothing else there;
- `none`: resource limits, the unprivileged user and the timeout only.

When started as root the sandboxed code drops to the `nobody` user (uid and gid 65534), because the kernel
does not apply RLIMIT_NPROC (the fork-bomb guard) to root and file permissions do not hold against root;
an unprivileged user beats a stronger wrapper that would have to run code as root. The limits are applied
inside the sandbox by a small launcher that runs before the untrusted code, not in `preexec_fn`:
`preexec_fn` is unsafe in threaded programs (and scoring runs in worker threads), and RLIMIT_NPROC must be
set inside the user namespace to count only the sandbox's processes.

`ARCHON_SANDBOX=unshare` or `=none` caps the wrapper (to see what a machine without bubblewrap gets).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, ParamSpec, TypeVar

from archon_search.core.errors import ArchonError

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
#: Emptied inside the unshare sandbox: bwrap's own /dev has a private /dev/shm, the host's is shared.
UNSHARE_HIDDEN_DIRS = (*HIDDEN_DIRS, "/dev/shm")
MAIN_FILE = "main.py"
#: Environment variable capping the wrapper, strongest first.
SANDBOX_ENV = "ARCHON_SANDBOX"
WRAPPERS = ("bwrap", "unshare", "none")

# Runs first inside the sandbox, as `python -I -c _LAUNCHER CONFIG_JSON`: empty the hidden directories and bind
# back what must stay reachable (unshare as root only: bwrap mounts them itself), drop to the unprivileged
# user, set the limits, drop what wrappers add to the environment (bwrap sets PWD), then run the program
# under `run_name` with the working directory importable. Mount sources are O_PATH descriptors opened before
# the directories are emptied, reached through /proc/self/fd.
_LAUNCHER = """
import json, os, resource, runpy, sys
_c = json.loads(sys.argv[1])
if _c["hide"]:
    import ctypes
    _libc = ctypes.CDLL(None, use_errno=True)
    _RDONLY, _NOSUID, _NODEV, _REMOUNT, _BIND, _REC = 1, 2, 4, 32, 4096, 16384
    def _mount(source, target, fstype, flags, data):
        if _libc.mount(source, target.encode(), fstype, flags, data) != 0:
            _errno = ctypes.get_errno()
            raise OSError(_errno, os.strerror(_errno), target)
    _keep = [(path, writable, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path, writable in _c["keep"]]
    for _dir in _c["hide"]:
        _mount(b"tmpfs", _dir, b"tmpfs", _NOSUID | _NODEV, b"mode=0755")
    os.umask(0o022)
    for _path, _writable, _fd in _keep:
        os.makedirs(_path, exist_ok=True)
        _mount(("/proc/self/fd/%d" % _fd).encode(), _path, None, _BIND | _REC, None)
        if not _writable:
            _mount(None, _path, None, _REMOUNT | _BIND | _RDONLY, None)
        os.close(_fd)
    for _dir in _c["hide"]:
        _mount(None, _dir, None, _REMOUNT | _RDONLY | _NOSUID | _NODEV, b"mode=0755")
if _c["uid"] >= 0:
    os.setgroups([])
    os.setgid(_c["uid"])
    os.setuid(_c["uid"])
resource.setrlimit(resource.RLIMIT_NPROC, (_c["nproc"], _c["nproc"]))
resource.setrlimit(resource.RLIMIT_AS, (_c["as"], _c["as"]))
resource.setrlimit(resource.RLIMIT_CPU, (_c["cpu"], _c["cpu"] + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (_c["fsize"], _c["fsize"]))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
for _key in set(os.environ) - {"PATH", "LANG"}:
    del os.environ[_key]
sys.argv = [_c["main"]]
sys.path.insert(0, os.getcwd())
runpy.run_path(_c["main"], run_name=_c["run_name"])
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
    run_name: str = "__main__",
) -> SandboxResult:
    """Run `source` as a Python program in the sandbox and return its exit status and (truncated) output.

    `files` are extra files (relative path -> text) written next to the program, importable by it.
    `cpu_s` defaults to the wall-clock timeout rounded up. `run_name` is the program's `__name__`: anything
    but `__main__` leaves its `if __name__ == "__main__":` blocks unrun.
    """
    return _run(
        source, _isolation(), timeout_s=timeout_s, memory_mb=memory_mb, cpu_s=cpu_s, files=files, run_name=run_name
    )


def _in_worker_thread(fn: Callable[_P, _R]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """`fn` as a coroutine function with the same parameters (and defaults) that runs it in a worker thread."""

    @functools.wraps(fn)
    async def in_thread(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return await asyncio.to_thread(fn, *args, **kwargs)

    return in_thread


#: `run_python` in a worker thread, so the event loop keeps serving other questions meanwhile.
arun_python = _in_worker_thread(run_python)


def sandbox_info() -> dict[str, Any]:
    """Which isolation is active here, e.g. for `python -c 'from archon_search.scoring.sandbox import sandbox_info; ...'`."""
    return _info(_isolation())


def _info(iso: Isolation) -> dict[str, Any]:
    as_root = os.geteuid() == 0
    return {
        "wrapper": iso.wrapper,
        "network_isolated": iso.wrapper in ("bwrap", "unshare"),
        "pid_namespace": iso.wrapper in ("bwrap", "unshare"),
        "filesystem_read_only": iso.wrapper == "bwrap",
        "home_dirs_hidden": iso.wrapper == "bwrap" or (iso.wrapper == "unshare" and iso.uid is not None),
        "runs_as_uid": iso.uid if iso.uid is not None else os.geteuid(),
        "process_limit_enforced": not as_root or iso.uid is not None,
        "limits": {"max_processes": MAX_PROCESSES, "max_file_bytes": MAX_FILE_BYTES},
    }


def isolation_summary() -> str:
    """One line for the user: the isolation code runs under here and, short of the strongest, how to get it."""
    return describe_isolation(_isolation(), strongest_allowed())


def describe_isolation(iso: Isolation, allowed: str = "bwrap") -> str:
    """The `isolation_summary` line for `iso`, detected with wrappers up to `allowed`."""
    info = _info(iso)
    uid = info["runs_as_uid"]
    user = {UNPRIVILEGED_UID: f"uid {uid} (nobody)", 0: "uid 0 (root)"}.get(uid, f"your uid {uid}")
    if iso.wrapper == "bwrap":
        return f"sandbox: bubblewrap (read-only filesystem, no network, own PID namespace, {user}, rlimits)"
    if iso.wrapper == "unshare":
        hidden = ", home and temp dirs emptied" if info["home_dirs_hidden"] else ""
        level = f"fallback unshare (no network, own PID namespace{hidden}, rlimits, {user}"
    elif iso.uid is not None:
        level = f"fallback (rlimits + {user}, network NOT blocked"
    else:
        level = f"rlimits only (code runs as {user}, network NOT blocked"
    if uid == 0:
        unreachable = _closed_to_others(sys.executable)
        why = (
            f"{unreachable} is closed to uid {UNPRIVILEGED_UID}"
            if unreachable
            else "no unprivileged uid could run Python"
        )
        level += f"; as root no process limit or file protection holds: {why}"
    elif iso.uid is None:
        level += "; it can write what you can"
    if allowed != "bwrap":
        fix = f"bubblewrap skipped ({SANDBOX_ENV}={allowed}): unset it and install bubblewrap"
    elif shutil.which("bwrap"):
        fix = "bubblewrap is installed but does not run here: allow it user namespaces (or run as root)"
    else:
        fix = "bubblewrap not found: install it (apt-get install bubblewrap)"
    return f"sandbox: {level}); {fix} for the strongest isolation"


def _closed_to_others(path: str) -> str | None:
    """The first directory on the way to `path` that users other than its owner may not enter, if any."""
    for parent in reversed(PurePosixPath(os.path.realpath(path)).parents):
        try:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return str(parent)
        except OSError:
            return str(parent)
    return None


def strongest_allowed() -> str:
    """The strongest wrapper `ARCHON_SANDBOX` allows (bwrap when unset)."""
    value = os.environ.get(SANDBOX_ENV, "").strip().lower() or WRAPPERS[0]
    if value not in WRAPPERS:
        raise ArchonError(
            f"{SANDBOX_ENV} must be one of {', '.join(WRAPPERS)}, not {value!r}; unset it for the strongest"
        )
    return value


@functools.cache
def _isolation() -> Isolation:
    return detect_isolation(strongest_allowed())


def detect_isolation(strongest: str = "bwrap") -> Isolation:
    """The strongest isolation, from wrapper `strongest` down, that runs a probe program here.

    As root, every wrapper is tried with the unprivileged uid before any is tried as root: a fork bomb or a
    write outside the run directory is the likelier harm than a network connection.
    """
    wrappers = [w for w in WRAPPERS[WRAPPERS.index(strongest) :] if w == "none" or shutil.which(w)]
    uids: list[int | None] = [UNPRIVILEGED_UID, None] if os.geteuid() == 0 else [None]
    for uid in uids:
        for wrapper in wrappers:
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
    run_name: str = "__main__",
) -> SandboxResult:
    if files and MAIN_FILE in files:
        raise ValueError(f"files may not contain {MAIN_FILE}: the program itself is written there")
    workdir = Path(tempfile.mkdtemp(prefix="archon-sandbox-")).resolve()
    try:
        _write_files(workdir, {**(files or {}), MAIN_FILE: source}, iso.uid)
        hide = iso.wrapper == "unshare" and iso.uid is not None
        hidden = _hidden(UNSHARE_HIDDEN_DIRS) if hide else []
        config = {
            "uid": iso.uid if iso.uid is not None else -1,
            "nproc": MAX_PROCESSES,
            "as": memory_mb * 1024 * 1024,
            "cpu": cpu_s if cpu_s is not None else max(1, math.ceil(timeout_s)),
            "fsize": MAX_FILE_BYTES,
            "main": MAIN_FILE,
            "run_name": run_name,
            "hide": hidden,
            "keep": [(p, False) for p in _python_dirs(hidden)] + ([(str(workdir), True)] if hide else []),
        }
        launcher = [sys.executable, "-I", "-c", _LAUNCHER, json.dumps(config)]
        command = _wrap(iso, launcher, workdir)
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


def _wrap(iso: Isolation, launcher: list[str], workdir: Path) -> list[str]:
    if iso.wrapper == "bwrap":
        return ["bwrap", *_bwrap_mounts(workdir), *_BWRAP_FLAGS, "--chdir", str(workdir), "--", *launcher]
    if iso.wrapper == "unshare":
        # --kill-child ties the namespace's first process to unshare, so killing the group empties the namespace.
        base = ["unshare", "--net", "--pid", "--fork", "--kill-child"]
        if os.geteuid() != 0:
            return [*base, "--map-root-user", "--", *launcher]
        # the launcher (still root) empties the hidden dirs in this private mount namespace before dropping uid
        mounts = ["--mount", "--propagation", "private", "--mount-proc"] if iso.uid is not None else []
        return [*base, *mounts, "--", *launcher]
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
    hidden = _hidden(HIDDEN_DIRS)
    args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for d in hidden:
        args += ["--tmpfs", d]
    for target in _python_dirs(hidden):
        args += [*_parents_in(target, hidden), "--ro-bind", target, target]
    args += [*_parents_in(str(workdir), hidden), "--bind", str(workdir), str(workdir)]
    for d in hidden:
        args += ["--remount-ro", d]
    return args


def _hidden(dirs: Sequence[str]) -> list[str]:
    """The directories of `dirs` that exist here (a symlink is left alone: its target is hidden or not itself)."""
    return [d for d in dirs if os.path.isdir(d) and not os.path.islink(d)]


def _python_dirs(hidden: Sequence[str]) -> list[str]:
    """The interpreter's directories that lie inside `hidden` ones, which must be put back for it to run."""
    dirs = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(sys.executable))}
    return sorted(d for d in dirs if any(_is_under(d, h) for h in hidden))


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
