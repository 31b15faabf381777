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


def test_a_script_without_a_main_guard_is_not_run_again_by_the_memory_probe(tmp_path):
    """The probe is a multiprocessing child, which imports the parent's ``__main__``: a user's
    notebook-style script (no ``if __name__ == "__main__"``) ran its whole search again inside it."""
    import torch

    import torchslim

    nn_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    artifact = torchslim.export(nn_model, tmp_path / "art", (torch.randn(2, 1, 8, 8),), {"format": "onnx"})
    runs = tmp_path / "runs.txt"
    script = tmp_path / "no_guard.py"
    script.write_text("\n".join([
        "import sys",
        f"open({str(runs)!r}, 'a').write('ran\\n')",
        "from torchslim.bench._memory import probe_artifact",
        f"print('PEAK', probe_artifact({str(artifact)!r}, 1).peak_bytes)",
    ]))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0 and "PEAK" in run.stdout, run.stderr[-2000:]
    assert runs.read_text() == "ran\n"  # the script's top level ran once: in its own process only


def test_a_bad_plugin_module_is_a_user_error_not_a_crash(tmp_path):
    import os

    env = {**os.environ, "TORCHSLIM_PLUGINS": "no_such_plugin_module"}
    run = subprocess.run([sys.executable, "-m", "torchslim", "models"], capture_output=True, text=True, timeout=120,
                         env=env, cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "TORCHSLIM_PLUGINS names 'no_such_plugin_module'" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("message, category", [
    ("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning),
    ("Int8Tensor does not implement _stable_hash_for_caching. For PT2-compatible tensor subclasses, ...", UserWarning),
])
def test_the_command_line_silences_upstream_warnings_printed_mid_progress(message, category):
    """Seen in `make run`'s output between progress lines: torch's and torchao's, not the user's or ours."""
    from torchslim.cli import _quiet_upstream_deprecations

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _quiet_upstream_deprecations()
        warnings.warn(message, category, stacklevel=1)
        warnings.warn("a warning of the user's own", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a warning of the user's own"]
