"""``torchslim export``: one model -> one deployable artifact (ONNX, AOTInductor, TensorRT, OpenVINO)."""

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
    format: Annotated[str, typer.Option("--format", help="onnx, pt2 (AOTInductor), tensorrt or openvino")] = "onnx",
    quantize: Annotated[str, typer.Option(help="none, dynamic or static (ONNX Runtime int8; static: tensorrt int8); openvino: int8 (NNCF)")] = "none",
    calibration_batches: Annotated[int, typer.Option(help="train batches to calibrate static int8", min=1)] = 16,
    precision: Annotated[str | None, typer.Option(help="fp32, fp16, bf16 or int8 (fp16: tensorrt, bf16: openvino); default follows --quantize")] = None,
    smoothquant: Annotated[str | None, typer.Option(help="calibrated int8 (onnx static, openvino int8): SmoothQuant alpha in [0, 1] or auto")] = None,
    fallback: Annotated[str | None, typer.Option(help="calibrated int8: 'auto' keeps the layers that cost the most on --data's validation split in float")] = None,
    fallback_target_drop: Annotated[float, typer.Option(help="points of accuracy (fidelity x 100) the fallback stops at")] = 0.5,
    fallback_max_layers: Annotated[int, typer.Option(help="most layers the fallback tries in float")] = 8,
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
    from torchslim.export import check_combination, export, output_path, resolve_format
    from torchslim.specs import resolve

    chosen = resolve_format(format, None)
    quantize, precision = check_combination(chosen, quantize, precision)  # bad options fail before training
    tuning = _tuning(chosen, quantize, smoothquant, fallback, fallback_target_drop, fallback_max_layers)
    dev = resolve_device(device)
    if chosen in ("onnx", "openvino"):
        dev = resolve_device("cpu")
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model.removeprefix("hf:")).name.split(":")[-1]).strip("-") or "model"
    target = out or Path("exports") / "-".join([label, chosen] + ([quantize] if quantize != "none" else []) +
                                               ([precision] if chosen == "tensorrt" else []))
    claim_output_file(output_path(target, chosen))  # no overwriting, no unwritable --out: before any work
    handle, bundle = resolve(model, data, weights=weights, device=dev, seed=seed, log=say)
    example = tuple(t.to(dev) for t in bundle.example_inputs(2))
    input_names = getattr(handle.hf, "input_names", None)
    path = export(handle.model, target, example, format=chosen, task=bundle.task, input_names=input_names,
                  quantize=quantize, calibration=bundle if quantize == "static" else None,
                  calibration_batches=calibration_batches, precision=precision, log=say, **tuning)
    manifest = read_manifest(path)
    parity = manifest.extra.get("parity", {})
    # Plain lines (no wrapping): scripts read the path back.
    typer.echo(f"wrote {path} ({artifact_size(path):,} bytes, {manifest.format}, runs on {manifest.runtime})")
    typer.echo(f"parity with PyTorch: max |diff| {parity.get('max_abs_diff', float('nan')):.3g}, mean cosine "
               f"{parity.get('cosine', float('nan')):.5f} (tolerance: {parity.get('tolerance', '?')})")


def _tuning(format: str, quantize: str, smoothquant: str | None, fallback: str | None, target_drop: float,
            max_layers: int) -> dict[str, Any]:
    """``export``'s smoothquant/fallback keywords from the options; ConfigError (exit 2) on a
    bad value or a format/quantize that does not take them."""
    from torchslim.errors import ConfigError
    from torchslim.export import StaticOptions, check_tuning

    alpha: float | str | None = smoothquant
    if smoothquant is not None and smoothquant != "auto":
        try:
            alpha = float(smoothquant)
        except ValueError:
            raise ConfigError(f"--smoothquant {smoothquant!r}: use a migration strength alpha in [0, 1] "
                              "(e.g. 0.5) or auto.") from None
    if fallback is not None and fallback != "auto":
        raise ConfigError(f"--fallback {fallback!r}: the one fallback is auto (leave the option out for none).")
    options = StaticOptions(alpha, fallback, target_drop, max_layers)  # validates the values
    check_tuning(format, quantize, options != StaticOptions())
    return {"smoothquant": alpha, "fallback": fallback, "fallback_target_drop": target_drop,
            "fallback_max_layers": max_layers}
