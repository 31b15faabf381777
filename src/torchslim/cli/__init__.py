"""The ``torchslim`` command: a thin typer layer over the library.

Each command group lives in its own module with a ``register(app)`` function; this file
only assembles them and maps errors to exit codes (0 ok, 2 bad input, 1 internal failure).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings

import typer
from rich.console import Console
from rich.markup import escape

from torchslim.cli import (
    _bench,
    _compress,
    _export,
    _optimize,
    _prune,
    _quantize,
    _report,
    _technique,
    _train,
)
from torchslim.core.log import printable
from torchslim.errors import TorchslimError

app = typer.Typer(
    name="torchslim",
    help="Make trained PyTorch models smaller and faster within an accuracy budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _module in (_optimize, _bench, _train, _quantize, _prune, _compress, _technique, _export, _report):
    _module.register(app)

err = Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns (and exits with) the process exit code."""
    _quiet_upstream_deprecations()
    code = run(argv)
    sys.exit(code)


def _quiet_upstream_deprecations() -> None:
    """torch's own calls (deep copies of exported graphs) trip its deprecated pytree constructor:
    a FutureWarning naming copyreg in the middle of the progress lines, about code that is neither
    the user's nor ours. The command line silences that one message; the library leaves the
    user's warning filters alone. Likewise torch's AOT autograd cache asking torchao's Int8Tensor
    for a hash method it lacks, when a dynamic-int8 candidate is compiled."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*does not implement _stable_hash_for_caching", category=UserWarning)


def _click_exit_code(e: Exception) -> int | None:
    """Exit code for click's own exceptions (typer vendors click, so match by shape)."""
    name = type(e).__name__
    if name == "Abort":
        err.print("aborted")
        return 130
    if name == "Exit":
        return int(getattr(e, "exit_code", 0))
    if hasattr(e, "show") and hasattr(e, "exit_code"):  # UsageError, BadParameter, ...
        e.show()
        return 2
    return None


def run(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    except Exception as e:  # a bug: say so plainly; the traceback only on request
        if os.environ.get("TORCHSLIM_DEBUG"):
            raise
        err.print(f"[bold red]internal error:[/] {type(e).__name__}: {escape(printable(str(e)))}\n"
                  "This is a torchslim bug; re-run with TORCHSLIM_DEBUG=1 for the traceback.", highlight=False, soft_wrap=True)
        return 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's stop, ``docker stop``) raised where Ctrl-C would be: the
    run stops the same way, with the resume hint, its temporary files and folders removed by the
    same ``finally`` blocks, and a failed start leaving ``--out`` as it was found."""


_terminated = threading.Event()  # typer returns Ctrl-C as a bare 130: this tells SIGTERM apart


def _on_sigterm(signum, frame) -> None:
    _terminated.set()
    raise Terminated()


def _handle_sigterm() -> object:
    """Install the SIGTERM handler for one command; returns what to restore (None: untouched)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None  # someone (an embedding program, a test runner) handles it already
    return signal.signal(signal.SIGTERM, _on_sigterm)


def _run(argv: list[str] | None) -> int:
    previous = _handle_sigterm()
    _terminated.clear()
    try:
        code = _run_command(argv)
        if _terminated.is_set():
            err.print("terminated (SIGTERM)")
            return 143  # 128 + SIGTERM, what a shell reports for a process it ended
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_command(argv: list[str] | None) -> int:
    from torchslim.core.registry import load_plugins

    try:
        load_plugins()  # a bad TORCHSLIM_PLUGINS is the user's to fix: exit 2 with its message
        result = app(args=argv, standalone_mode=False, prog_name="torchslim")
        return result if isinstance(result, int) else 0
    except TorchslimError as e:
        # Messages hold [shapes] (no markup) and paths: soft_wrap leaves line breaking to the
        # terminal, so a path is never cut in two in a log or a pipe.
        err.print(f"[bold red]error:[/] {escape(printable(e.message))}", highlight=False, soft_wrap=True)
        return 2
    except Exception as e:
        code = _click_exit_code(e)
        if code is None:
            raise
        return code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
