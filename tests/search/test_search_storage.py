"""Study storage: workers that start together on a new database, and an in-memory study."""

from __future__ import annotations

import multiprocessing

import optuna
import pytest

from archon_search.search.objective import SearchError
from archon_search.search.study import make_storage

WORKERS = 6


def _open(url: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue) -> None:
    barrier.wait()
    try:
        storage = make_storage(url)
        optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the test reports whatever a worker hit
        results.put(f"{type(exc).__name__}: {exc}")


def test_workers_starting_at_once_on_a_new_sqlite_file_all_open_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(WORKERS), context.Queue()
    workers = [context.Process(target=_open, args=(url, barrier, results)) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [results.get(timeout=5) for _ in workers] == ["ok"] * WORKERS


def test_an_in_memory_study_is_refused_in_one_line():
    with pytest.raises(SearchError, match="in-memory .* cannot be resumed") as caught:
        make_storage("sqlite:///:memory:")
    assert "\n" not in str(caught.value)
