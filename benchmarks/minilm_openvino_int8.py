"""all-MiniLM-L6-v2: OpenVINO int8 (NNCF) with torchslim's smoothquant and fallback options.

Every variant is ``torchslim.export(..., {"format": "openvino", "quantize": "int8", ...})`` on the same model
and data (16 train batches, each sentence calibrated alone at its own length), loaded back with
``torchslim.load``. Fidelity = mean cosine to fp32 eager on the held-out test sentences, each
alone at its own length, and on the validation split (what the fallback steers by).

    default                     NNCF as before: ModelType.TRANSFORMER, its SmoothQuant at alpha 0.95
    smoothquant 0.5             NNCF's SmoothQuant at alpha 0.5
    smoothquant auto            torchslim's SmoothQuant (alpha per layer) before the conversion, NNCF's off
    fallback auto               target 0.5 points (the default)
    fallback auto, target 0     every measured drop makes it try: up to 3 layers in float

No latency: these are accuracy options. Usage:
    python -m benchmarks run minilm_openvino_int8 [--only default "fallback auto"]
Writes benchmarks/results/minilm_openvino_int8.json (after every variant, so a killed run keeps
what it measured).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks._harness import MINILM_INPUTS as NAMES
from benchmarks._harness import Benchmark, Context, load_minilm, singles

VARIANTS = {
    "default": {},
    "smoothquant 0.5": {"smoothquant": 0.5},
    "smoothquant auto": {"smoothquant": "auto"},
    "fallback auto": {"fallback": "auto"},
    "fallback auto, target 0": {"fallback": "auto", "fallback_target_drop": 0.0, "fallback_max_layers": 3},
}


def measure(name: str, options: dict, model, bundle, example, references, singles, folder: Path) -> dict:
    import torchslim
    from torchslim.artifacts import read_manifest
    from torchslim.data import fidelity
    from torchslim.errors import TorchslimError
    from torchslim.export import ArtifactInfo

    started = time.perf_counter()
    try:
        path = torchslim.export(model, folder / name.replace(" ", "-").replace(",", ""), example,
                                {"format": "openvino", "quantize": "int8", **options}, data=bundle,
                                info=ArtifactInfo("embedding", NAMES), log=print)
    except TorchslimError as e:  # refused by the parity check: say so, measure the rest
        return {"options": options, "build_s": round(time.perf_counter() - started, 1), "error": e.message}
    build_s = time.perf_counter() - started
    fn = torchslim.load(path)
    expected, val_reference = references
    got = torch.cat([fn(*s).float() for s in singles])
    quantization = read_manifest(path).extra["quantization"]
    return {"options": options, "build_s": round(build_s, 1),
            "fidelity_test": round(float(F.cosine_similarity(got, expected).mean()), 5),
            "fidelity_val": round(fidelity(fn, val_reference, bundle.val), 5),
            "smoothing": quantization.get("smoothing"), "fallback": quantization.get("fallback"),
            "kept_in_float_ops": quantization.get("kept_in_float_ops")}


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", nargs="*", default=list(VARIANTS), choices=list(VARIANTS), help="variant names to run")


def run(args: argparse.Namespace, ctx: Context) -> dict:
    model, bundle = load_minilm()
    example = bundle.example_inputs(2, split="train")
    held_out = singles(bundle.test)
    import nncf
    import openvino

    from torchslim.data import predict

    result = {"model": "hf:minilm (all-MiniLM-L6-v2)", "openvino": openvino.__version__, "nncf": nncf.__version__,
              "threads": torch.get_num_threads(), "test_sentences": len(held_out), "val_sentences": len(bundle.val),
              "variants": {}}
    with tempfile.TemporaryDirectory(prefix="minilm-ov-int8-") as tmp, torch.no_grad():
        references = (torch.cat([model(*s) for s in held_out]), predict(model, bundle.val)[0])
        for name in args.only:
            result["variants"][name] = measure(name, VARIANTS[name], model, bundle, example, references, held_out,
                                               Path(tmp))
            row = result["variants"][name]
            print(f"{name}: test {row.get('fidelity_test')}, val {row.get('fidelity_val')}, {row['build_s']} s "
                  f"{row.get('error', '')}", flush=True)
            result["load_average"] = [round(x, 2) for x in os.getloadavg()]
            ctx.save(result)
    return result


BENCHMARK = Benchmark(name="minilm_openvino_int8",
                      description="all-MiniLM-L6-v2: OpenVINO int8 (NNCF) with torchslim's smoothquant and fallback options",
                      parameters=parameters, run=run)
