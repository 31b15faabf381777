"""The front door prints nothing that is ours to fix: the install and the run end without warnings."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_reads_without_a_setuptools_deprecation():
    """`pip install` printed setuptools' deprecation of ``project.license`` as a TOML table."""
    config = pytest.importorskip("setuptools.config.pyprojecttoml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read = config.read_configuration(ROOT / "pyproject.toml")
    assert read["project"]["license"] == "Apache-2.0"
    assert not [w for w in caught if "deprecat" in str(w.message).lower()], [str(w.message) for w in caught]


@pytest.mark.parametrize("fixed", [False, True], ids=["tqdm-as-is", "as-the-probe-runs-it"])
def test_memory_probe_process_leaves_no_semaphore_for_the_resource_tracker(fixed):
    """The memory probe is a forkserver child that ends with ``os._exit``; torch.compile's first
    call opens a tqdm bar there. Without the probe's set-up, tqdm's multiprocessing lock outlives
    the process and the run ends with "leaked semaphore objects" (the unfixed case proves the
    check can see it)."""
    code = "\n".join([
        "import multiprocessing, os, tqdm",
        "from torchslim.bench._memory import _no_tqdm_semaphore",
        "multiprocessing.set_start_method('forkserver')",
        "_no_tqdm_semaphore()" if fixed else "",
        "for _ in tqdm.tqdm(range(3)): pass",
        "os._exit(0)",
    ])
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert ("leaked semaphore" in run.stderr) is not fixed, run.stderr[-2000:]
