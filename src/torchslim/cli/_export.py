"""``torchslim export``: one model -> one deployable artifact (ONNX, AOTInductor, TensorRT, OpenVINO,
or a format a plug-in registered)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from torchslim.cli._common import SeedOption


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)


def export_cmd(
    model: Annotated[str, typer.Option(help="MODEL spec")] = "digits-cnn",
    data: Annotated[str, typer.Option(help="DATA spec (example inputs, calibration)")] = "digits",
    format: Annotated[str, typer.Option("--format", help="onnx, pt2 (AOTInductor), tensorrt, openvino or a plug-in's format")] = "onnx",
    quantize: Annotated[str, typer.Option(help="none, dynamic or static (ONNX Runtime int8; static: tensorrt int8), weight-only (onnx: int8 weights, float compute); openvino: int8 (NNCF)")] = "none",
    calibration_batches: Annotated[int | None, typer.Option(help="train batches to calibrate static int8 [default: 16]")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32, fp16, bf16 or int8 (fp16: tensorrt, bf16: openvino); default follows --quantize")] = None,
    smoothquant: Annotated[str | None, typer.Option(help="calibrated int8 (onnx static, openvino int8): SmoothQuant alpha in [0, 1] or auto")] = None,
    fallback: Annotated[str | None, typer.Option(help="calibrated int8: 'auto' keeps the layers that cost the most on --data's validation split in float")] = None,
    fallback_target_drop: Annotated[float | None, typer.Option(help="points of accuracy (fidelity x 100) the fallback stops at [default: 0.5]")] = None,
    fallback_max_layers: Annotated[int | None, typer.Option(help="most layers the fallback tries in float [default: 8]")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder or file (default exports/<model>-<format>)")] = None,
    weights: Annotated[str | None, typer.Option(help="state_dict for a factory model")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda: where a pt2 package runs (ONNX is device-free)")] = "auto",
    seed: SeedOption = 0,
) -> None:
    """Export a model to a deployable file; prints its path, size and output parity."""
    from torchslim.artifacts import artifact_size, read_manifest
    from torchslim.core.device import resolve_device
    from torchslim.core.log import say
    from torchslim.core.rundir import claim_output_file
    from torchslim.errors import ConfigError
    from torchslim.export import ArtifactInfo, export, output_path, parse_export_config
    from torchslim.quantize import Calibration
    from torchslim.specs import resolve

    if fallback is not None and fallback != "auto":
        raise ConfigError(f"--fallback {fallback!r}: the one fallback is auto (leave the option out for none).")
    options: dict[str, Any] = {"format": format, "quantize": quantize, "precision": precision,
                               "calibration_batches": calibration_batches, "smoothquant": _alpha(smoothquant),
                               "fallback": fallback, "fallback_target_drop": fallback_target_drop,
                               "fallback_max_layers": fallback_max_layers}
    # Options left out take the config's defaults; a given one the variant does not take is an error.
    config = parse_export_config({k: v for k, v in options.items() if v is not None}, "export options")
    dev = resolve_device(device)
    if config.format in ("onnx", "openvino"):
        dev = resolve_device("cpu")
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model.removeprefix("hf:")).name.split(":")[-1]).strip("-") or "model"
    target = out or Path("exports") / "-".join([label, config.format] + ([config.quantize] if config.quantize != "none"
                                                                          else []) +
                                               ([config.precision] if config.format == "tensorrt" else []))
    claim_output_file(output_path(target, config.format))  # no overwriting, no unwritable --out: before any work
    handle, bundle = resolve(model, data, weights=weights, device=dev, seed=seed, log=say)
    example = tuple(t.to(dev) for t in bundle.example_inputs(2))
    info = ArtifactInfo(bundle.task, getattr(handle.hf, "input_names", None))
    path = export(handle.model, target, example, config, data=bundle if isinstance(config, Calibration) else None,
                  info=info, log=say)
    manifest = read_manifest(path)
    parity = manifest.extra.get("parity", {})
    # Plain lines (no wrapping): scripts read the path back.
    typer.echo(f"wrote {path} ({artifact_size(path):,} bytes, {manifest.format}, runs on {manifest.runtime})")
    typer.echo(f"parity with PyTorch: max |diff| {parity.get('max_abs_diff', float('nan')):.3g}, mean cosine "
               f"{parity.get('cosine', float('nan')):.5f} (tolerance: {parity.get('tolerance', '?')})")


def _alpha(smoothquant: str | None) -> float | str | None:
    """``--smoothquant`` as the config takes it: a number or auto; ConfigError (exit 2) otherwise."""
    from torchslim.errors import ConfigError

    if smoothquant is None or smoothquant == "auto":
        return smoothquant
    try:
        return float(smoothquant)
    except ValueError:
        raise ConfigError(f"--smoothquant {smoothquant!r}: use a migration strength alpha in [0, 1] "
                          "(e.g. 0.5) or auto.") from None
