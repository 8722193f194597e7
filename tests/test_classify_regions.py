"""What the third-party people corpus (benchmarks/thirdparty_regions.py) found wrong, kept
right: dates and times are no phone numbers, a form query's "+" is a blank, personal ID
numbers of the given regions after a word that names them, national numbers after a word
that says phone where the plan has no trunk prefix, provider receipts read field by field."""

from __future__ import annotations

import pytest

from perisai.classify import Classifier
from perisai.redact import Redactor, redact_lines


def _found(region: str, line: str, entity: str) -> list[str]:
    return [
        line[m.start : m.end] for m in Classifier((region,)).scan_text(line) if m.entity == entity
    ]


@pytest.mark.parametrize(
    ("region", "line"),
    [
        ("DE", '<div class="pull_right date details" title="02.05.2024 08:11:40">'),
        ("IT", "Date: 2015-06-27 11:18:59.104542"),  # a time's fractional seconds
        ("FI", "Date: 2004-03-21 21:36:06.574506"),
        ("IT", '198.51.100.7 - - [02/May/2024:08:00:05 +0000] "GET /s?q=a+b HTTP/1.1" 200 1'),
        ("SE", "born 06-05-24, moved 2024/05/06"),
    ],
)
def test_dates_and_times_are_no_phone_numbers(region: str, line: str) -> None:
    assert _found(region, line, "PHONE") == []


def test_a_form_query_writes_blanks_as_plus() -> None:
    """Browsers send ``call+me+at+%2B43+660+4751389``: read with blanks, masked in place."""
    line = (
        '198.51.100.7 - - [02/May/2024:08:00:05 +0000] "GET /help/search?q=call+me+at+'
        '%2B43+660+4751389 HTTP/1.1" 200 2326'
    )
    assert _found("AT", line, "PHONE") == ["%2B43+660+4751389"]
    (out,) = list(redact_lines([line], Redactor(regions=("AT",))))
    assert "4751389" not in out and "+0000]" in out  # the timestamp's zone is kept
    unencoded = "GET /otp?to=+436604751389&x=1 HTTP/1.1"  # a "+" meant as a plus still is
    assert _found("AT", unencoded, "PHONE") == ["+436604751389"]


def test_a_vonage_delivery_receipt() -> None:
    """Vonage's published receipt: the msisdn is the number; network-code is no one-time
    code; the api-key value ends where its query field does."""
    line = (
        "GET /webhooks/delivery-receipt?msisdn=447911123456&to=AcmeBank&network-code=23410"
        "&messageId=0A0000001234567B&price=0.03330000&status=delivered&err-code=0"
        "&api-key=a1b2c3d4e5f6&message-timestamp=2024-05-02+08%3A11%3A40 HTTP/1.1"
    )
    found = {(m.entity, line[m.start : m.end]) for m in Classifier(("GB",)).scan_text(line)}
    assert ("PHONE", "447911123456") in found
    assert not any(entity == "OTP_CODE" for entity, _ in found)
    assert ("SECRET", "a1b2c3d4e5f6") in found


@pytest.mark.parametrize(
    ("region", "line", "value"),
    [
        ("PL", "PESEL: 54030268860,", "54030268860"),
        ("SE", "His social security number is 760211-4105", "760211-4105"),
        ("CA", "Here's my SSN: 387 124 498", "387 124 498"),  # a SIN, grouped 3-3-3
        ("FR", "His social security number is 1501143313127 93", "1501143313127 93"),
        ("BR", "CPF 406.537.117-19", "406.537.117-19"),
        ("DK", "cpr-nr: 190641-4941", "190641-4941"),
    ],
)
def test_personal_id_numbers_after_their_word(region: str, line: str, value: str) -> None:
    assert _found(region, line, "NATIONAL_ID") == [value]


@pytest.mark.parametrize(
    ("region", "line"),
    [
        ("PL", "order 54030268860 shipped"),  # no word that names an ID
        ("MY", "PESEL: 54030268860,"),  # not a region given: Poland's check is not run
        ("PL", "PESEL: 54030268861,"),  # the check digit is wrong
    ],
)
def test_no_personal_id_without_its_word_region_and_check(region: str, line: str) -> None:
    assert _found(region, line, "NATIONAL_ID") == []


def test_an_id_is_no_phone_even_when_its_check_fails() -> None:
    """A Finnish HETU cut short reads like a Finnish number; after "social security number"
    it is not one."""
    assert _found("FI", "His social security number is 070387-1208", "PHONE") == []
    assert _found("FI", "You can call 070387-1208", "PHONE") == ["070387-1208"]


@pytest.mark.parametrize(
    ("region", "line", "value"),
    [
        ("ES", "How can we reach you? You can call 612 345 678", "612 345 678"),
        ("NO", "Can someone call me on 914 54 925?", "914 54 925"),
        ("EE", "Phone 445 6271", "445 6271"),
    ],
)
def test_national_numbers_after_a_phone_word(region: str, line: str, value: str) -> None:
    assert _found(region, line, "PHONE") == [value]


@pytest.mark.parametrize(
    ("region", "line"),
    [
        ("MY", "sms_text: PIN 55093109, call us if this was not you"),  # a code's word between
        ("ES", "They paid 612 345 678 euros"),  # no phone word
        ("ES", "call 2024-05-02"),  # a date
    ],
)
def test_no_national_number_without_a_phone_word(region: str, line: str) -> None:
    assert _found(region, line, "PHONE") == []


def test_a_coordinate_under_its_key_with_few_decimals() -> None:
    """GeoNames writes 47.05 for 47.05000: under lat= and lng= as under a JSON key."""
    line = "GET /api/v2/stores/nearby?lat=47.05&lng=15.46667&radius=5 HTTP/1.1"
    assert _found("AT", line, "GEO_COORDINATE") == ["47.05", "15.46667"]


@pytest.mark.parametrize(
    ("regions", "line", "entity", "value"),
    [
        (("TH",), "โทร0812345678 ครับ", "PHONE", "0812345678"),  # glued to Thai "call"
        (("TH",), "โทร 081 234 5678", "PHONE", "081 234 5678"),
        (("IN",), "கைபேசி 9876543210", "PHONE", "9876543210"),  # Tamil "mobile", no trunk 0
        (("IN",), "मोबाइल: 9876543210", "PHONE", "9876543210"),  # Hindi "mobile"
        (("IN",), "தொடர்புக்கு+919876543210", "PHONE", "+919876543210"),
        (("MY",), "sila hubungi 012-3456789 ya", "PHONE", "012-3456789"),
        (("IN",), "OTP உங்கள் குறியீடு 551204", "OTP_CODE", "551204"),  # Tamil between
        (("IN",), "आपका कोड 551204 है", "OTP_CODE", "551204"),  # Hindi "your code"
        (("TH",), "รหัส OTP คือ 551204", "OTP_CODE", "551204"),
        (("MY",), "kod TAC anda ialah 551204", "OTP_CODE", "551204"),
    ],
)
def test_next_to_thai_tamil_hindi_and_malay_text(
    regions: tuple[str, ...], line: str, entity: str, value: str
) -> None:
    found = [line[m.start : m.end] for m in Classifier(regions).scan_text(line)]
    assert value in found and entity in {m.entity for m in Classifier(regions).scan_text(line)}


def test_a_bare_indian_mobile_number_needs_its_word() -> None:
    """Ten digits alone are as often an order or account number."""
    assert _found("IN", "order 9876543210 shipped", "PHONE") == []


def test_an_id_under_an_id_key_in_json_lines() -> None:
    """``national_id``, ``id_number``: the key names the number, on the JSON-lines fast path
    as in the record walk; a key that only starts with such a name lends nothing."""
    classifier = Classifier(("MY",))
    lines = [
        '{"national_id": "900101145678"}',
        '{"id_number": "900101145678", "ok": true}',
        '{"id_number_verified": true, "amount": "900101145678"}',
    ]
    found = [[m.entity for m in matches] for matches in classifier.scan_json_lines(lines)]
    assert found == [["NATIONAL_ID"], ["NATIONAL_ID"], []]
