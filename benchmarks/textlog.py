"""The same service log as JSON lines and as a key=value text log: what ``perisai classify``
finds in each, and how fast. The text rendering is what a logfmt or key=value logger writes
for the same events (values with spaces quoted), so the two columns should agree.

Run: ``.venv/bin/python benchmarks/textlog.py [--mb 200]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.applog import write_app_log  # noqa: E402

PERISAI = ROOT / ".venv" / "bin" / "perisai"


def as_key_value(source: Path, target: Path) -> None:
    """Each JSON line as ``key=value`` pairs; strings with blanks or quotes quoted."""
    with source.open(encoding="utf-8") as lines, target.open("w", encoding="utf-8") as out:
        for line in lines:
            fields = json.loads(line)
            out.write(" ".join(f"{key}={_value(value)}" for key, value in fields.items()) + "\n")


def _value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ' "=') else text


def classify(path: Path) -> tuple[dict[str, int], float]:
    started = time.monotonic()
    result = subprocess.run(
        [str(PERISAI), "classify", str(path), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.monotonic() - started
    report = json.loads(result.stdout)
    return dict(report["files"][0]["entities"]), elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="perisai-textlog-"))
    jsonl, text = work / "app.jsonl", work / "app.log"
    write_app_log(jsonl, args.mb * 1_000_000)
    as_key_value(jsonl, text)
    found_json, seconds_json = classify(jsonl)
    found_text, seconds_text = classify(text)
    print("| entity | JSON lines | key=value text |")
    print("|---|---|---|")
    for entity in sorted(set(found_json) | set(found_text)):
        print(f"| {entity} | {found_json.get(entity, 0):,} | {found_text.get(entity, 0):,} |")
    size_json, size_text = jsonl.stat().st_size / 1e6, text.stat().st_size / 1e6
    print(
        f"| seconds (MB/s) | {seconds_json:.1f} ({size_json / seconds_json:.0f}) "
        f"| {seconds_text:.1f} ({size_text / seconds_text:.0f}) |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
