"""SHA-256 digests of artifact files: written with the manifest, checked before a load.

A manifest records ``{"<file name>": "<hex sha256>"}`` for the artifact and any side files
(names relative to the artifact's folder). Hashing streams each file once in 1 MiB blocks
(cost not measured); a verified (path, size, mtime, inode) is remembered for the life of the
process, so a file checked by ``read_manifest`` and then loaded is hashed once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from torchslim.errors import ArtifactError

_BLOCK = 1 << 20
_verified: set[tuple[str, int, int, int, str]] = set()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def file_digests(path: str | os.PathLike, side_files: Iterable[str | os.PathLike] = ()) -> dict[str, str]:
    """Digests of the artifact at ``path`` and its side files, keyed by name relative to its folder."""
    path = Path(path)
    files = [path, *(path.parent / Path(s) for s in side_files)]
    return {os.path.relpath(f, path.parent): sha256_file(f) for f in files}


def _key(file: Path, digest: str) -> tuple[str, int, int, int, str]:
    st = file.stat()
    return (str(file.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, digest)


def verify_digests(path: str | os.PathLike, digests: Mapping[str, str]) -> None:
    """Raise ``ArtifactError`` naming the first file that is missing or whose bytes differ."""
    path = Path(path)
    root = path.parent.resolve()
    for name, expected in digests.items():
        file = (path.parent / name).resolve()
        if root not in file.parents and file != root:  # a manifest naming ../../etc/passwd
            raise ArtifactError(f"Manifest of {str(path)!r} names a file outside its folder ({name!r}); refusing it.")
        if not file.is_file():
            raise ArtifactError(f"Artifact {str(path)!r} is incomplete: {str(file)!r} is missing. "
                                "Copy every file of the artifact, or re-create it with torchslim.")
        key = _key(file, expected)
        if key in _verified:
            continue
        actual = sha256_file(file)
        if actual != expected:
            raise ArtifactError(
                f"{str(file)!r} does not match the SHA-256 digest in its manifest (expected {expected[:16]}..., "
                f"got {actual[:16]}...): the file was changed or corrupted after torchslim wrote it. "
                "Re-create or re-download it; torchslim will not load it."
            )
        _verified.add(key)
