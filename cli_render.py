"""What the command line prints: errors with flag-spelled hints, reports, and progress.

Used only by ``cli.py``. Results go to stdout (tables, or JSON under ``--json``); progress and
errors go to stderr, so ``--json`` output stays parseable. Progress is a live display on a
terminal, one line per step in a log (a CI job sees a long step start and end instead of
minutes of silence), and nothing under ``--json``.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape

from deploy_ran.errors import DeployRanError, system_error
from deploy_ran.signals import STOPPED, stop_signal

# Piped output (CI logs, `| less`) gets wide tables instead of rich's 80-column fallback.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def show(items: Iterable[Any]) -> None:
    """Print report items; a line of text speaks this command's flags (a library warning's
    ``(num_images)`` reads ``(--calib-images)``)."""
    from cli_options.hints import render

    names = _spellings({})
    for item in items:
        console.print(render(item, names) if isinstance(item, str) else item, highlight=False)


def print_error(exc: DeployRanError, extra_flags: dict[str, str] | None = None) -> None:
    """The message and hint, library parameters in this command's flags, escaped as text."""
    names = _spellings(extra_flags or {})
    from cli_options.hints import render

    param = getattr(exc, "param", None)
    where = ""
    if param:
        spelled = names.get(param)
        where = f" ({spelled.flag})" if spelled else _argument_or_nothing(param)
    message = render(exc.message, names)
    err_console.print(f"[bold red]Error{escape(where)}:[/] {escape(message)}", highlight=False)
    if exc.hint:
        hint = render(exc.hint, names)
        err_console.print(f"[yellow]Hint:[/] {escape(hint)}", highlight=False)


def _argument_or_nothing(param: str) -> str:
    """`` (TARGET)`` when ``param`` is a positional argument of the running command; nothing when
    the command has no such parameter (a flag that does not exist must not be suggested)."""
    from cli_options.group import current_context

    ctx = current_context.get()
    command = getattr(ctx, "command", None)
    for p in getattr(command, "params", ()):
        if p.name == param:
            if getattr(p, "param_type_name", "") == "argument":
                return f" ({param.upper()})"
            return f" ({p.opts[0]})" if getattr(p, "opts", None) else ""
    return ""


def _stop_on_signal(exc: BaseException) -> None:
    """Exit ``128 + signal`` (130 SIGINT, 143 SIGTERM) with one message when a signal stopped the
    run, whatever exception it surfaced as; clean-up already ran while the stack unwound."""
    import typer

    signum = stop_signal(exc)
    if signum is None:
        return
    name = signal.Signals(signum).name
    err_console.print(f"[yellow]{escape(STOPPED.format(name=name))}[/]", highlight=False)
    raise typer.Exit(128 + signum) from None


def _tolerant_streams() -> None:
    """Print names that are not UTF-8 (``caf\\xe9.png`` from a latin-1 system) as escapes
    instead of failing on them: a file name is the user's, not a reason to crash."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


@contextlib.contextmanager
def errors_as_exit_codes(flags: dict[str, str] | None = None) -> Iterator[None]:
    """A user's error → its message, hint (in flags) and exit code; a signal → 128 + signal."""
    import typer

    _tolerant_streams()
    try:
        yield
    except (KeyboardInterrupt, DeployRanError, OSError, MemoryError) as exc:
        _stop_on_signal(exc)  # a signal wins over the error a library made of it
        if isinstance(exc, KeyboardInterrupt):
            raise
        error = exc if isinstance(exc, DeployRanError) else system_error(exc)
        if error is None:
            raise
        print_error(error, flags)
        raise typer.Exit(error.exit_code) from None
    except Exception as exc:
        _stop_on_signal(exc)
        raise


def _spellings(extra: dict[str, str]) -> dict[str, Any]:
    """This command's library-parameter → flag table (empty outside a command)."""
    from cli_options.group import current_context, params_of
    from cli_options.hints import spellings

    ctx = current_context.get()
    if ctx is None or ctx.command is None:
        return {}
    return spellings(ctx.command, params_of(ctx.command.callback), extra)


def conversion(result: Any, source: Any, command: str, show_report: bool = True) -> None:
    """Print a conversion's reports; refuse one that had nothing to do (already that precision)."""
    if result.export is None and result.fp16 is None and result.int8 is None:
        raise DeployRanError(
            f"{source} is already a {result.precision.upper()} model; {command} starts from a "
            "model name or the FP32 ONNX file.",
            hint="Pass the FP32 export (`python cli.py export NAME` writes NAME.onnx).",
        )
    if show_report:
        from deploy_ran.tables import conversion_report

        show(conversion_report(result))


def engine_build(result: Any, output: Any, finish_flags: str) -> bool:
    """build-engine's report; ``False`` where the engine is still to be built on a GPU host."""
    from deploy_ran.tables import engine_report, quantize_report

    show(f"[green]✓[/] {escape(step)}" for step in result.steps)
    if result.int8 is not None:
        show(quantize_report(result.int8))
    if result.engine is not None:
        show(engine_report(result.engine))
        return True
    plan = output or result.path.with_suffix(".plan")
    finish = f"python cli.py build-engine {result.path} {finish_flags}--output {plan}"
    err_console.print(
        f"[bold]{escape(str(result.path))}[/] ({result.precision.upper()}) is ready. "
        f"Finish on a GPU host:\n  {escape(finish)}",
        highlight=False,
        soft_wrap=True,  # a command to copy must not be broken across lines
    )
    return False


def infer_result(summary: Any, result: Any) -> bool:
    """infer's summary; ``False`` where images gave NaN/inf logits (recorded as errors)."""
    console.print(summary, highlight=False)
    if getattr(result, "ok", True):
        return True
    err_console.print(f"[red]{result.model_errors} image(s) gave NaN/inf logits.[/]")
    return False


def doctor(table: Any, diagnosis: dict[str, Any]) -> None:
    """``doctor``'s table of versions, then its verdict, what works, and the next steps."""
    console.print(table)
    console.print(f"[bold]{escape(diagnosis['verdict'])}[/]", highlight=False)
    for item in diagnosis["works"]:
        console.print(f"  [green]✓[/] {escape(item)}", highlight=False)
    for step in diagnosis["next_steps"]:
        console.print(f"  [yellow]next:[/] {escape(step)}", highlight=False)


def bench_row(row: Any) -> str:
    """One finished bench row as a progress line."""
    if row.status != "ran" or row.latency is None:
        return f"{row.label}, batch {row.batch_size}: {row.status} ({row.reason or 'no reason'})"
    return (
        f"{row.label}, batch {row.batch_size}: median {row.latency.median:.2f} ms, "
        f"{row.throughput or 0:.0f} img/s"
    )


# --------------------------------------------------------------------------------------------
# progress: live on a terminal, a line per step in a log, nothing under --json


class Progress:
    """The library's progress hooks rendered on stderr.

    ``say(message)`` (a step), ``phase(phase, done, total)`` (calibration's phases) and
    ``done(text)`` (a finished item, kept on screen). ``quiet`` (``--json``) prints nothing.
    """

    LABELS = {
        "load": "decode + preprocess images",
        "collect": "calibrate (ONNX Runtime)",
        "thresholds": "entropy thresholds",
        "sensitivity": "sensitivity (one group at a time)",
        "auto-exclude": "auto-exclude",
        "check": "INT8 vs FP32 check",
    }

    def __init__(self, title: str, quiet: bool = False, live: bool | None = None) -> None:
        self.title, self.quiet = title, quiet
        self.live = err_console.is_terminal if live is None else live
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}
        self.started = time.perf_counter()
        self.last_line: tuple[str, float] = ("", 0.0)

    def __enter__(self) -> Progress:
        if self.live and not self.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                SpinnerColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as Bar

            columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self.bar = Bar(
                SpinnerColumn(), "[progress.description]{task.description}", *columns,
                console=err_console, transient=True,
            )  # fmt: skip
            self.bar.start()
            self.tasks["step"] = self.bar.add_task(escape(self.title), total=None)
        elif not self.quiet:
            self._line(self.title)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    #: In a log, a counter that only moves ("reference 3/125") prints at most this often.
    COUNTER_SECONDS = 5.0

    def _line(self, text: str, force: bool = False) -> None:
        """A log line (non-terminal stderr): a new step at once, a moving counter now and then."""
        last, at = self.last_line
        elapsed = time.perf_counter() - self.started
        same_step = re.sub(r"\d+", "#", text) == re.sub(r"\d+", "#", last)
        if text == last or (same_step and not force and elapsed - at < self.COUNTER_SECONDS):
            return
        err_console.print(f"[dim]{elapsed:6.1f}s[/] {escape(text)}", highlight=False)
        self.last_line = (text, elapsed)

    def __call__(self, message: str) -> None:
        self.say(message)

    def say(self, message: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(self.tasks["step"], description=escape(f"{self.title}: {message}"))
        else:
            self._line(f"{self.title}: {message}")

    def phase(self, phase: str, done: int, total: int) -> None:
        if self.quiet:
            return
        label = self.LABELS.get(phase, phase)
        if self.bar is None:  # a log: the start, every tenth, and the end of each phase
            tenth = (10 * done) // total if total else 10
            if phase not in self.tasks or tenth > self.tasks[phase] or done == total:
                self.tasks[phase] = tenth
                self._line(f"{label}: {done}/{total}", force=True)
            return
        if phase not in self.tasks:
            self.tasks[phase] = self.bar.add_task(escape(label), total=total)
        self.bar.update(self.tasks[phase], completed=done, total=total)

    def done(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.console.print(f"[green]✓[/] {escape(text)}", highlight=False)
        else:
            self._line(f"✓ {text}", force=True)


class InferBar:
    """infer's ``progress(done, total)``: shown once images flow; the rate excludes start-up."""

    def __init__(self, quiet: bool = False, label: str = "infer") -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        rate = TextColumn("{task.fields[rate]}")
        columns = (
            BarColumn(),
            MofNCompleteColumn(),
            rate,
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self.bar = Bar(TextColumn(f"[bold]{label}"), *columns, console=err_console, disable=quiet)
        self.task = self.bar.add_task(label, total=None, rate="")
        self.first: tuple[float, int] | None = None

    def __enter__(self) -> InferBar:
        return self

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.bar.start()  # only once the checks passed and images flow
            self.first = (now, done)
        start, count = self.first
        rate = f"{(done - count) / (now - start):.1f} img/s" if now > start else ""
        self.bar.update(self.task, completed=done, total=total, rate=rate)

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()
