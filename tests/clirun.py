"""Run the real ``perisai`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def perisai(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m perisai ARGS`` with this checkout's sources; output captured as text."""
    env = dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "perisai", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )
