"""The block contract: run one registered technique (a recipe step) on one catalogue block and
say what happened, the way a search would meet it.

Every case ends in one of:

    works     the step ran, its result (or the artifact written for the runtime it names) runs
              on a batch, is finite, really changed (fewer parameters, sparser, fewer distinct
              values, low-precision tensors, a file in another format) and, where the technique
              promises it, is close to the original's outputs;
    refused   a TorchslimError (errors.py) whose message names the block (a module path or
              class of the model) and a way out (ignore/skip, another method or format, ...);
    n/a       the case needs hardware this machine lacks (CUDA), so it is not run here;
    crash     anything else escaping, or a refusal that names no block or no way out;
    no-op     it "worked" but nothing changed;
    wrong     it ran but its outputs broke a promise (not finite, not close).

Cases come from the registries: every technique in ``TECHNIQUES`` (with the methods listed
in ``CASES``; a technique registered without an entry there is run with its default options)
and every export format in ``FORMATS`` (as ``export`` step options). Used by
tests/test_block_contract*.py and tests/support_matrix.py.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Subset

from tests.fixtures.blocks import build

# Where the test writes each case's outcome when set (tests/support_matrix.py renders it).
OUTCOMES_ENV = "TORCHSLIM_BLOCK_OUTCOMES"


@dataclass(frozen=True)
class Case:
    """One column of the support matrix: a technique (registry name) with its step options."""

    technique: str
    label: str  # the column, e.g. "quantize: dynamic"
    options: Any
    cosine: float | None = None  # promised minimum cosine of outputs against the original's
    exact: bool = False  # promised fp32-close (max |diff| <= 1e-4 + 1e-3 x max |output|)
    needs_cuda: bool = False
    slow: bool = False  # seconds per block (compilation, calibrated int8 through NNCF)


# technique -> its cases (the methods each one has). A newly registered technique missing here
# still runs, with its default options (``cases()``), so it meets the contract on registering.
CASES: dict[str, list[Case]] = {
    "quantize": [
        Case("quantize", "quantize: dynamic", {"method": "dynamic"}, cosine=0.98),
        Case("quantize", "quantize: static", {"method": "static", "calibration_batches": 2}, cosine=0.95, slow=True),
        Case("quantize", "quantize: qat", {"method": "qat", "epochs": 1, "calibration_batches": 2}, slow=True),
        Case("quantize", "quantize: weight-only", {"method": "weight-only"}, cosine=0.99),
        Case("quantize", "quantize: int4", {"method": "int4", "group_size": 32}, needs_cuda=True),
        Case("quantize", "quantize: bf16", {"method": "bf16"}, cosine=0.99),
        Case("quantize", "quantize: fp16", {"method": "fp16"}, cosine=0.999),
    ],
    "prune": [
        Case("prune", "prune: magnitude + finetune", {"method": "magnitude", "ratio": 0.5, "finetune_epochs": 1}),
        Case("prune", "prune: global", {"method": "global", "ratio": 0.5}),
        Case("prune", "prune: channel 0.3", {"method": "channel", "ratio": 0.3}),
    ],
    "factorize": [Case("factorize", "factorize", {"rank_ratio": 0.25})],
    "distill": [Case("distill", "distill", {"epochs": 1})],
    "finetune": [Case("finetune", "finetune", {"epochs": 1})],
    "share": [Case("share", "share", {"bits": 4, "iterations": 10})],
    "encode": [Case("encode", "share + encode", {"method": "huffman"}, exact=True)],
}

# export format -> its cases (the quantization each format takes); each variant is a config in export._config.
FORMAT_CASES: dict[str, list[dict]] = {
    "onnx": [{}, {"quantize": "dynamic"}, {"quantize": "static", "calibration_batches": 2}, {"quantize": "weight-only"}],
    "pt2": [{}],
    "tensorrt": [{}],
    "openvino": [{}, {"precision": "bf16"}, {"quantize": "int8", "calibration_batches": 2}],
}


def _export_case(fmt: str, extra: dict) -> Case:
    method = extra.get("quantize") or extra.get("precision") or "fp32"
    int8 = extra.get("quantize") in ("dynamic", "static", "int8", "weight-only")
    return Case("export", f"export: {fmt} {method}", {"format": fmt, **extra},
                cosine=0.98 if int8 else (0.99 if method == "bf16" else None), exact=method == "fp32",
                needs_cuda=fmt == "tensorrt",
                slow=fmt == "pt2" or (fmt == "openvino" and int8) or extra.get("quantize") == "static")


def cases() -> list[Case]:
    """Every registered technique's cases, export expanded over every registered format."""
    import torchslim  # noqa: F401  (registers every technique)
    from torchslim.core.registry import TECHNIQUES
    from torchslim.export import FORMATS

    out: list[Case] = []
    for name in TECHNIQUES.names():
        if name == "export":
            out += [_export_case(fmt, extra) for fmt in FORMATS for extra in FORMAT_CASES.get(fmt, [{}])]
        else:
            out += CASES.get(name, [Case(name, f"{name} (defaults)", None)])
    return out


@dataclass
class Outcome:
    block: str
    case: str
    status: str  # works | refused | n/a | crash | no-op | wrong
    detail: str  # what changed (works) or the message (refused / crash / wrong)
    seconds: float


def tiny_digits(seed: int = 0):
    """The digits bundle cut to 256 train / 64 val / 64 test samples: each training or
    calibration step of a case takes a few batches."""
    from torchslim.data import load_data

    full = load_data("digits", seed=seed)
    full.train, full.val, full.test = (Subset(ds, range(n)) for ds, n in ((full.train, 256), (full.val, 64),
                                                                          (full.test, 64)))
    return full


# -- what "changed" means ------------------------------------------------------------------------

_LOW_PRECISION = {torch.int8, torch.uint8, torch.qint8, torch.quint8, torch.int4 if hasattr(torch, "int4") else torch.int8,
                  torch.bfloat16, torch.float16}


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    seen = list(model.state_dict().values())
    for module in model.modules():  # PT2E keeps folded int8 weights as plain attributes
        seen += [v for v in vars(module).values() if isinstance(v, torch.Tensor)]
    return seen


def _low_precision(model: nn.Module) -> int:
    """Tensors stored in int8/uint8/bf16/fp16, or torchao's quantized tensor subclasses."""
    count = 0
    for t in _tensors(model):
        plain = type(t) in (torch.Tensor, nn.Parameter)
        count += int(t.dtype in _LOW_PRECISION or not plain)
    return count


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _zeros(model: nn.Module) -> float:
    weights = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]
    total = sum(p.numel() for p in weights)
    return sum(int((p == 0).sum()) for p in weights) / total if total else 0.0


def _distinct_max(model: nn.Module) -> int:
    from torchslim.share import shareable_tensors

    weights = [getattr(m, attr) for _, m, attr in shareable_tensors(model)]
    return max((int(torch.unique(p.detach()).numel()) for p in weights), default=0)


def _changed(original: nn.Module, result: nn.Module, case: Case) -> str | None:
    """What the step changed, in words; None when nothing did."""
    if _low_precision(result) > _low_precision(original):
        return f"{_low_precision(result)} low-precision tensors"
    before, after = _params(original), _params(result)
    if after < before:
        return f"params {before:,} -> {after:,}"
    if (z := _zeros(result)) > _zeros(original) + 0.05:
        return f"{z:.0%} of weights zero"
    if case.technique == "share" and (d := _distinct_max(result)) <= 2 ** case.options["bits"] + 1:
        return f"<= {d} distinct values per layer tensor"
    if {type(m) for m in result.modules()} != {type(m) for m in original.modules()}:
        return "modules replaced"
    a, b = original.state_dict(), result.state_dict()
    if a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a if a[k].shape == b[k].shape):
        return "weights trained"
    return None


def _artifact_changed(path: Path, case: Case) -> str | None:
    """An export's artifact: its format, and for int8 that its weights really are int8."""
    from torchslim.artifacts import artifact_size

    size = artifact_size(path)
    method = case.options.get("quantize", "none") if isinstance(case.options, dict) else "none"
    if method == "none":
        return f"{path.suffix} {size:,} B"
    if path.suffix == ".onnx":
        import onnx

        graph = onnx.load(str(path)).graph
        int8 = sum(1 for i in graph.initializer if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
                   and len(i.dims) >= 2)
    else:  # OpenVINO IR: NNCF's int8 weights are i8/u8 constants in the graph
        text = path.read_text()
        int8 = len(re.findall(r'element_type="[iu]8"', text))
    return f"{path.suffix} {size:,} B, {int8} int8 weight tensors" if int8 else None


# -- the refusal's wording -----------------------------------------------------------------------

_WAY_OUT = re.compile(r"\b(ignore|skip|instead|use|install|another|method|format|remove|set|pass|give|choose|"
                      r"keep|leave|try|needs?)\b", re.IGNORECASE)


_CONTAINERS = {"Sequential", "ModuleList", "ModuleDict", "Identity"}


def _names_block(message: str, model: nn.Module) -> bool:
    """The message names a module of the model: a (non-container) class other than the model's
    own, a dotted module path, or a module name in quotes or backticks."""
    names = {type(m).__name__ for m in list(model.modules())[1:]} - _CONTAINERS
    for path, _ in list(model.named_modules())[1:]:
        names |= {path} if "." in path else {f"'{path}'", f"`{path}`", f'"{path}"'}
    return any(re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", message) for n in names)


def _close(reference: torch.Tensor, out: torch.Tensor, case: Case) -> str | None:
    """Why ``out`` breaks the case's promise; None when it keeps it."""
    if out.shape != reference.shape:
        return f"output shape {tuple(out.shape)}, expected {tuple(reference.shape)}"
    if not torch.isfinite(out).all():
        return "outputs are not finite"
    if case.exact:
        diff = float((out - reference).abs().max())
        if diff > 1e-4 + 1e-3 * float(reference.abs().max()):
            return f"fp32 outputs differ by {diff:.3g}"
    if case.cosine is not None:
        cos = float(torch.nn.functional.cosine_similarity(out.flatten(), reference.flatten(), dim=0))
        if cos < case.cosine:
            return f"cosine {cos:.4f} < {case.cosine}"
    return None


def _as_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        out = next(iter(out.values()))
    return torch.as_tensor(out).float()


def run_case(block: str, case: Case, bundle, work_dir: Path, log=lambda _m: None) -> Outcome:
    """Run ``case`` on a fresh ``block`` as a search's candidate would, and judge the result."""
    from torchslim.artifacts import load, save_for_runtime
    from torchslim.core.registry import TECHNIQUES
    from torchslim.core.step import StepContext
    from torchslim.errors import TorchslimError

    started = time.perf_counter()

    def outcome(status: str, detail: str) -> Outcome:
        return Outcome(block, case.label, status, detail, round(time.perf_counter() - started, 2))

    if case.needs_cuda and not torch.cuda.is_available():
        return outcome("n/a", "needs CUDA; not run on this machine")
    model = build(block)
    original = copy.deepcopy(model)
    example = bundle.example_inputs(2, split="train")
    batch = bundle.example_inputs(16, split="test")
    with torch.no_grad():
        reference = _as_tensor(original(*batch))
    technique = TECHNIQUES.get(case.technique)
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = StepContext(data=bundle, device=torch.device("cpu"), teacher=copy.deepcopy(model).requires_grad_(False),
                      work_dir=work_dir, example_inputs=example, seed=0, log=log, max_accuracy_drop=1.0)
    try:
        torch.manual_seed(0)
        config = technique.validate(case.options)
        if case.technique == "encode":  # the recipe's shape: share, then encode what it shared
            model = TECHNIQUES.get("share").run(model, TECHNIQUES.get("share").validate({"bits": 4, "iterations": 5}),
                                                ctx).model
            original_for_exact = copy.deepcopy(model)
        output = technique.run(model, config, ctx)
        result = output.model
        if isinstance(result, nn.Module):
            result.eval()
        artifact = output.artifact
        if artifact is None:  # what the search does next: write the artifact for the runtime named
            runtime = "eager" if output.runtime in (None, "compile") else output.runtime  # same .pt2; no compiling
            artifact = save_for_runtime(result, work_dir / "artifact", example, runtime)
        fn = load(artifact, runtime="eager" if Path(artifact).suffix == ".pt2" and output.runtime in (None, "compile")
                  else None)
        with torch.no_grad():
            out = _as_tensor(fn(*batch))
    except TorchslimError as e:
        message = " ".join(e.message.split())
        if not _names_block(message, original):
            return outcome("crash", f"{type(e).__name__} naming no module of the block: {message}")
        if not _WAY_OUT.search(message):
            return outcome("crash", f"{type(e).__name__} naming no way out: {message}")
        return outcome("refused", f"{type(e).__name__}: {message}")
    except Exception as e:  # noqa: BLE001  (the contract's "crash deep inside": reported, the test fails)
        where = traceback.extract_tb(e.__traceback__)[-1]
        return outcome("crash", f"{type(e).__name__}: {' '.join(str(e).split())[:400]} "
                                f"(at {Path(where.filename).name}:{where.lineno})")
    if case.technique == "encode":
        with torch.no_grad():
            reference = _as_tensor(original_for_exact(*batch))
    if problem := _close(reference, out, case):
        return outcome("wrong", problem)
    if case.technique == "export":
        change = _artifact_changed(Path(artifact), case)
    elif case.technique == "encode":
        change = f".tslim {Path(artifact).stat().st_size:,} B" if Path(artifact).suffix == ".tslim" else None
    else:
        change = _changed(original, result, case) if isinstance(result, nn.Module) else "a new program"
    untouched = all(torch.equal(a, b) for a, b in zip(build(block).state_dict().values(),
                                                       original.state_dict().values(), strict=True))
    if not untouched:
        return outcome("wrong", "the step changed the caller's model")
    if change is None:
        return outcome("no-op", "it ran, but nothing in the model or artifact changed")
    return outcome("works", change)


def record(outcome: Outcome) -> None:
    """Append ``outcome`` to the JSON-lines file named by $TORCHSLIM_BLOCK_OUTCOMES, if set."""
    path = os.environ.get(OUTCOMES_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(asdict(outcome)) + "\n")


if __name__ == "__main__":  # a quick survey: python -m tests.block_contract [block ...]
    import sys

    from tests.fixtures.blocks import BLOCKS

    bundle = tiny_digits()
    chosen = sys.argv[1:] or list(BLOCKS)
    only = os.environ.get("CASES")
    with tempfile.TemporaryDirectory() as tmp:
        for block in chosen:
            for i, case in enumerate(cases()):
                if only and not re.search(only, case.label):
                    continue
                o = run_case(block, case, bundle, Path(tmp) / f"{block}-{i}")
                print(f"{block:24s} {case.label:30s} {o.status:8s} {o.seconds:6.2f}s {o.detail[:220]}", flush=True)
                record(o)
