"""The exception tree. Every error a user can cause is a ``TorchslimError``.

    TorchslimError            user-facing; the CLI prints ``message`` and exits 2
    ├── SpecError             a MODEL or DATA spec string that cannot be resolved
    ├── DataError             data that loads but is unusable (empty, wrong shape, bad labels)
    ├── ConfigError           a config, recipe or CLI option with a bad key or value
    ├── ArtifactError         a file torchslim cannot read: missing, corrupt, wrong version
    ├── UnsupportedError      a method this device/backend cannot run (int4 on CPU, TensorRT without CUDA)
    │   └── RefusedError      a technique that refuses a block of this model up front, whatever its
    │                         strength (names the block, why, and the way out); the search records
    │                         it once and skips every candidate that would meet the same refusal
    ├── ExportError           a model the exporter refuses, with the exporter's reason
    ├── TrainingError         training that cannot go on (NaN loss, resume with no checkpoint)
    ├── StorageError          a write the disk refused: full, read-only, no permission, not a folder
    ├── RunDirError           (a ConfigError) an --out directory that is not ours, or in use by another run
    └── ModelError            the user's model fails on its own (forward raises, wrong arity, no outputs)

Anything else escaping the library is a bug: the CLI exits 1 for it.
"""

from __future__ import annotations


class TorchslimError(Exception):
    """Base class; ``message`` is one paragraph naming what was wrong and how to fix it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SpecError(TorchslimError):
    pass


class DataError(TorchslimError):
    pass


class ConfigError(TorchslimError):
    pass


class ArtifactError(TorchslimError):
    pass


class UnsupportedError(TorchslimError):
    pass


class RefusedError(UnsupportedError):
    """A technique refuses a block of the model before doing any work.

    Raise it only where the refusal does not depend on the strength asked for (the ratio, the
    rank, the bits): ``optimize`` then skips, without running them, the other candidates and
    search tries that reach the same step with other strengths, and the report says why once.
    A setting that is merely too strong for this model (every head pruned at 99%) is a plain
    ``UnsupportedError`` or ``ConfigError``.

        raise RefusedError("prune", block="encoder.layers.0.self_attn (MultiheadAttention)",
                           reason="its heads cannot be removed one by one",
                           way_out="list it under prune.ignore, or use method magnitude")
    """

    def __init__(self, technique: str, *, block: str, reason: str, way_out: str) -> None:
        self.technique, self.block, self.reason, self.way_out = technique, block, reason, way_out
        super().__init__(f"{technique}: cannot handle {block}: {reason.rstrip('.')}. Way out: {way_out.rstrip('.')}.")


class ExportError(TorchslimError):
    pass


class TrainingError(TorchslimError):
    pass


class StorageError(TorchslimError):
    pass


class RunDirError(ConfigError):
    pass


class ModelError(TorchslimError):
    pass


def config_error_from_pydantic(err, where: str) -> ConfigError:
    """Turn a pydantic ValidationError into one ConfigError naming each bad field's path."""
    parts = []
    for e in err.errors():
        path = ".".join(str(p) for p in e.get("loc", ())) or "(top level)"
        parts.append(f"{path}: {e.get('msg')}")
    return ConfigError(f"Invalid {where}: " + "; ".join(parts) + ".")


def validate_options(config_class, options, where: str, *, example: str = "{key: value}"):
    """``options`` as a ``config_class`` (a pydantic model): a config object passes through, None
    means all defaults, a mapping is validated; anything else, or a bad field, is a ConfigError
    naming ``where`` (and each bad field's path). The one parser of the technique configs."""
    from pydantic import ValidationError

    if isinstance(options, config_class):
        return options
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ConfigError(f"Invalid {where}: expected a mapping like {example}, got {type(options).__name__}.")
    try:
        return config_class.model_validate(options)
    except ValidationError as e:
        raise config_error_from_pydantic(e, where) from None
