"""Continuous batching on llama.cpp: many sequences decoded together in one context, one `llama_decode` per step.

The engine owns a llama.cpp context with `n_slots` sequences over one unified KV cache (`n_ctx` cells per slot) and
one background thread. Every request submitted (from any `complete` call, any event loop) waits in a queue and takes
a slot as soon as one is free; each step then feeds one batch holding the next token of every generating sequence
and a chunk of the prompts still being read, decodes it once, and samples every sequence that produced logits with
its own sampler chain (its temperature and seed, its JSON grammar). Samples of one prompt share it: the prompt is
read once and its cells are shared with the others (`llama_memory_seq_cp`).

A cancelled request (its future cancelled) leaves its slot at the next step; `close` and a step whose every sequence
was cancelled abort a long prompt read in the middle (llama.cpp's abort callback), so decoding stops within a step.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from archon_search.core.errors import BackendError
from archon_search.core.messages import LENGTH, STOP, Completion

log = logging.getLogger(__name__)

# llama-cpp-python's create_chat_completion defaults, so that batched samples are drawn like the one-at-a-time ones
TOP_K = 40
TOP_P = 0.95
MIN_P = 0.05
#: prompt tokens read per step at most (shared by the sequences still reading theirs): bounds one step's time, so
#: generating sequences keep producing tokens while a long prompt is read, and a cancel waits at most one step
PROMPT_CHUNK = 256
#: a step reading at least this many prompt tokens installs the abort callback (it costs a Python call per graph
#: node, noticeable on one-token steps, negligible on long ones)
ABORT_CHECK_MIN_TOKENS = 32


@dataclass
class Prepared:
    """A request ready to decode: its prompt tokens, how many tokens it may add and how to sample them."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    seed: int
    #: GBNF text and root rule of a grammar the answer must follow (a JSON Schema), or None
    grammar: tuple[str, str] | None = None
    #: strings that end the answer (the chat format's end-of-turn text), cut from it
    stop: tuple[str, ...] = ()


@dataclass(eq=False)
class _Job:
    prepared: Prepared
    future: concurrent.futures.Future
    submitted: float
    seq: int = -1
    #: prompt tokens already in the KV cache (the next position to write)
    n_past: int = 0
    sampler: Any = None
    tokens: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    #: the batch index whose logits this job samples after the current step, or -1
    out_index: int = -1
    #: jobs with the same prompt that wait for this one to read it, then take a copy of its cells
    followers: list[_Job] = field(default_factory=list)
    leader: _Job | None = None

    @property
    def reading(self) -> bool:
        return self.n_past < len(self.prepared.prompt)

    @property
    def cancelled(self) -> bool:
        return self.future.cancelled()


class BatchEngine:
    """One llama.cpp context decoding up to `n_slots` sequences together, driven by one daemon thread."""

    def __init__(self, llm: Any, n_ctx: int, n_slots: int, n_threads: int, name: str = "model"):
        import llama_cpp

        self._lib = llama_cpp
        self.llm = llm
        self.n_ctx = n_ctx
        self.n_slots = n_slots
        self.name = name
        self._model = llm.model
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * n_slots
        params.n_batch = PROMPT_CHUNK + n_slots
        params.n_ubatch = PROMPT_CHUNK + n_slots
        params.n_seq_max = n_slots
        params.kv_unified = True
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.no_perf = True
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if self._ctx is None:
            raise BackendError(
                f"llama.cpp could not create a context of {n_ctx} x {n_slots} tokens for {name}; "
                "lower n_ctx or n_parallel in its model entry"
            )
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch_size = PROMPT_CHUNK + n_slots
        self._batch = llama_cpp.llama_batch_init(self._batch_size, 0, 1)
        self._abort_flag = False
        self._step_jobs: list[_Job] = []
        self._abort_cb = llama_cpp.ggml_abort_callback(self._should_abort)
        self._piece = ctypes.create_string_buffer(256)

        self._lock = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._active: list[_Job] = []
        self._free = list(range(n_slots - 1, -1, -1))
        self._closing = False
        self._closed = False
        self.steps = 0
        self._thread = threading.Thread(target=self._run, name=f"llama-batch-{name}", daemon=True)
        self._thread.start()

    # ---- the caller's side -------------------------------------------------------------------------------------

    def submit(self, prepared: Prepared) -> concurrent.futures.Future:
        """Queue one request; the future gets its `Completion` (or a `BackendError`). Cancel it to drop the request."""
        job = _Job(prepared, concurrent.futures.Future(), time.perf_counter())
        with self._lock:
            if self._closing:
                raise BackendError(f"the embedded model {self.name} is closed")
            self._queue.append(job)
            self._lock.notify_all()
        return job.future

    def wait_released(self, futures: Sequence[concurrent.futures.Future], timeout: float) -> bool:
        """Wait until none of these (cancelled or finished) requests holds a slot; False on timeout."""
        pending = set(map(id, futures))
        deadline = time.monotonic() + timeout
        with self._lock:
            self._lock.notify_all()
            while any(id(j.future) in pending for j in (*self._active, *self._queue)):
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return self._closed
                self._lock.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (aborting a step in progress), fail what is left and free the context."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._abort_flag = True
            self._lock.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the embedded model's decode thread did not stop within %.0fs", timeout)
            return
        self._lib.llama_batch_free(self._batch)
        self._lib.llama_free(self._ctx)
        self._ctx = None

    # ---- the decode thread -------------------------------------------------------------------------------------

    def _should_abort(self, _data: Any) -> bool:
        return self._abort_flag or all(j.cancelled for j in self._step_jobs)

    def _run(self) -> None:
        error = BackendError(f"the embedded model {self.name} was closed before it answered")
        try:
            while True:
                with self._lock:
                    self._drop_cancelled()
                    self._admit()
                    while not self._active and not self._closing:
                        self._lock.wait()
                        self._drop_cancelled()
                        self._admit()
                    if self._closing:
                        break
                self._step()
        except BaseException as exc:  # the thread must fail its requests, never die silently
            log.exception("the embedded model's decode thread failed")
            error = exc if isinstance(exc, BackendError) else BackendError(f"embedded model {self.name} failed: {exc}")
        finally:
            with self._lock:
                self._closing = True
                for job in (*self._active, *self._queue):
                    if job.sampler is not None:
                        self._lib.llama_sampler_free(job.sampler)
                        job.sampler = None
                    _fail(job, error)
                self._active.clear()
                self._queue.clear()
                self._closed = True
                self._lock.notify_all()

    def _admit(self) -> None:
        """Give free slots to queued requests; one whose prompt a reading job has follows it (under the lock)."""
        while self._queue and self._free:
            job = self._queue.popleft()
            if job.cancelled:
                continue
            job.seq = self._free.pop()
            job.sampler = self._make_sampler(job)
            if job.sampler is None:
                self._free.append(job.seq)
                continue
            leader = next(
                (
                    a
                    for a in self._active
                    if a.leader is None and a.reading and a.prepared.prompt == job.prepared.prompt
                ),
                None,
            )
            if leader is not None:
                job.leader = leader
                leader.followers.append(job)
            self._active.append(job)

    def _make_sampler(self, job: _Job) -> Any:
        lib = self._lib
        p = job.prepared
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if p.grammar is not None:
            grammar = lib.llama_sampler_init_grammar(self._vocab, p.grammar[0].encode(), p.grammar[1].encode())
            if not grammar:
                lib.llama_sampler_free(chain)
                _fail(job, BackendError("embedded model: llama.cpp refused the JSON Schema's grammar"))
                return None
            lib.llama_sampler_chain_add(chain, grammar)
        if p.temperature == 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            if p.temperature > 0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(TOP_K))
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(TOP_P, 1))
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(MIN_P, 1))
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(p.temperature))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(p.seed))
        return chain

    def _drop_cancelled(self) -> None:
        """Free the slots of cancelled requests (under the lock); a reading leader hands its cells to a follower."""
        if any(j.cancelled for j in self._queue):
            self._queue = deque(j for j in self._queue if not j.cancelled)
        for job in [j for j in self._active if j.cancelled]:
            self._release(job)

    def _release(self, job: _Job) -> None:
        lib = self._lib
        if job.leader is not None:
            job.leader.followers.remove(job)
        elif job.followers:
            heir, *rest = job.followers
            if job.n_past > 0:
                lib.llama_memory_seq_cp(self._memory, job.seq, heir.seq, -1, -1)
            heir.n_past, heir.leader, heir.followers = job.n_past, None, rest
            for f in rest:
                f.leader = heir
        lib.llama_memory_seq_rm(self._memory, job.seq, -1, -1)
        if job.sampler is not None:
            lib.llama_sampler_free(job.sampler)
            job.sampler = None
        self._active.remove(job)
        self._free.append(job.seq)
        self._lock.notify_all()

    def _step(self) -> None:
        """Build one batch (every generating sequence's last token, then prompt chunks), decode it, sample."""
        lib = self._lib
        batch = self._batch
        n = 0
        with self._lock:
            jobs = list(self._active)
        budget = PROMPT_CHUNK
        reading = 0
        for job in jobs:
            job.out_index = -1
            if job.leader is not None:
                continue
            if job.reading:
                if budget <= 0:
                    continue
                prompt = job.prepared.prompt
                take = min(budget, len(prompt) - job.n_past)
                for k in range(take):
                    batch.token[n] = prompt[job.n_past + k]
                    batch.pos[n] = job.n_past + k
                    batch.n_seq_id[n] = 1
                    batch.seq_id[n][0] = job.seq
                    batch.logits[n] = 0
                    n += 1
                job.n_past += take
                budget -= take
                reading += take
                if not job.reading:
                    batch.logits[n - 1] = 1
                    job.out_index = n - 1
            else:
                batch.token[n] = job.tokens[-1]
                batch.pos[n] = job.n_past
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = job.seq
                batch.logits[n] = 1
                job.out_index = n
                job.n_past += 1
                n += 1
        batch.n_tokens = n
        self._step_jobs = jobs
        check = reading >= ABORT_CHECK_MIN_TOKENS
        if check:
            lib.llama_set_abort_callback(self._ctx, self._abort_cb, None)
        try:
            rc = lib.llama_decode(self._ctx, batch)
        finally:
            if check:
                lib.llama_set_abort_callback(self._ctx, lib.ggml_abort_callback(0), None)
        self.steps += 1
        if rc == 2:
            # aborted: closing, or every sequence of the step was cancelled; both are dropped before the next step
            return
        if rc != 0:
            raise BackendError(f"llama_decode failed with code {rc}; raise n_ctx or lower n_parallel")
        to_sample: list[_Job] = []
        for job in jobs:
            if job.out_index < 0 or job.leader is not None:
                continue
            to_sample.append(job)
            # the prompt is read: every job waiting on it takes a share of its cells and samples the same logits
            for f in job.followers:
                lib.llama_memory_seq_cp(self._memory, job.seq, f.seq, -1, -1)
                f.n_past, f.leader, f.out_index = job.n_past, None, job.out_index
                to_sample.append(f)
            job.followers = []
        finished: list[tuple[_Job, str]] = []
        for job in to_sample:
            if job.cancelled:
                continue
            reason = self._sample(job)
            if reason is not None:
                finished.append((job, reason))
        if finished:
            with self._lock:
                for job, reason in finished:
                    if job in self._active:
                        self._finish(job, reason)

    def _sample(self, job: _Job) -> str | None:
        """Sample the job's next token; the finish reason when it is done, else None."""
        lib = self._lib
        token = lib.llama_sampler_sample(job.sampler, self._ctx, job.out_index)
        if lib.llama_vocab_is_eog(self._vocab, token):
            return STOP
        job.tokens.append(token)
        size = lib.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        if size > 0:
            job.text += self._piece.raw[:size]
        if job.prepared.stop:
            tail = bytes(job.text[-(max(len(s) for s in job.prepared.stop) * 4 + 16) :]).decode("utf-8", "ignore")
            if any(s in tail for s in job.prepared.stop):
                return STOP
        if len(job.tokens) >= job.prepared.max_tokens:
            return LENGTH
        return None

    def _finish(self, job: _Job, reason: str) -> None:
        text = self.llm.detokenize(job.tokens).decode("utf-8", errors="ignore")
        for stop in job.prepared.stop:
            cut = text.find(stop)
            if cut >= 0:
                text = text[:cut]
        completion = Completion(
            text=text,
            prompt_tokens=len(job.prepared.prompt),
            completion_tokens=len(job.tokens),
            latency_s=time.perf_counter() - job.submitted,
            finish_reason=reason,
        )
        self._release(job)
        try:
            job.future.set_result(completion)
        except concurrent.futures.InvalidStateError:
            pass


def _fail(job: _Job, error: BaseException) -> None:
    try:
        job.future.set_exception(error)
    except concurrent.futures.InvalidStateError:
        pass
