"""The JSON-lines fast path: raw lines, no parsing, the same answers as the record walk."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest
from benchmarks.corpus import iter_records

from perisai.classify import Classifier


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(("MY",))


def _found(matches: list[tuple[str, str]]) -> Counter[tuple[str, str]]:
    return Counter(matches)


def test_agrees_with_the_record_walk_on_the_corpus(classifier: Classifier) -> None:
    """Entity by entity, mask by mask, on every line of 3000 labeled records."""
    lines = [json.dumps(r.record) for r in itertools.islice(iter_records(seed=11), 3000)]
    fast = list(classifier.scan_json_lines(lines))
    assert len(fast) == len(lines)
    found = 0
    for line, matches in zip(lines, fast, strict=True):
        walked = classifier.scan_record(json.loads(line))
        assert _found([(m.entity, m.masked) for m in matches]) == _found(
            [(m.entity, m.masked) for _, m in walked]
        ), line
        found += len(matches)
    assert found > 3000  # the corpus is dense: the comparison is not vacuous


def test_spans_index_the_raw_line(classifier: Classifier) -> None:
    line = json.dumps(
        {"msg": "Salam dari Kuala Lumpur ya", "email": "siti@example.org", "ic": "770305-02-1234"},
        ensure_ascii=False,
    )
    (matches,) = classifier.scan_json_lines([line])
    values = {m.entity: line[m.start : m.end] for m in matches}
    assert values == {
        "MESSAGE_BODY": "Salam dari Kuala Lumpur ya",
        "EMAIL": "siti@example.org",
        "NATIONAL_ID": "770305-02-1234",
    }


def test_non_ascii_before_a_value_keeps_spans_right(classifier: Classifier) -> None:
    line = json.dumps(
        {"nama": "Ünsal Çelik", "note": "日本語 call +60 12-345 6789"}, ensure_ascii=False
    )
    (matches,) = classifier.scan_json_lines([line])
    assert {line[m.start : m.end] for m in matches if m.entity == "PHONE"} == {"+60 12-345 6789"}


def test_values_only_their_key_tells(classifier: Classifier) -> None:
    line = json.dumps(
        {
            "msisdn": "60123456789",
            "lat": 3.139003,
            "lon": 101.686855,
            "sender_name": "Siti Aminah",
            "recipient": ["60198765432"],
            "payload": json.dumps({"to": "60123456780", "body": "jumpa di stesen nanti"}),
        }
    )
    (matches,) = classifier.scan_json_lines([line])
    expected = Counter({"PHONE": 3, "GEO_COORDINATE": 2, "PERSON": 1, "MESSAGE_BODY": 1})
    assert Counter(m.entity for m in matches) == expected
    assert Counter(m.entity for _, m in classifier.scan_record(json.loads(line))) == expected


@pytest.mark.parametrize(
    "record",
    [
        # a keyword in the neighbouring field does not make a bare number an IMEI or an IC
        {"note": "imei", "serial": "490154203237518"},
        {"type": "ic", "value": "770305021234"},
        # "otp.requested" is an event name, not the word before a code
        {"event": "otp.requested", "request_id": "12345abc-0000-4000-8000-000000000000"},
        # numbers under keys that tell nothing stay numbers
        {"latency_ms": 238, "count": 60123456789, "ratio": 3.139003},
        {"name": "checkout-service", "text": "ok"},
    ],
)
def test_neighbouring_fields_do_not_lend_context(
    classifier: Classifier, record: dict[str, object]
) -> None:
    line = json.dumps(record)
    (matches,) = classifier.scan_json_lines([line])
    assert matches == []
    assert classifier.scan_record(record) == []


def test_lines_that_are_not_json_are_plain_text(classifier: Classifier) -> None:
    lines = ["2026-11-01 INFO login from 203.0.113.7 by siti@example.org", "", "{broken"]
    results = list(classifier.scan_json_lines(lines))
    assert [sorted(m.entity for m in r) for r in results] == [["EMAIL", "IP_ADDRESS"], [], []]


def test_a_line_holding_newlines_is_one_line(classifier: Classifier) -> None:
    lines = ['{"email": "siti@example.org",\n "ip": "203.0.113.7"}', '{"lat": 3.139003}']
    results = list(classifier.scan_json_lines(lines))
    assert [sorted(m.entity for m in r) for r in results] == [
        ["EMAIL", "IP_ADDRESS"],
        ["GEO_COORDINATE"],
    ]


def test_hostile_lines_end_bounded(classifier: Classifier) -> None:
    lines = [
        "[" * 100_000 + "]" * 100_000,  # deep nesting: never parsed, never recursed
        '{"msisdn": [' + "[" * 5000 + '"60123456789"' + "]" * 5000 + "]}",
        '{"body": "' + "ab \\" * 50_000,  # an unterminated string full of escapes
        "\x00\xff\ufffd" * 10_000,
        '{"phone": "+60 12-345 6789"}' * 37_000,  # just under the 1 MiB a line is cut at
    ]
    results = list(classifier.scan_json_lines(lines))
    assert len(results) == len(lines)
    assert sum(1 for m in results[-1] if m.entity == "PHONE") == 37_000
