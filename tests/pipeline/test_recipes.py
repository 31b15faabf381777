"""Recipes: every built-in loads and validates with the real techniques; bad recipes are
rejected with the path of the offending field."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import BaseModel, ConfigDict, Field

from torchslim.errors import ConfigError
from torchslim.pipeline import describe_step, list_recipes, load_recipe
from torchslim.pipeline._steps import STEP_TABLE

FAMILIES = {"quantize", "prune", "distill", "factorize", "share", "encode", "export"}


@pytest.mark.parametrize("name", list_recipes())
def test_every_builtin_recipe_loads_and_validates_with_the_real_techniques(name):
    recipe = load_recipe(name)  # runs each technique's validate_step on every step
    assert recipe.candidates, name
    names = [c.name for c in recipe.candidates]
    assert len(names) == len(set(names))
    for cand in recipe.candidates:
        for step in cand.steps:
            assert step.name in STEP_TABLE and step.config is not None, (name, cand.name, step.name)


def test_the_builtins_cover_every_technique():
    assert {"default", "quick", "deep-compression", "quantize", "prune", "distill", "factorize", "share", "export"} <= set(list_recipes())
    assert list_recipes()[0] == "default"
    default = load_recipe("default")
    used = {s.name for c in default.candidates for s in c.steps}
    assert FAMILIES <= used, FAMILIES - used
    runtimes = {c.runtime for c in default.candidates}
    assert {"compile", "onnxruntime", "tensorrt", "openvino"} <= runtimes
    assert all("cuda" in (c.devices or []) for c in default.candidates if c.runtime == "tensorrt")
    assert all(c.devices == ["cpu"] for c in default.candidates if c.runtime == "openvino")
    assert default.spec.sensitivity is not None and default.spec.refine is not None


def test_real_technique_rejects_out_of_range_values_with_the_path():
    with pytest.raises(ConfigError) as e:
        load_recipe({"candidates": [{"name": "a", "steps": [{"quantize": {"method": "dynamic"}}]},
                                    {"name": "b", "steps": [{"prune": {"method": "channel", "ratio": 1.5}}]}]})
    assert "candidates[1].steps[0].prune" in e.value.message and "ratio" in e.value.message
    with pytest.raises(ConfigError) as e:
        load_recipe({"candidates": [{"name": "a", "steps": [{"quantize": {"method": "dynamc"}}]}]})
    assert "candidates[0].steps[0].quantize" in e.value.message and "method" in e.value.message


# ----- recipe shape, checked with a fake step table (independent of the techniques) -----


class RatioConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ratio: float = Field(0.5, gt=0, lt=1)


FAKE = {
    "prune": SimpleNamespace(validate_step=lambda o: RatioConfig.model_validate(o or {}), run_step=lambda m, c, ctx: None),
    "noop": (lambda o: o, lambda m, c, ctx: None),
}


def _load(raw):
    return load_recipe(raw, step_table=FAKE)


def test_step_options_are_validated_with_their_path():
    with pytest.raises(ConfigError) as e:
        _load({"candidates": [{"name": "a", "steps": [{"noop": None}]}, {"name": "b", "steps": [{"noop": None}]},
                              {"name": "c", "steps": [{"noop": None}, {"prune": {"ratio": 1.5}}]}]})
    assert "candidates[2].steps[1].prune.ratio" in e.value.message
    with pytest.raises(ConfigError, match=r"candidates\[0\]\.steps\[0\]\.prune\.ration.*not permitted"):
        _load({"candidates": [{"name": "a", "steps": [{"prune": {"ration": 0.5}}]}]})


def test_unknown_step_lists_the_known_ones():
    with pytest.raises(ConfigError) as e:
        _load({"candidates": [{"name": "a", "steps": [{"prnue": {"ratio": 0.5}}]}]})
    assert "candidates[0].steps[0]" in e.value.message and "'prnue'" in e.value.message
    assert "noop" in e.value.message and "prune" in e.value.message
    with pytest.raises(ConfigError, match="Known steps: .*quantize"):
        load_recipe({"candidates": [{"name": "a", "steps": [{"quantise": None}]}]})  # the real table


@pytest.mark.parametrize(("raw", "path"), [
    ({"candidates": [{"name": "a", "stpes": []}]}, "candidates[0].stpes"),
    ({"candidates": [{"name": "a", "steps": []}], "refin": {}}, "refin"),
    ({"candidates": [{"name": "a", "steps": [], "runtime": "tensorflow"}]}, "candidates[0].runtime"),
    ({"candidates": [{"name": "a b", "steps": []}]}, "candidates[0].name"),
    ({"candidates": [{"name": "a", "steps": [{"noop": None, "prune": None}]}]}, "candidates[0].steps"),
    ({"candidates": []}, "candidates"),
    ({"candidates": [{"name": "a", "steps": []}], "sensitivity": {"ratio": 2}}, "sensitivity.ratio"),
    ({"candidates": [{"name": "a", "steps": []}], "refine": {"ratio_deltas": [0]}}, "refine.ratio_deltas"),
    ({"candidates": [{"name": "a", "steps": [], "devices": ["tpu"]}]}, "candidates[0].devices[0]"),
])
def test_bad_recipe_shapes_name_the_field(raw, path):
    with pytest.raises(ConfigError) as e:
        _load(raw)
    assert path in e.value.message


def test_duplicate_names_and_non_mappings_are_rejected():
    with pytest.raises(ConfigError, match="used twice"):
        _load({"candidates": [{"name": "a", "steps": []}, {"name": "a", "steps": []}]})


def test_files_names_and_yaml_errors(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("candidates:\n  - name: p\n    steps:\n      - prune: {ratio: 0.3}\n      - noop\n")
    recipe = load_recipe(str(good), step_table=FAKE)
    assert recipe.name == str(good)
    assert recipe.candidates[0].step_strings() == ["prune(ratio=0.3)", "noop()"]
    assert recipe.candidates[0].steps[0].config.ratio == 0.3
    broken = tmp_path / "broken.yaml"
    broken.write_text("candidates:\n  - name: p\n    steps: [prune: {ratio: 0.3}\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_recipe(str(broken), step_table=FAKE)
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(str(tmp_path / "missing.yaml"), step_table=FAKE)
    with pytest.raises(ConfigError, match="Built-in recipes: default"):
        load_recipe("no-such-recipe", step_table=FAKE)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_recipe(str(scalar), step_table=FAKE)


def test_describe_step():
    assert describe_step("prune", {"method": "channel", "ratio": 0.5}) == "prune(method=channel, ratio=0.5)"
    assert describe_step("encode", "huffman") == "encode(huffman)"
    assert describe_step("distill", None) == "distill()"
    assert describe_step("quantize", {"skip": ["fc1", "fc2"]}) == "quantize(skip=[fc1, fc2])"
