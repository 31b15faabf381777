"""One typed config per export format, and per quantization flavour where it needs options.

A recipe's ``export`` step and ``torchslim export`` keep their flat spelling
(``{format: onnx, quantize: static, calibration_batches: 16, fallback: auto}``);
``parse_export_config`` picks the config class the format registered for that ``quantize`` /
``precision`` and pydantic validates it. The combination rules live with each class: its
``quantize`` and ``precision`` fields accept what that variant is, and its ``quantize_hint`` /
``precision_hint`` say the way out when a value belongs nowhere in the format. Options shared
with the ``quantize`` technique (``Calibration``, ``Int8Tuning``) are inherited, never redeclared.
"""

from __future__ import annotations

import types
import typing
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from torchslim.errors import ConfigError, config_error_from_pydantic
from torchslim.export._formats import FORMATS, ExportFormat, options_of
from torchslim.quantize import Calibration, Int8Tuning


def literal_values(annotation: Any) -> tuple[Any, ...] | None:
    """The values a ``Literal[...]`` (or ``Literal[...] | None``) annotation allows; None when
    the field takes any value of its type."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        values = [v for arg in typing.get_args(annotation) if arg is not type(None)
                  for v in (literal_values(arg) or ())]
        return tuple(values) or None
    return None


class ExportConfig(BaseModel):
    """The base of every format's config: the artifact's format, and how its weights are stored.

    A subclass narrows ``format`` / ``quantize`` / ``precision`` to ``Literal`` values (what
    the variant is) and inherits ``Calibration`` / ``Int8Tuning`` when it calibrates.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: str
    quantize: str = "none"
    precision: str | None = None  # None: the first precision the class accepts (fp32, or int8 when quantized)

    label: ClassVar[str] = ""  # how messages name this variant, e.g. "ONNX Runtime static"
    quantize_hint: ClassVar[str] = ""  # the way out when a format does not take a quantize value
    precision_hint: ClassVar[str] = ""
    quantize_as: ClassVar[str | None] = None  # the one spelling an alias becomes (openvino "int8" -> "static")

    @classmethod
    def accepts(cls, field: str, value: Any) -> bool:
        allowed = literal_values(cls.model_fields[field].annotation)
        return value is None or allowed is None or value in allowed

    @model_validator(mode="before")
    @classmethod
    def _belongs_here(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # a field not given is the class's default: OnnxStaticInt8Config() is quantize static
        fmt, quantize, precision = (data.get(f, cls.model_fields[f].default) for f in ("format", "quantize", "precision"))
        for field, value, hint in (("quantize", quantize, cls.quantize_hint), ("precision", precision, cls.precision_hint)):
            if not cls.accepts(field, value):
                raise ValueError(f"{field} {value!r}: export format {fmt!r} takes {field} "
                                 f"{', '.join(_format_takes(fmt, field))}. {hint}".rstrip(". "))
        for options, kind in ((Int8Tuning, "smoothquant and fallback"), (Calibration, "calibration_batches and batch_size")):
            given = [name for name in options.model_fields if name in data]
            if given and not issubclass(cls, options):
                raise ValueError(f"{kind} are options of calibrated int8: {_takers(options)}; got format {fmt!r}, "
                                 f"quantize {quantize!r} with {', '.join(given)}. Drop "
                                 f"{'it' if len(given) == 1 else 'them'} or export one of those")
        return data

    @model_validator(mode="after")
    def _fill(self) -> ExportConfig:
        # frozen model: the derived values are set once, here, before anyone reads them
        if self.quantize_as is not None:
            object.__setattr__(self, "quantize", self.quantize_as)
        if self.precision is None:
            allowed = literal_values(type(self).model_fields["precision"].annotation)
            object.__setattr__(self, "precision", allowed[0] if allowed else "fp32")
        return self

    def describe(self) -> str:
        """``export(format=onnx, quantize=static, precision=int8, fallback=auto)``, as the
        manifest's step history and the report record it."""
        parts = [f"format={self.format}"] + ([f"quantize={self.quantize}"] if self.quantize != "none" else [])
        parts.append(f"precision={self.precision}")
        if isinstance(self, Int8Tuning):
            parts += self.tuning_parts()
        shared = {"format", "quantize", "precision", *Int8Tuning.model_fields, *Calibration.model_fields}
        parts += [f"{k}={getattr(self, k)}" for k in type(self).model_fields if k not in shared
                  and k in self.model_fields_set]
        return "export(" + ", ".join(parts) + ")"


def _format_takes(fmt: Any, field: str) -> list[str]:
    """Every value of ``field`` some variant of format ``fmt`` takes (for the message)."""
    if not isinstance(fmt, str) or fmt not in FORMATS:
        return []
    return sorted({str(v) for c in FORMATS.get(fmt).configs for v in literal_values(c.model_fields[field].annotation)
                   or ()})


def _takers(options: type) -> str:
    """``ONNX Runtime static (format onnx, quantize static) or ...``: the registered variants
    that take an option group, as a message names them."""
    def spelled(c: type) -> str:
        fmt, quantize = (literal_values(c.model_fields[f].annotation) for f in ("format", "quantize"))
        return f"{c.label} (format {fmt[0] if fmt else '?'}, quantize {quantize[0] if quantize else '?'})"
    return " or ".join(spelled(c) for c in options_of(options))


class OnnxConfig(ExportConfig):
    """One self-contained fp32 ``.onnx`` file (``torch.onnx.export(dynamo=True)``); ONNX Runtime."""

    format: Literal["onnx"] = "onnx"
    quantize: Literal["none"] = "none"
    precision: Literal["fp32"] | None = None
    label: ClassVar[str] = "ONNX fp32"
    quantize_hint: ClassVar[str] = ("int8 ONNX is ONNX Runtime's quantize dynamic or static, or int8 weights with "
                                    "float compute: weight-only (OpenVINO's int8 is format openvino).")
    precision_hint: ClassVar[str] = ("For ONNX, int8 precision comes from quantize: dynamic, static or weight-only; fp16 engines "
                                     "need format tensorrt, bf16 format openvino.")


class OnnxDynamicInt8Config(OnnxConfig):
    """ONNX Runtime dynamic int8: int8 weights, activations quantized per batch at run time; no calibration."""

    quantize: Literal["dynamic"] = "dynamic"
    precision: Literal["int8"] | None = None
    label: ClassVar[str] = "ONNX Runtime dynamic"
    precision_hint: ClassVar[str] = "A quantized ONNX model is int8."


class OnnxWeightOnlyInt8Config(OnnxConfig):
    """int8 weights, float compute: every weight a layer reads stored per-channel int8 and folded
    back to float when the runtime loads the file (``torchslim.export._onnx_weights``): about 4x
    smaller than fp32 and as fast; no calibration. For models where int8 arithmetic does not pay."""

    quantize: Literal["weight-only"] = "weight-only"
    precision: Literal["int8"] | None = None
    label: ClassVar[str] = "ONNX int8 weights"
    precision_hint: ClassVar[str] = "Weight-only ONNX stores int8 weights (and computes in float)."


class OnnxStaticInt8Config(OnnxConfig, Calibration, Int8Tuning):
    """ONNX Runtime static int8 (QDQ, per-channel weights), activation ranges calibrated on the
    train split; SmoothQuant and accuracy-aware fallback (``torchslim.export._ort_static``)."""

    quantize: Literal["static"] = "static"
    precision: Literal["int8"] | None = None
    label: ClassVar[str] = "ONNX Runtime static"
    precision_hint: ClassVar[str] = "A quantized ONNX model is int8."


class AOTIConfig(ExportConfig):
    """An AOTInductor package (``.pt2``), compiled for the example inputs' device; runtime ``aoti``."""

    format: Literal["pt2"] = "pt2"
    quantize: Literal["none"] = "none"
    precision: Literal["fp32"] | None = None
    label: ClassVar[str] = "AOTInductor"
    quantize_hint: ClassVar[str] = "Quantize the model first with a quantize step (it compiles the quantized model)."
    precision_hint: ClassVar[str] = "A pt2 package keeps the model's own precision: cast or quantize it first."


class TensorRTConfig(ExportConfig):
    """A TensorRT engine (``.engine``) built from the ONNX model, fp32 or fp16; needs CUDA."""

    format: Literal["tensorrt"] = "tensorrt"
    quantize: Literal["none"] = "none"
    precision: Literal["fp32", "fp16"] | None = None
    label: ClassVar[str] = "TensorRT"
    quantize_hint: ClassVar[str] = "TensorRT has no dynamic quantization; use static (int8) or precision fp16."


class TensorRTInt8Config(TensorRTConfig, Calibration):
    """A TensorRT int8 engine from a QDQ ONNX model (ORT static, symmetric activations), calibrated."""

    quantize: Literal["static", "none"] = "static"  # precision int8 alone asks for it too
    precision: Literal["int8"] | None = None
    label: ClassVar[str] = "TensorRT int8"
    quantize_as: ClassVar[str | None] = "static"


class OpenVINOConfig(ExportConfig):
    """OpenVINO IR (``.xml`` + ``.bin``), fp32 or bf16 (a compile hint for the CPU plugin)."""

    format: Literal["openvino"] = "openvino"
    quantize: Literal["none"] = "none"
    precision: Literal["fp32", "bf16"] | None = None
    label: ClassVar[str] = "OpenVINO"
    quantize_hint: ClassVar[str] = "OpenVINO int8 is NNCF post-training quantization, calibrated: use quantize int8."
    precision_hint: ClassVar[str] = "OpenVINO int8 comes from quantize int8 (NNCF); fp16 engines need format tensorrt."


class OpenVINOInt8Config(OpenVINOConfig, Calibration, Int8Tuning):
    """NNCF post-training int8 of the OpenVINO IR, calibrated; SmoothQuant and fallback
    (``torchslim.export._openvino_quant``). ``quantize: int8`` (``static`` is the same)."""

    quantize: Literal["int8", "static"] = "int8"
    precision: Literal["int8"] | None = None
    label: ClassVar[str] = "OpenVINO's NNCF int8"
    precision_hint: ClassVar[str] = "An NNCF-quantized model is int8."
    quantize_as: ClassVar[str | None] = "static"


def parse_export_config(options: Any, where: str = "export step") -> ExportConfig:
    """A config from a recipe's options: a format name (``export: onnx``), a mapping of
    options, or a config; ConfigError naming the bad field otherwise."""
    if isinstance(options, ExportConfig):
        return options
    if options is None:
        options = {}
    elif isinstance(options, str):
        options = {"format": options}
    if not isinstance(options, dict):
        raise ConfigError(f"Invalid {where}: expected a format name or a mapping of options, got "
                          f"{type(options).__name__}.")
    options = {"format": "onnx", **options}
    if options["format"] == "aoti":  # the manifest's (and runtime's) name for a pt2 package
        options["format"] = "pt2"
    fmt = options["format"]
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ConfigError(f"Invalid {where}: format: Unknown export format {fmt!r}. Use one of: "
                          f"{', '.join(FORMATS)} (a plug-in adds one with torchslim.export.register_format).")
    try:
        return FORMATS.get(fmt).config_for(options)(**options)
    except ValidationError as e:
        rules = [err for err in e.errors() if err["type"] == "value_error" and not err["loc"]]
        if not rules:
            raise config_error_from_pydantic(e, where) from None
        # a combination rule of the config: its message names the fields and the way out
        raise ConfigError(f"Invalid {where}: {rules[0]['msg'].removeprefix('Value error, ')}.") from None


# The built-in formats (a plug-in calls torchslim.export.register_format with the same entry).
# Writers are imported on first use: onnx, openvino and tensorrt cost seconds to import.
for _entry in (
    ExportFormat("onnx", "onnxruntime", ".onnx", (OnnxConfig, OnnxDynamicInt8Config, OnnxStaticInt8Config,
                                                      OnnxWeightOnlyInt8Config),
                 "torchslim.export._onnx:write_onnx", "one .onnx file; ONNX Runtime (+ ORT int8)"),
    ExportFormat("pt2", "aoti", ".pt2", (AOTIConfig,), "torchslim.export._aoti:write_aoti", "an AOTInductor package"),
    ExportFormat("tensorrt", "tensorrt", ".engine", (TensorRTConfig, TensorRTInt8Config),
                 "torchslim.export._tensorrt:write_tensorrt", "a TensorRT engine (CUDA)"),
    ExportFormat("openvino", "openvino", ".xml", (OpenVINOConfig, OpenVINOInt8Config),
                 "torchslim.export._openvino:write_openvino", "OpenVINO IR (.xml + .bin) (+ NNCF int8)"),
):
    FORMATS.register(_entry.name, _entry)
