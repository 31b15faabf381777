"""Temporary folders of ``--executor ray`` tasks, and their removal when their process died.

A build or a measurement works in ``<tmp>/torchslim-{build,measure}-<run>-<host>-<pid>-*`` of
its node and removes it when it ends. A worker killed mid-build (its node lost, a Ctrl-C that
force-cancels it) cannot: ``sweep_temp`` removes this host's folders whose process is gone. It
runs before every build on that node and, when a run ends, once on every node of the cluster.
A folder of a process still running, or of another host sharing the folder, is never touched.

Only the standard library here: the driver sends ``sweep_temp`` to every node by value
(``cloudpickle.register_pickle_by_value``), so a node that ran nothing of this run does not
start a worker that imports torch just to sweep.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

TEMP_PREFIX = "torchslim-"
_TEMP_NAME = re.compile(r"^torchslim-(?:build|measure)-[0-9a-f]+-([0-9a-f]{8})-(\d+)-")


def _host() -> str:
    # A hash, not the name: a host name may hold dashes, and the folder's name must parse back.
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def temp_folder(kind: str, run_id: str) -> Path:
    """A new temporary folder of this node for one ``kind`` (build, measure) task of ``run_id``."""
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{kind}-{run_id}-{_host()}-{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def sweep_temp(root: str | Path | None = None) -> list[str]:
    """Remove this host's task folders whose process is gone; the names of those removed."""
    root = Path(root or tempfile.gettempdir())
    host, removed = _host(), []
    for path in root.glob(f"{TEMP_PREFIX}*-*"):
        m = _TEMP_NAME.match(path.name)
        if m is None or m.group(1) != host or _alive(int(m.group(2))) or path.is_symlink() or not path.is_dir():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed
