"""Continuous batching on llama.cpp: many sequences decoded together in one context, one `llama_decode` per step.

The engine owns a llama.cpp context for `n_slots` sequences over one unified KV cache (`n_ctx` cells per slot) and one
background thread. Every request submitted (from any `complete` call, on any event loop) waits in a queue and takes a
slot as soon as one is free. Each step feeds one batch, holding the next token of every generating sequence and a
chunk of the prompts still being read, decodes it once, and samples every sequence that produced logits with its own
sampler chain (its temperature and seed, its JSON grammar). Identical greedy requests in flight together are decoded
once.

Prompts share what they have in common. A slot keeps its cells after its request is done, and a new request starts
from the longest prefix of its prompt held by any slot (the chat template's system prompt, a question asked again):
the cells are shared, not computed again (`llama_memory_seq_cp` on a unified cache). Samples of one prompt admitted
together wait for the first to read it, then share its cells and all sample from its logits.

A cancelled request (every future of it cancelled) leaves its slot at the next step. `close`, and a step whose every
sequence was cancelled, abort a long prompt read in the middle (llama.cpp's abort callback), so decoding stops
within a step.
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

# llama-cpp-python's create_chat_completion defaults, so that batched samples are drawn like one-at-a-time ones
TOP_K = 40
TOP_P = 0.95
MIN_P = 0.05
#: prompt tokens read per step at most (shared by the sequences still reading): bounds a step's time, so generating
#: sequences keep producing tokens while a long prompt is read and a cancel waits for one short step at most
PROMPT_CHUNK = 256
#: a step reading at least this many prompt tokens installs the abort callback (it costs a Python call per graph
#: node: noticeable on one-token steps, negligible on long ones)
ABORT_CHECK_MIN_TOKENS = 32


@dataclass(frozen=True)
class Prepared:
    """A request ready to decode: its prompt tokens, how many tokens it may add and how to sample them."""

    prompt: tuple[int, ...]
    max_tokens: int
    temperature: float
    seed: int
    #: GBNF text and root rule of the grammar the answer must follow (a JSON Schema's), or None
    grammar: tuple[str, str] | None = None
    #: strings that end the answer (a chat format's end-of-turn text); the answer is cut before them
    stop: tuple[str, ...] = ()


@dataclass(eq=False)
class _Job:
    prepared: Prepared
    #: one per `submit` of this request: identical greedy requests in flight together are decoded once
    futures: list[concurrent.futures.Future]
    submitted: float
    seq: int = -1
    #: tokens of this sequence in the KV cache (the next position to write)
    n_past: int = 0
    #: the sampler chain (temperature, seed), and the grammar checked apart from it (see `_grammatical`)
    sampler: Any = None
    grammar: Any = None
    tokens: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    #: the batch index whose logits this job samples after the current step, or -1
    out_index: int = -1
    #: jobs with the same prompt waiting for this one to read it; they then share its cells and its logits
    followers: list[_Job] = field(default_factory=list)
    leader: _Job | None = None

    @property
    def reading(self) -> bool:
        return self.n_past < len(self.prepared.prompt)

    @property
    def cancelled(self) -> bool:
        return all(f.cancelled() for f in self.futures)

    def cells(self) -> Sequence[int]:
        """The tokens whose cells this sequence holds, from position 0 (the prompt read so far, then the answer)."""
        prompt = self.prepared.prompt
        if self.n_past <= len(prompt):
            return prompt[: self.n_past]
        return prompt + tuple(self.tokens[: self.n_past - len(prompt)])


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class BatchEngine:
    """One llama.cpp context decoding up to `n_slots` sequences together, driven by one daemon thread."""

    def __init__(self, llm: Any, n_ctx: int, n_slots: int, n_threads: int, name: str = "model"):
        # imported here, like llama_cpp (which needs numpy anyway): importing the package stays light
        import llama_cpp
        import numpy as np

        self._lib = llama_cpp
        self.llm = llm
        self.n_ctx = n_ctx
        self.n_slots = n_slots
        self.name = name
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * n_slots
        params.n_batch = PROMPT_CHUNK + n_slots
        params.n_ubatch = PROMPT_CHUNK + n_slots
        params.n_seq_max = n_slots
        # one cache for every sequence: prefixes are shared without copies, and a step that mixes prompt chunks with
        # generating sequences is one ubatch. Streams of their own (kv_unified False) make attention cheaper on long
        # sequences, but each such step splits into several ubatches and a shared prefix is a copy of a whole
        # stream: with 8 sequences they were 5-25% slower here (short answers, and 920-token prompts alike).
        # Flash attention (off, as in llama-cpp-python) helped only some of these cases and changes the numerics.
        params.kv_unified = True
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.no_perf = True
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        llama_cpp.llama_log_set(_filtered_log(), ctypes.c_void_p(0))
        self._ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if not self._ctx:
            raise BackendError(
                f"llama.cpp could not make a context of {n_slots} x {n_ctx} tokens for {name}; "
                "lower n_parallel or n_ctx in its model entry"
            )
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(PROMPT_CHUNK + n_slots, 0, 1)
        self._abort_flag = False
        self._step_jobs: list[_Job] = []
        self._abort_cb = llama_cpp.ggml_abort_callback(self._should_abort)
        self._no_abort_cb = llama_cpp.ggml_abort_callback(0)
        self._piece = ctypes.create_string_buffer(256)
        # candidate arrays for grammars (llama_token_data: id, logit, p)
        n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._np = np
        token_data = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        self._token_ids = np.arange(n_vocab, dtype=np.int32)
        self._candidates = np.zeros(n_vocab, dtype=token_data)
        self._candidates_ptr = self._candidates.ctypes.data_as(llama_cpp.llama_token_data_p)
        self._one = np.zeros(1, dtype=token_data)
        self._one_ptr = self._one.ctypes.data_as(llama_cpp.llama_token_data_p)

        self._lock = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._active: list[_Job] = []
        self._free = list(range(n_slots))
        #: free slot -> the tokens whose cells it still holds, for later prompts to share
        self._kept: dict[int, Sequence[int]] = {}
        #: greedy requests queued or decoding, for an identical one to join
        self._greedy: dict[Prepared, _Job] = {}
        self._closing = False
        self._closed = False
        #: counters: decode steps, prompt tokens read, prompt tokens taken from cells already there
        self.steps = 0
        self.prompt_read = 0
        self.prompt_shared = 0
        self._thread = threading.Thread(target=self._run, name=f"llama-batch-{name}", daemon=True)
        self._thread.start()

    # ---- the callers' side -------------------------------------------------------------------------------------

    def submit(self, prepared: Prepared) -> concurrent.futures.Future:
        """Queue one request; its future gets a `Completion` (or a `BackendError`). Cancel it to drop the request."""
        return self.submit_all([prepared])[0]

    def submit_all(self, requests: Sequence[Prepared]) -> list[concurrent.futures.Future]:
        """Queue requests together (the decode thread sees all of them or none), one future each."""
        futures: list[concurrent.futures.Future] = []
        with self._lock:
            if self._closing:
                raise BackendError(f"the embedded model {self.name} is closed")
            for prepared in requests:
                future: concurrent.futures.Future = concurrent.futures.Future()
                futures.append(future)
                twin = self._greedy.get(prepared) if prepared.temperature == 0 else None
                if twin is not None and not twin.cancelled:
                    # the same greedy request is already in flight: its answer is this one's too
                    twin.futures.append(future)
                    continue
                job = _Job(prepared, [future], time.perf_counter())
                if prepared.temperature == 0:
                    self._greedy[prepared] = job
                self._queue.append(job)
            self._lock.notify_all()
        return futures

    def wait_released(self, futures: Sequence[concurrent.futures.Future], timeout: float) -> bool:
        """Wait until no request cancelled through these futures holds a slot or waits for one; False on timeout."""
        pending = {id(f) for f in futures}
        deadline = time.monotonic() + timeout
        with self._lock:
            self._lock.notify_all()
            # a request another caller also awaits (an identical greedy one) goes on decoding for that caller
            while not self._closed and any(
                j.cancelled and any(id(f) in pending for f in j.futures) for j in (*self._active, *self._queue)
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    @property
    def busy(self) -> int:
        """Requests holding a slot or waiting for one."""
        with self._lock:
            return len(self._active) + len(self._queue)

    @property
    def closed(self) -> bool:
        """Whether the engine takes no more requests (closed, or its thread failed)."""
        return self._closing

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the thread (aborting a step in progress), fail the requests left and free the context; False when
        the thread did not stop within `timeout` (the context is then left alone)."""
        with self._lock:
            self._closing = True
            self._abort_flag = True
            self._lock.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the embedded model's decode thread did not stop within %.0fs", timeout)
            return False
        if self._ctx is not None:
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self._ctx)
            self._ctx = None
        return True

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
        except BaseException as exc:  # the thread fails its requests rather than die silently
            log.exception("the embedded model's decode thread failed")
            error = exc if isinstance(exc, BackendError) else BackendError(f"embedded model {self.name} failed: {exc}")
        finally:
            with self._lock:
                self._closing = True
                for job in (*self._active, *self._queue):
                    self._free_sampler(job)
                    _settle(job, error=error)
                self._greedy.clear()
                self._active.clear()
                self._queue.clear()
                self._closed = True
                self._lock.notify_all()

    def _admit(self) -> None:
        """Give free slots to queued requests, each starting from the longest prefix of its prompt already in the
        cache, or following a job reading the same prompt (under the lock)."""
        lib = self._lib
        while self._queue and self._free:
            job = self._queue.popleft()
            if job.cancelled:
                self._forget(job)
                continue
            job.sampler = self._make_sampler(job)
            if job.sampler is None:
                continue
            prompt = job.prepared.prompt
            seq = max(self._free, key=lambda s: _common(self._kept.get(s, ()), prompt))
            self._free.remove(seq)
            job.seq = seq
            own = _common(self._kept.pop(seq, ()), prompt)
            leader = next(
                (a for a in self._active if a.leader is None and a.reading and a.prepared.prompt == prompt), None
            )
            self._active.append(job)
            if leader is not None:
                lib.llama_memory_seq_rm(self._memory, seq, -1, -1)
                job.leader = leader
                leader.followers.append(job)
                continue
            source, common = seq, own
            for other in self._active:
                if other.seq != seq and other.leader is None:
                    n = _common(other.cells(), prompt)
                    if n > common:
                        source, common = other.seq, n
            for other_seq, kept in self._kept.items():
                n = _common(kept, prompt)
                if n > common:
                    source, common = other_seq, n
            # at least the prompt's last token is read again: its logits start the answer
            common = min(common, len(prompt) - 1)
            if source == seq:
                lib.llama_memory_seq_rm(self._memory, seq, common, -1)
            else:
                # on a unified cache the cells are shared between the sequences, not copied
                lib.llama_memory_seq_rm(self._memory, seq, -1, -1)
                lib.llama_memory_seq_cp(self._memory, source, seq, 0, common)
            job.n_past = common
            self.prompt_shared += common

    def _make_sampler(self, job: _Job) -> Any:
        lib = self._lib
        p = job.prepared
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if p.grammar is not None:
            grammar = lib.llama_sampler_init_grammar(self._vocab, p.grammar[0].encode(), p.grammar[1].encode())
            if not grammar:
                lib.llama_sampler_free(chain)
                self._forget(job)
                _settle(job, error=BackendError("embedded model: llama.cpp refused the JSON Schema's grammar"))
                return None
            job.grammar = grammar
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

    def _free_sampler(self, job: _Job) -> None:
        if job.sampler is not None:
            self._lib.llama_sampler_free(job.sampler)
            job.sampler = None
        if job.grammar is not None:
            self._lib.llama_sampler_free(job.grammar)
            job.grammar = None

    def _drop_cancelled(self) -> None:
        """Free the slots of cancelled requests (under the lock)."""
        if any(j.cancelled for j in self._queue):
            for job in self._queue:
                if job.cancelled:
                    self._forget(job)
            self._queue = deque(j for j in self._queue if not j.cancelled)
        for job in [j for j in self._active if j.cancelled]:
            self._release(job)

    def _release(self, job: _Job, keep: bool = True) -> None:
        """Give the job's slot back (under the lock); its cells stay for later prompts unless `keep` is false.
        A leader still reading hands what it read to its first follower."""
        lib = self._lib
        if job.leader is not None:
            job.leader.followers.remove(job)
        elif job.followers:
            heir, *rest = job.followers
            lib.llama_memory_seq_rm(self._memory, heir.seq, -1, -1)
            if keep and job.n_past > 0:
                lib.llama_memory_seq_cp(self._memory, job.seq, heir.seq, 0, job.n_past)
                heir.n_past = job.n_past
            heir.leader, heir.followers = None, rest
            for f in rest:
                f.leader = heir
            job.followers = []
        if keep and job.leader is None:
            self._kept[job.seq] = job.cells()
        else:
            lib.llama_memory_seq_rm(self._memory, job.seq, -1, -1)
        job.leader = None
        self._forget(job)
        self._free_sampler(job)
        self._active.remove(job)
        self._free.append(job.seq)
        self._lock.notify_all()

    def _step(self) -> None:
        """One batch (every generating sequence's last token, then prompt chunks), one decode, then sampling."""
        lib = self._lib
        batch = self._batch
        n = 0
        jobs = list(self._active)
        budget = PROMPT_CHUNK
        for job in jobs:
            job.out_index = -1
            if job.leader is not None:
                continue
            if job.reading:
                if budget <= 0:
                    continue
                prompt = job.prepared.prompt
                take = min(budget, len(prompt) - job.n_past)
                for k in range(job.n_past, job.n_past + take):
                    batch.token[n] = prompt[k]
                    batch.pos[n] = k
                    batch.n_seq_id[n] = 1
                    batch.seq_id[n][0] = job.seq
                    batch.logits[n] = 0
                    n += 1
                job.n_past += take
                budget -= take
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
        read = PROMPT_CHUNK - budget
        self.prompt_read += read
        self._step_jobs = jobs
        check = read >= ABORT_CHECK_MIN_TOKENS
        if check:
            lib.llama_set_abort_callback(self._ctx, self._abort_cb, None)
        try:
            rc = lib.llama_decode(self._ctx, batch)
        finally:
            if check:
                lib.llama_set_abort_callback(self._ctx, self._no_abort_cb, None)
        self.steps += 1
        if rc == 2:
            # aborted (closing, or every sequence of the step cancelled): what the step wrote is unknown, so its
            # sequences keep no cells
            with self._lock:
                for job in jobs:
                    if job in self._active:
                        self._release(job, keep=False)
            return
        if rc != 0:
            raise BackendError(f"llama_decode failed (code {rc}); lower n_parallel or raise n_ctx")
        to_sample: list[_Job] = []
        for job in jobs:
            if job.out_index < 0 or job.leader is not None:
                continue
            to_sample.append(job)
            # the prompt is read: the jobs waiting on it share its cells and sample from the same logits
            for f in job.followers:
                lib.llama_memory_seq_cp(self._memory, job.seq, f.seq, -1, -1)
                f.n_past, f.leader, f.out_index = job.n_past, None, job.out_index
                self.prompt_shared += job.n_past
                to_sample.append(f)
            job.followers = []
        finished: list[tuple[_Job, str]] = []
        for job in to_sample:
            if not job.cancelled:
                reason = self._sample(job)
                if reason is not None:
                    finished.append((job, reason))
        if finished:
            with self._lock:
                for job, reason in finished:
                    if job in self._active:
                        self._finish(job, reason)

    def _sample(self, job: _Job) -> str | None:
        """Sample the job's next token; the finish reason once it is done, else None."""
        lib = self._lib
        token = lib.llama_sampler_sample(job.sampler, self._ctx, job.out_index)
        if job.grammar is not None:
            token = self._grammatical(job, token)
        if lib.llama_vocab_is_eog(self._vocab, token):
            return STOP
        job.tokens.append(token)
        size = lib.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        if size > 0:
            job.text += self._piece.raw[:size]
        stops = job.prepared.stop
        if stops:
            tail = bytes(job.text[-(4 * max(map(len, stops)) + 16) :]).decode("utf-8", "ignore")
            if any(s in tail for s in stops):
                return STOP
        if len(job.tokens) >= job.prepared.max_tokens:
            return LENGTH
        return None

    def _grammatical(self, job: _Job, token: int) -> int:
        """The sampled token if the grammar allows it, else one sampled again from the tokens it allows.

        Applying a grammar to the whole vocabulary at every step halved the throughput of JSON answers; as llama.cpp's
        own sampler does, the grammar checks the token drawn first and runs on every candidate only when it refuses.
        """
        lib = self._lib
        np = self._np
        one = self._one
        one[0]["id"], one[0]["logit"], one[0]["p"] = token, 0.0, 0.0
        single = lib.llama_token_data_array(self._one_ptr, 1, -1, False)
        lib.llama_sampler_apply(job.grammar, ctypes.byref(single))
        if one[0]["logit"] == -np.inf:
            logits = lib.llama_get_logits_ith(self._ctx, job.out_index)
            candidates = self._candidates
            candidates["id"] = self._token_ids
            candidates["logit"] = np.ctypeslib.as_array(logits, shape=(len(candidates),))
            candidates["p"] = 0.0
            every = lib.llama_token_data_array(self._candidates_ptr, len(candidates), -1, False)
            lib.llama_sampler_apply(job.grammar, ctypes.byref(every))
            lib.llama_sampler_apply(job.sampler, ctypes.byref(every))
            token = int(every.data[every.selected].id)
        lib.llama_sampler_accept(job.grammar, token)
        return token

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
        _settle(job, result=completion)

    def _forget(self, job: _Job) -> None:
        if self._greedy.get(job.prepared) is job:
            del self._greedy[job.prepared]


def _settle(job: _Job, result: Any = None, error: BaseException | None = None) -> None:
    """Resolve the job's futures, except those their callers cancelled meanwhile."""
    for future in job.futures:
        try:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        except concurrent.futures.InvalidStateError:
            pass


#: llama.cpp log lines (logged as errors) that are expected here: the whole cache exceeds the model's training
#: context (each sequence stays within n_ctx), and an aborted step dropping what it wrote (a cancel, on purpose)
_EXPECTED_LOG_LINES = (b"llama_context: n_ctx_seq", b"decode: removing memory module entries")
_LOG_FILTER: Any = None


def _filtered_log() -> Any:
    """llama-cpp-python's log callback, less the lines this engine causes on purpose (kept referenced here, so that
    ctypes does not free it)."""
    global _LOG_FILTER
    if _LOG_FILTER is None:
        import llama_cpp
        from llama_cpp import _logger

        def forward(level: int, text: bytes, data: Any) -> None:
            if not text.startswith(_EXPECTED_LOG_LINES):
                _logger.llama_log_callback(level, text, data)

        _LOG_FILTER = llama_cpp.llama_log_callback(forward)
    return _LOG_FILTER
