"""A candidate's result in words ("11.8x faster at batch 1, 8.5x smaller, 0.28 points lost"),
and the snippets that load its artifact, for the HTML report's headline, cards and details."""

from __future__ import annotations

from pathlib import PurePosixPath

from torchslim.report._model import Candidate, Report

OBJECTIVE_WORDS = {
    "latency": "fastest at batch 1",
    "throughput": "most samples per second at the largest batch",
    "size": "smallest on disk",
    "balanced": "best balance of speed and size",
}


def _times(ratio: float, better: str, worse: str) -> str:
    if ratio >= 1.005:
        return f"{ratio:.3g}x {better}"
    if ratio <= 0.995:
        return f"{1 / ratio:.3g}x {worse}"
    return "the same speed" if better == "faster" else "the same size"


def speedup(c: Candidate, base: Candidate, key: str) -> float | None:
    if not (c.metrics and base.metrics) or key not in c.metrics.latency_ms or key not in base.metrics.latency_ms:
        return None
    p50 = c.metrics.latency_ms[key].p50
    return base.metrics.latency_ms[key].p50 / p50 if p50 > 0 else None


def in_words(c: Candidate, report: Report) -> str:
    """Speed at the smallest batch, size and accuracy against the baseline, in one phrase."""
    base, m = report.baseline, c.metrics
    if m is None or base.metrics is None:
        return c.error or c.status
    parts = []
    keys = sorted(m.latency_ms, key=int)
    if keys:
        speed = speedup(c, base, keys[0])
        if speed:
            parts.append(_times(speed, "faster", "slower") + f" at batch {keys[0]}")
    if m.size_bytes:
        parts.append(_times(base.metrics.size_bytes / m.size_bytes, "smaller", "larger"))
    drop = (base.metrics.accuracy - m.accuracy) * 100
    unit = "fidelity points" if report.metric == "fidelity" else "points"
    parts.append(f"{abs(drop):.2f} {unit} {'lost' if drop >= 0 else 'gained'}")
    return ", ".join(parts)


def artifact_path(c: Candidate, report: Report) -> str | None:
    """The artifact as the user reaches it: under the run directory when it is known."""
    if not c.artifact:
        return None
    return str(PurePosixPath(report.run_dir) / c.artifact) if report.run_dir else c.artifact


def is_onnx(c: Candidate) -> bool:
    runtime = c.metrics.runtime if c.metrics else ""
    return bool(c.artifact and c.artifact.endswith(".onnx")) or runtime == "onnxruntime"


def load_snippet(c: Candidate, report: Report) -> str:
    path = artifact_path(c, report)
    example = ('tokens = ...  # the same inputs as the original model (input_ids, attention_mask)\n'
               'embeddings = model(*tokens)' if report.task == "embedding" else
               "x = ...  # a batch shaped like the original model's input\nlogits = model(x)")
    return (f"import torchslim\n\nmodel = torchslim.load({path!r})  # runtime {c.metrics.runtime if c.metrics else '?'}, "
            f"from the manifest beside it\n{example}")


def onnx_snippet(c: Candidate, report: Report) -> str:
    """Plain onnxruntime: no torchslim (nor torch) needed where the model is served."""
    path = artifact_path(c, report)
    if report.task == "embedding":
        feed = ("feed = {i.name: np.ones((1, 16), dtype=np.int64) for i in session.get_inputs()}  "
                "# your token ids / masks here")
    else:
        feed = ("first = session.get_inputs()[0]\n"
                "x = np.zeros([1, *first.shape[1:]], dtype=np.float32)  # your batch here (dim 0 is the batch)\n"
                "feed = {first.name: x}")
    return ("import numpy as np\nimport onnxruntime as ort\n\n"
            f"session = ort.InferenceSession({path!r}, providers=[\"CPUExecutionProvider\"])\n"
            f"{feed}\noutputs = session.run(None, feed)  # a list of numpy arrays")
