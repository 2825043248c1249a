"""The Optuna study of a run: storage, sampler, pruner, and the bookkeeping that lets several workers
share one study and any of them resume it.

Trial accounting, so that a study ends with exactly N counted trials whoever runs them:
- baselines are enqueued (fixed parameters, user attr `baseline`) by every worker that finds one missing;
  a failed trial is enqueued again (user attr `retry_of`) when nothing else reruns it, unless it failed on its own
  questions' errors (user attr `errored`): that one counts as finished and is never rerun;
- a worker that pops a baseline or retry that an earlier-numbered trial already covers, or a trial that
  started after N others were already running or finished, marks it FAIL with a `discarded` reason; such
  trials are left out of every count and record.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import random
import socket
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from archon_search.search.objective import PRUNE_P, Objective, SearchError
from archon_search.search.records import FINISHED, counted, public_url

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "gp")
# a worker that stops beating for GRACE_S (killed, machine lost) has its trial failed and rerun
HEARTBEAT_S = 10
GRACE_S = 60
POLL_S = 2.0
SCHEMA_RETRIES = 5


class Discarded(Exception):
    """Raised inside a trial that must not count (duplicate or surplus); the trial ends FAIL, marked."""


#: user attr naming the worker (host:pid) that runs a trial, so a resume on the same host can tell a dead one at once
WORKER = "worker"
THIS_WORKER = f"{socket.gethostname()}:{os.getpid()}"

#: user attr of a trial failed by its own requests' errors (too many questions errored): it counts as one of the
#: study's trials and is never rerun, since it would fail the same way
ERRORED = "errored"


def errored(trial: FrozenTrial) -> bool:
    """Whether `trial` failed for good on its questions' errors (FAIL with the `errored` reason)."""
    return trial.state == TrialState.FAIL and ERRORED in trial.user_attrs


def with_driver(url: str) -> str:
    """`url`, with a bare `postgresql://` pinned to the PostgreSQL driver that is installed (SQLAlchemy 2.1 would
    pick psycopg 3 even where only psycopg2 is)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    if parsed.drivername != "postgresql" or importlib.util.find_spec("psycopg") is not None:
        return url
    if importlib.util.find_spec("psycopg2") is not None:
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def make_storage(url: str) -> RDBStorage:
    """An RDB storage with heartbeats (so a dead worker's trial gets rerun) and patient SQLite locking."""
    if _in_memory(url):
        raise SearchError(
            f"--storage {url}: an in-memory study cannot be resumed or shared, and each connection would see its own "
            "empty database; leave --storage out (the run folder's study.db) or name a file (sqlite:///study.db)"
        )
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        storage = _open_storage(with_driver(url), engine_kwargs)
    except ImportError as exc:
        missing = getattr(exc.__cause__, "name", None) or "a database driver"
        raise SearchError(
            f"--storage {public_url(url)}: {missing} is not installed; for PostgreSQL: pip install psycopg2-binary"
        ) from None
    except (SQLAlchemyError, RuntimeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SearchError(f"--storage {public_url(url)}: cannot open the study database: {reason}") from None
    if url.startswith("sqlite"):
        event.listen(storage.engine, "connect", _fast_sqlite)
        storage.engine.dispose()
    return storage


def _in_memory(url: str) -> bool:
    """Whether `url` is an SQLite database held in memory (`sqlite://`, `sqlite:///:memory:`)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def _open_storage(url: str, engine_kwargs: dict[str, Any]) -> RDBStorage:
    # workers started together on an empty database race to create Optuna's tables; the loser retries and finds them
    for attempt in range(SCHEMA_RETRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
                )
        except (IntegrityError, ProgrammingError, OperationalError) as exc:
            # SQLite says "table ... already exists" (OperationalError) where PostgreSQL raises the other two
            racing = not isinstance(exc, OperationalError) or "already exists" in str(exc) or "locked" in str(exc)
            if not racing or attempt == SCHEMA_RETRIES - 1:
                raise
            time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("unreachable")


def _fast_sqlite(connection: Any, _record: Any) -> None:
    # every trial commits a few dozen small writes; without WAL each one waits for a disk sync
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def startup_trials(n_trials: int) -> int:
    """Random trials before the model-based sampler takes over: a quarter of the run, 2 to 10."""
    return min(10, max(2, n_trials // 4))


def make_sampler(name: str, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """tpe (multivariate, grouped for conditional parameters; the default), random, or gp (needs PyTorch)."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        missing = [m for m in ("torch", "scipy") if importlib.util.find_spec(m) is None]
        if missing:
            raise SearchError(
                f"--sampler gp needs {' and '.join(missing)}: pip install torch scipy, or use --sampler tpe"
            )
        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=startup_trials(n_trials), warn_independent_sampling=False
        )
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=startup_trials(n_trials)
            )
    raise SearchError(f"--sampler {name!r} is not known; use one of {', '.join(SAMPLERS)}")


def resumed_seed(seed: int, trials_so_far: int) -> int:
    """The sampler seed of a worker that opens a study already holding `trials_so_far` trials: the run's seed on a
    fresh study, else one derived from both, so a resumed random (or TPE startup) sampler does not propose the
    points of the first session again."""
    if trials_so_far == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{trials_so_far}".encode()).hexdigest()
    return int(digest[:8], 16)


#: below this many dev questions no pruning: a paired test on fewer questions stops good trials on noise
MIN_PRUNE_DEV = 20


def pruning_rule(objective: Objective, sampler: str, dev_n: int) -> str | None:
    """Why the run prunes as it does, in words for the report; None when it prunes (paired Wilcoxon)."""
    if objective.multi:
        return "no pruning: Optuna cannot prune a search with two objectives"
    if sampler == "gp":
        return "no pruning: the gp sampler learns only from completed trials"
    if dev_n < MIN_PRUNE_DEV:
        return f"no pruning: {dev_n} dev questions are fewer than {MIN_PRUNE_DEV}, too few for a paired test"
    return None


def pruning_text(objective: Objective, sampler: str, dev_n: int) -> str:
    """The run's pruning rule in words (run.json, report.md)."""
    return pruning_rule(objective, sampler, dev_n) or (
        f"paired sign test of each trial's per-question dev scores against the best trial's, from question "
        f"{MIN_PRUNE_DEV // 2}; a trial behind it with p < {PRUNE_P} is stopped"
    )


def make_pruner(objective: Objective, sampler: str, dev_n: int) -> optuna.pruners.BasePruner:
    """A paired per-question sign test against the best trial so far (the step is the question's index), or
    none where `pruning_rule` says it cannot be right. The gp sampler learns only from completed trials: pruned,
    they taught it nothing and it proposed the same pruned point again and again."""
    if pruning_rule(objective, sampler, dev_n) is not None:
        return optuna.pruners.NopPruner()
    return PairedSignPruner(p_threshold=PRUNE_P, n_startup_steps=MIN_PRUNE_DEV // 2)


def sign_test_p(worse: int, better: int) -> float:
    """One-sided exact sign test (McNemar's, for 0/1 scores): the chance of at least `worse` losses among the
    `worse + better` questions where two architectures differ, were each equally likely to win them."""
    n = worse + better
    if n == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(worse, n + 1)) / 2**n


class PairedSignPruner(optuna.pruners.BasePruner):
    """Stops a trial whose per-question scores (reported at step = question index) trail those of the best
    completed trial on the same questions, by an exact paired sign test: a paired per-question test like Optuna's
    WilcoxonPruner, without its SciPy dependency, and exact on the 0/1 scores most benchmarks give."""

    def __init__(self, p_threshold: float, n_startup_steps: int) -> None:
        self.p_threshold = p_threshold
        self.n_startup_steps = n_startup_steps

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        """True when the trial is behind the best with p below the threshold, on at least the startup steps."""
        mine = trial.intermediate_values
        if len(mine) < self.n_startup_steps:
            return False
        try:
            best = study.best_trial
        except ValueError:
            return False
        theirs = best.intermediate_values
        steps = [s for s in mine if s in theirs]
        if len(steps) < self.n_startup_steps:
            return False
        worse = sum(mine[s] < theirs[s] for s in steps)
        better = sum(mine[s] > theirs[s] for s in steps)
        return sign_test_p(worse, better) < self.p_threshold


def open_study(
    storage: RDBStorage,
    name: str,
    objective: Objective,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    fingerprint: Mapping[str, Any],
) -> Study:
    """Create the study or load it; refuse to go on with a study made with other settings."""
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=objective.directions,
            load_if_exists=True,
        )
    stored = study.user_attrs
    for key, value in fingerprint.items():
        if key in stored and stored[key] != value:
            raise SearchError(
                f"study {name!r} was run with {key} {stored[key]!r}, not {value!r}; "
                "use the same options to resume it, or another --study/--out"
            )
        if key not in stored:
            study.set_user_attr(key, value)
    return study


def trial_key(trial: FrozenTrial) -> str:
    """What a trial stands for: a baseline, or the first run of some parameters and its reruns."""
    if "baseline" in trial.user_attrs:
        return f"baseline:{trial.user_attrs['baseline']}"
    return f"retry:{trial.user_attrs.get('retry_of', trial.number)}"


def requeue(study: Study, trials: Sequence[FrozenTrial], baselines: Mapping[str, dict]) -> int:
    """Enqueue every missing baseline, and a rerun of every trial that failed while scoring its architecture and
    that no live trial covers; return how many were enqueued."""
    covered: dict[str, bool] = defaultdict(bool)
    params: dict[str, dict] = {}
    for t in trials:
        key = trial_key(t)
        covered[key] |= t.state != TrialState.FAIL or errored(t)
        # a trial stopped before its architecture was built had scored nothing: a fresh trial replaces it
        if t.state == TrialState.FAIL and "arch" in t.user_attrs and key.startswith("retry:"):
            params.setdefault(key, t.params)
    enqueued = 0
    for name, fixed in baselines.items():
        if not covered[f"baseline:{name}"]:
            study.enqueue_trial(fixed, user_attrs={"baseline": name})
            enqueued += 1
    for key, fixed in params.items():
        if not covered[key]:
            root = int(key.split(":", 1)[1])
            study.enqueue_trial(fixed, user_attrs={"retry_of": root})
            log.info("trial %d failed before it finished; it will be rerun", root)
            enqueued += 1
    return enqueued


def discard_reason(study: Study, number: int, target: int) -> str | None:
    """Why the just-started trial `number` must not count, or None when it should run."""
    trials = study.get_trials(deepcopy=False)
    me = next(t for t in trials if t.number == number)
    key = trial_key(me)
    if "baseline" in me.user_attrs or "retry_of" in me.user_attrs:
        earlier = [t.number for t in trials if trial_key(t) == key and t.state != TrialState.FAIL and t.number < number]
        if earlier:
            return f"trial {min(earlier)} already stands for {key}"
    live = sorted(
        (t for t in counted(trials) if t.state in (*FINISHED, TrialState.RUNNING) or errored(t)),
        key=lambda t: (t.datetime_start or datetime.min, t.number),
    )
    if [t.number for t in live].index(number) >= target:
        return f"the study already has {target} trials"
    return None


def tally(trials: Sequence[FrozenTrial]) -> tuple[int, int]:
    """(finished, running) counted trials; a trial failed for good on its errors is finished."""
    kept = counted(trials)
    return sum(t.state in FINISHED or errored(t) for t in kept), sum(t.state == TrialState.RUNNING for t in kept)


def fail_stale(study: Study) -> None:
    """Fail trials whose worker stopped beating, or whose worker on this host is dead (killed, crashed): their
    retries are then enqueued by `requeue`, so a resumed search still ends with all its trials."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _dead_here(t.user_attrs.get(WORKER)):
            log.info("trial %d: its worker %s is gone; it will be rerun", t.number, t.user_attrs[WORKER])
            study.tell(t.number, state=TrialState.FAIL)


def _dead_here(worker: str | None) -> bool:
    """Whether `worker` (host:pid) ran on this host and its process no longer exists."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def wait_for_running(study: Study, on_wait: Callable[[int], None] | None = None) -> None:
    """Block until no counted trial is running (other workers finishing theirs, or going stale)."""
    while True:
        fail_stale(study)
        _, running = tally(study.get_trials(deepcopy=False))
        if not running:
            return
        if on_wait is not None:
            on_wait(running)
        time.sleep(POLL_S)
