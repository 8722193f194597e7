"""The labeled corpus itself: deterministic, valid positives, labels that occur in records."""

from __future__ import annotations

import json
from pathlib import Path

import phonenumbers
from benchmarks.corpus import generate, write_jsonl
from stdnum import iban, luhn


def test_deterministic_and_labels_occur_in_their_records() -> None:
    first, second = generate(300, seed=5), generate(300, seed=5)
    assert first == second
    assert generate(50, seed=6) != generate(50, seed=5)
    negatives = 0
    for item in first:
        serialised = json.dumps(item.record, ensure_ascii=False)
        for label in item.labels:
            assert label.value in serialised, label
        negatives += not item.labels
    assert 0.15 < negatives / len(first) < 0.45


def test_positives_are_valid() -> None:
    for item in generate(400, seed=9):
        for label in item.labels:
            digits = "".join(ch for ch in label.value if ch.isdigit())
            if label.entity == "PHONE":
                text = label.value if label.value.startswith("+") else "+" + digits
                if label.value.startswith("0"):
                    text = label.value
                number = phonenumbers.parse(text, "MY")
                assert phonenumbers.is_valid_number(number), label
            elif label.entity in ("CREDIT_CARD", "IMEI"):
                assert luhn.is_valid(digits), label
            elif label.entity == "IBAN":
                assert iban.is_valid(label.value), label


def test_write_jsonl_size_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    written = write_jsonl(path, 200_000)
    assert 200_000 <= written < 202_000
    assert path.stat().st_size == written
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)
