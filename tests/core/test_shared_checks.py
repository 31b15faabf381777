"""Helpers that used to be copied per package, now one each: option parsing of the technique
configs (``errors.validate_options``), the runtimes' format check (``runtime._check``) and
reading weights without unpickling (``core.model.read_safely``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from torchslim.core.model import read_safely
from torchslim.distill import parse_distill_config
from torchslim.errors import ArtifactError, ConfigError
from torchslim.factorize import validate_config as factorize_config
from torchslim.runtime import get_runtime, list_runtimes
from torchslim.share import validate_config as share_config
from torchslim.share import validate_encode_step
from torchslim.train import validate_step as finetune_step

PARSERS = {
    "factorize": (factorize_config, {"energy": 2.0}, "energy"),
    "share": (share_config, {"bits": 0}, "bits"),
    "distill": (parse_distill_config, {"alpha": 3.0}, "alpha"),
    "finetune": (finetune_step, {"epochs": -1}, "epochs"),
    "encode": (validate_encode_step, {"method": "zip"}, "method"),
}


@pytest.mark.parametrize("name", PARSERS)
def test_every_technique_config_parses_the_same_way(name):
    parse, bad, field = PARSERS[name]
    default = parse(None)  # None: all defaults
    assert parse(default) is default  # a config object passes through
    with pytest.raises(ConfigError, match=rf"Invalid .*{field}"):
        parse(bad)
    with pytest.raises(ConfigError, match="expected a mapping like .* got list"):
        parse([1, 2])


@pytest.mark.parametrize("name", [n for n in list_runtimes() if n != "tensorrt"])  # tensorrt runs two formats
def test_a_runtime_refuses_another_format_naming_both(name):
    manifest = SimpleNamespace(format="nope", runtime="elsewhere")
    with pytest.raises(ArtifactError, match=rf"The {name} runtime runs .*not 'nope' artifacts .*'elsewhere'"):
        get_runtime(name).load(Path("model.bin"), manifest)


def test_read_safely_names_the_problem_and_the_advice(tmp_path):
    broken = tmp_path / "w.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match=r"^Cannot read w\.pt \(\w+: .*\)\. Give a state_dict\.$"):
        read_safely(broken, "Cannot read w.pt", "Give a state_dict.")
