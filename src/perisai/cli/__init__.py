"""The ``perisai`` command: parses arguments, calls the library, writes. Nothing else.

One module per command family: :mod:`~perisai.cli.scan` (scan, report),
:mod:`~perisai.cli.files` (classify, redact), :mod:`~perisai.cli.audit` (audit-api),
:mod:`~perisai.cli.lab`, :mod:`~perisai.cli.guard`, :mod:`~perisai.cli.watch`; what they share is in
:mod:`~perisai.cli.common`. Their work is done by :mod:`perisai.usecases` and the library.

Exit codes: 0 nothing at or above ``--fail-on``; 1 findings at or above it; 2 usage or input
error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from perisai import __version__
from perisai.cli.audit import audit_api
from perisai.cli.common import EXIT_OK, say
from perisai.cli.files import classify, redact
from perisai.cli.guard import guard_app
from perisai.cli.lab import lab_app
from perisai.cli.scan import report, scan
from perisai.cli.watch import watch

app = typer.Typer(
    name="perisai",
    help="Find data stores anyone can read, the personal data inside, and ransom notes left "
    "there. Exit codes: 0 = nothing at or above --fail-on, 1 = findings at or above it, "
    "2 = usage or input error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no boxes to wrap mid-word, "[default: …]" kept as text
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


# One line each in `perisai --help` (click would cut the docstrings' first lines at 45 chars).
app.command(short_help="Find data stores anyone can read, and what they hold.")(scan)
app.command(short_help="Show a saved scan, or what changed since the one before.")(report)
app.command(short_help="Scan on a schedule; alert when a store opens or a ransom note appears.")(
    watch
)
app.command(short_help="Count the personal data in files, dumps and logs.")(classify)
app.command(short_help="Mask the personal data in logs; JSON stays valid.")(redact)
app.command("audit-api", short_help="Prove whether your own OTP and e-mail API can be abused.")(
    audit_api
)
app.add_typer(lab_app, name="lab", short_help="Run a local lab of exposed and secured stores.")
app.add_typer(guard_app, name="guard", short_help="Guard OTP, SMS and e-mail flows at run time.")


def name_values(command: Any) -> Any:
    """Name each option's value after the option in help (``--db DB``, ``--timeout TIMEOUT``)
    instead of typer's type placeholders (``<str>``, ``<float range>``); choices keep their
    list, flags take no value. Duck-typed over typer's click objects; a test reads every help
    page for a placeholder left over."""
    for param in getattr(command, "params", ()):
        choice = getattr(getattr(param, "type_descriptor", None), "is_choice", False)
        if param.metavar is None and not getattr(param, "is_flag", False) and not choice:
            param.metavar = (param.name or "value").upper()
            if getattr(param, "param_type_name", "") == "argument":
                param.display_type_rich = lambda ctx: None  # the name says it, not <list[str]>
    for sub in getattr(command, "commands", {}).values():
        name_values(sub)
    return command


def main() -> None:
    """Console-script entry point."""
    try:
        name_values(typer.main.get_command(app))(prog_name="perisai")
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)


__all__ = ["app", "main"]
