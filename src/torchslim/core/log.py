"""Progress and logging: a timestamped line per message on stderr, always also logged.

Long work calls ``say(msg)``. It goes to the ``torchslim`` logger (which the CLI also writes to
``run.log`` in the run directory) and to stderr: on a terminal as a rich line (above the live
progress line of ``torchslim.core.progress`` while one is shown); off a terminal (a pipe,
nohup, a cluster job) as one plain line, flushed at once, with no control characters, so
``torchslim train ... | cat`` shows each epoch as it ends.
"""

from __future__ import annotations

import logging
import re
import sys
import time
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
# log_path=False: rich would end every line with the caller's file:line, which is always this
# module's own say(), not where the message came from.
_console = Console(stderr=True, log_path=False)
_display = None  # the live progress line while one is shown (torchslim.core.progress)
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x1f\x7f]")


# Control characters a terminal acts on (C0 but tab/newline, DEL, C1: ESC sequences can retitle
# the window, clear the screen, fake output) and the bidi overrides that reorder what is shown.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``), for a terminal or a
    log: a file or model name made of escape sequences is printed, never executed."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def set_display(display) -> None:
    """Route ``say`` through ``display.say`` (or back to stderr with None)."""
    global _display
    _display = display


def plain_line(msg: str) -> str:
    """``msg`` as one line for a log file or pipe: timestamped, escape codes and newlines gone."""
    return f"{time.strftime('%H:%M:%S')} " + _CONTROL.sub(" ", msg).strip()


def say(msg: str) -> None:
    msg = printable(msg)  # paths and names in messages are the user's, whatever bytes they hold
    logger.info(msg)
    if _display is not None:
        _display.say(msg)
    elif sys.stderr.isatty():
        _console.log(msg, markup=False, highlight=False)
    else:
        print(plain_line(msg), file=sys.stderr, flush=True)


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
