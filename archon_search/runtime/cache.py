"""The persistent response cache (SQLite, safe for several processes) and the backend wrapper that uses it."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import platformdirs

from archon_search.backends.base import Backend
from archon_search.core.errors import BackendError
from archon_search.core.messages import ChatRequest, Completion

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL,
    finish_reason TEXT NOT NULL DEFAULT 'stop'
)
"""
# caches written before finish_reason was stored: their answers ended on their own or were cut; unknown, so 'stop'
ADD_FINISH_REASON = "ALTER TABLE responses ADD COLUMN finish_reason TEXT NOT NULL DEFAULT 'stop'"
# stays under SQLITE_MAX_VARIABLE_NUMBER of older SQLite builds (999)
KEYS_PER_QUERY = 500


def default_cache_path() -> Path:
    """`responses.sqlite` in the user's cache folder (e.g. ~/.cache/archon-search on Linux)."""
    return Path(platformdirs.user_cache_dir("archon-search")) / "responses.sqlite"


def cache_key(kind: str, model_id: str, request: ChatRequest) -> str:
    """Hash of everything that decides an answer; the sample index keeps k samples k distinct entries.

    At temperature 0 decoding is greedy and the sample's seed changes nothing, so every sample shares
    sample 0's entry: k samples cost one call.
    """
    sample = request.sample if request.temperature > 0 else 0
    payload = [kind, model_id, request.messages, request.temperature, request.max_tokens, sample]
    if request.json_schema is not None:
        # appended only when set, so every free-text entry cached before structured output keeps its key
        payload.append(request.json_schema)
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()


class ResponseCache:
    """Completions stored by `cache_key`, in one SQLite file that many processes may share.

    Each thread of each process gets its own connection (SQLite connections must not cross either);
    WAL mode lets readers run beside a writer, and writes are short transactions that wait up to
    `busy_timeout_s` for the lock. A cache that fails mid-run only logs: losing an entry is cheaper
    than losing the run.
    """

    def __init__(self, path: str | Path | None = None, busy_timeout_s: float = 30.0):
        self.path = Path(path).expanduser() if path else default_cache_path()
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection()
        except (OSError, sqlite3.Error) as exc:
            raise BackendError(
                f"cannot open the response cache {self.path} ({exc}); choose another cache path or run with --no-cache"
            ) from None

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        # a connection inherited through fork belongs to the parent; open a fresh one
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(responses)")}
            if "finish_reason" not in columns:
                try:
                    conn.execute(ADD_FINISH_REASON)
                except sqlite3.OperationalError:
                    # another process added it between our check and our ALTER
                    log.debug("finish_reason column added concurrently")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        """The stored completions among `keys` (marked `cached=True`); missing keys are simply absent."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Completion] = {}
        try:
            conn = self._connection()
            for i in range(0, len(wanted), KEYS_PER_QUERY):
                chunk = wanted[i : i + KEYS_PER_QUERY]
                rows = conn.execute(
                    f"SELECT key, text, prompt_tokens, completion_tokens, finish_reason FROM responses "
                    f"WHERE key IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                for key, text, prompt_tokens, completion_tokens, finish_reason in rows:
                    found[key] = Completion(
                        text, prompt_tokens, completion_tokens, 0.0, cached=True, finish_reason=finish_reason
                    )
        except sqlite3.Error as exc:
            log.warning("response cache %s unreadable (%s); treating as misses", self.path, exc)
        return found

    def put_many(self, entries: Mapping[str, Completion]) -> None:
        """Store completions in one short transaction; a key already stored keeps its first answer."""
        if not entries:
            return
        now = time.time()
        rows = [(k, c.text, c.prompt_tokens, c.completion_tokens, now, c.finish_reason) for k, c in entries.items()]
        try:
            conn = self._connection()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT OR IGNORE INTO responses "
                    "(key, text, prompt_tokens, completion_tokens, created, finish_reason) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            log.warning("response cache %s not written (%s); %d answers not kept", self.path, exc, len(rows))

    def __len__(self) -> int:
        return self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        """Close this thread's connection (others close when their thread or process ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None


class CachedBackend(Backend):
    """A backend behind the cache: hits come back with their stored usage and `cached=True`, all misses
    go to the inner backend in one batch, and identical requests are sent once, whether they share a batch or
    come in batches in flight at the same time (questions run concurrently, each sending its own batches).

    With `cache=None` (`--no-cache`) nothing is read or stored, but duplicates are still sent
    once. `hits` counts answers served without a call, `misses` the calls made.
    """

    def __init__(self, inner: Backend, cache: ResponseCache | None):
        self.inner = inner
        self.cache = cache
        self.kind = inner.kind
        self.hits = 0
        self.misses = 0
        self._in_flight: dict[str, asyncio.Future[Completion]] = {}

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Answer from the cache where possible, from one inner batch otherwise."""
        keys = [cache_key(self.inner.kind, self.inner.model_id, r) for r in requests]
        stored = self.cache.get_many(keys) if self.cache is not None else {}
        todo: dict[str, ChatRequest] = {}
        joined: dict[str, asyncio.Future[Completion]] = {}
        for key, request in zip(keys, requests):
            if key in stored:
                continue
            if key in self._in_flight:
                joined.setdefault(key, self._in_flight[key])
            else:
                todo.setdefault(key, request)
        fresh: dict[str, Completion] = {}
        if todo:
            fresh = await self._send(todo)
        for key, future in joined.items():
            stored[key] = dataclasses.replace(await future, latency_s=0.0, cached=True)
        results = []
        sent: set[str] = set()
        for key in keys:
            if key in stored:
                results.append(stored[key])
            elif key in sent:
                results.append(dataclasses.replace(fresh[key], latency_s=0.0, cached=True))
            else:
                results.append(fresh[key])
                sent.add(key)
        self.misses += len(todo)
        self.hits += len(requests) - len(todo)
        return results

    async def _send(self, todo: dict[str, ChatRequest]) -> dict[str, Completion]:
        """One inner batch for the misses, announced in `_in_flight` until it ends so that batches arriving
        meanwhile wait for its answers instead of asking again."""
        loop = asyncio.get_running_loop()
        announced = {key: loop.create_future() for key in todo}
        self._in_flight.update(announced)
        partial: dict[str, Completion] = {}
        try:
            try:
                answers = await self.inner.complete(list(todo.values()))
            except BackendError as exc:
                pending = list(todo)
                partial = {pending[i]: c for i, c in exc.partial.items() if i < len(pending)}
                # what the failed batch did answer was paid for: a resume must not pay for it again
                if partial and self.cache is not None:
                    self.cache.put_many(partial)
                raise
            if len(answers) != len(todo):
                raise BackendError(
                    f"{self.kind} model {self.model_id}: {len(answers)} answers for {len(todo)} requests; "
                    "this is a bug in the backend, please report it"
                )
            fresh = dict(zip(todo, answers))
            if self.cache is not None:
                self.cache.put_many(fresh)
            partial = fresh
            return fresh
        except BaseException as exc:
            for key, future in announced.items():
                if key in partial:
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                    # a batch that joined hears of it by awaiting; asyncio must not warn that nobody did
                    future.exception()
                else:
                    future.cancel()
            raise
        finally:
            for key, future in announced.items():
                if not future.done():
                    future.set_result(partial[key])
                del self._in_flight[key]

    async def aclose(self) -> None:
        """Close the inner backend."""
        await self.inner.aclose()
