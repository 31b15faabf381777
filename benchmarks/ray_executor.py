"""Benchmark: `torchslim optimize` wall time, --executor local vs ray (embedded Ray on this machine).

Runs the same model and recipe three ways, one after another in this process: local (one
candidate at a time), ray with 1 worker CPU and ray with 2 (``ray.init(num_cpus=N)``, the
embedded case: the target is this machine, so a timing waits for every build on it to end).
For the ray runs it splits each candidate's wall time into build (its steps, artifact and
held-out score on a worker), wait (queued for a CPU or for the target) and measure (timed
alone on the target), from the report's ``execution`` records; docs/cluster.md fits its model
of the wall time on N nodes to these numbers. Saves benchmarks/results/ray_executor.json.

    python -m benchmarks run ray_executor                          # digits-cnn, default recipe
    python -m benchmarks run ray_executor --model digits-mlp --recipe quick --workers 1,2
    python -m benchmarks run ray_executor --model hf:minilm \\
        --data text:src/torchslim/hf/sentences.txt --recipe quick --out benchmarks/results/ray_executor_minilm.json
    python -m benchmarks run ray_executor --recipe default --trimmed --workers 2 --out results/x.json
        # the default recipe without its torch.compile candidates (minutes each on a loaded
        # 2-core machine), with the edge search at 2 tries per family and no refine stage
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks._harness import Benchmark, Context, uptime
from torchslim.pipeline import RunOptions, optimize


def _trimmed(name: str) -> dict:
    import yaml

    from torchslim.pipeline._recipe import read_recipe_source

    recipe = yaml.safe_load(read_recipe_source(name)[1])
    recipe["candidates"] = [c for c in recipe["candidates"] if c.get("runtime") not in ("compile", "aoti")]
    recipe.pop("refine", None)
    if recipe.get("search"):
        recipe["search"]["max_tries"] = 2
    return recipe


def _one(label: str, model: str, data: str, recipe, out: Path, workers: int | None) -> dict:
    import ray

    load_before = uptime()
    started = time.perf_counter()
    if workers is not None:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        report = optimize(model, data, recipe, run=RunOptions(
            out=out, html=False, executor="ray" if workers is not None else "local"))
    finally:
        if workers is not None:
            ray.shutdown()
    wall = time.perf_counter() - started
    rows = []
    for c in report.candidates:
        e = c.execution
        rows.append({"candidate": c.name, "status": c.status, "seconds": c.duration_s,
                     "accuracy": c.metrics.accuracy if c.metrics else None,
                     "size_bytes": c.metrics.size_bytes if c.metrics else None,
                     "build_s": e.build_s if e else None, "wait_s": e.wait_s if e else None,
                     "measure_s": e.measure_s if e else None})
    base = report.baseline.execution
    totals = getattr(report, "executor", None)
    return {"label": label, "workers": workers, "wall_s": round(wall, 1), "best": report.best,
            "baseline_measure_s": base.measure_s if base else None, "executor": totals,
            "sum_build_s": round(sum(r["build_s"] or 0 for r in rows), 1),
            "sum_measure_s": round(sum(r["measure_s"] or 0 for r in rows), 1),
            "sum_candidate_s": round(sum(r["seconds"] or 0 for r in rows), 1),
            "uptime_before": load_before, "uptime_after": uptime(), "candidates": rows}


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--data", default="digits", help="a data spec; hf:minilm takes text:FILE")
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--workers", default="1,2", help="ray worker CPU counts to run, comma separated")
    parser.add_argument("--trimmed", action="store_true", help="drop compiled candidates and refine; 2 search tries")
    # --out: the harness's option (default benchmarks/results/ray_executor.json)


def run(args: argparse.Namespace, ctx: Context) -> dict:
    recipe = _trimmed(args.recipe) if args.trimmed else args.recipe
    runs = []
    with tempfile.TemporaryDirectory(prefix="torchslim-bench-ray-") as tmp:
        runs.append(_one("local", args.model, args.data, recipe, Path(tmp) / "local", None))
        for n in (int(x) for x in args.workers.split(",")):
            runs.append(_one(f"ray-{n}", args.model, args.data, recipe, Path(tmp) / f"ray-{n}", n))
    for run in runs:
        print(f"{run['label']:8} wall {run['wall_s']:7.1f} s   candidates: build {run['sum_build_s']:6.1f} s, "
              f"measure {run['sum_measure_s']:6.1f} s, end to end {run['sum_candidate_s']:7.1f} s   "
              f"best {run['best']}   ({run['uptime_before']})")
    local = {r["candidate"]: r for r in runs[0]["candidates"]}
    for run in runs[1:]:
        same = all(local[r["candidate"]]["accuracy"] == r["accuracy"] and local[r["candidate"]]["size_bytes"] == r["size_bytes"]
                   for r in run["candidates"] if r["status"] == "ok" and local.get(r["candidate"], {}).get("status") == "ok")
        print(f"{run['label']}: same accuracy and size as local for every candidate ok in both: {same}")
        run["same_as_local"] = same
    return {"model": args.model, "data": args.data, "recipe": args.recipe + (" (trimmed: no compile candidates, no refine, 2 search tries)"
                                                        if args.trimmed else ""),
            "cpu": ctx.environment["cpu"], "cores": ctx.environment["cores"], "runs": runs,
            "note": "a shared 2-core machine under load from other engineers: see uptime_before/after per run"}


BENCHMARK = Benchmark(name="ray_executor",
                      description="`torchslim optimize` wall time, --executor local vs ray (embedded Ray on this machine)",
                      parameters=parameters, run=run)
