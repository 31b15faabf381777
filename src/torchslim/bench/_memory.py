"""Peak memory of running an artifact.

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
from pathlib import Path

import torch


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory(path: str | Path, batch_size: int, *, runtime: str | None = None, device="cpu", timeout_s: float = 300) -> int:
    """Peak bytes needed to load ``path`` and run one batch of ``batch_size``."""
    if torch.device(device).type == "cuda":
        from torchslim.artifacts import load, read_manifest

        fn = load(path, runtime=runtime, device=device)
        inputs = read_manifest(path).example_inputs(batch_size, device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        with torch.no_grad():
            fn(*inputs)
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - before)
    cmd = [sys.executable, "-m", "torchslim.bench._memory", str(path), str(batch_size), runtime or ""]
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"memory probe failed: {tail[0]}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"])


def _probe(path: str, batch_size: int, runtime: str | None) -> int:
    import torch._export.serde.serialize  # noqa: F401  (library code belongs in the baseline)

    from torchslim.artifacts import load, read_manifest
    from torchslim.runtime import get_runtime

    manifest = read_manifest(path)
    get_runtime(runtime or manifest.runtime)  # imports the runtime's backend before the baseline
    inputs = manifest.example_inputs(batch_size)
    baseline = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    fn = load(path, runtime=runtime)
    with torch.no_grad():
        fn(*inputs)
    return (_status_kib("VmHWM") - baseline) * 1024


if __name__ == "__main__":
    _path, _batch, _runtime = sys.argv[1], int(sys.argv[2]), (sys.argv[3] or None)
    print(json.dumps({"peak_bytes": _probe(_path, _batch, _runtime)}))
