"""Run directories: never write into what is not ours, one run at a time, no poisoned ``--out``.

A run (``optimize``, ``train``) claims its ``--out`` directory with ``claim_run_dir``:

- it may be new, empty, or hold a run of the same kind: one with a result (``report.json``,
  ``checkpoint.pt``) only with ``resume``; one that never got a result (killed at its start)
  is restartable;
- anything else (the user's own files, even named like ours; a run of another kind) is refused,
  naming what is there, before a byte is written;
- ``.torchslim-run`` marks the directory as ours (the kind, the pid) and carries an advisory
  ``fcntl`` lock for the whole run: a second process is refused, naming the holder's pid;
- a run that fails before its first result calls ``abandon()``: every entry it created is
  removed (and the directory, if it made it), so the corrected command with the same ``--out``
  works;
- nothing outside the directory is ever touched through it: a symbolic link inside it that
  leads out (``candidates -> ~/photos``) is refused at claim time, naming it, and
  ``remove_inside`` (the only way a run deletes a folder of its own) removes just a link,
  never what it points to; a path read back from the run (``report.json``'s artifacts) is
  used only when ``confined`` says it stays inside.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from torchslim.errors import RunDirError

MARKER = ".torchslim-run"


@dataclass(frozen=True)
class RunKind:
    name: str  # "optimize", "train"
    results: tuple[str, ...]  # entries that mean "this run has a result": resume, don't overwrite
    entries: frozenset[str]  # every entry this kind of run writes (for directories from before the marker)


@dataclass
class RunDir:
    path: Path
    kind: RunKind
    created: bool  # the directory itself was made by this claim
    before: frozenset[str]  # entries present at claim time
    _lock: object = field(repr=False, default=None)

    def has_result(self) -> bool:
        return any((self.path / name).exists() for name in self.kind.results)

    def release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def abandon(self) -> None:
        """After a failure: with no result yet, remove what this run created; always unlock."""
        try:
            if not self.has_result() and self.path.is_dir():
                for entry in os.listdir(self.path):
                    if entry not in self.before and entry != MARKER:
                        target = self.path / entry
                        if target.is_dir() and not target.is_symlink():
                            shutil.rmtree(target, ignore_errors=True)
                        else:
                            target.unlink(missing_ok=True)
                if MARKER not in self.before:
                    (self.path / MARKER).unlink(missing_ok=True)
                if self.created:
                    try:
                        self.path.rmdir()
                    except OSError:
                        pass
        finally:
            self.release()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.release()
        else:
            self.abandon()


def _is_temp(entry: str) -> bool:  # atomic_write's temp files, left by a kill -9
    return entry.startswith(".") and ".tmp" in entry


def _names(entries: set[str], limit: int = 5) -> str:
    shown = sorted(entries)[:limit]
    return ", ".join(shown) + (f" and {len(entries) - limit} more" if len(entries) > limit else "")


def _read_marker(path: Path) -> dict:
    try:
        data = json.loads(path.read_text() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _cannot_create(where: str, e: OSError) -> RunDirError:
    return RunDirError(f"{where} cannot be created or written there ({e.strerror or e}). Choose a directory on a "
                       "writable disk (nothing was changed).")


def claim_output_file(path: Path, option: str = "--out") -> None:
    """For a command that writes one artifact (``export``): refuse to replace files that are
    already there (the artifact, its manifest, an OpenVINO ``.bin``) and fail on a location that
    cannot be written, all before any work. Nothing is left behind: folders made to find out
    are removed again (the exporter makes them when it writes)."""
    from torchslim.core.manifest import artifact_files, manifest_path

    where = f"{option} {str(path)!r}"
    existing = [p for p in (*artifact_files(path), manifest_path(path)) if p.exists() or p.is_symlink()]
    if existing:
        raise RunDirError(f"{where}: {_names({str(p) for p in existing})} already exist(s). torchslim export never "
                          f"overwrites files; delete them or choose another {option} (nothing was changed).")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(f"{where}: {str(parent)!r} is a file, not a folder. Choose another {option} "
                                  "(nothing was changed).")
            break
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):  # writable, not just present
            pass
    except OSError as e:
        from torchslim.core.storage import storage_error

        raise (storage_error(e, path.parent) or _cannot_create(where, e)) from e
    finally:
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()


def escaping_links(root: Path) -> list[Path]:
    """Symbolic links under ``root`` (not followed) whose target lies outside it."""
    top = root.resolve()
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            entry = Path(folder) / name
            if entry.is_symlink() and not entry.resolve().is_relative_to(top):
                found.append(entry)
    return found


def confined(root: Path, relative: object) -> Path | None:
    """``root / relative`` when ``relative`` is a relative path that stays inside ``root``
    (no absolute path, no ``..``, no link leading out), else None."""
    if not isinstance(relative, str) or not relative or "\0" in relative:
        return None
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    target = root / rel
    return target if target.resolve().is_relative_to(root.resolve()) else None


def remove_inside(path: Path, root: Path) -> None:
    """Remove the folder ``path`` of the run ``root``: a link is unlinked (what it points to is
    left alone), and a folder reached through a link out of ``root`` is refused."""
    if path.is_symlink():
        path.unlink()
        return
    if not path.resolve().is_relative_to(root.resolve()):
        raise RunDirError(f"{str(path)!r} leads out of the run directory {str(root)!r} through a symbolic link; "
                          "torchslim never deletes outside its run directory. Remove the link (or choose a new "
                          "--out), then run the command again.")
    if path.exists():
        shutil.rmtree(path)


def claim_run_dir(path: str | Path, kind: RunKind, *, resume: bool, option: str = "--out") -> RunDir:
    """Check ``path`` against the rules above, lock it and mark it ours; raises ``RunDirError``
    (nothing changed) when it is not ours to write or another run holds it."""
    from torchslim.core.storage import storage_error

    path = Path(path)
    where = f"{option} {str(path)!r}"
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{where} is a file, not a directory. Choose a new {option} directory.")
    before = frozenset(os.listdir(path)) if path.is_dir() else frozenset()
    contents = {e for e in before if e != MARKER and not _is_temp(e)}
    marker = _read_marker(path / MARKER) if MARKER in before else None
    # Without the marker, only a run from before it (a result, nothing foreign) is ours: a user's
    # own report.html or run.log is not, whatever its name.
    legacy_run = any(r in contents for r in kind.results) and not contents - kind.entries
    if marker is None and contents and not legacy_run:
        foreign = (contents - kind.entries) or contents
        raise RunDirError(
            f"{where} already holds files that are not a torchslim {kind.name} run ({_names(foreign)}). "
            f"torchslim {kind.name} writes only into a new or empty directory, or one holding its own run "
            f"(continued with --resume); choose another {option} (nothing was changed)."
        )
    if marker is not None and marker.get("kind", kind.name) != kind.name:
        raise RunDirError(f"{where} holds a torchslim {marker.get('kind')} run, not a {kind.name} run; "
                          f"choose another {option} (nothing was changed).")
    if before and (links := escaping_links(path)):
        shown = ", ".join(f"{str(link.relative_to(path))!r} -> {str(link.resolve())!r}" for link in links[:3])
        raise RunDirError(f"{where} holds symbolic links that lead out of it ({shown}). torchslim reads, writes "
                          f"and deletes only inside its run directory; remove the links or choose another "
                          f"{option} (nothing was changed).")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock = open(path / MARKER, "a+")  # noqa: SIM115 (held for the whole run; closed in release)
    except OSError as e:  # /proc/x, a missing mount, a read-only disk: the user's environment
        raise (storage_error(e, path) or _cannot_create(where, e)) from e
    run = RunDir(path, kind, created, before, lock)
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        holder = _read_marker(path / MARKER).get("pid", "unknown")
        raise RunDirError(f"{where} is in use by another torchslim run (process {holder}). Wait for it to "
                          f"finish, or choose another {option}; two runs in one directory would overwrite "
                          "each other's results.") from None
    if run.has_result() and not resume:
        run.release()
        if MARKER not in before:
            (path / MARKER).unlink(missing_ok=True)
        found = [n for n in kind.results if (path / n).exists()]
        raise RunDirError(f"{where} already holds a torchslim run ({kind.name}: {', '.join(found)}). Pass --resume "
                          f"to continue it, or choose a new {option} directory (nothing was overwritten).")
    lock.seek(0)
    lock.truncate()
    json.dump({"kind": kind.name, "pid": os.getpid()}, lock)
    lock.flush()
    return run
