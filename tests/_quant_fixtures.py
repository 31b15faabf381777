"""Shared by the quantization tests: trained zoo models from one shared cache."""

from __future__ import annotations

_MODELS: dict = {}


def trained(name: str):
    """(trained model in eval mode, digits bundle); zoo models train once per cache."""
    from torchslim.specs import resolve

    if name not in _MODELS:
        handle, bundle = resolve(name, "digits", log=lambda _m: None)
        _MODELS[name] = (handle.model.eval(), bundle)
    return _MODELS[name]
