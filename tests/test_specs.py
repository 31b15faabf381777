from __future__ import annotations

import numpy as np
import pytest
import torch

from torchslim.data import load_data
from torchslim.errors import ArtifactError, DataError, SpecError
from torchslim.specs import load_model, load_weights, resolve


def test_digits_split_is_fixed_and_disjoint(digits):
    again = load_data("digits")
    assert torch.equal(digits.test.tensors[0], again.test.tensors[0])
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1259, 179, 359)
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert float(digits.train.tensors[0].max()) <= 1.0


def test_npz_with_and_without_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 4)).astype("float32"), rng.integers(0, 3, 20)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y, x_val=x[:6], y_val=y[:6])
    bundle = load_data(f"npz:{path}")
    assert len(bundle.train) == 20 and len(bundle.val) + len(bundle.test) == 6
    np.savez(path, x_train=x, y_train=y, x_val=x[:6], y_val=y[:6], x_test=x[:4], y_test=y[:4])
    assert len(load_data(f"npz:{path}").test) == 4


@pytest.mark.parametrize(
    "arrays, expected",
    [
        ({}, "lacks x_train"),
        ({"x_train": np.zeros((0, 2)), "y_train": np.zeros(0, int), "x_val": np.zeros((1, 2)), "y_val": np.zeros(1, int)}, "empty"),
        ({"x_train": np.zeros((3, 2)), "y_train": np.zeros(2, int), "x_val": np.zeros((1, 2)), "y_val": np.zeros(1, int)}, "has 3 samples"),
    ],
)
def test_bad_npz(tmp_path, arrays, expected):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays) if arrays else np.savez(path, other=np.zeros(1))
    with pytest.raises(DataError, match=expected):
        load_data(f"npz:{path}")


def test_imagefolder(tmp_path):
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.fromarray(np.full((6, 6), i * 40 + (label == "dog") * 20, dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    bundle = load_data(f"imagefolder:{tmp_path}")
    assert bundle.num_classes == 2 and bundle.extra["classes"] == ["cat", "dog"]
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 10
    x, y = bundle.train[0]
    assert x.shape == (1, 6, 6) and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0


def test_module_function_data():
    bundle = load_data("tests.fixtures.user_code:make_data")
    assert bundle.num_classes == 2 and len(bundle.test) > 0


@pytest.mark.parametrize(
    "spec, err, words",
    [
        ("cifar", SpecError, "Unknown DATA spec"),
        ("npz:/no/such/file.npz", SpecError, "does not exist"),
        ("imagefolder:/no/such/dir", SpecError, "not a directory"),
        ("no_such_module_xyz:fn", SpecError, "cannot import"),
        ("tests.fixtures.user_code:missing", SpecError, "no callable"),
    ],
)
def test_bad_data_specs(spec, err, words):
    with pytest.raises(err, match=words):
        load_data(spec)


def test_factory_spec_with_weights(tmp_path, digits):
    model = resolve("tests/fixtures/user_code.py:make_model", "digits", log=lambda m: None)[0].model
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    handle = load_model("tests/fixtures/user_code.py:make_model", digits, weights=path)
    for a, b in zip(handle.model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not handle.trained_now


def test_factory_without_weights_is_trained_with_notice(digits):
    notices = []
    handle = load_model("tests.fixtures.user_code:make_model", digits, log=notices.append)
    assert handle.trained_now and any("trained" in n for n in notices)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("resnet-9000", "Unknown zoo model"),
        ("tests/fixtures/nope.py:make_model", "does not exist"),
        ("tests/fixtures/user_code.py:missing", "has no attribute"),
        ("tests/fixtures/user_code.py:not_a_module", "not a torch.nn.Module"),
        ("tests/fixtures/user_code.py:CONSTANT", "not callable"),
        ("", "Empty MODEL spec"),
    ],
)
def test_bad_model_specs(spec, words, digits):
    with pytest.raises(SpecError, match=words):
        load_model(spec, digits, log=lambda m: None)


def test_corrupt_and_mismatched_weights(tmp_path):
    from torchslim.zoo import create_model

    model = create_model("digits-mlp")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="Cannot read weights"):
        load_weights(model, corrupt)
    other = tmp_path / "other.pt"
    torch.save(create_model("lenet-300-100").state_dict(), other)
    with pytest.raises(ArtifactError, match="do not fit"):
        load_weights(model, other)
    assert corrupt.read_bytes() == b"not a checkpoint"  # the user's file is untouched


def test_pickled_module_is_refused(tmp_path):
    from torchslim.zoo import create_model

    path = tmp_path / "whole.pt"
    torch.save(create_model("digits-mlp"), path)  # a pickled nn.Module, not a state_dict
    with pytest.raises(ArtifactError):
        load_weights(create_model("digits-mlp"), path)


def test_safetensors_weights(tmp_path):
    from safetensors.torch import save_file

    from torchslim.zoo import create_model

    src = create_model("digits-mlp")
    path = tmp_path / "w.safetensors"
    save_file(src.state_dict(), str(path))
    dst = create_model("digits-mlp")
    load_weights(dst, path)
    assert torch.equal(dst.net[1].weight, src.net[1].weight)


@pytest.mark.slow
def test_two_processes_on_a_fresh_cache_train_a_zoo_model_once(tmp_path):
    """Parallel jobs (or test workers) share the cache: the second waits for the first's
    weights instead of training the same model beside it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("from torchslim.specs import resolve\n"
            "handle, _ = resolve('digits-mlp', 'digits', log=lambda m: None)\n"
            "print('trained' if handle.trained_now else 'cached')\n")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "TORCHSLIM_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    jobs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = sorted(job.communicate(timeout=300)[0].strip() for job in jobs)
    assert [job.returncode for job in jobs] == [0, 0]
    assert outputs == ["cached", "trained"]
