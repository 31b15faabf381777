"""A hostile ``.pt2`` never runs code: not through ``load``, ``bench`` or the memory probe.

Each archive is a real torchslim artifact with one member replaced, the way an attacker
would edit a shared file; the payload would create a marker file if it ever ran.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

from torchslim.artifacts import load, manifest_path, save_exported
from torchslim.bench._memory import peak_memory
from torchslim.cli import run
from torchslim.core.integrity import file_digests
from torchslim.errors import ArtifactError


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickled(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(_Payload(marker), buffer)
    return buffer.getvalue()


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy the zip ``src`` to ``dst``, passing every member's (inner name, bytes) through ``edit``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            inner = "/".join(info.filename.split("/")[1:])
            zout.writestr(info.filename, edit(inner, zin.read(info.filename)))
    # An attacker edits the manifest too: its digest matches the hostile file.
    manifest = json.loads(manifest_path(src).read_text())
    manifest["sha256"] = file_digests(dst)
    manifest_path(dst).write_text(json.dumps(manifest))
    return dst


def _sample_inputs(marker):
    return lambda inner, data: _pickled(marker) if inner.startswith("data/sample_inputs/") else data


def _pickled_weight(marker):
    def edit(inner, data):
        if inner == "data/weights/model_weights_config.json":
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if inner == "data/weights/weight_0":
            return _pickled(marker)
        return data
    return edit


def _opaque_constant(marker):
    def edit(inner, data):
        if inner == "data/constants/model_constants_config.json":
            return json.dumps({"config": {"c": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                                                "tensor_meta": None}}}).encode()
        return data
    return edit


HOSTILE = {"sample_inputs": _sample_inputs, "pickled_weight": _pickled_weight, "opaque_constant": _opaque_constant}


@pytest.fixture(scope="module")
def clean_artifact(tmp_path_factory) -> Path:
    # Shaped for the digits data, so `bench` gets as far as loading it.
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    return save_exported(model.eval(), tmp_path_factory.mktemp("clean") / "model.pt2", (torch.randn(2, 1, 8, 8),))


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_archive_runs_no_code(kind, clean_artifact, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = _rewrite(clean_artifact, tmp_path / "evil.pt2", HOSTILE[kind](marker))
    with pytest.raises(ArtifactError, match="Refusing to load"):
        load(evil)
    assert run(["bench", "--model", str(evil), "--batch-sizes", "1"]) == 2
    assert "Refusing to load" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="memory probe failed"):
        peak_memory(evil, 1)
    assert not marker.exists()


def test_the_payload_would_run_without_the_check(clean_artifact, tmp_path):
    """The hostile archive is real: torch.export.load on its own executes it."""
    marker = tmp_path / "pwned"
    evil = _rewrite(clean_artifact, tmp_path / "evil.pt2", _sample_inputs(marker))
    try:
        torch.export.load(str(evil))
    except Exception:
        pass
    assert marker.exists()


def test_a_flipped_bit_is_refused(clean_artifact, tmp_path):
    data = bytearray(clean_artifact.read_bytes())
    with zipfile.ZipFile(clean_artifact) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("data/weights/weight_0"))
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    offset = info.header_offset + 30 + name_len + extra_len + 5  # inside the first weight's bytes
    data[offset] ^= 0x40
    broken = tmp_path / "broken.pt2"
    broken.write_bytes(bytes(data))
    # A manifest from before digests: the zip's own CRCs still catch the flip.
    manifest = json.loads(manifest_path(clean_artifact).read_text())
    del manifest["sha256"]
    manifest_path(broken).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="CRC"), pytest.warns(UserWarning, match="before torchslim recorded digests"):
        load(broken)


def test_clean_and_quantized_artifacts_still_load(clean_artifact, tmp_path):
    import torchslim

    assert load(clean_artifact)(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    x = torch.randn(3, 64)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)).eval()
    quantized = torchslim.quantize(model, torchslim.DynamicInt8Config(), example_inputs=(x,))
    path = save_exported(quantized, tmp_path / "q.pt2", (x,))
    assert torch.allclose(load(path)(x), quantized(x), atol=1e-4)
