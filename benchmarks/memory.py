"""Peak memory of ``perisai classify`` and ``perisai redact`` on hostile inputs: 1 GiB of blank
lines, a 1 GiB single line, and a gzip bomb (1 GiB of newlines in about 1 MB). Target: each
under 200 MB. Peak RSS is read from /proc while the child runs (see procstat).

Run: ``.venv/bin/python benchmarks/memory.py [--mib 1024] [--write]``; ``--write`` puts the table
into docs/benchmarks.md between the ``benchmark:memory`` markers.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.procstat import wait_with_peak_rss  # noqa: E402

PERISAI = ROOT / ".venv" / "bin" / "perisai"
DOCS = ROOT / "docs" / "benchmarks.md"
CHUNK = 1 << 20


def blank_lines(path: Path, mib: int) -> None:
    block = b"\n" * CHUNK
    with path.open("wb") as out:
        for _ in range(mib):
            out.write(block)


def one_line(path: Path, mib: int) -> None:
    block = b"x" * (CHUNK - 64) + b" call +60123456789 now " + b"y" * 41  # no newline
    with path.open("wb") as out:
        for _ in range(mib):
            out.write(block)
        out.write(b"\n")


def gzip_bomb(path: Path, mib: int) -> None:
    block = b"\n" * CHUNK
    with gzip.open(path, "wb", compresslevel=9) as out:
        for _ in range(mib):
            out.write(block)


def run(argv: list[str], stdout: Path) -> tuple[float, float, int]:
    started = time.monotonic()
    with stdout.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
        _, peak = wait_with_peak_rss(process, started + 1800)
    return peak, time.monotonic() - started, process.returncode


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="perisai-memory-"))
    inputs = {
        f"{args.mib} MiB of blank lines": ("blank.log", blank_lines),
        f"one line of {args.mib} MiB": ("oneline.log", one_line),
        f"gzip bomb ({args.mib} MiB of newlines)": ("bomb.log.gz", gzip_bomb),
    }
    rows = []
    for label, (name, make) in inputs.items():
        path = work / name
        make(path, args.mib)
        size = path.stat().st_size
        for command in ("classify", "redact"):
            peak, seconds, code = run([str(PERISAI), command, str(path)], work / "out")
            rows.append(
                f"| {label} | {size / 1e6:,.1f} MB on disk | `{command}` | {peak:,.0f} | "
                f"{seconds:,.1f} | {code} |"
            )
            print(rows[-1], flush=True)
        path.unlink()
    table = "\n".join(
        [
            f"`python benchmarks/memory.py --mib {args.mib}` on {platform.machine()}, Python "
            f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}.",
            "",
            "| input | size | command | peak RSS MB | seconds | exit |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    if args.write:
        text = DOCS.read_text(encoding="utf-8")
        begin, end = "<!-- benchmark:memory:begin -->", "<!-- benchmark:memory:end -->"
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        DOCS.write_text(f"{head}{begin}\n\n{table}\n\n{end}{tail}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
