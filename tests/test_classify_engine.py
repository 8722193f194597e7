"""The hyperscan classifier: each entity found by its validator, hard negatives left alone."""

from __future__ import annotations

import json

import pytest

from perisai.classify import Classifier

POSITIVES = [
    ("pay with 4111 1111 1111 1111 today", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("amex 378282246310005", "CREDIT_CARD", "378282246310005"),
    ("iban GB82 WEST 1234 5698 7654 32 ok", "IBAN", "GB82 WEST 1234 5698 7654 32"),
    ("to DE89370400440532013000", "IBAN", "DE89370400440532013000"),
    ("imei: 490154203237518", "IMEI", "490154203237518"),
    ("client 203.0.113.7 connected", "IP_ADDRESS", "203.0.113.7"),
    ("peer 2001:db8::1 closed", "IP_ADDRESS", "2001:db8::1"),
    ("IC no 770305-02-1234", "NATIONAL_ID", "770305-02-1234"),
    ("nric S1234567D", "NATIONAL_ID", "S1234567D"),
    ("aadhaar 2345 6789 0124", "NATIONAL_ID", "2345 6789 0124"),
    ("ssn 123-45-6789", "NATIONAL_ID", "123-45-6789"),
    ("id 11010519491231002X", "NATIONAL_ID", "11010519491231002X"),
    ("nino AB 12 34 56 C", "NATIONAL_ID", "AB 12 34 56 C"),
    (
        "send to 1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
        "CRYPTO_ADDRESS",
        "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
    ),
    (
        "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",
        "CRYPTO_ADDRESS",
        "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",
    ),
    ("key=AKIAIOSFODNN7EXAMPLE", "SECRET", "AKIAIOSFODNN7EXAMPLE"),
    (
        "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "SECRET",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ),
    ("-----BEGIN RSA PRIVATE KEY-----", "SECRET", "-----BEGIN RSA PRIVATE KEY-----"),
    ("password=hunter2xY9!kq", "SECRET", "hunter2xY9!kq"),
    ("Your TAC is 482913. Do not share.", "OTP_CODE", "482913"),
    ("Kod pengesahan anda ialah 739201", "OTP_CODE", "739201"),
    ("location: 3.139003, 101.686855", "GEO_COORDINATE", "3.139003, 101.686855"),
    ("call +60 12-345 6789 now", "PHONE", "+60 12-345 6789"),
    ("call 012-345 6789 now", "PHONE", "012-345 6789"),
    ("write to siti.aminah@example.org", "EMAIL", "siti.aminah@example.org"),
]

NEGATIVES = [
    "request 123e4567-e89b-12d3-a456-426614174000",  # a UUID is not a phone number
    "ts=1700000000000",  # epoch milliseconds
    "agent version=1.2.3.4 build 10.0.19041.1",  # version strings are not IP addresses
    "order ORD-2026-000123",
    "card 4111111111111112",  # Luhn-invalid
    "nric S1234567A",  # wrong check letter
    "aadhaar 2345 6789 0123",  # bad Verhoeff digit
    "iban GB82 WEST 1234 5698 7654 33",  # bad mod-97
    "md5 d41d8cd98f00b204e9800998ecf8427e sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "price 3.139003, ratio 101.686855",  # decimals outside a lat/lon context
    "770305021234",  # MyKad digits without their printed dashes or an IC keyword
    "490154203237518",  # an IMEI-shaped number without the keyword
    "error code 404 after 1500 ms on port 8080",
    "password=abc",  # too short and too plain for a secret
]


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(("MY",))


@pytest.mark.parametrize(("text", "entity", "value"), POSITIVES)
def test_positive(classifier: Classifier, text: str, entity: str, value: str) -> None:
    found = [(m.entity, text[m.start : m.end]) for m in classifier.scan_text(text)]
    assert (entity, value) in found
    match = next(m for m in classifier.scan_text(text) if m.entity == entity)
    assert match.why and 0 < match.confidence <= 1
    assert value not in match.masked  # masks never repeat the value
    if entity == "OTP_CODE":  # a one-time code keeps none of its digits
        assert not any(ch.isdigit() for ch in match.masked.replace(str(len(value)), ""))


@pytest.mark.parametrize("text", NEGATIVES)
def test_hard_negative(classifier: Classifier, text: str) -> None:
    assert classifier.scan_text(text) == []


def test_key_context(classifier: Classifier) -> None:
    record = {
        "msisdn": "60123456789",
        "imei": "490154203237518",
        "ic": "770305-02-1234",
        "sender_name": "Siti Aminah binti Abdullah",
        "msg": "jumpa di klinik pukul 5 petang",
        "lat": "3.1390",
        "lon": "101.6869",
        "price": "3.1390",
    }
    found = sorted((key, m.entity) for key, m in classifier.scan_record(record))
    assert found == [
        ("ic", "NATIONAL_ID"),
        ("imei", "IMEI"),
        ("lat", "GEO_COORDINATE"),
        ("lon", "GEO_COORDINATE"),
        ("msg", "MESSAGE_BODY"),
        ("msisdn", "PHONE"),
        ("sender_name", "PERSON"),
    ]


def test_scan_lines_matches_scan_text(classifier: Classifier) -> None:
    lines = [text for text, _, _ in POSITIVES] + NEGATIVES
    batched = list(classifier.scan_lines(lines))
    assert len(batched) == len(lines)
    for line, matches in zip(lines, batched, strict=True):
        assert [(m.entity, m.start, m.end) for m in matches] == [
            (m.entity, m.start, m.end) for m in classifier.scan_text(line)
        ]


def test_non_ascii_offsets(classifier: Classifier) -> None:
    text = "Pesanan daripada Zoë — hubungi +60 12-345 6789 😀 atau zoe.w@example.org"
    found = {m.entity: text[m.start : m.end] for m in classifier.scan_text(text)}
    assert found["PHONE"] == "+60 12-345 6789"
    assert found["EMAIL"].endswith("@example.org")


def test_hostile_input_does_not_crash(classifier: Classifier) -> None:
    garbage = bytes(range(256)).decode("latin-1") * 200
    assert isinstance(classifier.scan_text(garbage), list)
    huge = "x" * (10 * 1024 * 1024) + " siti@example.org"
    assert classifier.scan_text(huge) == []  # cut at the value cap, not scanned forever
    nested: object = "+60 12-345 6789"
    for _ in range(5000):
        nested = [nested]
    assert classifier.scan_record(nested) == []  # deeper than the walk goes
    deep_json = "[" * 100000 + "]" * 100000
    assert classifier.scan_record(deep_json) == []
    assert classifier.scan_text("\udcff invalid surrogate +60 12-345 6789")
    assert json.dumps([m.masked for _, m in classifier.scan_record({"a": "x@example.org"})])


def test_thai_id_as_printed_on_the_card(classifier: Classifier) -> None:
    for text in ("th_id: 1-1017-00203-11-5", "citizen id 1101700203115"):
        assert [m.entity for m in classifier.scan_text(text)] == ["NATIONAL_ID"], text
    assert classifier.scan_text("order 1-1017-00203-11-5") == []  # no keyword, no claim


def test_an_id_that_passes_luhn_is_not_a_card(classifier: Classifier) -> None:
    """A NIK can pass the card checksum; labelled NIK, it is an ID and nothing else."""
    [match] = classifier.scan_text("3171066907439150", key="nik")
    assert match.entity == "NATIONAL_ID"


def test_a_card_run_inside_an_iban_is_the_iban(classifier: Classifier) -> None:
    matches = classifier.scan_text("payout DE89 3704 0044 0532 0130 00 today")
    assert [m.entity for m in matches] == ["IBAN"]
