"""Progress people can follow: a live line on a terminal (no `core/log.py:35` on every line), plain
flushed lines when piped (`optimize ... | cat`, `train ... | cat`), and the time-left estimate."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from torchslim.core.progress import CandidateProgress

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "COLUMNS": "160"}
TIMESTAMP = re.compile(r"^\d\d:\d\d:\d\d ")

# optimize through the Python API with the fake steps and measurements of test_pipeline: real
# candidates, real artifacts, no training and no timing.
OPTIMIZE = """
import sys, torch, torch.nn as nn
from tests.pipeline.test_pipeline import FAKE_STEPS, fake_measure
from torchslim.pipeline import MeasureOptions, RunOptions, load_recipe, optimize
torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
recipe = {"candidates": [{"name": "one", "steps": [{"scale": {"factor": 1.0}}]},
                         {"name": "two", "steps": [{"scale": {"factor": 1.0}}, {"scale": {"factor": 1.0}}]},
                         {"name": "three", "steps": [{"scale": {"factor": 1.0}}]}]}
optimize(model, "digits", load_recipe(recipe, step_table=FAKE_STEPS),
         run=RunOptions(out=sys.argv[1], device="cpu", html=False),
         measure=MeasureOptions(batch_sizes=(1,), measure_fn=fake_measure({})))
"""


@pytest.mark.slow  # a fresh Python importing torch, then a run
def test_piped_optimize_prints_one_plain_line_per_step(tmp_path):
    proc = subprocess.run([sys.executable, "-c", OPTIMIZE, str(tmp_path / "run")], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    assert "\x1b" not in err and "\r" not in err  # no colours, no redrawing
    lines = [ln for ln in err.splitlines() if ln.strip()]
    ours = [ln for ln in lines if TIMESTAMP.match(ln)]
    assert "log.py" not in err
    for expected in ("[1/3] one: step 1/1 scale", "[2/3] two: step 1/2 scale", "[2/3] two: step 2/2 scale",
                     "[3/3] three: step 1/1 scale", "[1/3] done; about", "[2/3] done; about", "best (latency)"):
        assert any(expected in ln for ln in ours), (expected, err)


@pytest.mark.slow  # a fresh Python importing torch, then a run
def test_piped_train_prints_each_epoch_with_loss_and_validation(tmp_path):
    cmd = [sys.executable, "-m", "torchslim", "train", "--model", "digits-mlp", "--epochs", "2",
           "--out", str(tmp_path / "train")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr
    epochs = [ln for ln in proc.stderr.splitlines() if re.match(r"^\d\d:\d\d:\d\d epoch \d", ln)]
    assert len(epochs) == 2, proc.stderr
    for n, line in enumerate(epochs, start=1):
        assert line.split()[1:3] == ["epoch", str(n)] and " loss " in line and "val_accuracy" in line


def _run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=ENV, cwd=cwd)
    os.close(slave)
    chunks: list[bytes] = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    code = proc.wait(timeout=300)
    reader.join(timeout=10)
    os.close(master)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow  # a fresh Python importing torch, then a run
def test_optimize_on_a_terminal_shows_a_live_line_and_no_source_locations(tmp_path):
    code, out = _run_on_a_terminal([sys.executable, "-c", OPTIMIZE, str(tmp_path / "run")], ROOT)
    assert code == 0, out[-3000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "log.py" not in plain and "progress.py" not in plain
    assert "candidate 2/3 two" in plain  # the live line: candidate i/N and its name
    assert re.search(r"about \d+ (s|min) left", plain)  # and an estimate once one candidate has finished
    assert "[3/3] three: step 1/1 scale" in plain  # the messages still scroll above it


def test_time_left_is_the_mean_duration_times_the_candidates_left():
    p = CandidateProgress(5, durations=[], live=False)
    assert p.seconds_left() is None and p.left_text() == "estimating the time left"
    p.durations += [10.0, 20.0]
    p.start(3, "c")  # 3, 4 and 5 are still to run, 15 s each
    assert p.seconds_left() == pytest.approx(45.0, abs=1.0)
    assert p.left_text() in ("about 45 s left", "about 44 s left")
    capped = CandidateProgress(5, durations=[10.0, 20.0], started=0.0, time_budget=0.0, live=False)
    capped.start(3, "c")
    assert capped.seconds_left() == 0.0  # the time budget is spent: no new candidate will start
