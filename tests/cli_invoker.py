"""The command line run in process, built in one place for every CLI test (the ``cli`` fixture of
``tests/conftest.py``, and the hostile sweep, which runs it under an alarm)."""

from __future__ import annotations


class CliInvoker:
    """``cli(["verify", a, b])`` runs deploy-ran's typer app in process and returns click's Result.

    One place builds the CliRunner, so a change in click's testing API is fixed once. With click
    >= 8.2 stderr is always kept apart (the old ``mix_stderr`` argument is gone):
    ``result.output`` is stdout and stderr interleaved as a terminal shows them, and
    ``result.stdout`` / ``result.stderr`` hold each stream alone. ``wide=True`` sets
    ``COLUMNS=200`` so rich tables and panels do not wrap the words a test looks for.
    Other keyword arguments (``env``, ``input``, ``catch_exceptions``) go to ``CliRunner.invoke``;
    ``app`` runs another typer app (a probe built by the test) the same way.
    """

    WIDE = {"COLUMNS": "200"}

    def __init__(self) -> None:
        from typer.testing import CliRunner

        self.runner = CliRunner()

    def __call__(self, args, *, wide: bool = False, app=None, env=None, **kwargs):
        if app is None:
            from cli import app
        if wide:
            env = {**self.WIDE, **(env or {})}
        if not isinstance(args, str):
            args = [str(a) for a in args]
        return self.runner.invoke(app, args, env=env, **kwargs)
