"""The export formats registry and its typed configs: a plug-in format works end to end (the
verb, ``torchslim export --format`` and a recipe's ``export`` step), every registered variant
validates, the combination rules say the way out, and no option is declared twice."""

from __future__ import annotations

import typing
from typing import Any, ClassVar, Literal

import pytest
import torch
import torch.nn as nn

import torchslim
from torchslim.artifacts import load, read_manifest, save_exported
from torchslim.data import load_data
from torchslim.errors import ConfigError
from torchslim.export import (
    FORMATS,
    ArtifactInfo,
    ExportConfig,
    ExportFormat,
    export,
    parse_export_config,
    register_format,
    unregister_format,
)
from torchslim.export._config import literal_values
from torchslim.quantize import Calibration, Int8Tuning, QuantizeConfig

# --- a plug-in format, registered from outside torchslim ------------------------------------------


class ProgramConfig(ExportConfig):
    """A torch.export ExportedProgram (``.pt2``, no TorchScript, no compilation), run eagerly."""

    format: Literal["exported-program"] = "exported-program"
    quantize: Literal["none"] = "none"
    precision: Literal["fp32"] | None = None
    label: ClassVar[str] = "ExportedProgram"
    quantize_hint: ClassVar[str] = "Quantize the model first with a quantize step; this format saves it as it is."


def write_program(module, path, example_inputs, config, *, data, info: ArtifactInfo, log):
    log(f"saving an ExportedProgram ({config.describe()})")
    return save_exported(module.eval(), path, example_inputs, runtime="eager", task=info.task, steps=info.steps,
                         input_names=info.input_names)


@pytest.fixture
def program_format():
    entry = register_format(ExportFormat("exported-program", "eager", ".pt2", (ProgramConfig,), write_program,
                                         "a torch.export program (tests)"))
    yield entry
    unregister_format("exported-program")
    assert "exported-program" not in FORMATS


def test_a_plugin_format_through_the_verb(program_format, tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    example = (torch.randn(2, 1, 8, 8),)
    path = export(model, tmp_path, example, "exported-program")
    assert path == tmp_path / "model.pt2"
    manifest = read_manifest(path)
    assert (manifest.format, manifest.runtime) == ("exported", "eager")
    assert manifest.steps == ["export(format=exported-program, precision=fp32)"]
    x = torch.randn(5, 1, 8, 8)  # another batch size: the program's batch axis is dynamic
    assert torch.allclose(load(path)(x), model(x), atol=1e-6)


def test_a_plugin_format_through_the_cli(program_format, tmp_path, capsys):
    from torchslim.cli import run

    out = tmp_path / "cli"
    assert run(["export", "--model", "digits-mlp", "--format", "exported-program", "--out", str(out)]) == 0
    path = out / "model.pt2"
    assert f"wrote {path}" in capsys.readouterr().out
    assert read_manifest(path).runtime == "eager"
    assert load(path)(*read_manifest(path).example_inputs(3)).shape == (3, 10)
    # The plug-in's own rule, as a built-in's: exit 2, the way out named, nothing written.
    assert run(["export", "--model", "digits-mlp", "--format", "exported-program", "--quantize", "dynamic",
                "--out", str(tmp_path / "bad")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "quantize 'dynamic'" in err and "Quantize the model first" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_a_plugin_format_as_a_recipe_step(program_format, tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    recipe = {"candidates": [{"name": "program", "steps": [{"export": {"format": "exported-program"}}]}]}
    report = torchslim.optimize(model, load_data("digits"), recipe,
                                run=torchslim.RunOptions(out=tmp_path / "run", device="cpu", html=False),
                                measure=torchslim.MeasureOptions(batch_sizes=(1,)))
    cand = report.candidate("program")
    assert cand.status == "ok", cand.error
    assert cand.metrics.runtime == "eager" and cand.steps == ["export(format=exported-program)"]
    artifact = tmp_path / "run" / cand.artifact
    assert artifact.suffix == ".pt2" and read_manifest(artifact).format == "exported"
    assert read_manifest(artifact).steps == ["export(format=exported-program, precision=fp32)"]
    with pytest.raises(ConfigError, match="Unknown export format 'nope'"):
        torchslim.optimize(model, load_data("digits"), recipe={"candidates": [
            {"name": "x", "steps": [{"export": {"format": "nope"}}]}]}, run=torchslim.RunOptions(out=tmp_path / "bad", device="cpu"))


# --- every registered variant, and the combination rules -----------------------------------------


def _variants() -> list[tuple[str, type, dict[str, Any]]]:
    """(format, class, options) for every quantize x precision value each registered class takes."""
    out = []
    for name in FORMATS:
        for cls in FORMATS.get(name).configs:
            for quantize in literal_values(cls.model_fields["quantize"].annotation) or ("none",):
                for precision in [None, *(literal_values(cls.model_fields["precision"].annotation) or ())]:
                    if precision is None and quantize == "none" and cls is not FORMATS.get(name).configs[0]:
                        continue  # quantize none alone is the default variant (tensorrt int8 needs precision int8)
                    out.append((name, cls, {"format": name, "quantize": quantize}
                                | ({"precision": precision} if precision else {})))
    return out


@pytest.mark.parametrize("fmt, cls, options", _variants(), ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_every_registered_variant_parses_to_its_class(fmt, cls, options):
    config = parse_export_config(options)
    assert type(config) is cls and config.format == fmt
    assert config.precision in (literal_values(cls.model_fields["precision"].annotation) or (config.precision,))
    assert parse_export_config(config.model_dump(exclude_unset=True) | {"format": fmt}) == config
    assert config.describe().startswith(f"export(format={fmt}")


@pytest.mark.parametrize("cls", [c for name in FORMATS for c in FORMATS.get(name).configs], ids=lambda c: c.__name__)
def test_every_config_class_constructs_with_its_defaults(cls):
    """The typed spelling: OnnxStaticInt8Config() is static ONNX, as its fields' defaults say."""
    config = cls()
    assert config.format == cls.model_fields["format"].default
    assert parse_export_config(config.model_dump()) == config


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_takes_its_name_alone_and_refuses_an_unknown_option(name):
    config = parse_export_config(name)
    assert type(config) is FORMATS.get(name).configs[0] and config.quantize == "none"
    with pytest.raises(ConfigError, match="colour"):
        parse_export_config({"format": name, "colour": "red"})


@pytest.mark.parametrize("options, words", [
    ({"format": "pt2", "quantize": "static"}, ["quantize 'static'", "takes quantize none", "quantize step"]),
    ({"format": "onnx", "quantize": "int8"}, ["quantize 'int8'", "dynamic, none, static", "format openvino"]),
    ({"format": "openvino", "quantize": "dynamic"}, ["quantize 'dynamic'", "use quantize int8"]),
    ({"format": "tensorrt", "quantize": "dynamic"}, ["TensorRT has no dynamic quantization"]),
    ({"format": "onnx", "precision": "bf16"}, ["precision 'bf16'", "bf16 format openvino"]),
    ({"format": "onnx", "quantize": "dynamic", "precision": "fp32"}, ["precision 'fp32'", "is int8"]),
    ({"format": "openvino", "precision": "fp16"}, ["precision 'fp16'", "format tensorrt"]),
    ({"format": "onnx", "quantize": "dynamic", "fallback": "auto"},
     ["smoothquant and fallback are options of calibrated int8", "ONNX Runtime static (format onnx, quantize static)",
      "OpenVINO's NNCF int8 (format openvino, quantize int8)", "with fallback"]),
    ({"format": "tensorrt", "precision": "int8", "smoothquant": 0.5}, ["smoothquant and fallback"]),
    ({"format": "pt2", "calibration_batches": 4}, ["calibration_batches and batch_size", "TensorRT int8"]),
    ({"format": "onnx", "quantize": "static", "smoothquant": 1.5}, ["smoothquant", "alpha in [0, 1]"]),
    ({"format": "openvino", "quantize": "int8", "fallback_max_layers": 0}, ["fallback_max_layers"]),
])
def test_combination_rules_name_the_field_and_the_way_out(options, words):
    with pytest.raises(ConfigError) as info:
        parse_export_config(options)
    assert all(w in info.value.message for w in words), info.value.message


def test_quantizing_an_onnx_file_takes_the_same_configs(tmp_path):
    from torchslim.export import quantize_onnx

    with pytest.raises(ConfigError, match="need the PyTorch model"):  # refused before any file is read
        quantize_onnx(tmp_path / "none.onnx", tmp_path / "out", {"quantize": "static", "fallback": "auto"})
    with pytest.raises(ConfigError, match="use quantize dynamic, static or weight-only"):
        quantize_onnx(tmp_path / "none.onnx", tmp_path / "out", "none")


def test_variants_fill_what_follows_from_the_others():
    assert parse_export_config({"format": "tensorrt", "precision": "int8"}).quantize == "static"
    assert parse_export_config({"format": "tensorrt", "quantize": "static"}).precision == "int8"
    assert parse_export_config({"format": "openvino", "quantize": "int8"}).quantize == "static"
    assert parse_export_config({"format": "aoti"}).format == "pt2"
    config = parse_export_config({"format": "onnx", "quantize": "static", "smoothquant": "0.5", "batch_size": 8})
    assert config.smoothquant == 0.5 and config.batch_size == 8 and config.tuning() == Int8Tuning(smoothquant=0.5)


# --- one declaration per option --------------------------------------------------------------------

# The variant keys: every class narrows them to the values that make it that variant.
_DISCRIMINATORS = {"method", "format", "quantize", "precision"}


def _int8_config_classes() -> list[type]:
    quantize = list(typing.get_args(typing.get_args(QuantizeConfig)[0]))
    export = [c for name in FORMATS for c in FORMATS.get(name).configs]
    return [*quantize, *export, Int8Tuning, Calibration]


def test_no_option_is_declared_twice():
    """A shared option (SmoothQuant, fallback, calibration) lives in exactly one model, which
    every config that takes it inherits: the ``quantize`` step's static int8, ONNX Runtime
    static, OpenVINO's NNCF int8 and TensorRT int8 cannot drift apart."""
    declared: dict[str, list[str]] = {}
    for cls in {c for klass in _int8_config_classes() for c in klass.__mro__ if hasattr(c, "model_fields")}:
        for name in vars(cls).get("__annotations__", {}):
            if name in cls.model_fields and name not in _DISCRIMINATORS:
                declared.setdefault(name, []).append(cls.__name__)
    twice = {name: owners for name, owners in declared.items() if len(owners) > 1}
    assert twice == {}
    assert {n: declared[n] for n in Int8Tuning.model_fields} == {n: ["Int8Tuning"] for n in Int8Tuning.model_fields}
    takes_tuning = {c.__name__ for c in _int8_config_classes() if issubclass(c, Int8Tuning) and c is not Int8Tuning}
    assert takes_tuning == {"StaticInt8Config", "OnnxStaticInt8Config", "OpenVINOInt8Config"}


def test_the_cli_flags_are_the_configs_fields():
    """``torchslim export``'s option flags are fields of the configs (spelled the same), not a
    sixth declaration with its own bounds."""
    import inspect

    from torchslim.cli._export import export_cmd

    fields = {f for c in _int8_config_classes() for f in c.model_fields}
    flags = set(inspect.signature(export_cmd).parameters) - {"model", "data", "out", "weights", "device", "seed"}
    assert flags <= fields, flags - fields
