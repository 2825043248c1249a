"""What one LM call asks for and what it gives back: the types every layer passes around."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ChatRequest:
    """One LM call: a conversation, sampling settings, and which sample (0..k-1) this is.

    `sample` keeps k samples of the same prompt k distinct calls: backends derive their seed from it and
    the cache keys on it. `json_schema` (a JSON Schema as a canonical JSON string, so the request stays hashable)
    asks for structured output: a backend that can constrain decoding to it does, one that cannot ignores it, and
    the op's lenient text parser reads whatever comes back either way.
    """

    messages: tuple[tuple[str, str], ...]
    temperature: float
    max_tokens: int
    sample: int = 0
    json_schema: str | None = None

    @classmethod
    def of(
        cls,
        messages: Sequence[dict],
        temperature: float,
        max_tokens: int,
        sample: int = 0,
        json_schema: dict | None = None,
    ) -> ChatRequest:
        """Build from OpenAI-style `[{"role": ..., "content": ...}]` messages (and an optional JSON Schema dict)."""
        schema = json.dumps(json_schema, sort_keys=True) if json_schema is not None else None
        return cls(tuple((m["role"], m["content"]) for m in messages), temperature, max_tokens, sample, schema)

    @property
    def schema(self) -> dict | None:
        """The requested JSON Schema as a dict, or None for free text."""
        return json.loads(self.json_schema) if self.json_schema is not None else None

    def as_messages(self) -> list[dict[str, str]]:
        """OpenAI-style message dicts."""
        return [{"role": role, "content": content} for role, content in self.messages]

    @property
    def seed(self) -> int:
        """A reproducible sampling seed from the sample index and the conversation (31 bits, fits every server).

        Hashing the conversation too keeps sample 0 of two different prompts from sharing a random stream;
        `hashlib` rather than `hash()` because the latter is salted per process.
        """
        digest = hashlib.sha256(json.dumps([self.sample, self.messages]).encode()).digest()
        return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


#: Why a completion ended: the model stopped on its own, or the token limit cut it (other values, such as an API's
#: "content_filter", pass through as the server sent them).
STOP, LENGTH = "stop", "length"


@dataclass(frozen=True)
class Completion:
    """What one call gave back, with its usage. `cached` is true when no backend call was made; `finish_reason` is
    `"length"` when max_tokens cut the text short."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    finish_reason: str = STOP

    @property
    def truncated(self) -> bool:
        """Whether the token limit cut this text short (its last number is no final answer)."""
        return self.finish_reason == LENGTH
