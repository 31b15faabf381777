"""What ``optimize`` checks before it starts (the Python API's argument types) and, with
``--resume``, before it reuses anything from a run directory.

A resumed run must be the same run: another model, data set or recipe is refused in words
(before any weights of the old run are loaded into the new model). A reused measurement is
only as good as its artifact: one that is gone or whose bytes no longer match the digest in
its manifest is measured again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch.nn as nn

from torchslim.artifacts import read_manifest
from torchslim.core.log import say
from torchslim.core.rundir import confined
from torchslim.data import DATA_SPEC_HELP, DataBundle
from torchslim.errors import ArtifactError, ConfigError, SpecError
from torchslim.report import Report
from torchslim.specs import MODEL_SPEC_HELP


def check_model_and_data(model, data) -> None:
    """The Python API's types, named before any work (a wrong one is not an AttributeError later)."""
    if not isinstance(model, (str, nn.Module)):
        raise SpecError(f"model must be a MODEL spec string or an nn.Module, got {type(model).__name__}. "
                        f"{MODEL_SPEC_HELP}")
    if not isinstance(data, (str, DataBundle)):
        raise SpecError(f"data must be a DATA spec string or a DataBundle, got {type(data).__name__}. {DATA_SPEC_HELP}")


def check_same_run(previous: Report, model, data, recipe: str | None, run_dir: Path) -> None:
    model_name = f"python:{type(model).__name__}" if isinstance(model, nn.Module) else str(model)
    data_name = data.spec if isinstance(data, DataBundle) else str(data).strip()
    differences = []
    if previous.model != model_name:
        differences.append(f"it optimized the model {previous.model}, not {model_name}")
    if previous.data not in (data_name, str(data)):
        differences.append(f"it used the data {previous.data}, not {data_name}")
    if previous.recipe is not None and recipe is not None and previous.recipe != recipe:
        differences.append(f"it ran the recipe {previous.recipe}, not {recipe}")
    if differences:
        raise ConfigError(f"Cannot resume {str(run_dir)!r}: {'; '.join(differences)}. Resume with the same "
                          "--model, --data and --recipe, or choose a new --out directory for the new run.")


def verified_artifact(run_dir: Path, artifact: str | None, label: str) -> bool:
    """True when ``run_dir/artifact`` exists and matches its manifest's digest; else says why."""
    if not artifact:
        return False
    path = confined(run_dir, artifact)
    if path is None:  # an edited report.json: never reported, loaded or measured from outside --out
        say(f"{label}: its artifact path {artifact!r} in report.json leads out of the run directory; "
            "building and measuring it again")
        return False
    try:
        read_manifest(path)
        return True
    except ArtifactError as e:
        say(f"{label}: its artifact cannot be reused ({e.message}); measuring it again")
        return False


def interrupted(message: str) -> None:
    """The resume hint on stderr as well as in run.log (``say`` prints only on a terminal)."""
    say(message)
    if not sys.stderr.isatty():
        print(message, file=sys.stderr)
