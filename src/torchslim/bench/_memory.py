"""Peak memory and cold start of running an artifact.

CUDA: ``torch.cuda.max_memory_allocated`` after a reset, in this process.
CPU: a fresh Python process loads the artifact and runs one batch; we report the growth
of its resident set's high-water mark (VmHWM) over the resident set it had after imports,
i.e. weights + activations + runtime workspaces of that inference alone. A fresh process
is used because a long-lived one never returns freed memory to the OS, so its peak says
more about what ran before than about this model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


@dataclass(frozen=True)
class Probe:
    peak_bytes: int  # memory to load the artifact and run one batch
    cold_start_ms: float  # load the artifact + its first call, in a process that has imported torchslim


def probe_artifact(path: str | Path, batch_size: int, *, runtime: str | None = None, device="cpu",
                   timeout_s: float = 300) -> Probe:
    """Peak memory and cold start of loading ``path`` and running one batch of ``batch_size``.

    The first call of a runtime that compiles (compile, TensorRT from ONNX) includes its
    compile, with whatever on-disk kernel cache this machine already has."""
    if torch.device(device).type == "cuda":
        return _probe_cuda(path, batch_size, runtime, device)
    cmd = [sys.executable, "-m", "torchslim.bench._memory", str(path), str(batch_size), runtime or ""]
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"memory probe failed: {tail[0]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return Probe(int(result["peak_bytes"]), float(result["cold_start_ms"]))


def peak_memory(path: str | Path, batch_size: int, *, runtime: str | None = None, device="cpu", timeout_s: float = 300) -> int:
    """Peak bytes needed to load ``path`` and run one batch of ``batch_size``."""
    return probe_artifact(path, batch_size, runtime=runtime, device=device, timeout_s=timeout_s).peak_bytes


def _probe_cuda(path, batch_size: int, runtime: str | None, device) -> Probe:
    from torchslim.artifacts import load, read_manifest

    inputs = read_manifest(path).example_inputs(batch_size, device)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    started = time.perf_counter()
    fn = load(path, runtime=runtime, device=device)
    with torch.no_grad():
        fn(*inputs)
    torch.cuda.synchronize()
    cold = (time.perf_counter() - started) * 1e3
    return Probe(int(torch.cuda.max_memory_allocated() - before), cold)


def _probe(path: str, batch_size: int, runtime: str | None) -> dict:
    import torch._export.serde.serialize  # noqa: F401  (library code belongs in the baseline)

    from torchslim.artifacts import load, read_manifest
    from torchslim.runtime import get_runtime

    manifest = read_manifest(path)
    get_runtime(runtime or manifest.runtime)  # imports the runtime's backend before the baseline
    inputs = manifest.example_inputs(batch_size)
    baseline = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    started = time.perf_counter()
    fn = load(path, runtime=runtime)
    with torch.no_grad():
        fn(*inputs)
    cold = (time.perf_counter() - started) * 1e3
    return {"peak_bytes": (_status_kib("VmHWM") - baseline) * 1024, "cold_start_ms": round(cold, 3)}


if __name__ == "__main__":
    _path, _batch, _runtime = sys.argv[1], int(sys.argv[2]), (sys.argv[3] or None)
    print(json.dumps(_probe(_path, _batch, _runtime)))
