"""seeds/000's Performance class: the document's four methods run, and each really does its job."""

from __future__ import annotations

import io
import os

import pytest
import torch
import torch.nn as nn

from torchslim.errors import ConfigError
from torchslim.performance import Performance
from torchslim.zoo import create_model


def _zero_fraction(model: nn.Module) -> float:
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def _saved_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def test_the_documents_code_runs_and_each_method_does_its_job():
    torch.manual_seed(0)
    model = create_model("digits-cnn")
    perf = Performance(model)
    device = perf.gpu_acceleration()
    assert next(perf.model.parameters()).device.type == device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    data, target = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    data, target = perf.distributed_training(data, target)
    assert data.device.type == target.device.type == device.type
    if torch.cuda.device_count() > 1:  # several GPUs in one process: DataParallel around the model
        assert isinstance(perf.model, nn.DataParallel) and perf.model.module is model
    else:  # one device, one process: the very same model, no wrapper
        assert perf.model is model
    wrapped = perf.model
    perf.distributed_training(data, target)
    assert perf.model is wrapped  # calling it again does not wrap twice
    assert perf.model(data).shape == (8, 10)

    quantized = perf.model_quantization()
    assert quantized is not perf.model
    assert _saved_bytes(quantized) < 0.9 * _saved_bytes(perf.model)  # int8 Linear weights: really smaller
    with torch.no_grad():
        assert quantized(data.cpu() if device.type == "cpu" else data).shape == (8, 10)

    before = {k: v.clone() for k, v in perf.model.state_dict().items()}
    pruned = perf.model_pruning(amount=0.3)
    assert abs(_zero_fraction(pruned) - 0.3) < 0.01
    assert not any(n.endswith("weight_orig") for n, _ in pruned.named_parameters())  # permanent
    assert any(not torch.equal(before[k], v) for k, v in pruned.state_dict().items())


def test_pruning_takes_the_layers_the_model_has():
    model = nn.Sequential(nn.Linear(10, 40), nn.ReLU(), nn.Linear(40, 3))  # no conv1/fc1 names at all
    Performance(model).model_pruning(amount=0.5)
    assert abs(_zero_fraction(model) - 0.5) < 0.01
    with pytest.raises(ConfigError):
        Performance(model).model_pruning(amount=1.5)


def _ddp_worker(rank: int, world: int, init_file: str, result_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        perf = Performance(nn.Linear(4, 2))
        data, target = perf.distributed_training(torch.randn(3, 4), torch.zeros(3))
        from torch.nn.parallel import DistributedDataParallel

        ok = isinstance(perf.model, DistributedDataParallel) and perf.model(data).shape == (3, 2)
        with open(os.path.join(result_dir, f"rank{rank}"), "w") as f:
            f.write("ddp" if ok else f"no: {type(perf.model).__name__}")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_wrapper_with_several_processes(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    assert [(tmp_path / f"rank{r}").read_text() for r in range(2)] == ["ddp", "ddp"]


@pytest.mark.gpu
def test_gpu_acceleration_moves_to_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    perf = Performance(create_model("digits-mlp"))
    assert perf.gpu_acceleration().type == "cuda"
    assert next(perf.model.parameters()).is_cuda
