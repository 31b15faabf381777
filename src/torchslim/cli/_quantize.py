"""``torchslim quantize``: one quantization method, one artifact, measured against fp32."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize_cmd)


def quantize_cmd(
    model: Annotated[str, typer.Option(help="MODEL spec")] = "digits-cnn",
    data: Annotated[str, typer.Option(help="DATA spec (train split calibrates; test split measures)")] = "digits",
    method: Annotated[str, typer.Option(help="dynamic, static, qat, weight-only, int4, bf16 or fp16")] = "static",
    calibration_batches: Annotated[int | None, typer.Option(help="train batches observed (static, qat)")] = None,
    skip: Annotated[str | None, typer.Option(help="comma-separated module or class names left in float")] = None,
    epochs: Annotated[int | None, typer.Option(help="fine-tuning epochs (qat)")] = None,
    lr: Annotated[float | None, typer.Option(help="fine-tuning learning rate (qat)")] = None,
    out: Annotated[str | None, typer.Option(help="output directory (default runs/quantize-<timestamp>)")] = None,
    runtime: Annotated[str | None, typer.Option(help="eager or compile (default: where the method is fast)")] = None,
    weights: Annotated[str | None, typer.Option(help="state_dict for a factory model")] = None,
    batch_sizes: Annotated[str, typer.Option(help="comma-separated batch sizes to time")] = "1,32",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "cpu",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Quantize a model with one method, save the artifact and compare it with fp32."""
    from datetime import datetime
    from pathlib import Path

    from torchslim._log import say
    from torchslim.artifacts import load, save_exported
    from torchslim.bench import measure, set_threads
    from torchslim.bench._counting import count_params
    from torchslim.cli._common import parse_batch_sizes
    from torchslim.device import resolve_device
    from torchslim.errors import ConfigError
    from torchslim.quantize import fast_runtime, parse_config, quantize
    from torchslim.specs import resolve

    options: dict = {"method": method}
    for key, value in (("calibration_batches", calibration_batches), ("epochs", epochs), ("lr", lr)):
        if value is not None:
            options[key] = value
    if skip:
        options["skip"] = skip
    config = parse_config(options, "--method options")
    if runtime is not None and runtime not in ("eager", "compile"):
        raise ConfigError(f"--runtime {runtime!r}: quantized .pt2 artifacts run on 'eager' or 'compile'.")
    sizes = parse_batch_sizes(batch_sizes)
    run_on = runtime or fast_runtime(config.method)
    out_dir = Path(out) if out else Path("runs") / f"quantize-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    dev = resolve_device(device)
    set_threads()
    handle, bundle = resolve(model, data, weights=weights, device=dev, seed=seed, log=say)
    example = tuple(t.to(dev) for t in bundle.example_inputs(2))
    say(f"quantizing {model} with {config.describe()}")
    quantized = quantize(handle.model, config, data=bundle, example_inputs=example, device=dev, seed=seed, log=say)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = save_exported(quantized, out_dir / f"{config.method}.pt2", example, runtime=run_on,
                             task=bundle.task, steps=[config.describe()])
    baseline = save_exported(handle.model, out_dir / "baseline.pt2", example, task=bundle.task)
    reference = handle.model if bundle.task == "embedding" else None
    rows = []
    for name, path, rt, params in (("fp32", baseline, "eager", count_params(handle.model)),
                                   (config.method, artifact, run_on, None)):
        say(f"measuring {name} on {rt}")
        fn = load(path, runtime=rt, device=dev)
        rows.append((name, measure(fn, bundle, artifact=path, runtime=rt, batch_sizes=sizes, device=dev,
                                   reference=reference, params=params, progress=say)))
    _print(rows, sizes, bundle.metric, artifact)


def _print(rows, sizes, metric: str, artifact) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"quantized artifact: {artifact}")
    for col in ("variant", "runtime", metric, "size on disk", *[f"p50 b={b}" for b in sizes], f"speed-up b={sizes[-1]}"):
        table.add_column(col, justify="left" if col in ("variant", "runtime") else "right")
    base = rows[0][1]
    for name, m in rows:
        lat = [m.latency_ms[str(b)].p50 for b in sizes]
        speedup = base.latency_ms[str(sizes[-1])].p50 / lat[-1]
        table.add_row(name, m.runtime, f"{m.accuracy * 100:.2f} %", f"{m.size_bytes:,} B",
                      *[f"{x:.3f} ms" for x in lat], f"{speedup:.2f}x")
    Console().print(table)
    quant = rows[1][1]
    if quant.latency_ms[str(sizes[-1])].p50 >= base.latency_ms[str(sizes[-1])].p50:
        Console().print(f"note: {rows[1][0]} on {quant.runtime} is not faster than fp32 here (measured above).")
