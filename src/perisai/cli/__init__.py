"""The ``perisai`` command: parses arguments, calls the library, writes. Nothing else.

One module per command family: :mod:`~perisai.cli.scan` (scan, report),
:mod:`~perisai.cli.files` (classify, redact), :mod:`~perisai.cli.audit` (audit-api),
:mod:`~perisai.cli.lab`, :mod:`~perisai.cli.guard`; what they share is in
:mod:`~perisai.cli.common`. Their work is done by :mod:`perisai.usecases` and the library.

Exit codes: 0 nothing at or above ``--fail-on``; 1 findings at or above it; 2 usage or input
error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from perisai import __version__
from perisai.cli.audit import audit_api
from perisai.cli.common import EXIT_OK, say
from perisai.cli.files import classify, redact
from perisai.cli.guard import guard_app
from perisai.cli.lab import lab_app
from perisai.cli.scan import report, scan

app = typer.Typer(
    name="perisai",
    help="Find data stores anyone can read, the personal data inside, and ransom notes left "
    "there. Exit codes: 0 = nothing at or above --fail-on, 1 = findings at or above it, "
    "2 = usage or input error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"perisai {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """perisai: shield for exposed personal data."""


app.command()(scan)
app.command()(report)
app.command()(classify)
app.command()(redact)
app.command("audit-api")(audit_api)
app.add_typer(lab_app, name="lab")
app.add_typer(guard_app, name="guard")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)


__all__ = ["app", "main"]
