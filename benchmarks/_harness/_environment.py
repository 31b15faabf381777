"""What a measurement ran on: CPU model and flags, cores, library versions, load, git commit.

Read without importing the runtimes (versions come from the installed distributions), so
capturing costs milliseconds and never changes what is measured.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The flags that decide which int8/bf16 kernels the runtimes pick; the full list is ~150 names.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
LIBRARIES = ("torch", "torchao", "onnx", "onnxruntime", "openvino", "nncf", "transformers", "torch-pruning", "ray")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def uptime() -> str:
    """``uptime``'s line (load averages over 1, 5 and 15 minutes), or the load averages alone."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:  # not Linux: the model from platform, no flags
        pass
    return {"cpu": model, "cpu_flags": [f for f in CPU_FLAGS if f in flags], "cores": os.cpu_count()}


def versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit() -> str | None:
    """HEAD of the checkout the benchmark ran from, ``+dirty`` when it had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def capture() -> dict:
    """The environment at the start of a run; ``uptime_after`` is added when results are saved."""
    return {**cpu(), "platform": platform.platform(), "versions": versions(), "git_commit": git_commit(),
            "uptime_before": uptime()}
