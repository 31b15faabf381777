"""DistributedDataParallel on CPU: 2 gloo processes launched by torchrun keep identical
gradients and parameters, see different shards of the data, and agree on the metric."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import torchslim

SRC = str(Path(torchslim.__file__).resolve().parents[1])

_WORKER = textwrap.dedent(
    """
    import json, os, sys, torch
    import torch.distributed as dist
    from safetensors.torch import save_file
    from torch.utils.data import TensorDataset
    from torchslim import zoo
    from torchslim.data import DataBundle, load_data
    from torchslim.train import TrainConfig, fit

    out = sys.argv[1]
    full = load_data("digits")
    x, y = full.train.tensors
    data = DataBundle("s", TensorDataset(x[:320], y[:320]), full.val, full.test, num_classes=10, input_shape=(1, 8, 8))
    torch.manual_seed(0)
    model = zoo.create_model("digits-cnn")  # BN buffers are broadcast from rank 0 by DDP
    grads, seen = {}, []

    class Spy:
        def on_step_end(self, state):
            if state.step == 2:  # after an accumulated (no_sync + sync) step
                grads.update({"grad." + n: p.grad.detach().clone() for n, p in state.model.named_parameters()})

    original_forward = model.forward
    def recording_forward(x):
        seen.append(float(x.sum()))
        return original_forward(x)
    model.forward = recording_forward

    config = TrainConfig(epochs=2, batch_size=32, grad_accum_steps=2, checkpoint_every_steps=2)
    result = fit(model, data, config, hooks=[Spy()], out_dir=os.path.join(out, "run"))
    rank = int(os.environ["RANK"])
    tensors = {**grads, **{"param." + k: v.contiguous() for k, v in model.state_dict().items()}}
    save_file(tensors, os.path.join(out, f"rank{rank}.safetensors"))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"best": result.best_val_accuracy, "steps": result.steps, "first_batch": seen[0], "world": int(os.environ["WORLD_SIZE"])}, f)
    """
)


@pytest.mark.distributed
@pytest.mark.slow
def test_two_gloo_processes_stay_identical(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert any(k.startswith("grad.") for k in rank0) and rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name  # all-reduced: bit-identical
    info0, info1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert info0["world"] == info1["world"] == 2
    assert info0["best"] == info1["best"]  # the metric was reduced, not per-rank
    # 320 samples / 2 ranks / 32 per micro-batch = 5 micro-batches = 3 steps of 2, 2 and 1 per epoch
    assert info0["steps"] == info1["steps"] == 6
    assert info0["first_batch"] != info1["first_batch"]  # DistributedSampler: different shards
    # only rank 0 wrote the checkpoint and the metrics
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len([line for line in lines if '"kind": "epoch"' in line]) == 2
