"""QAT's case: the loop trains a torch.export-ed, PT2E-prepared GraphModule (which refuses
.train()/.eval()) and switches its batch norm between train and eval behaviour correctly."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from torchslim.data import DataBundle, load_data
from torchslim.train import TrainConfig, fit
from torchslim.train._modules import is_exported_graph, set_mode


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 64, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


@pytest.mark.slow
def test_fit_trains_an_exported_pt2e_qat_graph():
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    full = load_data("digits")
    x, y = full.train.tensors
    data = DataBundle("s", TensorDataset(x[:512], y[:512]), full.val, full.test, num_classes=10, input_shape=(1, 8, 8))
    torch.manual_seed(0)
    batch = torch.export.Dim("batch", min=1, max=4096)
    graph = torch.export.export(SmallCNN().train(), (torch.randn(4, 1, 8, 8),), dynamic_shapes=({0: batch},)).module()
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config(is_qat=True))
    prepared = prepare_qat_pt2e(graph, quantizer)
    assert is_exported_graph(prepared)

    result = fit(prepared, data, TrainConfig(epochs=3, batch_size=32))
    assert result.best_val_accuracy > 0.8  # it really trained through fake-quantization
    from torchao.quantization.pt2e import disable_observer

    prepared.apply(disable_observer)  # freeze quantization ranges: only batch norm may vary now
    sample = x[:16]
    with torch.no_grad():  # eval-mode batch norm: a sample's output does not depend on its batch
        torch.testing.assert_close(prepared(sample)[:1], prepared(sample[:1]), rtol=1e-4, atol=1e-4)
        set_mode(prepared, True)
        assert not torch.allclose(prepared(sample)[:1], prepared(sample[:1]), atol=1e-4)
