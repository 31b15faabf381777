"""Progress and logging: lines on a terminal, quiet-but-logged when not a TTY.

Long work calls ``say(msg)``. On a terminal it prints a timestamped line to stderr; when
stderr is not a terminal (CI, pipes) it only goes to the ``torchslim`` logger, which the
CLI also writes to ``run.log`` in the run directory.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from rich.console import Console

logger = logging.getLogger("torchslim")

# torchao logs one warning per CUDA-only extension it cannot load on a CPU machine ("Failed to
# load ..._C_cutlass_90a.abi3.so"); that is expected there and says nothing to a user.
logging.getLogger("torchao").addFilter(
    lambda record: not (record.getMessage().startswith("Failed to load") and ".so" in record.getMessage())
)
# torchao 0.18 registers two Enums with torch's pytree at import, which torch 2.13 answers with a
# deprecation warning each ("... is an Enum subclass and is now natively supported"): torchao's
# business, not the user's.
logging.getLogger("torch.utils._pytree").addFilter(
    lambda record: "is an Enum subclass" not in record.getMessage()
)
_console = Console(stderr=True)


def say(msg: str) -> None:
    logger.info(msg)
    if sys.stderr.isatty():
        _console.log(msg)


class _RunLogHandler(logging.FileHandler):
    """A run.log that stops, with one line on stderr, at the first write the disk refuses,
    instead of printing a "--- Logging error ---" traceback for every later message."""

    failed: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        if self.failed is None:
            self.failed = sys.exc_info()[1]
            print(f"torchslim: cannot write {self.baseFilename} ({self.failed}); the log stops here.",
                  file=sys.stderr)


def log_to_file(path: str | Path) -> logging.Handler:
    from torchslim.core.storage import storage_error

    try:
        handler = _RunLogHandler(path)
    except OSError as e:
        error = storage_error(e, path)
        if error is None:
            raise
        raise error from e
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler
