"""Writes the disk refuses, as bad input: the path, the reason in words, the free space.

A full disk, a read-only mount, a missing permission or a path under a regular file is the
user's environment, not a torchslim bug: each becomes one ``StorageError`` (CLI exit 2).
Writers that are not plain Python file I/O (``torch.save``'s C++ stream writer) report a full
disk as a ``RuntimeError``; those are recognized by the little free space left.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from torchslim.errors import StorageError, TorchslimError

STORAGE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a regular file, not a folder",
}
_LOW_SPACE = 16 << 20  # a writer failing with less free than this most likely ran out of it


def free_space(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    for candidate in (p, *p.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def _mib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / (1 << 20):.1f} MiB"


def storage_error(exc: BaseException, path: str | os.PathLike) -> StorageError | None:
    """The ``StorageError`` for a failed write of ``path``, or None when ``exc`` is not one."""
    if isinstance(exc, TorchslimError):
        return None
    free = free_space(path)
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        why = STORAGE_ERRNOS[exc.errno]
    elif not isinstance(exc, OSError) and free is not None and free < _LOW_SPACE:
        why = f"the disk is almost full ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
    else:
        return None
    return StorageError(
        f"Cannot write {str(path)!r}: {why} ({_mib(free)} free there). Nothing was left half-written; "
        "free some space or choose a writable location (e.g. another --out), then run the command again."
    )


RESERVE = 1 << 20  # left free after a write: the manifest, run.log and report.json come next


def check_free_space(path: str | os.PathLike, size: int) -> None:
    """Refuse (``StorageError``) a write of ``size`` bytes that cannot fit where ``path`` goes."""
    free = free_space(Path(path).parent)
    if free is not None and free < size + RESERVE:
        raise StorageError(
            f"Cannot write {str(path)!r}: it needs {_mib(size + RESERVE)} and only {_mib(free)} is free there. "
            "Nothing was written; free some space or choose another location (e.g. another --out), "
            "then run the command again."
        )
