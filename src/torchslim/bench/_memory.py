"""Peak memory and cold start of running an artifact.

CUDA: ``torch.cuda.max_memory_allocated`` after a reset, in this process.
CPU: a fresh process loads the artifact and runs one batch; we report the growth of its
resident set's high-water mark (VmHWM) over the resident set it had after imports, i.e.
weights + activations + runtime workspaces of that inference alone. A fresh process is used
because a long-lived one never returns freed memory to the OS, so its peak says more about
what ran before than about this model. The process is forked from a multiprocessing
forkserver that has imported torch and torchslim once (and never ran a kernel, so no thread
pool is inherited): each probe then costs the artifact's load and first call, not the ~4 s
of a fresh interpreter's imports.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from torchslim.core.registry import load_plugins


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
    ctx = _forkserver()
    receive, send = ctx.Pipe(duplex=False)
    caller = {"env": dict(os.environ), "cwd": os.getcwd(), "sys_path": list(sys.path), "threads": torch.get_num_threads()}
    child = ctx.Process(target=_child, args=(send, str(path), batch_size, runtime, caller), daemon=True)
    with _main_left_out():
        child.start()
    send.close()
    try:
        if not receive.poll(timeout_s):
            raise RuntimeError(f"memory probe failed: no result within {timeout_s:g} s")
        status, result = receive.recv()
    except EOFError:  # it died before sending anything (killed, out of memory, a crash in native code)
        child.join(5)
        status, result = "error", f"the probe process died (exit code {child.exitcode})"
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        receive.close()
    if status != "ok":
        raise RuntimeError(f"memory probe failed: {result}")
    return Probe(int(result["peak_bytes"]), float(result["cold_start_ms"]))


_PRELOAD = ["torch", "torch._export.serde.serialize", "torchslim.artifacts", "torchslim.bench._memory"]


@contextmanager
def _main_left_out():
    """Start a probe without re-running the caller's script. multiprocessing imports the parent's
    ``__main__`` in the child (by its file or module name) before the target runs: a user's
    script that calls ``torchslim.optimize`` with no ``if __name__ == "__main__"`` guard ran its
    whole search again inside the probe (which died on the run folder's lock). The probe's target
    lives in this module and needs nothing from ``__main__``; the preparation data is taken in
    ``start()``, so hiding the two attributes for that call is enough."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    try:
        if "__spec__" in saved:
            main.__spec__ = None
        if "__file__" in saved:
            del main.__file__
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


def _forkserver():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)  # takes effect when the server starts (first probe)
    return ctx


def _child(conn, path: str, batch_size: int, runtime: str | None, caller: dict) -> None:
    """In the forked process: the caller's environment, directory, import path, thread count
    and plug-ins (TORCHSLIM_PLUGINS as the caller has it now), then one probe."""
    try:
        os.environ.clear()
        os.environ.update(caller["env"])
        os.chdir(caller["cwd"])
        sys.path[:] = caller["sys_path"]
        torch.set_num_threads(caller["threads"])
        _no_tqdm_semaphore()
        load_plugins()
        conn.send(("ok", _probe(path, batch_size, runtime)))
    except BaseException as e:  # noqa: BLE001  (sent back and raised in the caller)
        lines = str(e).strip().splitlines() or [""]
        conn.send(("error", f"{type(e).__name__}: {lines[-1]}"))
    finally:
        conn.close()


def _no_tqdm_semaphore() -> None:
    """torch.fx's interpreter (torch.compile's first call) opens a tqdm bar, and tqdm's first bar
    creates a multiprocessing lock: a named semaphore. The probe ends with ``os._exit`` (no
    finalizers), so the semaphore outlived it and the run ended with the resource tracker's
    "leaked semaphore objects" warning. The probe runs one thread: a thread lock is enough."""
    try:
        from tqdm.std import TqdmDefaultWriteLock
    except ImportError:
        return
    TqdmDefaultWriteLock.mp_lock = None  # tqdm creates it only when the attribute is missing


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
