"""The validator on arbitrary input: it returns `Validated` or raises `ArchitectureError` (one line per issue)."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archon_search.core.errors import ArchitectureError
from archon_search.lang.spec import OPS
from archon_search.lang.validate import Validated, check_architecture, validate_text

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

YAML_TOKENS = [
    "name: t",
    "layers:",
    "models:",
    "defaults:",
    "\n",
    "  ",
    "- ",
    ": ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    '"',
    "#",
    "? ",
    "| ",
    "> ",
    "&a ",
    "*a",
    "!!",
    "!!python/object:os.system ",
    "!!float ",
    "!!binary ",
    "%YAML 1.1\n",
    "---\n",
    "...",
    "\t",
    "null",
    "~",
    "true",
    "-1",
    "0",
    "2.5",
    "1e309",
    ".nan",
    "2020-13-45",
    "0x",
    "model: embedded",
    "samples: 3",
    "top_k: 0",
    "mode: llm",
    "backend: scripted",
    "temperature: 2.01",
    *(f"{op}:" for op in OPS),
]
FIELD_NAMES = [
    "name",
    "layers",
    "models",
    "defaults",
    "model",
    "samples",
    "top_k",
    "temperature",
    "max_tokens",
    "mode",
    "num_tests",
    "backend",
    "responses",
    "by_prompt",
    *OPS,
]
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(FIELD_NAMES)
)
keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=8) | st.integers(-3, 3) | st.booleans() | st.none()
nested = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=25,
)

BASES: list[dict[str, Any]] = [
    {"name": "a", "layers": [{"generator": {"model": "embedded", "samples": 3}}, {"voter": {"top_k": 1}}]},
    {
        "name": "b",
        "models": {"m": {"backend": "scripted", "responses": ["x"]}},
        "defaults": {"temperature": 0.5, "max_tokens": 64},
        "layers": [
            {"generator": [{"model": "m", "samples": 2}, {"model": "embedded"}]},
            {"critic": {"model": "m"}},
            {"ranker": {"model": "m", "top_k": 2}},
            {"fuser": {"model": "m"}},
            {"verifier": {"model": "embedded"}},
        ],
    },
    {
        "name": "c",
        "layers": [
            {"generator": {"model": "embedded", "samples": 4}},
            {"unit_test_generator": {"model": "embedded", "num_tests": 2}},
            {"unit_test_evaluator": {"mode": "llm", "model": "embedded", "top_k": 1}},
        ],
    },
]


def assert_validates_or_refuses(fn, *args) -> None:
    """`fn(*args)` must return Validated or raise ArchitectureError whose every issue is one non-empty line."""
    try:
        result = fn(*args)
    except ArchitectureError as exc:
        assert exc.issues
        for issue in exc.issues:
            line = str(issue)
            assert line.strip() and "\n" not in line, line
    else:
        assert isinstance(result, Validated)


@FUZZ
@given(st.text(max_size=200))
def test_random_text(text):
    assert_validates_or_refuses(validate_text, text)


@FUZZ
@given(st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map("".join))
def test_yaml_ish_text(text):
    assert_validates_or_refuses(validate_text, text)


@FUZZ
@given(nested)
def test_random_structures(raw):
    assert_validates_or_refuses(check_architecture, raw)


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), nested, max_size=5))
def test_random_structures_as_yaml(raw):
    assert_validates_or_refuses(validate_text, yaml.safe_dump(raw))


def _containers(node: Any, out: list) -> list:
    """Every dict and list inside `node` (itself included), for picking a place to mutate."""
    if isinstance(node, (dict, list)):
        out.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            _containers(child, out)
    return out


@FUZZ
@given(st.sampled_from(BASES), st.data())
def test_near_valid_architectures(base, data):
    raw = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(_containers(raw, [])))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if isinstance(target, dict):
            if action == "add" or not target:
                target[data.draw(keys)] = data.draw(nested)
            else:
                key = data.draw(st.sampled_from(list(target)))
                if action == "delete":
                    del target[key]
                else:
                    target[key] = data.draw(nested)
        elif action == "add" or not target:
            target.append(data.draw(nested))
        else:
            index = data.draw(st.integers(0, len(target) - 1))
            if action == "delete":
                del target[index]
            else:
                target[index] = data.draw(nested)
    assert_validates_or_refuses(check_architecture, raw)
