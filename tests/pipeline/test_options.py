"""``optimize``'s option groups (pipeline/_options.py): few parameters, each option declared once,
one spelling on the command line and in Python, and a bad value refused with the flag named."""

from __future__ import annotations

import ast
import inspect
import math
import re
from pathlib import Path

import pytest
import torch

import torchslim
from torchslim.cli import run
from torchslim.cli._common import parse_batch_sizes
from torchslim.cli._optimize import optimize_cmd
from torchslim.errors import ConfigError
from torchslim.pipeline import Goal, MeasureOptions, RunOptions, optimize

ROOT = Path(__file__).resolve().parents[2]
GROUPS = (Goal, RunOptions, MeasureOptions)
# Python-only fields: a harness swap (a test seam) and report.html, which the CLI always writes.
NOT_ON_THE_CLI = {"measure_fn", "html"}


def test_optimize_takes_few_parameters_and_each_option_is_declared_once():
    params = inspect.signature(optimize).parameters
    assert len(params) <= 6, list(params)
    assert list(params)[3:] == ["goal", "run", "measure"]
    fields = [name for group in GROUPS for name in group.model_fields]
    assert len(fields) == len(set(fields)), sorted(f for f in fields if fields.count(f) > 1)
    assert not set(fields) & set(params)  # no option both a parameter and a field
    for group in GROUPS:
        assert getattr(torchslim, group.__name__) is group and group.__name__ in torchslim.__all__
        for name, info in group.model_fields.items():
            assert info.description, f"{group.__name__}.{name} has no description"


def test_every_cli_flag_of_optimize_is_one_field_with_the_same_default():
    flags = {name: p.default for name, p in inspect.signature(optimize_cmd).parameters.items()
             if name not in ("model", "data", "recipe")}
    fields = {name: info.default for group in GROUPS for name, info in group.model_fields.items()}
    assert set(flags) == set(fields) - NOT_ON_THE_CLI
    flags["batch_sizes"] = tuple(parse_batch_sizes(flags["batch_sizes"]))  # typed as text on the command line
    assert {name: flags[name] for name in flags} == {name: fields[name] for name in flags}


@pytest.mark.parametrize(("group", "values", "needle"), [
    (Goal, {"max_accuracy_drop": -1}, "--max-accuracy-drop -1: must be a number >= 0"),
    (Goal, {"max_accuracy_drop": math.inf}, "--max-accuracy-drop inf"),
    (Goal, {"objective": "cheapest"}, "--objective 'cheapest': Input should be 'latency'"),
    (Goal, {"max_latency_ms": 0}, "--max-latency-ms 0: must be a number > 0"),
    (Goal, {"max_size_mb": math.nan}, "--max-size-mb nan"),
    (Goal, {"max_acuracy_drop": 1}, "Goal has no option 'max_acuracy_drop' (its options: objective"),
    (RunOptions, {"seed": -1}, "--seed -1: must be a whole number from 0 to 2**63-1 (RunOptions.seed)"),
    (RunOptions, {"seed": True}, "--seed True"),
    (RunOptions, {"time_budget": -5}, "--time-budget -5: must be a number of seconds >= 0"),
    (RunOptions, {"executor": "spark"}, "--executor 'spark'"),
    (RunOptions, {"resume": True}, "--resume needs --out DIR"),
    (RunOptions, {"executor": "local", "ray_address": "h:6379"}, "--ray-address is only used with --executor ray"),
    (RunOptions, {"device": "tpu"}, "--device 'tpu': Unknown device: use auto, cpu or cuda"),
    (RunOptions, {"device": " "}, "--device ' '"),
    (MeasureOptions, {"batch_sizes": (0, 4)}, "--batch-sizes (0, 4): batch sizes must be whole numbers from 1"),
    (MeasureOptions, {"batch_sizes": ()}, "--batch-sizes ()"),
    (MeasureOptions, {"batch_sizes": (1.5,)}, "--batch-sizes (1.5,)"),
])
def test_a_bad_value_is_a_config_error_naming_the_flag_and_the_field(group, values, needle):
    with pytest.raises(ConfigError) as caught:
        group(**values)
    assert needle in caught.value.message
    with pytest.raises(ConfigError):  # a dict of fields is the same group, checked the same way
        optimize(**{{Goal: "goal", RunOptions: "run", MeasureOptions: "measure"}[group]: values})


def test_groups_are_frozen_normalized_and_typed():
    assert MeasureOptions(batch_sizes=[32, 1, 32]).batch_sizes == (1, 32)
    assert RunOptions(device=" CPU ").device == "cpu" and RunOptions(device=torch.device("cpu")).device.type == "cpu"
    goal = Goal(objective="size")
    with pytest.raises(Exception, match="frozen"):
        goal.objective = "latency"
    assert goal.model_copy(update={"max_size_mb": 2.0}).max_size_mb == 2.0
    with pytest.raises(ConfigError, match=r"optimize\(goal=...\) takes a torchslim.Goal .*got RunOptions"):
        optimize(goal=RunOptions())
    with pytest.raises(TypeError, match="max_accuracy_drop"):  # the old flat keyword: Python names it
        optimize(max_accuracy_drop=1.0)


@pytest.mark.parametrize(("args", "needle"), [
    (["--max-size-mb", "0"], "--max-size-mb 0.0: must be a number > 0"),
    (["--objective", "cheapest"], "--objective 'cheapest'"),
    (["--executor", "spark"], "--executor 'spark'"),
    (["--max-accuracy-drop", "nan"], "--max-accuracy-drop nan"),
])
def test_the_cli_builds_the_groups_and_exits_2_on_a_bad_value(args, needle, tmp_path, capsys):
    assert run(["optimize", "--out", str(tmp_path / "run"), *args]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def _python_blocks() -> list[tuple[str, str]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [(p.name, block) for p in pages
            for block in re.findall(r"^```python\n(.*?)^```", p.read_text(), flags=re.DOTALL | re.MULTILINE)]


def test_every_optimize_call_in_the_docs_uses_the_current_keywords():
    """The guides' blocks are run by hand when written; this keeps their calls current for free."""
    accepted = {"optimize": set(inspect.signature(optimize).parameters)}
    accepted |= {group.__name__: set(group.model_fields) for group in GROUPS}
    seen = 0
    for page, block in _python_blocks():
        for node in ast.walk(ast.parse(block)):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name in accepted:
                seen += name == "optimize"
                unknown = {k.arg for k in node.keywords} - accepted[name]
                assert not unknown, f"{page}: {name}(...) takes no {sorted(unknown)}"
    assert seen >= 5  # README, optimize.md and the guides call it
