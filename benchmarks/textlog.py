"""The same service log as JSON lines and as a key=value text log: what ``perisai classify``
finds in each, and how fast. The text rendering is what a logfmt or key=value logger writes
for the same events (values with spaces quoted), so the two columns should agree.

In the same run, Presidio's pattern recognizers (its ``AnalyzerEngine`` without NLP, the
peer of ``benchmarks/classify.py``) read the text log's first megabyte line by line, and so
does perisai (``classify`` on a file of that megabyte): MB/s of each, and the ratio.

Run: ``.venv-bench/bin/python benchmarks/textlog.py [--mb 200]`` (``make bench-classify``;
without Presidio installed the comparison is skipped and says so).
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

PERISAI = Path(sys.executable).parent / "perisai"  # the venv this runs in


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


PEER_BYTES = 1_000_000  # the peer reads this much of the text log (it runs at tens of KB/s)


def peer_comparison(text: Path, whole_rate: float) -> str:
    """Presidio's patterns and perisai on the same first megabyte of the text log, and
    perisai's rate on the whole log (``whole_rate``, MB/s) against Presidio's."""
    try:
        from benchmarks.peers import TOOLS

        detect = TOOLS["presidio (patterns)"]()
    except ImportError as error:
        return f"Presidio comparison skipped: {error} (run under .venv-bench)"
    from perisai.classify import Classifier
    from perisai.classify.files import profile_file

    head = text.with_suffix(".head.log")
    with text.open(encoding="utf-8") as lines, head.open("w", encoding="utf-8") as out:
        size = 0
        for line in lines:
            out.write(line)
            size += len(line.encode())
            if size >= PEER_BYTES:
                break
    lines_read = head.read_text(encoding="utf-8").splitlines()
    started = time.perf_counter()
    for line in lines_read:
        detect(line, None)
    peer_rate = size / 1e6 / (time.perf_counter() - started)
    classifier = Classifier(("MY",))  # built before the clock starts, as Presidio's engine
    started = time.perf_counter()
    profile_file(head, classifier)
    ours = size / 1e6 / (time.perf_counter() - started)
    return (
        f"On the text log's first {size / 1e6:.1f} MB, line by line: Presidio (patterns) "
        f"{peer_rate:.3f} MB/s; perisai {ours:.2f} MB/s on the same megabyte (its field cache "
        f"cold), {ours / peer_rate:.0f}x; perisai `classify` on the whole text log "
        f"{whole_rate:.1f} MB/s, {whole_rate / peer_rate:.0f}x."
    )


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
    print(
        f"\ntext / JSON seconds per MB: {seconds_text / size_text / (seconds_json / size_json):.2f}"
    )
    print(peer_comparison(text, size_text / seconds_text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
