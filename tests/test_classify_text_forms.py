"""Personal data in the forms text logs hold it, outside JSON keys: key=value and logfmt,
``key: value``, query strings (percent-encoded), HTTP request lines, JSON keys themselves, chat
exports, numbers next to CJK text; and the look-alikes that must stay alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perisai.classify import Classifier
from perisai.classify.files import profile_file
from perisai.redact import Redactor, redact_lines
from tests.clirun import perisai

POSITIVES = [
    ("2024-05-02 08:11:40 INFO sms.submit msisdn=+447700123456 otp=551204", "PHONE"),
    ("2024-05-02 08:11:40 INFO sms.submit msisdn=+447700123456 otp=551204", "OTP_CODE"),
    ("relay src=+6591230001 dst=+6591230002", "PHONE"),
    ("notify to=+60139876543 status=ok", "PHONE"),
    ("phone=60123456789", "PHONE"),  # country-code digits after a phone key
    ('level=info msg="sent" msisdn=6281234567890', "PHONE"),  # logfmt
    ("phone: 8127 3585", "PHONE"),  # Singapore: no trunk prefix, national digits after a key
    # from presidio-evaluator's templates, as Faker fills them (benchmarks/thirdparty.py)
    ("Phone:\\n+44 20 7946 0958x924\\nE-mail:\\nsiti@example.org", "PHONE"),  # logged "\n"
    ("I have lost my card 5496890777166822.", "CREDIT_CARD"),  # a full stop right after it
    ("my credit card number is 30490387345454?", "CREDIT_CARD"),  # Diners Club 300-305
    ("GET /search?q=lost%20card%205496890777166822%20help HTTP/1.1", "CREDIT_CARD"),
    ("to: +60123456789,", "PHONE"),
    ("GET /otp?phone=+60123456789 HTTP/1.1", "PHONE"),
    ("GET /otp?phone=%2B60123456789&x=1 HTTP/1.1", "PHONE"),
    ("GET /v1/users/+60123456789/devices HTTP/1.1", "PHONE"),
    ("e=siti%40example.org&x=1", "EMAIL"),
    ("请拨打+918800123456联系", "PHONE"),
    ("12/05/2024, 09:14 - +91 88001 23456: ok", "PHONE"),
    ("lat=3.1412 lon=101.6865", "GEO_COORDINATE"),
    ("meet at 3.1412,101.6865", "GEO_COORDINATE"),
    ("pin 3.14123,101.68651", "GEO_COORDINATE"),
    ("ic=850101-14-5523", "NATIONAL_ID"),
    ("latency_ms=273 client_ip=203.0.113.213 user_agent=okhttp", "IP_ADDRESS"),
    ("holder 850101-14-5523 verified", "NATIONAL_ID"),  # the printed shape, no keyword
    # one-time codes in the templates senders use, code first or after its word
    ("<#> 551204 is your code. FA+9qCX9VSu", "OTP_CODE"),  # SMS Retriever, app hash last
    ("[Brand] 551204 is your OTP", "OTP_CODE"),
    ("G-551204 is your Google verification code.", "OTP_CODE"),
    ("Use 551204 to verify your account", "OTP_CODE"),
    ("【腾讯科技】验证码：551204，5分钟内有效", "OTP_CODE"),
    ("รหัส OTP ของคุณคือ 551204", "OTP_CODE"),
    ("551204 आपका OTP है", "OTP_CODE"),
    ("551204 adalah kode OTP Anda", "OTP_CODE"),
    ("Kod pengesahan anda ialah 551204", "OTP_CODE"),
    ("Your code is 551204 @app.example.com #551204", "OTP_CODE"),  # origin-bound
    # messages in clear outside JSON: the breach's logging database held exactly these
    ('sms.deliver to=+60123456789 text="Jumpa di stesen nanti ya" status=ok', "MESSAGE_BODY"),
    ("body='see you at the station'", "MESSAGE_BODY"),
    ("msg: see you at the station tonight", "MESSAGE_BODY"),
    ("12/05/2024, 09:14 - Siti Aminah: Jumpa di stesen nanti", "MESSAGE_BODY"),  # WhatsApp
    ("12/05/2024, 09:14 - Siti Aminah: Jumpa di stesen nanti", "PERSON"),
    ("[12/05/2024, 09:14:05] Ahmad: ok boss", "MESSAGE_BODY"),  # WhatsApp on iOS
    ('event=message.sent sender_name="Siti Aminah" status=ok', "PERSON"),
]

NEGATIVES = [
    "request_id=4d13d674-e37b-4ac4-b1b2-13a4447857bf",  # a UUID is not a phone number
    "ts=2024-05-02T08:11:40.123+08:00 level=info",
    "at 08:11:40 took 0123ms",
    "version=4.1.2 build=20240502",
    "v=1.2.3.4 build=10.0.19041.1",
    "order_id=60123456789",  # digits without "+" under a key that is not a phone's
    "to=1714636300123",  # an epoch in milliseconds
    "price=+60.00 qty=3",
    "ratio 0.12345, 0.54321",
    "fx 4.4650,3.3210",
    "order 201312-01-0001",
    "sha=0123456789abcdef0123",
    "order 551204 shipped",
    "2024 code review",
    "Released 1.2.3 with 1234 code changes",
    "5000 is the max code length",
    'level=info msg="ok"',  # a status, not a message
    "status: delivered ok",
    'name="checkout-service" level=info',  # a service, not a person
    "12/05/2024, 09:14 - Messages and calls are end-to-end encrypted.",  # a system line
]


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(("MY", "SG", "ID", "GB"))


@pytest.mark.parametrize(("line", "entity"), POSITIVES)
def test_found_in_text_log_forms(classifier: Classifier, line: str, entity: str) -> None:
    assert entity in {m.entity for m in classifier.scan_text(line)}, line


@pytest.mark.parametrize("line", NEGATIVES)
def test_look_alikes_stay_alone(classifier: Classifier, line: str) -> None:
    found = [
        (m.entity, line[m.start : m.end])
        for m in classifier.scan_text(line)
        if m.entity
        in (
            "PHONE",
            "GEO_COORDINATE",
            "NATIONAL_ID",
            "EMAIL",
            "OTP_CODE",
            "MESSAGE_BODY",
            "PERSON",
            "IP_ADDRESS",
        )
    ]
    assert found == [], line


# The lines `perisai redact` passed through unchanged (issue #15), and their kin.
LEAKS = [
    ('{"+60123456789": "ok", "siti@example.org": 1}', ("60123456789", "siti@")),
    ("GET /otp?phone=+60123456789 HTTP/1.1", ("60123456789",)),
    ("phone=60123456789", ("60123456789",)),
    ("to:+60123456789,", ("60123456789",)),
    ("e=siti%40example.org", ("siti%40",)),
    ('{"ts":"2024-05-02T08:11:40Z","msisdn":60123456789,"ok":true}', ("60123456789",)),
    ("relay src=+6591230001 dst=+6591230002", ("91230001", "91230002")),
    ("请拨打+918800123456联系", ("8800123456",)),
]


@pytest.mark.parametrize(("line", "secrets"), LEAKS)
def test_redact_leaks_none_of_it(line: str, secrets: tuple[str, ...]) -> None:
    (out,) = list(redact_lines([line], Redactor(regions=("MY", "SG"))))
    for secret in secrets:
        assert secret not in out, out
    if line.startswith("{"):
        json.loads(out)  # still valid JSON


def test_a_key_does_not_lend_itself_to_the_line_before(classifier: Classifier) -> None:
    """Digits count as a phone only after their own phone key, never after one that a merged
    window reaches on the next line."""
    lines = ["order_id=81273585", "phone=0123456789"]
    first, second = classifier.scan_lines(lines)
    assert first == [] and [m.entity for m in second] == ["PHONE"]


def test_redact_keeps_every_other_byte_of_a_json_line() -> None:
    """Only the redacted values change: compact separators, key order and untouched values
    stay as written; a bare number replaced becomes a string so the line stays JSON."""
    line = '{"ts":"2024-05-02T08:11:40Z","n":1.50,"msisdn":60123456789,"note":"ok"}'
    (out,) = list(redact_lines([line], Redactor(regions=("MY",))))
    assert out.startswith('{"ts":"2024-05-02T08:11:40Z","n":1.50,"msisdn":"+60 ')
    assert out.endswith('","note":"ok"}')
    assert json.loads(out)["n"] == 1.5


def test_a_logged_newline_escape_is_no_part_of_an_address(classifier: Classifier) -> None:
    line = "E-mail:\\njohnsontracy@example.org\\n"
    (match,) = classifier.scan_text(line)
    assert line[match.start : match.end] == "johnsontracy@example.org"


def test_north_american_numbers_need_the_region() -> None:
    """623-991-6122 has no trunk prefix: a number only where US or CA is a region."""
    line = "Mobile: 623-991-6122x054"
    assert [m.entity for m in Classifier(("US",)).scan_text(line)] == ["PHONE"]
    assert Classifier(("MY",)).scan_text(line) == []


def test_a_query_is_read_decoded_and_masked_encoded() -> None:
    line = "GET /s?q=call%20%2B60123456789%20or%20siti%40example.org HTTP/1.1"
    (out,) = list(redact_lines([line], Redactor(regions=("MY",))))
    assert "60123456789" not in out and "siti" not in out
    assert " " not in out.split(" ")[1]  # the URL stays one token: masks are encoded too


def test_regions_are_given_as_a_list(tmp_path: Path) -> None:
    """``--region US,ID`` reads both regions' national numbers; an unknown code is one line."""
    log = tmp_path / "calls.log"
    log.write_text("called (201) 581-8190 then 0812-749-036\n", encoding="utf-8")
    result = perisai("redact", "--region", "US,ID", str(log))
    assert result.returncode == 0, result.stderr
    assert "581-8190" not in result.stdout and "749-036" not in result.stdout
    bad = perisai("redact", "--region", "MY,XX", str(log))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "'XX'" in bad.stderr


def test_a_csv_without_header_gets_column_types_from_its_values(tmp_path: Path) -> None:
    """No header: each column is named for what most of its values are, so bare msisdn
    digits, coordinates and IMEIs are read as under such keys; a column of amounts is not."""
    rows = [
        f"{n},6012{1000000 + n * 7919},3.{14120 + n},101.{68650 + n},490154203237518,{n * 3}.50,ok"
        for n in range(50)
    ]
    path = tmp_path / "export.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    profile = profile_file(path, Classifier(("MY",)))
    assert profile.records == 50
    assert profile.entities == {"PHONE": 50, "GEO_COORDINATE": 100, "IMEI": 50}
    with_header = tmp_path / "named.csv"
    with_header.write_text("name,phone\nSiti Aminah,+60123456789\n", encoding="utf-8")
    named = profile_file(with_header, Classifier(("MY",)))
    assert named.records == 1 and named.entities == {"PERSON": 1, "PHONE": 1}


def test_a_csv_column_whose_name_tells_nothing_is_judged_by_its_values(tmp_path: Path) -> None:
    """A header of ``note``/``comment`` says nothing; prose in most of the column's values
    makes it a column of messages. A column of short codes under such a name stays alone,
    and a named column (``phone``) keeps its own name."""
    rows = ["id,note,comment,phone"] + [
        f"{n},I will pick you up at the station at {n % 12 + 1} pm,OK{n},0123456789"
        for n in range(30)
    ]
    path = tmp_path / "support.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    profile = profile_file(path, Classifier(("MY",)))
    assert profile.entities == {"MESSAGE_BODY": 30, "PHONE": 30}


def test_masking_twice_changes_nothing() -> None:
    """A mask read again is no new value: evidence masked once may pass the masker again."""
    from perisai.classify import redact_text

    texts = [
        "token SECRET: sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "password=Xk9#mQ2$vL7pR4tZ",
        "call +60123456789 or siti.aminah@example.org",
        "IC 900101-14-5678, card 4111 1111 1111 1111, IBAN GB82WEST12345698765432",
        "from 203.0.113.7 at lat=3.1412 lon=101.6865, imei 490154203237518",
        "Your TAC is 551204. Do not share it.",
        'body="see you at the station at 5" sender_name="Siti Aminah"',
    ]
    for text in texts:
        once = redact_text(text, ("MY",))
        assert once != text and redact_text(once, ("MY",)) == once, once
