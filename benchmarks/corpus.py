"""A deterministic labeled corpus of messaging-app log records, with hard negatives.

Every positive value is valid by its own rules (phonenumbers, python-stdnum checksums, Luhn,
mod 97, base58check); every negative is a look-alike that must not be reported: UUIDs, epoch
milliseconds, version strings, order numbers, hashes, Luhn-invalid cards, wrong check letters,
decimals outside a lat/lon context. Used by the accuracy tests and benchmarks/classify.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import phonenumbers
from faker import Faker
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from stdnum import iban, luhn
from stdnum.in_ import aadhaar
from stdnum.my import nric as my_nric
from stdnum.us import ssn as us_ssn

REGIONS = ("MY", "SG", "ID", "IN", "GB", "US", "TH")
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_NRIC_LETTERS = "JZIHGFEDCBA"
_EPOCH = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Label:
    """One entity in a record: its type and exactly the text that carries it."""

    entity: str
    value: str


@dataclass(frozen=True)
class LabeledRecord:
    record: dict[str, object]
    labels: tuple[Label, ...]


class _Maker:
    """All generators share one seeded random source, so a seed fixes the whole corpus."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.fake = Faker()
        self.fake.seed_instance(seed)

    def digits(self, count: int) -> str:
        return "".join(self.rnd.choice("0123456789") for _ in range(count))

    def phone(self) -> tuple[str, str, dict[str, object]]:
        """(label value, how it is written, extra fields) for a valid mobile number."""
        region = self.rnd.choice(REGIONS)
        example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
        assert example is not None, region  # every region in REGIONS has a mobile example
        national = str(example.national_number)
        while True:
            candidate = national[:3] + self.digits(len(national) - 3)
            number = phonenumbers.parse(f"+{example.country_code}{candidate}", None)
            if phonenumbers.is_valid_number(number):
                break
        style = self.rnd.choice(("e164", "international", "national", "msisdn"))
        if style == "msisdn":
            text = f"{number.country_code}{number.national_number}"
            return text, text, {"msisdn": text}
        if style == "national" and region == "MY":
            text = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        elif style == "e164":
            text = phonenumbers.format_number(number, PhoneNumberFormat.E164)
        else:
            text = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
        return text, text, {}

    def mykad(self) -> str:
        while True:
            birth = _EPOCH - timedelta(days=self.rnd.randint(18 * 365, 70 * 365))
            value = f"{birth:%y%m%d}-{self.rnd.randint(1, 16):02d}-{self.digits(4)}"
            if my_nric.is_valid(value):
                return value

    def sg_nric(self) -> str:
        body = self.digits(7)
        total = sum(int(d) * w for d, w in zip(body, (2, 7, 6, 5, 4, 3, 2), strict=True))
        return f"S{body}{_NRIC_LETTERS[total % 11]}"

    def aadhaar(self) -> str:
        while True:
            value = str(self.rnd.randint(2, 9)) + self.digits(11)
            if aadhaar.is_valid(value):
                return f"{value[:4]} {value[4:8]} {value[8:]}"

    def ssn(self) -> str:
        while True:
            value = f"{self.rnd.randint(100, 665)}-{self.rnd.randint(10, 99)}-{self.digits(4)}"
            if us_ssn.is_valid(value):
                return value

    def card(self) -> str:
        prefix = self.rnd.choice(("4", "51", "52", "55"))
        body = prefix + self.digits(15 - len(prefix))
        number = body + luhn.calc_check_digit(body)
        if self.rnd.random() < 0.5:
            return " ".join(number[i : i + 4] for i in range(0, 16, 4))
        return number

    def iban(self) -> str:
        country, length = self.rnd.choice((("GB", 18), ("DE", 18), ("NL", 14), ("FR", 23)))
        while True:
            if country == "GB":
                bban = "".join(self.rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
                bban += self.digits(14)
            elif country == "NL":
                bban = "".join(self.rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
                bban += self.digits(10)
            else:
                bban = self.digits(length)
            value = _iban_with_check(country, bban)
            if iban.is_valid(value):
                return value

    def imei(self) -> str:
        body = "35" + self.digits(12)
        return body + luhn.calc_check_digit(body)

    def btc(self) -> str:
        payload = bytes([0]) + self.rnd.randbytes(20)
        checksum = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
        number = int.from_bytes(payload + checksum, "big")
        text = ""
        while number:
            number, digit = divmod(number, 58)
            text = _B58[digit] + text
        return "1" + text  # one leading zero byte → one leading "1"

    def secret(self) -> str:
        alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        kind = self.rnd.choice(("aws", "github"))
        if kind == "aws":
            return "AKIA" + "".join(self.rnd.choice(alnum[:26] + alnum[52:]) for _ in range(16))
        return "ghp_" + "".join(self.rnd.choice(alnum) for _ in range(36))


def _iban_with_check(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    check = 98 - int(numeric) % 97
    return f"{country}{check:02d}{bban}"


def _positive_fields(maker: _Maker) -> list[tuple[dict[str, object], list[Label]]]:
    """Ways one entity can appear in a record: (fields to add, labels they carry)."""
    rnd, fake = maker.rnd, maker.fake
    choices: list[Callable[[], tuple[dict[str, object], list[Label]]]] = []

    def phone() -> tuple[dict[str, object], list[Label]]:
        value, text, extra = maker.phone()
        return (extra or {rnd.choice(("to", "from", "phone")): text}), [Label("PHONE", value)]

    def email() -> tuple[dict[str, object], list[Label]]:
        value = f"{fake.user_name()}@{rnd.choice(('example.com', 'example.org', 'example.net'))}"
        return {"email": value}, [Label("EMAIL", value)]

    def national_id() -> tuple[dict[str, object], list[Label]]:
        kind = rnd.choice(("mykad", "nric", "aadhaar", "ssn"))
        value = {
            "mykad": maker.mykad,
            "nric": maker.sg_nric,
            "aadhaar": maker.aadhaar,
            "ssn": maker.ssn,
        }[kind]()
        key = {"mykad": "ic", "nric": "nric", "aadhaar": "aadhaar", "ssn": "ssn"}[kind]
        return {key: value}, [Label("NATIONAL_ID", value)]

    def card() -> tuple[dict[str, object], list[Label]]:
        value = maker.card()
        return {"note": f"paid with card {value}"}, [Label("CREDIT_CARD", value)]

    def bank() -> tuple[dict[str, object], list[Label]]:
        value = maker.iban()
        return {"payout_iban": value}, [Label("IBAN", value)]

    def ip() -> tuple[dict[str, object], list[Label]]:
        value = f"{rnd.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rnd.randint(1, 254)}"
        return {"client_ip": value}, [Label("IP_ADDRESS", value)]

    def geo() -> tuple[dict[str, object], list[Label]]:
        lat, lon = f"{rnd.uniform(-60, 60):.6f}", f"{rnd.uniform(-170, 170):.6f}"
        if rnd.random() < 0.5:
            return {"lat": lat, "lon": lon}, [
                Label("GEO_COORDINATE", lat),
                Label("GEO_COORDINATE", lon),
            ]
        pair = f"{lat}, {lon}"
        return {"location": pair}, [Label("GEO_COORDINATE", pair)]

    def imei() -> tuple[dict[str, object], list[Label]]:
        value = maker.imei()
        return {"imei": value}, [Label("IMEI", value)]

    def crypto() -> tuple[dict[str, object], list[Label]]:
        value = maker.btc()
        return {"wallet": value}, [Label("CRYPTO_ADDRESS", value)]

    def otp() -> tuple[dict[str, object], list[Label]]:
        code = maker.digits(6)
        text = rnd.choice(
            (
                f"Your TAC is {code}. Do not share it.",
                f"OTP: {code} (valid 5 min)",
                f"Kod pengesahan anda ialah {code}",
            )
        )
        return {"sms_text": text}, [Label("OTP_CODE", code)]

    def secret() -> tuple[dict[str, object], list[Label]]:
        value = maker.secret()
        return {"auth_header": f"token {value}"}, [Label("SECRET", value)]

    def message() -> tuple[dict[str, object], list[Label]]:
        value = fake.sentence(nb_words=rnd.randint(5, 12))
        return {"msg": value}, [Label("MESSAGE_BODY", value)]

    def person() -> tuple[dict[str, object], list[Label]]:
        value = f"{fake.first_name()} {fake.last_name()}"
        return {"sender_name": value}, [Label("PERSON", value)]

    choices = [
        phone,
        phone,
        email,
        national_id,
        card,
        bank,
        ip,
        geo,
        imei,
        crypto,
        otp,
        secret,
        message,
        person,
    ]
    return [rnd.choice(choices)() for _ in range(rnd.randint(1, 4))]


def hard_negatives(seed: int = 7) -> list[str]:
    """Strings that look like personal data and are not."""
    rnd = random.Random(seed)
    card = "4" + "".join(rnd.choice("0123456789") for _ in range(14))
    bad_card = card + str((int(luhn.calc_check_digit(card)) + 1) % 10)
    good_nric = _Maker(seed).sg_nric()
    bad_nric = good_nric[:-1] + ("A" if good_nric[-1] != "A" else "B")
    return [
        str(uuid.UUID(int=rnd.getrandbits(128))),
        str(1_760_000_000_000 + rnd.randint(0, 10**10)),
        "version=1.2.3.4",
        "build 10.0.19041.1",
        f"ORD-2026-{rnd.randint(0, 999999):06d}",
        hashlib.md5(b"x", usedforsecurity=False).hexdigest(),
        hashlib.sha256(b"y").hexdigest(),
        bad_card,
        bad_nric,
        "aadhaar 2345 6789 0123",
        "GB82 WEST 1234 5698 7654 33",
        "price 3.139003, ratio 101.686855",
        "took 1532 ms on port 8443, status 503",
    ]


def _negative_fields(rnd: random.Random) -> dict[str, object]:
    return {
        "price": round(rnd.uniform(1, 200), 4),
        "ratio": f"{rnd.uniform(0, 180):.6f}",
        "order": f"ORD-2026-{rnd.randint(0, 999999):06d}",
        "build": ".".join(str(rnd.randint(0, 250)) for _ in range(4)),
        "sha1": hashlib.sha1(rnd.randbytes(8), usedforsecurity=False).hexdigest(),
        "status": rnd.choice((200, 201, 404, 503)),
    }


def generate(n: int, seed: int = 7, negative_share: float = 0.3) -> list[LabeledRecord]:
    """``n`` records; about ``negative_share`` of them hold no personal data at all."""
    maker = _Maker(seed)
    return [_record(maker, i, negative_share) for i in range(n)]


def _record(maker: _Maker, index: int, negative_share: float) -> LabeledRecord:
    rnd = maker.rnd
    record: dict[str, object] = {
        "ts": (_EPOCH + timedelta(seconds=index * 7)).isoformat(),
        "level": rnd.choice(("INFO", "INFO", "WARN")),
        "event": rnd.choice(("sms.sent", "chat.message", "login", "payment", "http.request")),
        "request_id": str(uuid.UUID(int=rnd.getrandbits(128))),
        "latency_ms": rnd.randint(1, 2500),
        "ts_ms": 1_760_000_000_000 + index * 7000,
    }
    labels: list[Label] = []
    if rnd.random() < negative_share:
        record.update(_negative_fields(rnd))
    else:
        for fields, field_labels in _positive_fields(maker):
            if any(key in record for key in fields):
                continue
            record.update(fields)
            labels.extend(field_labels)
    return LabeledRecord(record, tuple(labels))


def iter_records(seed: int = 7) -> Iterator[LabeledRecord]:
    """An endless stream of records (for large files: memory stays flat)."""
    maker = _Maker(seed)
    index = 0
    while True:
        yield _record(maker, index, 0.3)
        index += 1


def write_jsonl(path: Path, target_bytes: int, seed: int = 7) -> int:
    """Write records as JSON lines until ``target_bytes``; returns the bytes written."""
    written = 0
    with path.open("w", encoding="utf-8") as handle:
        for item in iter_records(seed):
            line = json.dumps(item.record, ensure_ascii=False) + "\n"
            handle.write(line)
            written += len(line.encode())
            if written >= target_bytes:
                return written
    return written
