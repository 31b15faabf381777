"""``torchslim prune`` and ``torchslim distill``: one technique, one artifact, measured
side by side with the model it came from."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from torchslim.cli._common import parse_batch_sizes


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_cmd)
    app.command("distill")(distill_cmd)


def prune_cmd(
    model: Annotated[str, typer.Option(help="MODEL spec: zoo name, file.py:factory, module:factory")] = "digits-cnn",
    data: Annotated[str, typer.Option(help="DATA spec")] = "digits",
    method: Annotated[str, typer.Option(help="magnitude (L1 per layer), global (L1 across layers) or channel (structured)")] = "channel",
    ratio: Annotated[float, typer.Option(help="fraction of weights/channels removed, in [0, 1)")] = 0.5,
    importance: Annotated[str, typer.Option(help="l1, l2 or taylor (taylor: channel only)")] = "l1",
    scope: Annotated[str | None, typer.Option(help="channel only: uniform (same ratio per layer) or global")] = None,
    iterations: Annotated[int, typer.Option(help="prune -> fine-tune rounds toward the ratio")] = 1,
    finetune_epochs: Annotated[int, typer.Option(help="fine-tuning epochs after each round (distilled from the original)")] = 0,
    ignore: Annotated[str, typer.Option(help="comma-separated module names never pruned")] = "",
    weights: Annotated[str | None, typer.Option(help="state_dict for a factory model")] = None,
    out: Annotated[str | None, typer.Option(help="output directory (default runs/prune-<timestamp>)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    batch_sizes: Annotated[str, typer.Option(help="batch sizes to time")] = "1,32",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Prune a model; write the pruned artifact and compare it with the original."""
    import torch

    from torchslim._log import say
    from torchslim.artifacts import save_exported
    from torchslim.bench import set_threads
    from torchslim.device import resolve_device
    from torchslim.prune import parse_prune_config, prune, zero_fraction
    from torchslim.share import save_tslim
    from torchslim.specs import resolve

    options = {"method": method, "ratio": ratio, "importance": importance, "iterations": iterations,
               "finetune_epochs": finetune_epochs, "ignore": [n.strip() for n in ignore.split(",") if n.strip()]}
    if scope is not None:
        options["scope"] = scope
    config = parse_prune_config(options, where="prune options")  # bad options fail before any work
    sizes = parse_batch_sizes(batch_sizes)
    dev = resolve_device(device)
    set_threads()
    torch.manual_seed(seed)
    out_dir = _out_dir(out, "prune")
    handle, bundle = resolve(model, data, weights=weights, device=dev, seed=seed, log=say)
    example = tuple(t.to(dev) for t in bundle.example_inputs(2))
    teacher = handle.model if config.finetune_epochs > 0 else None
    pruned = prune(handle.model, config, data=bundle, example_inputs=example, device=dev, teacher=teacher, seed=seed, log=say)
    steps = [config.describe()]
    names = handle.hf.input_names if handle.hf is not None else None  # e.g. input_ids, attention_mask
    baseline_path = save_exported(handle.model, out_dir / "original.pt2", example, task=bundle.task, input_names=names)
    notes = []
    if config.method in ("magnitude", "global"):
        # Unstructured zeros only shrink a file that stores them sparsely: the .tslim container
        # keeps the nonzeros and Huffman-coded gaps, and decodes to a dense model at load.
        pruned_path = save_tslim(pruned, out_dir / "pruned.tslim", example_inputs=example, task=bundle.task, steps=steps)
        notes.append(f"measured sparsity: {zero_fraction(pruned):.1%} of Linear/Conv weights are exactly zero (no masks or hooks left).")
        notes.append("pruned.tslim stores only the nonzeros; it is decoded to dense weights at load, so it runs "
                     "at the original's speed (unstructured zeros are still multiplied by dense kernels).")
    else:
        pruned_path = save_exported(pruned, out_dir / "pruned.pt2", example, task=bundle.task, steps=steps, input_names=names)
    files = {"original.pt2": baseline_path.stat().st_size, pruned_path.name: pruned_path.stat().st_size}
    rows = _measure_pair(handle.model, pruned, baseline_path, pruned_path, bundle, dev, sizes, say)
    _print_comparison(f"{model}: {config.describe()}", rows, files, notes, metric=bundle.metric)
    _write_summary(out_dir / "prune.json", model, data, steps, rows, files, notes)
    typer.echo(f"artifacts: {out_dir}")


def distill_cmd(
    teacher: Annotated[str, typer.Option(help="teacher MODEL spec (trained; zoo models are trained and cached)")] = "digits-cnn",
    model: Annotated[str | None, typer.Option(help="student: zoo name or file.py:factory (fresh weights)")] = None,
    width_multiplier: Annotated[float | None, typer.Option(help="student = the teacher's architecture at this width, in (0, 1]")] = None,
    data: Annotated[str, typer.Option(help="DATA spec")] = "digits",
    epochs: Annotated[int, typer.Option()] = 5,
    temperature: Annotated[float, typer.Option(help="softmax temperature T (the KL term is scaled by T^2)")] = 4.0,
    alpha: Annotated[float, typer.Option(help="weight of the soft-target KL; 1 - alpha weighs the hard-label cross-entropy")] = 0.7,
    lr: Annotated[float | None, typer.Option(help="peak learning rate (default 1e-3; 3e-4 on embedding data)")] = None,
    weights: Annotated[str | None, typer.Option(help="state_dict for a factory teacher")] = None,
    out: Annotated[str | None, typer.Option(help="output directory (default runs/distill-<timestamp>)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    batch_sizes: Annotated[str, typer.Option(help="batch sizes to time")] = "1,32",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Train a smaller student from a teacher by knowledge distillation; compare the two."""
    import torch

    from torchslim._log import say
    from torchslim.artifacts import save_exported
    from torchslim.bench import set_threads
    from torchslim.device import resolve_device
    from torchslim.distill import check_compatible, distill, parse_distill_config
    from torchslim.errors import ConfigError
    from torchslim.prune import widen_student
    from torchslim.specs import resolve

    config = parse_distill_config({"epochs": epochs, "temperature": temperature, "alpha": alpha, "lr": lr, "seed": seed})
    if (model is None) == (width_multiplier is None):
        raise ConfigError("distill: give exactly one of --model (a student architecture) or --width-multiplier "
                          "(the teacher's architecture, thinner).")
    sizes = parse_batch_sizes(batch_sizes)
    dev = resolve_device(device)
    set_threads()
    torch.manual_seed(seed)
    out_dir = _out_dir(out, "distill")
    handle, bundle = resolve(teacher, data, weights=weights, device=dev, seed=seed, log=say)
    example = tuple(t.to(dev) for t in bundle.example_inputs(2))
    if width_multiplier is not None:
        student = widen_student(handle.model, width_multiplier, example_inputs=example, seed=seed)
    else:
        student = _fresh_student(model, bundle)
    student.to(dev)
    check_compatible(student, handle.model, example)  # a mismatch fails before any training
    distill(student, handle.model, bundle, config, device=dev, log=say)
    steps = [config.describe()]
    names = handle.hf.input_names if handle.hf is not None else None
    teacher_path = save_exported(handle.model, out_dir / "teacher.pt2", example, task=bundle.task, input_names=names)
    student_path = save_exported(student, out_dir / "student.pt2", example, task=bundle.task, steps=steps, input_names=names)
    files = {"teacher.pt2": teacher_path.stat().st_size, "student.pt2": student_path.stat().st_size}
    rows = _measure_pair(handle.model, student, teacher_path, student_path, bundle, dev, sizes, say, names=("teacher", "student"))
    _print_comparison(f"distill {teacher} -> {model or f'width x{width_multiplier:g}'}", rows, files, [], metric=bundle.metric)
    _write_summary(out_dir / "distill.json", model or teacher, data, steps, rows, files, [])
    typer.echo(f"artifacts: {out_dir}")


def _fresh_student(spec: str, bundle):
    from torchslim import zoo
    from torchslim.errors import SpecError
    from torchslim.specs import _import_factory

    if ":" not in spec:
        return zoo.create_model(spec, num_classes=bundle.num_classes or 10, input_shape=bundle.input_shape or (1, 8, 8))
    module_part, _, attr = spec.rpartition(":")
    student = _import_factory(spec, module_part, attr)()
    if not hasattr(student, "parameters"):
        raise SpecError(f"student spec {spec!r}: {attr}() did not return an nn.Module.")
    return student


def _out_dir(out: str | None, verb: str) -> Path:
    path = Path(out) if out else Path("runs") / f"{verb}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _measure_pair(before, after, before_path, after_path, bundle, dev, sizes, say, names=("original", "pruned")):
    from torchslim.artifacts import load, read_manifest
    from torchslim.bench import count_macs, count_params, measure
    from torchslim.prune import zero_fraction

    rows = {}
    for name, module, path in ((names[0], before, before_path), (names[1], after, after_path)):
        say(f"measuring {name}")
        runtime = read_manifest(path).runtime
        # embedding data has no labels: both are scored by fidelity to the original/teacher's outputs
        reference = before if bundle.task == "embedding" else None
        metrics = measure(load(path, device=dev), bundle, artifact=path, runtime=runtime, batch_sizes=sizes, device=dev,
                          reference=reference, params=count_params(module), macs=count_macs(module, tuple(t[:1] for t in bundle.example_inputs(1))),
                          progress=say)
        row = metrics.model_dump()
        row["nonzero_params"] = int(round(row["params"] * (1 - zero_fraction(module)))) if module is after else row["params"]
        rows[name] = row
    return rows


def _print_comparison(title: str, rows: dict, files: dict, notes: list[str], metric: str = "accuracy") -> None:
    from rich.console import Console
    from rich.table import Table

    (a_name, a), (b_name, b) = rows.items()
    table = Table(title=title)
    for col in ("metric", a_name, b_name, "ratio"):
        table.add_column(col, justify="left" if col == "metric" else "right")

    def ratio(x, y):
        return f"{y / x:.2f}x" if x else "n/a"

    table.add_row(metric, f"{a['accuracy']:.2%}", f"{b['accuracy']:.2%}", f"{(b['accuracy'] - a['accuracy']) * 100:+.2f} pts")
    table.add_row("params", f"{a['params']:,}", f"{b['params']:,}", ratio(a["params"], b["params"]))
    table.add_row("nonzero params", f"{a['nonzero_params']:,}", f"{b['nonzero_params']:,}", ratio(a["nonzero_params"], b["nonzero_params"]))
    if a["macs"] and b["macs"]:
        table.add_row("MACs", f"{a['macs']:,}", f"{b['macs']:,}", ratio(a["macs"], b["macs"]))
    for bs in a["latency_ms"]:
        la, lb = a["latency_ms"][bs]["p50"], b["latency_ms"][bs]["p50"]
        table.add_row(f"latency p50 b={bs}", f"{la:.3f} ms", f"{lb:.3f} ms", f"{la / lb:.2f}x speed-up")
    table.add_row(".pt2 size on disk", f"{a['size_bytes']:,} B", f"{b['size_bytes']:,} B", ratio(a["size_bytes"], b["size_bytes"]))
    for fname, size in files.items():
        if not fname.endswith(".pt2"):
            table.add_row(f"{fname} on disk", "", f"{size:,} B", ratio(a["size_bytes"], size))
    Console().print(table)
    for note in notes:
        typer.echo(f"note: {note}")


def _write_summary(path: Path, model: str, data: str, steps: list[str], rows: dict, files: dict, notes: list[str]) -> None:
    from torchslim._io import atomic_write_text

    atomic_write_text(path, json.dumps({"model": model, "data": data, "steps": steps, "metrics": rows,
                                        "files_bytes": files, "notes": notes}, indent=2))
