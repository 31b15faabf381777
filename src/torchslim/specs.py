"""MODEL spec strings -> a trained ``nn.Module`` (SPEC.md section 2).

- a zoo name (``digits-cnn``, ...): trained on the data on first use, then cached
- ``path/to/file.py:factory`` or ``package.module:factory`` (+ ``weights``): a callable
  returning an ``nn.Module``; without weights it is trained first, with a notice
- ``hf:DIR_OR_ALIAS``: a local Hugging Face model (see ``torchslim.hf``)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from torchslim import zoo
from torchslim.core.cache import cache_dir
from torchslim.core.model import ModelHandle, load_weights
from torchslim.data import DataBundle, load_data
from torchslim.errors import ArtifactError, SpecError

MODEL_SPEC_HELP = (
    f"Valid MODEL specs: a built-in name ({', '.join(zoo.list_models())}), "
    "'path/to/file.py:factory' or 'package.module:factory' (a callable returning an nn.Module; "
    "trained weights via --weights FILE), or 'hf:DIR' / 'hf:minilm' for a local Hugging Face model."
)
ZOO_CACHE_VERSION = 2  # bump when a zoo architecture or its training recipe changes


def resolve(
    model_spec: str = "digits-cnn",
    data_spec: str = "digits",
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> tuple[ModelHandle, DataBundle]:
    """Resolve a MODEL and a DATA spec together (text data needs the model's tokenizer)."""
    model_spec = (model_spec or "").strip()
    if model_spec.startswith("hf:"):
        from torchslim.hf import load_hf, reconcile_task

        handle = load_hf(model_spec, weights=weights)
        tokenizer = getattr(handle.hf, "tokenizer", None)
        data = load_data(data_spec, seed=seed, tokenizer=tokenizer)
        reconcile_task(handle, data, log)
        handle.model.to(device).eval()
        return handle, data
    data = load_data(data_spec, seed=seed)
    return load_model(model_spec, data, weights=weights, device=device, seed=seed, log=log), data


def load_model(
    spec: str,
    data: DataBundle,
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> ModelHandle:
    spec = (spec or "").strip()
    if not spec:
        raise SpecError(f"Empty MODEL spec. {MODEL_SPEC_HELP}")
    if ":" not in spec:
        return _load_zoo(spec, data, weights, device, seed, log)
    model = build_model(spec, data)
    if weights is not None:
        load_weights(model, weights)
        return ModelHandle(model.to(device).eval(), spec)
    log(f"notice: {spec} was given without --weights, so it is trained on {data.spec} first "
        "(optimizing an untrained model measures nothing).")
    _train(model, data, epochs=20, device=device, seed=seed, log=log)
    return ModelHandle(model.eval(), spec, trained_now=True)


def raised(e: BaseException) -> str:
    """How user code failed, in words: "raised ValueError: ..." or "called sys.exit(0)"."""
    if isinstance(e, SystemExit):
        return (f"called sys.exit({e.code!r}); torchslim needs it to return (a factory returns the model; "
                "code that exits belongs under `if __name__ == '__main__':`)")
    return f"raised {type(e).__name__}: {e}"


def build_model(spec: str, data: DataBundle) -> nn.Module:
    """A fresh, untrained model for a zoo name or a factory spec (no training, no cache)."""
    spec = spec.strip()
    if ":" not in spec:
        _check_zoo_data(spec, data)
        return zoo.create_model(spec, num_classes=data.num_classes, input_shape=data.input_shape)
    module_part, _, attr = spec.rpartition(":")
    factory = _import_factory(spec, module_part, attr)
    try:
        model = factory()
    except (Exception, SystemExit) as e:  # sys.exit() in user code must not end torchslim with its code
        raise SpecError(f"MODEL spec {spec!r}: calling {attr}() {raised(e)}") from None
    if not isinstance(model, nn.Module):
        raise SpecError(
            f"MODEL spec {spec!r}: {attr}() returned {type(model).__name__}, not a torch.nn.Module. "
            "The factory must return the model instance."
        )
    if data.task == "classification":
        from torchslim.core.model_check import check_classifier

        check_classifier(model, data.example_inputs(2, split="train"), num_classes=data.num_classes,
                         what=f"MODEL {spec!r}")
    return model


def _check_zoo_data(name: str, data: DataBundle) -> None:
    zoo.get_entry(name)  # unknown names fail first, with the list of known ones
    if data.task != "classification" or data.input_shape is None or len(data.input_shape) != 3:
        raise SpecError(
            f"Zoo model {name!r} classifies images shaped (C, H, W); data {data.spec!r} gives "
            f"{data.task} samples shaped {data.input_shape}."
        )


def _import_factory(spec: str, module_part: str, attr: str) -> Callable:
    if module_part.endswith(".py") or "/" in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise SpecError(f"MODEL spec {spec!r}: file {module_part!r} does not exist.")
        name = "_torchslim_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        try:
            mod_spec.loader.exec_module(module)
        except (Exception, SystemExit) as e:
            del sys.modules[name]
            raise SpecError(f"MODEL spec {spec!r}: importing {module_part!r} {raised(e)}") from None
    else:
        try:
            module = importlib.import_module(module_part)
        except ImportError as e:
            raise SpecError(f"MODEL spec {spec!r}: cannot import {module_part!r} ({e}). {MODEL_SPEC_HELP}") from None
        except SystemExit as e:
            raise SpecError(f"MODEL spec {spec!r}: importing {module_part!r} {raised(e)}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise SpecError(f"MODEL spec {spec!r}: {module_part!r} has no attribute {attr!r}.")
    if not callable(factory):
        raise SpecError(f"MODEL spec {spec!r}: {attr!r} is not callable; it must be a function or class returning an nn.Module.")
    return factory


def _data_key(data: DataBundle) -> str:
    spec = data.spec
    if ":" in spec:
        target = Path(spec.split(":", 1)[1])
        digest = hashlib.sha256(spec.encode())
        if target.is_file():
            digest.update(target.read_bytes())
        return digest.hexdigest()[:16]
    return spec


def _load_zoo(name: str, data: DataBundle, weights, device, seed: int, log) -> ModelHandle:
    entry = zoo.get_entry(name)
    model = build_model(name, data)
    if weights is not None:
        load_weights(model, weights)
        return ModelHandle(model.to(device).eval(), name)
    cached = cache_dir("models") / f"{name}-{_data_key(data)}-seed{seed}-v{ZOO_CACHE_VERSION}.safetensors"
    from torchslim.core.files import exclusive

    # Two processes on a fresh cache (parallel jobs, test workers) train a model once: the
    # second waits for the first's weights instead of training the same model beside it.
    with exclusive(cached.with_name(cached.name + ".lock")):
        return _cached_or_trained(model, name, entry, cached, data, device, seed, log)


def _cached_or_trained(model: nn.Module, name: str, entry, cached: Path, data: DataBundle, device, seed: int,
                       log) -> ModelHandle:
    if cached.exists():
        try:
            load_weights(model, cached)
            return ModelHandle(model.to(device).eval(), name, cached_weights=cached)
        except ArtifactError:
            log(f"notice: cached weights {cached} are unreadable; retraining.")
    log(f"notice: training {name} on {data.spec} (first use; cached in {cached.parent}).")
    _train(model, data, epochs=entry.epochs, device=device, seed=seed, log=log)
    from safetensors.torch import save_file

    from torchslim.core.files import atomic_write

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(cached, lambda p: save_file(state, str(p)))
    return ModelHandle(model.eval(), name, trained_now=True, cached_weights=cached)


def _train(model: nn.Module, data: DataBundle, *, epochs: int, device, seed: int, log) -> None:
    from torchslim.train import TrainConfig, fit

    fit(model, data, TrainConfig(epochs=epochs, seed=seed), device=device)
