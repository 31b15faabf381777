"""Loading a ``.pt2`` ExportedProgram without running code from the file.

``torch.export.load`` unpickles parts of the archive with ``weights_only=False``: the sample
inputs when their weights-only load fails, every weight or constant whose payload config says
``use_pickle``, and "opaque" constants through plain ``pickle.loads``. A hostile archive can
therefore run arbitrary code on load. torchslim never writes any of those, so it refuses them:

1. the file is read once into memory (what is checked is what is loaded) and every zip
   member's CRC is verified, which also catches bit flips;
2. every payload config is read as JSON: custom/opaque objects are refused, as are legacy
   whole-file weight pickles and AOTInductor libraries;
3. every pickled entry (torchao's quantized weights are tensor subclasses, stored pickled)
   and every sample-input file must load with ``torch.load(weights_only=True)``, which only
   rebuilds tensors and classes registered as safe;
4. only then does ``torch.export.load`` run, with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` set, so a
   pickle path this check does not know about fails instead of executing.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import torch

from torchslim.errors import ArtifactError

# Member paths inside the archive, after its root folder (named after the file).
_PAYLOAD_CONFIG_DIRS = ("data/weights/", "data/constants/")
_SAMPLE_INPUTS_DIR = "data/sample_inputs/"
_REFUSED_PREFIXES = ("custom_obj_", "opaque_obj_")


def _refuse(path: Path, why: str) -> ArtifactError:
    return ArtifactError(
        f"Refusing to load {str(path)!r}: {why}. torchslim never writes such an archive; it may have "
        "been modified or made by another tool. Re-create it with torchslim from a model you trust."
    )


def _inner(name: str) -> str:
    """The member path below the archive's root folder ('model/data/x' -> 'data/x')."""
    parts = PurePosixPath(name).parts
    return "/".join(parts[1:]) if len(parts) > 1 else name


def check_archive(path: Path, data: bytes) -> None:
    """Raise ArtifactError unless ``data`` is a pickle-free, intact ExportedProgram archive."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise _refuse(path, "it is not a .pt2 archive (not a zip file)") from None
    with archive:
        try:
            broken = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise ArtifactError(f"{str(path)!r} is corrupt ({e}); re-create or re-download it.") from None
        if broken is not None:
            raise ArtifactError(f"{str(path)!r} is corrupt: member {broken!r} fails its CRC check "
                                "(the file was modified or damaged); re-create or re-download it.")
        for info in archive.infolist():
            _check_member(path, archive, _inner(info.filename))


def _check_member(path: Path, archive: zipfile.ZipFile, inner: str) -> None:
    full = next(n for n in archive.namelist() if _inner(n) == inner)
    if inner.startswith("data/aotinductor/"):
        raise _refuse(path, "it holds a compiled AOTInductor library, not an exported program")
    if inner.startswith(_PAYLOAD_CONFIG_DIRS) and inner.endswith(".json"):
        try:
            config = json.loads(archive.read(full)).get("config", {})
        except (ValueError, AttributeError):
            raise _refuse(path, f"its payload config {inner!r} is not valid JSON") from None
        folder = inner.rsplit("/", 1)[0]
        for name, entry in config.items():
            if not isinstance(entry, dict) or str(entry.get("path_name", "")).startswith(_REFUSED_PREFIXES):
                raise _refuse(path, f"entry {name!r} of {inner!r} is a custom or opaque object")
            if entry.get("use_pickle"):
                # Tensor subclasses (torchao's quantized weights) are stored pickled; they must
                # load weights-only, i.e. name only classes registered as safe.
                member = f"{folder}/{entry.get('path_name')}"
                _weights_only_or_refuse(path, archive, member, f"pickled entry {name!r} of {inner!r}")
    elif inner.startswith(_PAYLOAD_CONFIG_DIRS) and inner.endswith(".pt"):
        raise _refuse(path, f"{inner!r} is a pickled legacy weights file")
    elif inner.startswith(_SAMPLE_INPUTS_DIR):
        _weights_only_or_refuse(path, archive, inner, f"its sample inputs {inner!r}")


def _weights_only_or_refuse(path: Path, archive: zipfile.ZipFile, inner: str, what: str) -> None:
    full = next((n for n in archive.namelist() if _inner(n) == inner), None)
    if full is None:
        raise _refuse(path, f"{what} names a missing member {inner!r}")
    try:
        torch.load(io.BytesIO(archive.read(full)), weights_only=True)
    except Exception:
        raise _refuse(path, f"{what} is not plain tensor data (it would need to run code to load)") from None


@contextmanager
def _weights_only_loads():
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


def load_exported_program(path: str | Path) -> torch.export.ExportedProgram:
    """``torch.export.load`` for files torchslim wrote, refusing anything that would unpickle."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ArtifactError(f"Cannot read {str(path)!r} ({e.strerror or e}).") from None
    check_archive(path, data)
    try:
        with _weights_only_loads():
            return torch.export.load(io.BytesIO(data))
    except Exception as e:
        raise ArtifactError(f"Cannot load {str(path)!r} as an exported program ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}).") from None
