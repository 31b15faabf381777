from __future__ import annotations

from typing import Annotated

import typer

from torchslim.cli._common import DataSpec, Device, SeedOption, Weights, parse_batch_sizes


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)


def bench_cmd(
    model: Annotated[str, typer.Option(help="MODEL spec or a saved artifact (.pt2, .onnx, .tslim)")] = "digits-cnn",
    data: DataSpec = "digits",
    weights: Weights = None,
    batch_sizes: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1,32",
    runtime: Annotated[str | None, typer.Option(help="eager, compile, aoti, onnxruntime, tensorrt")] = None,
    device: Device = "auto",
    seed: SeedOption = 0,
) -> None:
    """Measure accuracy, size, params, MACs, latency, throughput and peak memory."""
    from rich.console import Console
    from rich.table import Table

    from torchslim.bench import benchmark
    from torchslim.core.log import say

    sizes = parse_batch_sizes(batch_sizes)
    m = benchmark(model, data, batch_sizes=sizes, runtime=runtime, device=device, weights=weights, seed=seed, progress=say)
    table = Table(title=f"{model} on {data} ({m.runtime})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("accuracy", f"{m.accuracy * 100:.2f} %")
    table.add_row("size on disk", f"{m.size_bytes:,} B")
    table.add_row("params", f"{m.params:,}")
    table.add_row("MACs", f"{m.macs:,}" if m.macs is not None else "n/a")
    for b, lat in m.latency_ms.items():
        table.add_row(f"latency b={b}", f"p50 {lat.p50:.3f} ms  p95 {lat.p95:.3f} ms  cv {lat.cv:.2f}")
    table.add_row("throughput", f"{m.throughput_per_s:,.0f} samples/s (b={max(sizes)})")
    table.add_row("peak memory", f"{m.peak_memory_bytes / 2**20:.1f} MiB")
    Console().print(table)
