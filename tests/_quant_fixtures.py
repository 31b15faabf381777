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


def check_real_fallback(step_output, model, bundle, ranked_types: tuple[type, ...]) -> dict:
    """The fallback record of a real export step: the float model's metric is its reference,
    the written artifact measures what the record says, fallback never made it worse, at most 2
    steps, and a ranking (when it ranked) covers every layer of ``ranked_types``. Returns it."""
    import pytest

    from torchslim.artifacts import load
    from torchslim.data import accuracy

    record = step_output.facts["fallback"].to_dict()  # the typed FallbackResult, as report.json holds it
    assert record["metric"] == "accuracy" and record["reference"] == pytest.approx(accuracy(model, bundle.val))
    assert accuracy(load(step_output.artifact), bundle.val) == pytest.approx(record["final"])
    assert record["final"] >= record["quantized"] and len(record["steps"]) <= 2
    if record["quantized"] < record["reference"]:
        assert len(record["ranking"]) == sum(isinstance(m, ranked_types) for m in model.modules())
    return record
