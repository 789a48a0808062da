"""SIGTERM (and SIGHUP) handled like Ctrl-C, so every run cleans up after itself.

Python turns Ctrl-C into ``KeyboardInterrupt``, which unwinds the stack through every ``finally``
and context manager: temporary files beside outputs (:func:`deploy_ran.fileio.atomic_path`),
calibration temp folders and output locks are removed on the way out. A plain SIGTERM (``kill``,
``timeout``, a batch scheduler, ``docker stop``) would kill the process without any of that, so
:func:`install_signal_handlers` makes it raise :class:`Terminated`, a ``KeyboardInterrupt``: the
same clean-up runs, and the CLI can exit with ``128 + signum`` as a shell expects.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

#: Signals that mean "stop now, but tidily".
HANDLED = ("SIGTERM", "SIGHUP")


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM or SIGHUP; unwinds like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def name(self) -> str:
        """The signal's name, ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """What a shell expects from a process ended by this signal (143 for SIGTERM)."""
        return 128 + self.signum


#: The first stopping signal this process received (None: none yet). A library that catches
#: every exception (PyTorch's ONNX exporter wraps a KeyboardInterrupt in its own error, Ray
#: re-raises it as a task error) would otherwise turn "stopped" into a misleading failure; the
#: CLI asks :func:`received` and reports the signal instead.
_received: int | None = None


def received() -> int | None:
    """The signal number that asked this process to stop, or None."""
    return _received


def stop_signal(exc: BaseException | None = None) -> int | None:
    """The signal that ``exc`` (or the process) was stopped by: SIGTERM/SIGHUP from
    :class:`Terminated`, SIGINT from a plain ``KeyboardInterrupt``, else what :func:`received`
    recorded (None: not stopped by a signal)."""
    if isinstance(exc, Terminated):
        return exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return _received or signal.SIGINT
    return _received


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    global _received
    _received = _received or signum
    raise Terminated(signum)


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    global _received
    _received = _received or signum
    raise KeyboardInterrupt


def install_signal_handlers() -> list[str]:
    """Make SIGTERM and SIGHUP raise :class:`Terminated` in the main thread; call once in main().

    Returns the names of the signals handled. Signals a parent set to be ignored (``nohup`` sets
    SIGHUP to SIG_IGN) stay ignored. A no-op outside the main thread, where Python cannot set
    handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return []
    installed = []
    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _exit_while_loading):
        signal.signal(signal.SIGINT, _raise_interrupt)  # same behaviour, but remembered
    for name in HANDLED:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue
        signal.signal(signum, _raise_terminated)
        installed.append(name)
    return installed


#: What every command prints when a signal stops it (the CLI and the start-up handler alike).
STOPPED = "Stopped by {name}; temporary files were removed, outputs left as they were."


def _exit_while_loading(signum: int, _frame: FrameType | None) -> None:
    import os
    import sys

    sys.stderr.write(STOPPED.format(name=signal.Signals(signum).name) + "\n")
    sys.stderr.flush()
    os._exit(128 + signum)  # nothing was written yet; unwinding an import prints a traceback


def exit_on_signal_while_loading() -> None:
    """Until :func:`install_signal_handlers` replaces them, SIGINT/SIGTERM/SIGHUP end the process
    at once with the usual message and ``128 + signal``.

    Importing the CLI's modules (PyTorch, ONNX) takes seconds, before any command has written
    anything; a signal then would otherwise print an import traceback (SIGINT) or end without a
    word (SIGTERM). The CLI sets them again once a command has returned, for the interpreter's
    teardown (atexit and finalizers, where a raised ``KeyboardInterrupt`` prints "Exception
    ignored" and a traceback). Signals a parent set to be ignored stay ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGINT", *HANDLED):
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _exit_while_loading)


def run_cli(app: Callable[[], Any]) -> None:
    """Run a command-line app with the handlers above: raising ones while it runs, quiet exits
    in the interpreter's teardown after it (atexit, finalizers)."""
    install_signal_handlers()
    try:
        app()
    finally:
        exit_on_signal_while_loading()
