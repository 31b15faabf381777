"""CUDA-only paths: fp16 autocast with GradScaler, bf16, and GPU memory statistics in the logs."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import TensorDataset

from torchslim import zoo
from torchslim.data import DataBundle, load_data
from torchslim.train import TrainConfig, fit

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def small_digits() -> DataBundle:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    full = load_data("digits")
    x, y = full.train.tensors
    return DataBundle("digits-small", TensorDataset(x[:512], y[:512]), full.val, full.test, num_classes=10, input_shape=(1, 8, 8))


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_on_cuda(small_digits, tmp_path, precision):
    torch.manual_seed(0)
    model = zoo.create_model("digits-cnn")
    dtypes = []

    def loss_fn(out, y, _x):
        dtypes.append(out.dtype)
        return torch.nn.functional.cross_entropy(out.float(), y)

    result = fit(model, small_digits, TrainConfig(epochs=3, batch_size=32, precision=precision, clip_grad_norm=1.0, log_every_steps=1),
                 device="cuda", loss_fn=loss_fn, out_dir=tmp_path)
    assert dtypes[0] == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    assert result.best_val_accuracy > 0.8
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in records if r["kind"] == "train")
    assert step["cuda_max_allocated_mib"] >= step["cuda_allocated_mib"] > 0
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    if precision == "fp16":
        assert state["scaler"]["scale"] > 0  # the GradScaler was live and saved
