"""The labeled corpus itself: deterministic, valid positives, labels that occur in records."""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections import Counter
from pathlib import Path

import phonenumbers
import pytest
from benchmarks.corpus import (
    ENTITIES,
    crypto_address_is_valid,
    generate,
    hard_negative_cases,
    hard_negatives,
    national_id_is_valid,
    phone_like,
    sg_nric_check_letter,
    sg_nric_is_valid,
    uk_nino_is_valid,
    write_jsonl,
)
from stdnum import iban, imei, luhn
from stdnum.in_ import aadhaar
from stdnum.my import nric as my_nric

_DOC_NETS = tuple(
    ipaddress.ip_network(net)
    for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def _valid_phone(text: str) -> bool:
    if text.startswith("0"):
        number = phonenumbers.parse(text, "MY")
    else:
        number = phonenumbers.parse("+" + text.lstrip("+"), None)
    return bool(phonenumbers.is_valid_number(number))


def test_deterministic() -> None:
    first, second = generate(300, seed=5), generate(300, seed=5)
    assert first == second
    assert generate(50, seed=6) != generate(50, seed=5)
    assert hard_negatives() == hard_negatives()
    assert generate(40, seed=5) == first[:40]  # a prefix of the same stream


def test_labels_occur_in_their_records_and_shares() -> None:
    corpus = generate(1000, seed=5)
    negatives = 0
    seen: Counter[str] = Counter()
    for item in corpus:
        for serialised in (json.dumps(item.record), json.dumps(item.record, ensure_ascii=False)):
            for label in item.labels:
                assert label.entity in ENTITIES, label
                assert label.value in serialised, label
        assert len(item.labels) <= 5  # up to 4 entities; a lat/lon pair carries two labels
        seen.update(label.entity for label in item.labels)
        negatives += not item.labels
    assert 0.2 < negatives / len(corpus) < 0.4
    assert set(seen) == set(ENTITIES)
    assert all(generate(50, seed=1, negative_share=1.0)[i].labels == () for i in range(50))


def _check_positive(entity: str, value: str) -> bool:
    if entity == "PHONE":
        return _valid_phone(value)
    if entity == "EMAIL":
        return re.fullmatch(r"[\w.+-]+@example\.(com|org|net)", value) is not None
    if entity == "NATIONAL_ID":
        return national_id_is_valid(value)
    if entity == "CREDIT_CARD":
        digits = re.sub(r"[ -]", "", value)
        return len(digits) in (15, 16) and digits[0] in "2345" and luhn.is_valid(digits)
    if entity == "IBAN":
        return iban.is_valid(value) and value[:2] in ("GB", "DE", "FR", "NL")
    if entity == "IP_ADDRESS":
        address = ipaddress.ip_address(value)
        return any(address in net for net in _DOC_NETS)
    if entity == "GEO_COORDINATE":
        parts = [float(part) for part in value.split(",")]
        return all(-180 <= part <= 180 for part in parts) and (len(parts) == 1 or parts[0] <= 90)
    if entity == "IMEI":
        return len(value) == 15 and imei.is_valid(value)
    if entity == "CRYPTO_ADDRESS":
        return crypto_address_is_valid(value)
    if entity == "OTP_CODE":
        return re.fullmatch(r"\d{4,8}", value) is not None
    if entity == "SECRET":
        patterns = (
            r"AKIA[A-Z0-9]{16}",
            r"ghp_[A-Za-z0-9]{36}",
            r"xoxb-\d+-\d+-[A-Za-z0-9]+",
            r"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9\.[\w-]+\.[\w-]+",
            r"-----BEGIN RSA PRIVATE KEY-----",
        )
        return any(re.fullmatch(pattern, value) for pattern in patterns)
    return bool(value.strip())  # MESSAGE_BODY, PERSON: free text


def test_mykad_validator_is_stdnums() -> None:
    """perisai's MyKad check remembers place codes; its answers stay python-stdnum's."""
    from random import Random

    from perisai.classify.validators import mykad

    rnd = Random(4)
    numbers = [f"{rnd.randrange(10**12):012d}" for _ in range(20000)]
    numbers += [f"900101{code:02d}5566" for code in range(100)]  # every place code
    numbers += ["900230015566", "900101-14-5566", "90010114556", "9001011455667"]
    valid = [n for n in numbers if mykad(n)]
    assert [mykad(n) for n in numbers] == [my_nric.is_valid(n) for n in numbers]
    assert 500 < len(valid) < len(numbers) - 500  # both answers common: not vacuous


def test_positives_pass_their_validators() -> None:
    for item in generate(1500, seed=9):
        for label in item.labels:
            assert _check_positive(label.entity, label.value), label


def test_mykad_has_context() -> None:
    for item in generate(1500, seed=9):
        for key, value in item.record.items():
            if isinstance(value, str) and re.fullmatch(r"\d{6}-\d{2}-\d{4}", value):
                assert my_nric.is_valid(value), value
                assert key in ("ic", "nric", "mykad"), (key, value)
            elif isinstance(value, str) and "IC no: " in value:
                assert my_nric.is_valid(value.split("IC no: ")[1])


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("S1234567D", True),  # the usual published example
        ("S0000001I", True),
        ("T1234567J", True),  # T adds 4 to the weighted sum
        ("S1234567A", False),
        ("T1234567D", False),
        ("G1234567X", False),  # FINs are not generated
    ],
)
def test_sg_nric(value: str, valid: bool) -> None:
    assert sg_nric_is_valid(value) is valid


def test_sg_nric_letter_table() -> None:
    assert sg_nric_check_letter("S", "1234567") == "D"
    assert sg_nric_check_letter("T", "1234567") == "J"


def test_uk_nino() -> None:
    assert uk_nino_is_valid("AB 12 34 56 C")
    assert uk_nino_is_valid("AB123456C")
    assert not uk_nino_is_valid("BG 12 34 56 C")  # reserved prefix
    assert not uk_nino_is_valid("DA 12 34 56 C")  # D never a first letter
    assert not uk_nino_is_valid("AB 12 34 56 E")  # suffix A-D only


def _check_negative(kind: str, text: str) -> bool:
    """True when ``text`` fails the validator that its look-alike kind would fool."""
    value = text.split("=", 1)[1] if "=" in text and not text.startswith("version") else text
    if kind == "bad_card":
        return not luhn.is_valid(value)
    if kind == "bad_sg_nric":
        return not sg_nric_is_valid(value)
    if kind == "bad_aadhaar":
        return not aadhaar.is_valid(value)
    if kind == "bad_iban":
        return not iban.is_valid(value)
    if kind == "uuid":
        return str(uuid.UUID(value)) == value  # a UUID, nothing else
    if kind in ("epoch_ms", "order", "build", "port", "duration", "status", "request_id"):
        return not luhn.is_valid(re.sub(r"\D", "", value)) or len(re.sub(r"\D", "", value)) < 13
    return True


def test_hard_negatives_fail_their_validators() -> None:
    cases = hard_negative_cases()
    kinds = {kind for kind, _ in cases}
    assert {"bad_card", "bad_sg_nric", "bad_aadhaar", "bad_iban", "uuid", "epoch_ms"} <= kinds
    assert {"version", "order", "md5", "sha1", "sha256", "decimal", "port", "status"} <= kinds
    for kind, text in cases:
        assert _check_negative(kind, text), (kind, text)
        assert not phone_like(text), text
        assert not national_id_is_valid(text), text
        assert not crypto_address_is_valid(text), text
        for run in re.findall(r"\d{15,16}", text):
            assert not luhn.is_valid(run), text
    assert [text for _, text in cases] == hard_negatives()


def test_negative_records_hold_no_personal_data() -> None:
    for item in generate(300, seed=4, negative_share=1.0):
        assert item.labels == ()
        for key, value in item.record.items():
            text = str(value)
            if key != "ts":
                assert not phone_like(text), (key, text)
            assert not national_id_is_valid(text), (key, text)
            assert not iban.is_valid(text), (key, text)
            assert "@" not in text
            for run in re.findall(r"\d+", text):  # maximal digit runs of card/IMEI length
                assert not (13 <= len(run) <= 19 and luhn.is_valid(run)), (key, text)
        assert not {"lat", "lon", "location", "msisdn", "imei"} & set(item.record)


def test_write_jsonl_size_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    written = write_jsonl(path, 200_000)
    assert 200_000 <= written < 202_000
    assert path.stat().st_size == written
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert all(isinstance(record, dict) for record in records)
    assert records[:20] == [item.record for item in generate(20)]
    again = tmp_path / "again.jsonl"
    assert write_jsonl(again, 200_000) == written
    assert again.read_bytes() == path.read_bytes()
