"""The user docs stay true to the code: links resolve, the recipes and training configs they show
load, the plug-in example registers and runs, the guides quote dated figures, and every measurement
note says when, on which CPU and from which script it was measured. All of it is cheap (no model
is optimized here); the guides' longer Python blocks were run by hand when written."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTES = ROOT / "benchmarks" / "notes"
PAGES = sorted(DOCS.rglob("*.md")) + sorted(NOTES.glob("*.md")) + [ROOT / "README.md"]
GUIDES = sorted((DOCS / "guides").glob("*.md"))


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_named_paths_resolve(page):
    text = page.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path) if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and anchor not in {_anchor(h) for h in re.findall(r"^#+ (.*)$", file.read_text(), re.M)}:
            broken.append(target)
    # repository paths named in the text (docs/x.md, benchmarks/y.py, src/..., tests/...)
    for path in re.findall(r"(?<![\w/.])((?:docs|benchmarks|src|tests)/[\w./-]*\.(?:md|py|json|yaml|txt))", text):
        if not (ROOT / path).exists():
            broken.append(path)
    assert broken == []


def test_the_transformers_page_is_a_guide_under_200_lines():
    assert len((DOCS / "transformers.md").read_text().splitlines()) < 200


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_each_guide_is_short_and_quotes_dated_figures(guide):
    text = guide.read_text()
    assert 40 <= len(text.splitlines()) <= 150
    figures = text.split("## Figures to expect", 1)
    assert len(figures) == 2, "a guide says what figures to expect"
    assert re.search(r"20\d\d-\d\d-\d\d", figures[1].split("\n## ", 1)[0]), "each figure carries its date"
    assert "## Common messages" in text


@pytest.mark.parametrize("note", sorted(NOTES.glob("2*.md")), ids=lambda p: p.name)
def test_each_measurement_note_says_when_where_and_from_what(note):
    head = note.read_text()[:2000]
    assert note.name[:10] in head  # the date in the name is the date in the note
    for field in ("**Date:**", "**CPU:**", "**Script / results:**"):
        assert field in head, field
    assert note.name in (NOTES / "README.md").read_text()  # listed in the index


def _doc_recipes() -> list[tuple[str, dict]]:
    found = []
    for page in PAGES:
        for block in _blocks(page.read_text(), "yaml"):
            data = yaml.safe_load(block)
            if isinstance(data, dict) and "candidates" in data:
                found.append((page.name, data))
    return found


@pytest.fixture
def guide_plugin():
    """The plug-in module of docs/guides/plugins.md, registered as a user's would be."""
    from torchslim.core.registry import TECHNIQUES

    module = types.ModuleType("guide_plugin")
    exec(compile(_blocks((DOCS / "guides" / "plugins.md").read_text(), "python")[0], "plugins.md", "exec"),
         module.__dict__)
    sys.modules["guide_plugin"] = module
    yield module
    TECHNIQUES.unregister("zero_small")
    sys.modules.pop("guide_plugin", None)


def test_every_recipe_shown_in_the_docs_loads(guide_plugin):
    from torchslim.pipeline import load_recipe

    recipes = _doc_recipes()
    assert len(recipes) >= 3  # transformers.md (2) and plugins.md at least
    for page, data in recipes:
        try:
            load_recipe(data)
        except Exception as e:  # noqa: BLE001 - name the page whose recipe broke
            pytest.fail(f"the recipe in {page} does not load: {e}")


def test_the_plugin_guide_step_validates_and_runs(guide_plugin):
    from torchslim import ConfigError
    from torchslim.core.step import StepContext

    config = guide_plugin.validate_step({"threshold": 0.5})
    with pytest.raises(ConfigError, match="threshold"):
        guide_plugin.validate_step({"threshold": -1})
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.1, 0.9, -0.2, -0.8]] * 3))
    logged = []
    ctx = StepContext(data=None, device=torch.device("cpu"), teacher=model, work_dir=ROOT, example_inputs=(),
                      log=logged.append)
    out = guide_plugin.run_step(model, config, ctx)
    assert out.model.weight[0].tolist() == pytest.approx([0.0, 0.9, 0.0, -0.8])
    assert model.weight[0, 0].item() == pytest.approx(0.1)  # the given model is left as it was
    assert "6 of 12" in logged[0] and "50%" in out.notes[0]


def test_every_training_config_shown_in_the_docs_is_valid():
    from torchslim.train import TrainConfig

    configs = [yaml.safe_load(b) for p in (DOCS / "training.md", DOCS / "guides" / "train.md")
               for b in _blocks(p.read_text(), "yaml")]
    assert len(configs) == 2
    for config in configs:
        TrainConfig(**config)
