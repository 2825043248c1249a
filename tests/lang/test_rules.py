"""Rules R1-R8 (DESIGN §2): each refused and accepted at its boundary, with messages in the documented form."""

from __future__ import annotations

import re

import pytest
import yaml

from archon_search.core.errors import ArchitectureError
from archon_search.lang.spec import OpenAIModel
from archon_search.lang.validate import Validated, validate_text

FILE = "arch.yaml"
GEN = {"generator": {"model": "embedded", "samples": 2}}


def arch_text(*layers: dict, **top) -> str:
    """YAML text of an architecture named `t` with these layers (and extra top-level fields)."""
    return yaml.safe_dump({"name": "t", **top, "layers": list(layers)}, sort_keys=False)


def accepted(text: str, **kwargs) -> Validated:
    return validate_text(text, FILE, **kwargs)


def refused(text: str, **kwargs) -> list[str]:
    """The refusal's lines; fails the test if the text is accepted."""
    with pytest.raises(ArchitectureError) as info:
        validate_text(text, FILE, **kwargs)
    lines = [str(issue) for issue in info.value.issues]
    assert str(info.value) == "\n".join(lines)
    return lines


def only(lines: list[str], prefix: str) -> str:
    """The single line starting with `prefix` (file, layer, op, rule)."""
    matching = [line for line in lines if line.startswith(prefix)]
    assert len(matching) == 1, lines
    return matching[0]


# R1 ---------------------------------------------------------------------------------------------------------------


def test_r1_first_layer_must_be_a_generator():
    only(refused(arch_text({"fuser": {"model": "embedded"}})), f"{FILE}: layer 0 (fuser): R1: ")
    assert accepted(arch_text({"generator": {"model": "embedded"}})).calls_per_query == 1


def test_r1_generator_only_in_the_first_layer():
    line = only(refused(arch_text(GEN, GEN)), f"{FILE}: layer 1 (generator): R1: ")
    assert "use a fuser" in line
    accepted(arch_text(GEN, {"fuser": {"model": "embedded"}}))


# R2 ---------------------------------------------------------------------------------------------------------------


def test_r2_layer_with_two_keys():
    two = {"generator": {"model": "embedded"}, "fuser": {"model": "embedded"}}
    line = only(refused(arch_text(two)), f"{FILE}: layer 0: R2: ")
    assert "exactly one op" in line and "generator" in line and "fuser" in line


@pytest.mark.parametrize("layers", [[], None])
def test_r2_empty_or_missing_layers(layers):
    text = yaml.safe_dump({"name": "t", "layers": layers})
    assert refused(text) == [f"{FILE}: R2: 'layers' must be a non-empty list, starting with a generator layer"]


def test_r2_unknown_op():
    line = only(refused(arch_text(GEN, {"summarizer": {"model": "embedded"}})), f"{FILE}: layer 1: R2: ")
    assert "unknown op 'summarizer'" in line and "voter" in line


@pytest.mark.parametrize("body", [[], None, "embedded"])
def test_r2_layer_needs_a_unit(body):
    only(refused(arch_text(GEN, {"fuser": body})), f"{FILE}: layer 1 (fuser): R2: ")


def test_r2_unit_as_mapping_or_list_of_one_are_the_same():
    as_map = accepted(arch_text(GEN, {"ranker": {"model": "embedded"}}))
    as_list = accepted(arch_text(GEN, {"ranker": [{"model": "embedded"}]}))
    assert as_map.arch == as_list.arch


# R3 ---------------------------------------------------------------------------------------------------------------


def test_r3_message_is_the_documented_example():
    text = arch_text(
        GEN, {"fuser": {"model": "embedded"}}, {"critic": {"model": "embedded"}}, {"verifier": {"model": "embedded"}}
    )
    assert refused(text) == [
        "arch.yaml: layer 2 (critic): R3: a critic must be followed by a ranker or fuser, found verifier"
    ]


@pytest.mark.parametrize("follower", ["ranker", "fuser"])
def test_r3_critic_followed_by_ranker_or_fuser(follower):
    accepted(arch_text(GEN, {"critic": {"model": "embedded"}}, {follower: {"model": "embedded"}}))


def test_r3_critic_at_the_end():
    line = only(refused(arch_text(GEN, {"critic": {"model": "embedded"}})), f"{FILE}: layer 1 (critic): R3: ")
    assert line.endswith("found the end")


# R4 ---------------------------------------------------------------------------------------------------------------

UTG = {"unit_test_generator": {"model": "embedded"}}
UTE = {"unit_test_evaluator": {"mode": "execute"}}


def test_r4_generator_then_evaluator_accepted():
    accepted(arch_text(GEN, UTG, UTE))


@pytest.mark.parametrize("after", [[{"ranker": {"model": "embedded"}}, UTE], []])
def test_r4_test_generator_must_be_followed_by_an_evaluator(after):
    line = only(refused(arch_text(GEN, UTG, *after)), f"{FILE}: layer 1 (unit_test_generator): R4: ")
    assert "followed by a unit_test_evaluator" in line


def test_r4_evaluator_must_follow_a_test_generator():
    line = only(refused(arch_text(GEN, UTE)), f"{FILE}: layer 1 (unit_test_evaluator): R4: ")
    assert line.endswith("found generator")


# R5 ---------------------------------------------------------------------------------------------------------------

SINGLE_UNIT_CONTEXTS = {
    "critic": ([GEN], {"model": "embedded"}, [{"ranker": {"model": "embedded"}}]),
    "ranker": ([GEN], {"model": "embedded"}, []),
    "verifier": ([GEN], {"model": "embedded"}, []),
    "voter": ([GEN], {"top_k": 1}, []),
    "unit_test_generator": ([GEN], {"model": "embedded"}, [UTE]),
    "unit_test_evaluator": ([GEN, UTG], {"mode": "execute"}, []),
}


@pytest.mark.parametrize("op", sorted(SINGLE_UNIT_CONTEXTS))
def test_r5_single_unit_ops(op):
    before, unit, after = SINGLE_UNIT_CONTEXTS[op]
    index = len(before)
    accepted(arch_text(*before, {op: [unit]}, *after))
    line = only(refused(arch_text(*before, {op: [unit, unit]}, *after)), f"{FILE}: layer {index} ({op}): R5: ")
    assert "exactly one unit, found 2" in line


@pytest.mark.parametrize("op", ["generator", "fuser"])
def test_r5_generator_and_fuser_take_several_units(op):
    units = [{"model": "embedded"}, {"model": "embedded", "samples": 2}]
    layers = [{op: units}] if op == "generator" else [GEN, {op: units}]
    assert accepted(arch_text(*layers)).layers[-1].calls == 3


# R6 ---------------------------------------------------------------------------------------------------------------


def test_r6_unknown_model():
    line = only(refused(arch_text({"generator": {"model": "gpt5"}})), f"{FILE}: layer 0 (generator): R6: ")
    assert "model 'gpt5' is not defined" in line and "embedded" in line


def test_r6_model_defined_in_file_or_models_argument():
    mini = {"backend": "openai", "model": "gpt-4o-mini"}
    accepted(arch_text({"generator": {"model": "mini"}}, models={"mini": mini}))
    extra = {"mini": OpenAIModel(backend="openai", model="gpt-4o")}
    checked = accepted(arch_text({"generator": {"model": "mini"}}, models={"mini": mini}), models=extra)
    assert checked.arch.models["mini"].model == "gpt-4o"  # --models wins on a name clash


def test_r6_unknown_backend():
    text = arch_text({"generator": {"model": "m"}}, models={"m": {"backend": "tgi", "model": "x"}})
    line = only(refused(text), f"{FILE}: R6: model 'm': unknown backend 'tgi'")
    assert "embedded, openai, vllm, scripted" in line


def test_r6_llm_evaluator_needs_a_model():
    only(
        refused(arch_text(GEN, UTG, {"unit_test_evaluator": {"mode": "llm"}})),
        f"{FILE}: layer 2 (unit_test_evaluator): R6: mode llm needs a model",
    )
    accepted(arch_text(GEN, UTG, {"unit_test_evaluator": {"mode": "llm", "model": "embedded"}}))


# R7 ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "field", "bad", "good"),
    [
        ([], ("generator", "samples"), 0, 1),
        ([GEN], ("fuser", "samples"), 0, 1),
        ([GEN], ("ranker", "top_k"), 0, 1),
        ([GEN], ("voter", "top_k"), 0, 1),
        ([], ("generator", "temperature"), 2.01, 2),
        ([], ("generator", "temperature"), -0.01, 0),
        ([], ("generator", "max_tokens"), 0, 1),
        ([GEN], ("unit_test_generator", "num_tests"), 0, 1),
    ],
)
def test_r7_ranges_at_the_boundary(layers, field, bad, good):
    op, name = field
    unit = {} if op == "voter" else {"model": "embedded"}
    after = [UTE] if op == "unit_test_generator" else []
    accepted(arch_text(*layers, {op: {**unit, name: good}}, *after))
    line = only(
        refused(arch_text(*layers, {op: {**unit, name: bad}}, *after)), f"{FILE}: layer {len(layers)} ({op}): R7: "
    )
    assert f"field '{name}' = {bad!r}" in line


def test_r7_misspelled_field():
    line = only(
        refused(arch_text({"generator": {"model": "embedded", "length_contorl": True}})),
        f"{FILE}: layer 0 (generator): R7: ",
    )
    assert "unknown field 'length_contorl'" in line and "spelling" in line


def test_r7_field_of_another_op():
    only(
        refused(arch_text(GEN, {"critic": {"model": "embedded", "top_k": 2}}, {"fuser": {"model": "embedded"}})),
        f"{FILE}: layer 1 (critic): R7: unknown field 'top_k'",
    )


def test_r7_unknown_top_level_and_model_fields():
    lines = refused(
        arch_text(
            {"generator": {"model": "m"}}, models={"m": {"backend": "openai", "model": "x", "api_key": "k"}}, budget=3
        )
    )
    only(lines, f"{FILE}: R7: unknown field 'budget'")
    only(lines, f"{FILE}: R7: model 'm': unknown field 'api_key'")


def test_r7_defaults_out_of_range():
    only(refused(arch_text(GEN, defaults={"temperature": 2.5})), f"{FILE}: R7: defaults: field 'temperature' = 2.5")
    checked = accepted(arch_text(GEN, defaults={"temperature": 2, "max_tokens": 1}))
    assert checked.arch.max_tokens(checked.arch.layers[0].units[0]) == 1


def test_r7_unknown_mode_and_bad_name():
    only(
        refused(arch_text(GEN, UTG, {"unit_test_evaluator": {"mode": "run"}})),
        f"{FILE}: layer 2 (unit_test_evaluator): R7: field 'mode' = 'run'",
    )
    refused(yaml.safe_dump({"name": "Bad Name", "layers": [GEN]}))
    accepted(yaml.safe_dump({"name": "good_name-2", "layers": [GEN]}))


# R8 ---------------------------------------------------------------------------------------------------------------

CRF = [
    {"generator": [{"model": "embedded", "samples": 4}, {"model": "embedded", "samples": 2}]},
    {"critic": {"model": "embedded"}},
    {"ranker": {"model": "embedded", "top_k": 3}},
    {"fuser": {"model": "embedded"}},
]


def test_r8_budget_boundary():
    text = arch_text(*CRF)
    assert accepted(text, budget=9).calls_per_query == 9
    line = only(refused(text, budget=8), f"{FILE}: R8: ")
    assert "9 LM calls per query exceed the budget of 8" in line


def test_every_broken_rule_is_reported_at_once():
    text = arch_text({"critic": {"model": "nope"}}, {"voter": [{}, {}]})
    rules = {re.search(r": (R\d): ", line).group(1) for line in refused(text)}
    assert rules == {"R1", "R3", "R5", "R6"}


# YAML syntax and warnings -----------------------------------------------------------------------------------------


def test_yaml_syntax_error_gives_line_and_column():
    text = "name: t\nlayers:\n  - generator: {model: embedded\n  - voter: {}\n"
    (line,) = refused(text)
    assert re.match(rf"{FILE}: line \d+, column \d+: YAML syntax error: ", line)
    tab = "name: t\nlayers:\n\t- generator: {model: embedded}\n"
    assert refused(tab) == [
        f"{FILE}: line 3, column 1: YAML syntax error: found character '\\t' that cannot start any token; indent with spaces, not tabs"
    ]


@pytest.mark.parametrize(
    "text", ["name: 2020-13-45\n", "name: !!float x\n", "name: !!float \n", "name: !!bool x\n", "[" * 5000]
)
def test_yaml_values_pyyaml_cannot_build_are_refused_not_crashed(text):
    (line,) = refused(text)
    assert line.startswith(f"{FILE}: YAML")


@pytest.mark.parametrize("op", ["ranker", "voter"])
def test_top_k_over_the_candidates_is_a_warning(op):
    unit = {"model": "embedded"} if op == "ranker" else {}
    assert accepted(arch_text(GEN, {op: {**unit, "top_k": 2}})).warnings == []
    (warning,) = accepted(arch_text(GEN, {op: {**unit, "top_k": 3}})).warnings
    assert str(warning) == f"{FILE}: layer 1 ({op}): warning: top_k 3 exceeds the 2 candidate(s) it can receive"
