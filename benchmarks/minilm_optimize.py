"""`torchslim optimize` on all-MiniLM-L6-v2 with the default recipe, then every artifact it wrote
fed real text of every length (issue 13: "every artifact the default recipe writes for MiniLM
passes the variable-length test").

1. ``optimize(model="hf:minilm", data=f"text:{SENTENCES}", recipe="default")`` into ``--run``
   (reused with ``--resume`` when it is there), budget 1 point (fidelity >= 0.99).
2. Every artifact of the run (baseline and each candidate that wrote one) is loaded with
   ``torchslim.load`` on its recorded runtime and fed held-out sentences cut to 1, 7, 13, 64 and
   128 tokens (real tokens, the real attention mask), at batch 1 and batch 5. Per artifact:
   - it must take every shape (no error, output of shape [batch, 384]);
   - padding must not change an embedding: each sentence of a batch of 5 padded to the longest
     is compared with the same sentence alone at its own length (cosine >= 0.99);
   - fidelity to the fp32 model on each shape (mean cosine) is recorded; candidates within the
     budget must keep >= 0.98 on every shape.

Writes benchmarks/results/minilm_optimize.json: ``results.report`` is the run's report.json,
``results.varlen`` the check, per artifact and shape.

Usage: python -m benchmarks run minilm_optimize [--run DIR] [--skip-optimize]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks._harness import MINILM, MINILM_DATA, ROOT, Benchmark, Context, load_minilm

LENGTHS = (1, 7, 13, 64, 128)
BATCHES = (1, 5)
PAD_INVARIANCE = 0.99
IN_BUDGET_FIDELITY = 0.98


def _cut(bundle, batch: int, length: int, start: int = 0):
    """Held-out sentences cut to ``length`` tokens (a lone [CLS] at length 1), real mask."""
    ids = bundle.test.input_ids[start:start + batch, :length].clone()
    mask = bundle.test.attention_mask[start:start + batch, :length].clone()
    mask[:, 0] = 1
    return ids, mask


def _cosine(a, b) -> float:
    return float(F.cosine_similarity(a.float(), b.float()).mean())


def check_artifact(fn, reference, bundle) -> dict:
    """The three checks of the module docstring on one loaded artifact."""
    shapes, worst_pad = {}, 1.0
    for batch in BATCHES:
        for length in LENGTHS:
            ids, mask = _cut(bundle, batch, length, start=batch * 7)
            with torch.no_grad():
                got, want = fn(ids, mask), reference(ids, mask)
            if tuple(got.shape) != tuple(want.shape):
                raise AssertionError(f"output shape {tuple(got.shape)} for input {tuple(ids.shape)}")
            shapes[f"b{batch}x{length}"] = round(_cosine(got, want), 5)
            if batch > 1:  # each sentence alone, cut to its own length: padding must not matter
                for row in range(batch):
                    n = int(mask[row].sum())
                    with torch.no_grad():
                        alone = fn(ids[row:row + 1, :n], mask[row:row + 1, :n])
                    worst_pad = min(worst_pad, _cosine(alone, got[row:row + 1]))
    return {"fidelity_per_shape": shapes, "worst_fidelity": min(shapes.values()),
            "padding_invariance_min_cosine": round(worst_pad, 5)}


def check_run(run: Path, reference, bundle) -> dict:
    from torchslim.artifacts import load
    from torchslim.report import load_report

    report = load_report(run)
    rows = {}
    for c in [report.baseline, *report.candidates]:
        if not c.artifact:
            continue
        started = time.perf_counter()
        try:
            fn = load(run / c.artifact)
            row = check_artifact(fn, reference, bundle)
            row["passed"] = row["padding_invariance_min_cosine"] >= PAD_INVARIANCE and (
                not c.within_budget or row["worst_fidelity"] >= IN_BUDGET_FIDELITY)
        except Exception as e:  # noqa: BLE001  (recorded: this is the finding)
            row = {"passed": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        row |= {"runtime": c.metrics.runtime if c.metrics else None, "within_budget": c.within_budget,
                "artifact": c.artifact, "seconds": round(time.perf_counter() - started, 1)}
        rows[c.name] = row
        print(f"{c.name:<48} {'PASS' if row['passed'] else 'FAIL'} {row.get('worst_fidelity', row.get('error'))} "
              f"pad {row.get('padding_invariance_min_cosine')}", flush=True)
    return {"best": report.best, "artifacts": rows, "all_passed": all(r["passed"] for r in rows.values())}


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default=str(ROOT / ".cache" / "runs" / "minilm-default"))
    parser.add_argument("--skip-optimize", action="store_true", help="only check an existing run")
    parser.add_argument("--time-budget", type=float, default=3600)


def run(args: argparse.Namespace, ctx: Context) -> dict:
    import torchslim

    run_dir = Path(args.run)
    if not args.skip_optimize:
        started = time.perf_counter()
        torchslim.optimize(MINILM, MINILM_DATA, "default", run=torchslim.RunOptions(
            out=run_dir, resume=(run_dir / "report.json").exists(), time_budget=args.time_budget))
        print(f"optimize took {time.perf_counter() - started:.0f} s", flush=True)
    report = json.loads((run_dir / "report.json").read_text())
    model, bundle = load_minilm()
    varlen = check_run(run_dir, model, bundle)
    varlen |= {"lengths": LENGTHS, "batches": BATCHES, "pad_invariance_threshold": PAD_INVARIANCE,
               "in_budget_fidelity_threshold": IN_BUDGET_FIDELITY}
    print(f"every artifact passed: {varlen['all_passed']}")
    return {"report": report, "varlen": varlen}


BENCHMARK = Benchmark(name="minilm_optimize",
                      description="`torchslim optimize` on all-MiniLM-L6-v2 (default recipe), then every artifact fed every length",
                      parameters=parameters, run=run)
