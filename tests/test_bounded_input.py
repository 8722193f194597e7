"""What users point perisai at cannot make it hang or eat memory: FIFOs and devices skipped
with a reason, gzip bombs stopped with one, long lines read in windows, blank lines batched,
target files read bounded. (Peak memory itself is measured in benchmarks/memory.py.)"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import pytest

from perisai import bounded, targets
from perisai.bounded import text_windows
from perisai.classify import Classifier, engine
from perisai.classify.files import profile_file
from perisai.redact import Redactor, redact_stream
from perisai.targets import TargetError, parse_targets
from tests.clirun import perisai


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(("MY",))


def test_a_fifo_is_skipped_not_waited_on(tmp_path: Path, classifier: Classifier) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    profile = profile_file(fifo, classifier)  # opening it would block: no writer
    assert profile.skipped is not None and "FIFO" in profile.skipped
    result = perisai("classify", str(fifo), timeout=60)
    assert "a FIFO, not a regular file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_gzip_bomb_stops_with_a_reason(
    tmp_path: Path, classifier: Classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bounded, "GZIP_RATIO_FREE", 1 << 20)
    bomb = tmp_path / "newlines.log.gz"
    bomb.write_bytes(gzip.compress(b"call +60123456789\n" + b"\n" * (8 << 20)))
    profile = profile_file(bomb, classifier)
    assert profile.skipped is not None and "gzip bomb" in profile.skipped
    assert profile.entities.get("PHONE") == 1  # what came before the cap is kept
    # an honest .gz (compressing far less than 200:1) is read whole
    honest = tmp_path / "app.log.gz"
    lines = [
        f"user {n:06d} called +6012345{n % 10000:04d} from 10.0.{n % 250}.{n % 200}"
        for n in range(20_000)
    ]
    honest.write_bytes(gzip.compress("\n".join(lines).encode()))
    profile = profile_file(honest, classifier)
    assert profile.skipped is None and profile.records == 20_000


def test_blank_lines_are_no_records_and_batch_bounded(
    tmp_path: Path, classifier: Classifier
) -> None:
    path = tmp_path / "blank.log"
    path.write_text("\n" * 200_000 + "phone +60123456789\n" + "\n\r\n" * 1000, encoding="utf-8")
    profile = profile_file(path, classifier)
    assert profile.records == 1 and profile.entities == {"PHONE": 1}
    batches = list(engine._batches([""] * 100_000))
    assert len(batches) > 1 and max(map(len, batches)) <= engine.BATCH_LINES


def test_long_lines_are_read_in_windows_cut_at_blanks() -> None:
    line = " ".join(f"word{n}" for n in range(50_000))  # ~390 KB, one line
    pieces = list(text_windows(io.StringIO(line + "\nshort\n"), 64 * 1024))
    windows = [text for text, ends in pieces[:-1]]
    assert all(len(text) <= 64 * 1024 for text in windows)
    assert all(text.endswith(" ") for text, ends in pieces[:-2])  # cut after a blank
    assert "".join(windows) == line
    assert pieces[-2][1] and pieces[-1] == ("short", True)


def test_redact_masks_inside_a_line_longer_than_its_window() -> None:
    line = "x " * 300_000 + "call +60123456789 now " + "y " * 10
    out = "".join(redact_stream(io.StringIO(line + "\n"), Redactor(), window=64 * 1024))
    assert "60123456789" not in out and "+60 12-*** **89" in out
    assert out.count("\n") == 1 and len(out) == len(line) + 1 - len("+60123456789") + len(
        "+60 12-*** **89"
    )


def test_target_files_are_read_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inner = tmp_path / "inner.txt"
    inner.write_text("127.0.0.1\n", encoding="utf-8")
    outer = tmp_path / "outer.txt"
    outer.write_text(f"@{inner}\n", encoding="utf-8")
    with pytest.raises(TargetError, match="cannot name another target file"):
        parse_targets([f"@{outer}"], resolve=False)
    fifo = tmp_path / "targets.fifo"
    os.mkfifo(fifo)
    with pytest.raises(TargetError, match="FIFO"):
        parse_targets([f"@{fifo}"], resolve=False)
    monkeypatch.setattr(targets, "MAX_TARGET_FILE_BYTES", 64)
    big = tmp_path / "big.txt"
    big.write_text("127.0.0.1\n" * 20, encoding="utf-8")
    with pytest.raises(TargetError, match="split it"):
        parse_targets([f"@{big}"], resolve=False)
