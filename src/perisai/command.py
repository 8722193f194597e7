"""The ``perisai`` command's entry point, which imports the command line only when it runs.

``classify --jobs`` starts worker processes, and each re-imports the script that started the
command (Python's ``spawn``); a script that imported :mod:`perisai.cli` at its top made every
worker pay for the whole command line (the lab catalogue, the API auditor: 1.6 s) before its
first part.
"""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    from perisai.cli import main as run_cli

    run_cli()
