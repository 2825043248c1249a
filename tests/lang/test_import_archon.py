"""Archon JSON configs -> our YAML: models, fields, warnings, refusals by rule."""

from __future__ import annotations

import json

import pytest
import yaml

from archon_search.core.errors import ArchitectureError, ArchonError
from archon_search.lang.archon_import import PLACEHOLDER_BASE_URL, import_archon, slugify
from archon_search.lang.validate import validate_text


def unit(type_: str, model: str = "gpt-4o", model_type: str = "OpenAI_API", **fields) -> dict:
    """One Archon unit."""
    return {"type": type_, "model": model, "model_type": model_type, **fields}


@pytest.fixture
def write_config(write_file):
    """Write an Archon config {"name", "layers"} as JSON and return its path."""

    def write(*layers: list[dict], name: str = "my config") -> object:
        return write_file(json.dumps({"name": name, "layers": list(layers)}), "config.json")

    return write


def test_critic_rank_fuse_fixture(fixtures_dir):
    result = import_archon(fixtures_dir / "archon" / "critic-rank-fuse.json")
    checked = validate_text(result.yaml_text)
    arch = checked.arch
    assert arch.name == "archon-4x_mixed_models_critic_ranker_top3_fuser"
    assert [layer.op for layer in arch.layers] == ["generator", "critic", "ranker", "fuser"]
    assert checked.calls_per_query == 6 + 1 + 1 + 1
    qwen = arch.models["qwen-qwen2-72b-instruct"]
    assert (qwen.backend, qwen.model, qwen.base_url, qwen.api_key_env) == (
        "openai",
        "Qwen/Qwen2-72B-Instruct",
        PLACEHOLDER_BASE_URL,
        "TOGETHER_API_KEY",
    )
    mini = arch.models["gpt-4o-mini"]
    assert (mini.backend, mini.model, mini.base_url) == ("openai", "gpt-4o-mini", None)
    local = arch.models["qwen-qwen2-5-7b-instruct"]
    assert (local.backend, local.model) == ("vllm", "Qwen/Qwen2.5-7B-Instruct")
    assert arch.layers[2].units[0].top_k == 3
    assert arch.temperature(arch.layers[0].units[3]) == 1.0
    assert arch.max_tokens(arch.layers[1].units[0]) == 4096
    text = "\n".join(result.warnings)
    assert text.count("set base_url") == 2  # the two Together models, not the OpenAI or vLLM ones
    for dropped in ("ranker_batch_size", "use_critiques", "length_control"):
        assert f"field '{dropped}'" in text
    assert "layer 2 (ranker): unit 0: field 'use_critiques'" in text


def test_unit_test_fields_and_evaluator_mode(fixtures_dir):
    result = import_archon(fixtures_dir / "archon" / "groq-unit-tests-verify.json")
    checked = validate_text(result.yaml_text)
    utg, ute = checked.arch.layers[1].units[0], checked.arch.layers[2].units[0]
    assert utg.num_tests == 4  # Archon's unit_test_cap
    assert (ute.mode, ute.top_k, ute.model) == ("llm", 2, "llama-3-1-70b-versatile")
    assert [c.calls for c in checked.layers] == [5, 1, 5, 2, 1]
    assert checked.arch.models["llama-3-1-8b-instant"].api_key_env == "GROQ_API_KEY"
    assert any("'use_rationales'" in w for w in result.warnings)
    assert any("'first_k'" in w for w in result.warnings)


def test_config_starting_with_unit_test_generator_is_refused(fixtures_dir):
    path = fixtures_dir / "archon" / "unit-tests-first.json"
    with pytest.raises(ArchitectureError) as info:
        import_archon(path)
    lines = str(info.value).splitlines()
    assert (
        f"{path}: layer 0 (unit_test_generator): R1: the first layer must be a generator, found unit_test_generator"
        in lines
    )
    assert any(": R4: " in line for line in lines)


def test_several_units_in_a_single_unit_layer_are_kept_and_refused(write_config):
    path = write_config([unit("generator", samples=3)], [unit("ranker", top_k=1), unit("ranker", top_k=1)])
    with pytest.raises(
        ArchitectureError, match=r"layer 1 \(ranker\): R5: a ranker layer has exactly one unit, found 2"
    ):
        import_archon(path)


def test_mixed_types_in_one_layer_are_refused(write_config):
    path = write_config([unit("generator"), unit("fuser")])
    with pytest.raises(ArchitectureError, match=r"layer 0: R2: units of types generator, fuser in one layer"):
        import_archon(path)


def test_empty_layer_is_refused(write_config):
    with pytest.raises(ArchitectureError, match=r"layer 1: R2: an empty layer"):
        import_archon(write_config([unit("generator")], []))


def test_out_of_range_value_is_refused_at_its_layer(write_config):
    path = write_config([unit("generator", temperature=0.5)], [unit("fuser", temperature=3.0)])
    with pytest.raises(ArchitectureError, match=r"layer 1 \(fuser\): R7: field 'temperature' = 3.0"):
        import_archon(path)


def test_defaults_take_the_common_values(write_config):
    layers = [unit("generator", temperature=0.9, max_tokens=512, samples=2) for _ in range(3)]
    result = import_archon(write_config(layers, [unit("fuser", temperature=0.1, max_tokens=512)]))
    data = yaml.safe_load(result.yaml_text)
    assert data["defaults"] == {"temperature": 0.9, "max_tokens": 512}
    assert data["layers"][0]["generator"][0] == {"model": "gpt-4o", "samples": 2}
    assert data["layers"][1]["fuser"] == {"model": "gpt-4o", "temperature": 0.1}


def test_same_model_under_two_providers_gets_two_entries(write_config):
    result = import_archon(write_config([unit("generator", "m/x", "Together_API"), unit("generator", "m/x", "vLLM")]))
    models = validate_text(result.yaml_text).arch.models
    assert {(m.backend, m.model) for m in models.values()} == {("openai", "m/x"), ("vllm", "m/x")}
    assert sorted(models) == ["m-x", "m-x-2"]


def test_unsupported_and_missing_fields_are_warned_about(write_config):
    raw = {"type": "generator", "model": "gpt-4o", "samples": 1, "use_rationales": True}
    path = write_config([raw], [unit("critic", samples=3)], [unit("fuser")])
    warnings = import_archon(path).warnings
    assert any("unit 0: no model_type; assumed OpenAI_API" in w for w in warnings)
    assert any("layer 1 (critic): unit 0: field 'samples' = 3 is not supported" in w for w in warnings)
    assert not any("'samples' = 1" in w for w in warnings)  # one sample is what a critic does anyway


def test_name_slug_and_fallback(write_file):
    assert slugify("Qwen/Qwen2.5-7B-Instruct") == "qwen-qwen2-5-7b-instruct"
    assert slugify("  MoA: 3 layers (v2)! ") == "moa-3-layers-v2"
    path = write_file(json.dumps({"layers": [[unit("generator")]]}), "My Archon Config.json")
    assert validate_text(import_archon(path).yaml_text).arch.name == "my-archon-config"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"invalid JSON at line 1, column 2"),
        ("[1, 2]", r"not an Archon config"),
        ('{"name": "x", "layers": [{"type": "generator"}]}', r"not an Archon config"),
        ("[" * 100000, r"nested too deeply|invalid JSON"),
    ],
)
def test_unreadable_configs_raise_one_line(write_file, content, message):
    path = write_file(content, "bad.json")
    with pytest.raises(ArchonError, match=message) as info:
        import_archon(path)
    assert not isinstance(info.value, ArchitectureError)
    assert len(str(info.value).splitlines()) == 1 and str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ArchonError, match="cannot read file"):
        import_archon(tmp_path / "nope.json")
