"""The architecture language as typed data: model entries, units per op, layers, the whole file.

These models only describe shape and ranges (R7); the composition rules that span layers live in
`archon_search.lang.validate`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z0-9_-]+$"
DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 1024
# judges (critic, ranker, verifier) read greedily and need room to reason before their verdict
DEFAULT_JUDGE_TEMPERATURE = 0.0
DEFAULT_JUDGE_MAX_TOKENS = 512


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Priced(_Strict):
    price_in: float | None = Field(default=None, ge=0, description="USD per million prompt tokens")
    price_out: float | None = Field(default=None, ge=0, description="USD per million completion tokens")


class EmbeddedModel(_Priced):
    """The in-process CPU model (llama-cpp-python); SmolLM2-135M-Instruct unless `model_path` names a GGUF."""

    backend: Literal["embedded"] = "embedded"
    model_path: str | None = None
    n_ctx: int = Field(default=2048, ge=128, description="tokens per sequence (prompt and answer together)")
    n_threads: int | None = Field(default=None, ge=1, description="threads per model; default half the cores")
    n_parallel: int = Field(default=8, ge=1, le=256, description="sequences decoded together in one batch")
    chat_format: str | None = Field(
        default=None, description="llama-cpp-python chat format (e.g. chatml) for a GGUF without a chat template"
    )

    @property
    def model_id(self) -> str:
        # the chat format changes the prompts, so answers under another one are not the same model's
        name = self.model_path or "SmolLM2-135M-Instruct"
        return f"{name}|{self.chat_format}" if self.chat_format else name

    @property
    def context_window(self) -> int:
        """Tokens the model can attend to (prompt and answer together)."""
        return self.n_ctx

    @property
    def structured_output(self) -> bool:
        """llama.cpp constrains decoding to a JSON Schema through a grammar."""
        return True


class OpenAIModel(_Priced):
    """Any OpenAI-compatible chat completions server."""

    backend: Literal["openai"]
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(default=16, ge=1)
    structured_output: bool = Field(default=False, description="the server honours response_format json_schema")
    context_window: int | None = Field(default=None, ge=1, description="prompt + answer tokens; unknown if unset")

    @property
    def model_id(self) -> str:
        return f"{self.base_url or 'openai'}|{self.model}"


class VLLMModel(_Priced):
    """vLLM's async engine (continuous batching) on local GPUs."""

    backend: Literal["vllm"]
    model: str
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    max_model_len: int | None = Field(default=None, ge=1)

    @property
    def model_id(self) -> str:
        return self.model

    @property
    def context_window(self) -> int | None:
        """`max_model_len` when set; otherwise the model's own, which only the engine knows."""
        return self.max_model_len

    @property
    def structured_output(self) -> bool:
        """vLLM constrains decoding to a JSON Schema (guided decoding)."""
        return True


class ScriptedModel(_Priced):
    """A deterministic fake for tests, demos and dry runs; never a default."""

    backend: Literal["scripted"]
    responses: list[str] = Field(default_factory=list)
    by_prompt: dict[str, str] = Field(default_factory=dict)
    latency_ms: float = Field(default=0, ge=0)
    #: cut replies to max_tokens words, finish_reason "length", as a real model's token limit does
    truncate: bool = False

    @property
    def model_id(self) -> str:
        return "scripted"

    @property
    def context_window(self) -> None:
        """A script has no context limit."""
        return None

    @property
    def structured_output(self) -> bool:
        """A script answers with its canned text whatever is asked."""
        return False


ModelSpec = Annotated[EmbeddedModel | OpenAIModel | VLLMModel | ScriptedModel, Field(discriminator="backend")]
BACKENDS = ("embedded", "openai", "vllm", "scripted")


class Defaults(_Strict):
    """Values every unit inherits unless it sets its own."""

    temperature: float = Field(default=DEFAULT_TEMPERATURE, ge=0, le=2)
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1)
    judge_temperature: float = Field(default=DEFAULT_JUDGE_TEMPERATURE, ge=0, le=2)
    judge_max_tokens: int = Field(default=DEFAULT_JUDGE_MAX_TOKENS, ge=1)


class _Unit(_Strict):
    #: critic, ranker and verifier units judge: unset settings come from `judge_temperature`/`judge_max_tokens`
    judging: ClassVar[bool] = False
    model: str
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)


class GeneratorUnit(_Unit):
    """Answers the question `samples` times."""

    samples: int = Field(default=1, ge=1)


class FuserUnit(_Unit):
    """Merges the incoming candidates (and critiques) into `samples` new candidates."""

    samples: int = Field(default=1, ge=1)


class CriticUnit(_Unit):
    """Writes strengths and weaknesses for every candidate."""

    judging = True


class RankerUnit(_Unit):
    """Orders the candidates and keeps the best `top_k`."""

    judging = True
    top_k: int = Field(default=1, ge=1)


class VerifierUnit(_Unit):
    """Judges each candidate correct or not; keeps the correct ones (all when none is)."""

    judging = True


class UnitTestGeneratorUnit(_Unit):
    """Writes `num_tests` unit tests for the question."""

    num_tests: int = Field(default=5, ge=1)


class UnitTestEvaluatorUnit(_Strict):
    """Keeps the `top_k` candidates that pass most tests, by running them or by asking a model."""

    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    top_k: int = Field(default=1, ge=1)
    mode: Literal["execute", "llm"] = "execute"


class VoterUnit(_Strict):
    """Keeps the candidates whose extracted answer is most common; makes no LM call."""

    top_k: int = Field(default=1, ge=1)


UNIT_TYPES: dict[str, type[_Strict]] = {
    "generator": GeneratorUnit,
    "fuser": FuserUnit,
    "critic": CriticUnit,
    "ranker": RankerUnit,
    "verifier": VerifierUnit,
    "unit_test_generator": UnitTestGeneratorUnit,
    "unit_test_evaluator": UnitTestEvaluatorUnit,
    "voter": VoterUnit,
}
OPS = tuple(UNIT_TYPES)
SINGLE_UNIT_OPS = frozenset(OPS) - {"generator", "fuser"}

Unit = (
    GeneratorUnit
    | FuserUnit
    | CriticUnit
    | RankerUnit
    | VerifierUnit
    | UnitTestGeneratorUnit
    | UnitTestEvaluatorUnit
    | VoterUnit
)


class Layer(_Strict):
    """One step of the pipeline: a single op type applied by one or more units."""

    op: Literal[
        "generator",
        "fuser",
        "critic",
        "ranker",
        "verifier",
        "unit_test_generator",
        "unit_test_evaluator",
        "voter",
    ]
    units: tuple[Unit, ...]

    def to_yaml_obj(self) -> dict:
        units = [u.model_dump(exclude_none=True, exclude_defaults=False) for u in self.units]
        return {self.op: units[0] if len(units) == 1 else units}


class Task(_Strict):
    """The task an architecture was scored on, so a deployment reads and asks for answers as the search did.

    `answer_format` names the answer extractor the voter groups on and the unit-test evaluator takes code with
    (a benchmark file's scorer; none: no short answer, as for judged tasks); `instruction` is the answer format
    the search appended to the first user message, appended the same way when the architecture answers.
    """

    benchmark: str = Field(min_length=1)
    kind: Literal["answer", "code", "judge"] = "answer"
    answer_format: Literal["math", "number", "exact", "code"] | None = None
    instruction: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        if (self.kind == "code") != (self.answer_format == "code"):
            raise ValueError("kind: code and answer_format: code go together; set both or neither")
        if self.kind == "judge" and self.answer_format is not None:
            raise ValueError("a judge task has no answer_format; remove it")
        return self


class Architecture(_Strict):
    """A whole architecture file after parsing; `validate.load_architecture` is how to get one."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    task: Task | None = None
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    layers: tuple[Layer, ...]

    def temperature(self, unit: Unit) -> float:
        """The unit's temperature, inherited from the defaults (the judge defaults for judging units) when unset."""
        value = getattr(unit, "temperature", None)
        if value is not None:
            return value
        return self.defaults.judge_temperature if getattr(unit, "judging", False) else self.defaults.temperature

    def max_tokens(self, unit: Unit) -> int:
        """The unit's max_tokens, inherited from the defaults (the judge defaults for judging units) when unset."""
        value = getattr(unit, "max_tokens", None)
        if value is not None:
            return value
        return self.defaults.judge_max_tokens if getattr(unit, "judging", False) else self.defaults.max_tokens

    def to_yaml_obj(self) -> dict:
        """The architecture as plain data that `yaml.safe_dump` writes and `load_architecture` reads back."""
        out: dict = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.task is not None:
            out["task"] = self.task.model_dump(exclude_none=True)
        if self.models:
            out["models"] = {
                name: spec.model_dump(exclude_none=True, exclude_defaults=True) | {"backend": spec.backend}
                for name, spec in self.models.items()
            }
        out["defaults"] = self.defaults.model_dump()
        out["layers"] = [layer.to_yaml_obj() for layer in self.layers]
        return out
