"""The public surface a newcomer meets: the README's Python block runs as written, and
``dir(torchslim)`` shows the curated API only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import torchslim

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_dir_shows_the_curated_api_only():
    names = dir(torchslim)
    assert names == sorted(torchslim.__all__) and "__version__" in names
    assert "annotations" not in names  # no __future__ leak
    assert not [n for n in names if n.startswith("_") and n != "__version__"]  # no private modules
    # subpackages that are not verbs stay importable, just not advertised
    assert {"artifacts", "bench", "pipeline", "specs", "zoo"}.isdisjoint(names)
    assert torchslim.bench.__name__ == "torchslim.bench"
    for name in torchslim.__all__:
        assert hasattr(torchslim, name), name


def test_load_data_and_load_model_from_specs():
    bundle = torchslim.load_data("digits")
    assert isinstance(bundle, torchslim.DataBundle) and bundle.num_classes == 10
    model = torchslim.load_model("digits-cnn", bundle, log=lambda _m: None)
    assert not model.training
    assert torchslim.bench.accuracy(model, bundle.test) > 0.9  # the trained weights, not a fresh init
    same = torchslim.load_model("digits-cnn", "digits", log=lambda _m: None)  # a DATA spec works too
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values(), strict=True))
    with pytest.raises(torchslim.SpecError):
        torchslim.load_data("no-such-data")
    with pytest.raises(torchslim.SpecError):
        torchslim.load_model("no-such-model", bundle)


def test_readme_python_block_defines_every_name_it_uses():
    """The fast half of the check below: each name is assigned (or imported) before it is read,
    and every ``torchslim.X`` it calls is public API."""
    import ast
    import builtins

    tree = ast.parse(_python_blocks(README.read_text())[0])
    defined = set(dir(builtins))
    for statement in tree.body:
        used = [n.id for n in ast.walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
        assert set(used) <= defined, f"line {statement.lineno} uses {sorted(set(used) - defined)} before defining it"
        for node in ast.walk(statement):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.alias):
                defined.add(node.asname or node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "torchslim":
                assert node.attr in torchslim.__all__, f"torchslim.{node.attr} is not public API"


@pytest.mark.slow  # the block runs the search, three techniques, an export and 2 epochs of training
def test_readme_python_block_runs_as_written(tmp_path, monkeypatch):
    blocks = _python_blocks(README.read_text())
    assert len(blocks) == 1, "the README should hold one Python block"
    monkeypatch.chdir(tmp_path)  # it writes out/
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    assert namespace["report"].best is not None
    assert namespace["logits"].shape == (2, 10)
    assert namespace["result"].epochs_run == 2 and namespace["metrics"].params > 0
    assert (tmp_path / "out" / "search" / "report.json").is_file()
