"""all-MiniLM-L6-v2 on CPU: torchslim's candidates against the runtimes a user would pick instead.

Peers, each built with its own tool's calls (not through torchslim):

    ORT quantize_dynamic per-channel   torch.onnx.export (default exporter) -> onnxruntime's
                                       quantize_dynamic(per_channel=True)
    ORT optimizer + quantize_dynamic   TorchScript export (dynamo=False, what ORT's fusions match)
                                       -> optimize_model(model_type="bert") -> quantize_dynamic
    OpenVINO fp32                      openvino.convert_model(torch module, example_input) ->
                                       core.compile_model(..., "CPU"), default config
    OpenVINO + NNCF int8               nncf.quantize(ov_model, nncf.Dataset(train sentences),
                                       model_type=nncf.ModelType.TRANSFORMER)

torchslim's candidates, built with the library's verbs and loaded with ``torchslim.load``:
``torchslim.export`` to ONNX dynamic int8 and OpenVINO fp32 / NNCF int8, and
``torchslim.quantize`` + ``save_exported`` on the compile runtime (dynamic int8, static int8, bf16).

Workloads, all in ONE process and interleaved (each round runs every variant on every workload in
turn, a 50 ms pause before each timed call): batch 1 x 128 tokens, batch 32 x 128 tokens (real
test sentences padded to 128, as a tokenizer called with padding="max_length" sends them), the
held-out test sentences embedded as a service would (torchslim.bench._workload.sentence_workload:
batches of 32 cut to the longest sentence, then each sentence alone at its own length; the time is
the sum of both passes), and "full" batch 1 / 32 x 128 tokens where all 128 are real (test
sentences' tokens run together): there is no padding to skip, so these compare the kernels alone.
torchslim's artifacts of MiniLM skip trailing padding (torchslim.core.padding); the peers compute it. Fidelity: mean cosine to
fp32 eager over the held-out sentences, each alone at its own length. Ratios are the fastest
peer's time over the variant's (> 1 = faster than every peer).

With ``--run DIR`` (a ``torchslim optimize`` run on hf:minilm, e.g. from benchmarks/minilm_optimize.py)
torchslim's variants are instead the artifacts that run wrote within its budget, loaded from disk,
and the verdict also gives the run's pick against the fastest peer on each workload.

Usage: python -m benchmarks run minilm [--rounds 5] [--run DIR]
Writes benchmarks/results/minilm.json.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks._harness import MINILM_INPUTS as NAMES
from benchmarks._harness import (
    Benchmark,
    Context,
    full_length,
    interleaved_ms,
    load_minilm,
    singles,
)

PAUSE_S = 0.05
PEERS = ("ORT quantize_dynamic per-channel", "ORT optimizer + quantize_dynamic", "OpenVINO fp32",
         "OpenVINO + NNCF int8")
WORKLOADS = ("b1x128 ms", "b32x128 ms", "sentences s", "b1x128 full ms", "b32x128 full ms")
GOAL_WORKLOADS = WORKLOADS[:3]  # the three; the two "full" ones show the kernels alone


def _ort(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda ids, mask: torch.from_numpy(session.run(None, {"input_ids": ids.numpy(),
                                                                  "attention_mask": mask.numpy()})[0])


def _openvino(ov_model):
    import openvino as ov

    compiled = ov.Core().compile_model(ov_model, "CPU")
    return lambda ids, mask: torch.from_numpy(compiled([ids.numpy(), mask.numpy()])[0].copy())


def peers(model, bundle, example, folder: Path) -> dict:
    import nncf
    import onnx
    import openvino as ov
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    plain, fused = folder / "plain.onnx", folder / "fused.onnx"
    # the output is not named "embedding": the dynamo graph has a node of that name already
    torch.onnx.export(model, example, str(plain), input_names=NAMES, output_names=["sentence_embedding"],
                      dynamic_shapes=(axes["input_ids"], axes["attention_mask"]), external_data=False)
    torch.onnx.export(model, example, str(folder / "ts.onnx"), dynamo=False, input_names=NAMES,
                      output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=17)
    optimized = optimize_model(str(folder / "ts.onnx"), model_type="bert", num_heads=12, hidden_size=384)
    fusions = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    optimized.save_model_to_file(str(fused))
    with contextlib.chdir(folder):  # quantize_dynamic may drop external-data files in the cwd
        # the fused graph's contrib ops (Attention, SkipLayerNormalization) defeat the quantizer's
        # shape inference; its error message says to give DefaultTensorType, as here
        for src, extra in ((plain, {}), (fused, {"DefaultTensorType": onnx.TensorProto.FLOAT})):
            quantize_dynamic(str(src), str(src.with_suffix(".int8.onnx")), per_channel=True,
                             weight_type=QuantType.QInt8, extra_options=extra)
    ov_model = ov.convert_model(model, example_input=example)
    train_ids, train_mask = bundle.train.input_ids, bundle.train.attention_mask
    lengths = train_mask.sum(1)
    calibration = [(train_ids[i:i + 1, :n].numpy(), train_mask[i:i + 1, :n].numpy())
                   for i, n in enumerate(lengths.tolist())]
    int8 = nncf.quantize(ov_model, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(calibration))
    built = {PEERS[0]: _ort(plain.with_suffix(".int8.onnx")), PEERS[1]: _ort(fused.with_suffix(".int8.onnx")),
             PEERS[2]: _openvino(ov_model), PEERS[3]: _openvino(int8)}
    return built, {"ort_fused_operators": fusions,
                   "openvino_inputs": [str(p.get_partial_shape()) for p in ov_model.inputs]}


def torchslim_candidates(model, bundle, example, folder: Path) -> dict:
    """torchslim's CPU candidates, built with the library's verbs, loaded with ``torchslim.load``
    (compile-runtime artifacts compile the shapes used in the warm-ups). A refused one is left out."""
    import torchslim
    from torchslim.artifacts import save_exported
    from torchslim.errors import TorchslimError
    from torchslim.export import ArtifactInfo

    def compiled(config, file, **kw):
        quantized = torchslim.quantize(copy.deepcopy(model), config, example_inputs=example, **kw)
        return save_exported(quantized, folder / file, example, runtime="compile", task="embedding",
                             input_names=NAMES)

    def exported(sub, config, data=None):
        return torchslim.export(copy.deepcopy(model), folder / sub, example, config, data=data,
                                info=ArtifactInfo("embedding", NAMES))

    builders = {
        "torchslim onnx int8 dynamic": lambda: exported("onnx-int8", {"format": "onnx", "quantize": "dynamic"}),
        "torchslim openvino fp32": lambda: exported("ov-fp32", "openvino"),
        "torchslim openvino int8": lambda: exported("ov-int8", {"format": "openvino", "quantize": "int8"}, bundle),
        "torchslim int8 dynamic compile": lambda: compiled("dynamic", "int8-dynamic.pt2"),
        "torchslim int8 static compile": lambda: compiled(
            torchslim.StaticInt8Config(calibration_batches=16), "int8-static.pt2", data=bundle),
        "torchslim bf16 compile": lambda: compiled("bf16", "bf16.pt2"),
    }
    candidates = {}
    for name, build in builders.items():
        started = time.perf_counter()
        try:
            candidates[name] = torchslim.load(build())
        except TorchslimError as e:
            print(f"{name}: refused by torchslim ({e.message[:200]})", flush=True)
            continue
        print(f"built {name} in {time.perf_counter() - started:.0f}s", flush=True)
    return candidates


def run_candidates(run: Path) -> tuple[dict, str | None]:
    """The artifacts a ``torchslim optimize`` run wrote (every candidate within its budget that
    was faster than the run's fp32 baseline somewhere; always its pick), loaded
    with ``torchslim.load`` on their recorded runtimes; and the name given to the run's pick."""
    import torchslim
    from torchslim.report import load_report

    report = load_report(run)
    candidates, pick = {}, None
    base = report.baseline.metrics.latency_ms
    for c in report.candidates:
        if c.status != "ok" or not c.within_budget or not c.artifact:
            continue
        slower = all(c.metrics.latency_ms[k].p50 > base[k].p50 for k in base if k in c.metrics.latency_ms)
        if slower and c.name != report.best:  # slower than fp32 eager everywhere in the run: no contender
            print(f"left out {c.name}: slower than the fp32 baseline at every batch size in the run", flush=True)
            continue
        name = f"torchslim {c.name} ({c.metrics.runtime})" + (" = pick" if c.name == report.best else "")
        candidates[name] = torchslim.load(run / c.artifact)
        pick = name if c.name == report.best else pick
    print(f"loaded {len(candidates)} within-budget artifacts of {run} (pick: {report.best})", flush=True)
    return candidates, pick


def fidelity(variants: dict, reference, singles) -> dict:
    expected = torch.cat([reference(*s) for s in singles])
    return {name: float(F.cosine_similarity(torch.cat([fn(*s).float() for s in singles]), expected).mean())
            for name, fn in variants.items()}


def measure(variants: dict, fixed: dict, test, rounds: int, on_round, workloads=WORKLOADS) -> dict:
    """Median times per variant and workload (``fixed``'s and the sentence workload);
    ``on_round(medians, rounds done)`` after every round."""
    from torchslim.bench._workload import sentence_workload

    def sentences(fn) -> dict[str, float]:
        load = sentence_workload(fn, test, device=torch.device("cpu"), repeats=1)
        return {"sentences s": load.batched_s + load.one_by_one_s}

    assert set(workloads) == {*fixed, "sentences s"}, "every workload is timed"
    return interleaved_ms(variants, fixed, rounds, pause_s=PAUSE_S, extra=sentences, on_round=on_round)


def report(median: dict, fid: dict, pick: str | None = None) -> dict:
    fastest_peer = {w: min(PEERS, key=lambda p: median[p][w]) for w in WORKLOADS}
    rows = {n: {"fidelity": round(fid[n], 5)} | {w: round(median[n][w], 4) for w in WORKLOADS}
            | {f"ratio {w}": round(median[fastest_peer[w]][w] / median[n][w], 3) for w in WORKLOADS}
            for n in median}
    within = [n for n in median if n.startswith("torchslim") and fid[n] >= 0.99]
    verdict = {}
    for w in WORKLOADS:
        best = min(within, key=lambda n: median[n][w]) if within else None
        verdict[w] = {"fastest_peer": fastest_peer[w], "torchslim_fastest_within_0.99": best,
                      "ratio": rows[best][f"ratio {w}"] if best else None}
    print("| variant | fidelity | " + " | ".join(f"{w} (vs fastest peer)" for w in WORKLOADS) + " |")
    print("|---|---|" + "---|" * len(WORKLOADS))
    for n, row in rows.items():
        cells = " | ".join(f"{row[w]:.{3 if w.endswith(' s') else 2}f} ({row[f'ratio {w}']:.2f}x)" for w in WORKLOADS)
        print(f"| {n} | {row['fidelity']:.4f} | {cells} |")
    for w, v in verdict.items():
        print(f"{w}: fastest peer {v['fastest_peer']}; torchslim's fastest within fidelity 0.99: "
              f"{v['torchslim_fastest_within_0.99']} ({v['ratio']}x)")
    if pick:
        verdict["pick"] = {"name": pick, "fidelity": rows[pick]["fidelity"]} | {
            w: rows[pick][f"ratio {w}"] for w in WORKLOADS}
        print(f"the run's pick {pick}: " + ", ".join(f"{w} {rows[pick][f'ratio {w}']}x" for w in WORKLOADS))
    return {"rows": rows, "verdict": verdict}


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--run", help="a `torchslim optimize` run directory on hf:minilm: measure its within-budget "
                                      "artifacts (and its pick) instead of building candidates with the verbs")


def run(args: argparse.Namespace, ctx: Context) -> dict:
    model, bundle = load_minilm()
    ids, mask = bundle.example_inputs(32)
    full_ids, full_mask = full_length(bundle.test, 32, ids.shape[1])
    fixed = {WORKLOADS[0]: (ids[:1], mask[:1]), WORKLOADS[1]: (ids, mask),
             WORKLOADS[3]: (full_ids[:1], full_mask[:1]), WORKLOADS[4]: (full_ids, full_mask)}
    test_mask = bundle.test.attention_mask
    held_out = singles(bundle.test)
    example = bundle.example_inputs(2)
    print(f"{len(held_out)} held-out sentences, torch {torch.__version__}, {torch.get_num_threads()} threads",
          flush=True)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="minilm-bench-") as tmp, torch.no_grad():
        variants = {"fp32 eager": model}
        built, notes = peers(model, bundle, example, Path(tmp))
        variants |= built
        print(f"built peers; ORT fusions {notes['ort_fused_operators']}", flush=True)
        pick = None
        if args.run:
            built, pick = run_candidates(Path(args.run))
        else:
            built = torchslim_candidates(model, bundle, example, Path(tmp))
        variants |= built
        fid = fidelity(variants, model, held_out)
        print({n: round(f, 4) for n, f in fid.items()}, flush=True)

        def write(median: dict, done: int) -> None:  # after every round: a killed run keeps its data
            results.clear()
            results.update({
                "model": "hf:minilm (all-MiniLM-L6-v2)", "rounds": done, "sentences": len(held_out),
                "mean_tokens": round(float(test_mask.sum(1).float().mean()), 2), "threads": torch.get_num_threads(),
                "run": args.run, "notes": notes, **report(median, fid, pick)})
            print(f"wrote {ctx.save(results)} ({done} rounds)", flush=True)

        measure(variants, fixed, bundle.test, args.rounds, write)
    return results


BENCHMARK = Benchmark(name="minilm",
                      description="all-MiniLM-L6-v2 on CPU: torchslim's candidates against ORT and OpenVINO peers",
                      parameters=parameters, run=run)
