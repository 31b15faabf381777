"""Atomic file writes: a reader never sees half a file, a kill never leaves one.

Files get the mode a plain ``open`` would give (0666 less the umask), not ``mkstemp``'s 0600;
a write the disk refuses (full, read-only, ...) is a ``StorageError`` naming the path.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def _umask() -> int:
    try:  # Linux reports it without changing it; os.umask can only read it by setting it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, fsync, then rename over ``path``."""
    from torchslim.core.storage import storage_error

    try:
        return _atomic_write(Path(path), write)
    except Exception as e:
        error = storage_error(e, path)
        if error is None:
            raise
        raise error from e


def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name keeps the real suffix: some writers (torch.export.save) check it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    from torchslim.core.storage import check_free_space

    check_free_space(path, len(data))  # a known size: refuse before writing a byte
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_buffered(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """``write(buffer)`` in memory, then ``atomic_write_bytes``. For torch's C++ zip writer
    (``torch.save``, ``torch.export.save``): when the disk fills mid-archive, its destructor
    retries the write, throws, and the C++ runtime aborts the process (exit 134) after the
    error was reported. In memory it cannot fail; the disk sees one plain Python write whose
    ENOSPC is a ``StorageError``. Costs the file's size in RAM for the moment of the write."""
    buffer = io.BytesIO()
    write(buffer)
    return atomic_write_bytes(path, buffer.getbuffer())


@contextlib.contextmanager
def exclusive(lock_path: str | os.PathLike):
    """Hold an inter-process lock on ``lock_path`` (created if missing) for the block: the
    second process waits for the first (POSIX ``flock``; where that is missing, no lock: at
    worst both do the work, and ``atomic_write`` keeps the result whole)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    try:
        Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a")  # noqa: SIM115 (closed below)
    except OSError:  # a read-only cache: work unlocked; the write after it says what is wrong
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
