"""A deterministic labeled corpus of messaging-app log records, with hard negatives.

Every positive value is valid by its own rules (phonenumbers, python-stdnum checksums, Luhn,
mod 97, base58check, bech32); every negative is a look-alike that must not be reported: UUIDs,
epoch milliseconds, version strings, order numbers, hashes, Luhn-invalid cards, wrong check
letters and digits, decimals outside a lat/lon context, ports, durations, status codes.

All randomness comes from one ``random.Random(seed)`` and one seeded Faker, so a seed fixes the
whole corpus; ``generate(n)`` is the first ``n`` records of ``iter_records()``. No network.
Used by the accuracy tests and benchmarks/classify.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import itertools
import json
import random
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import phonenumbers
from faker import Faker
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType
from stdnum import bitcoin, iban, imei, luhn
from stdnum.cn import ric as cn_ric
from stdnum.id import nik as id_nik
from stdnum.in_ import aadhaar
from stdnum.my import nric as my_nric
from stdnum.th import pin as th_pin
from stdnum.us import ssn as us_ssn

from perisai.findings import ENTITY_TYPES

ENTITIES = ENTITY_TYPES  # the labels are the findings contract's entity names
REGIONS = ("MY", "SG", "ID", "IN", "GB", "US", "TH")
_DIGITS = "0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ALNUM = _UPPER + _UPPER.lower() + _DIGITS
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
_EPOCH_MS = 1_793_491_200_000  # _EPOCH in milliseconds
_MAX_TRIES = 1000


@dataclass(frozen=True)
class Label:
    """One entity in a record: its type and exactly the text that carries it."""

    entity: str
    value: str


@dataclass(frozen=True)
class LabeledRecord:
    record: dict[str, object]
    labels: tuple[Label, ...]


# --- validators of our own (python-stdnum has none for these) -------------------------------

# Singapore NRIC/FIN: weights 2,7,6,5,4,3,2 over the 7 digits, +4 for T (and G) prefixes,
# remainder mod 11 indexes the table below for S/T (11 letters: J, Z, I, H, G, F, E, D, C, B, A).
_SG_WEIGHTS = (2, 7, 6, 5, 4, 3, 2)
_SG_ST_LETTERS = "JZIHGFEDCBA"
_SG_NRIC_RE = re.compile(r"^[ST]\d{7}[A-Z]$")


def sg_nric_check_letter(prefix: str, digits: str) -> str:
    """The check letter of a Singapore NRIC with prefix S or T and seven digits."""
    total = sum(int(d) * w for d, w in zip(digits, _SG_WEIGHTS, strict=True))
    if prefix == "T":
        total += 4
    return _SG_ST_LETTERS[total % 11]


def sg_nric_is_valid(value: str) -> bool:
    if not _SG_NRIC_RE.match(value):
        return False
    return sg_nric_check_letter(value[0], value[1:8]) == value[8]


# UK National Insurance number: two prefix letters, six digits, suffix A-D.
_NINO_RE = re.compile(r"^([A-CEGHJ-PR-TW-Z])([A-CEGHJ-NPR-TW-Z])(\d{6})([A-D])$")
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def uk_nino_is_valid(value: str) -> bool:
    match = _NINO_RE.match(value.replace(" ", "").upper())
    if match is None:
        return False
    return match.group(1) + match.group(2) not in _NINO_BAD_PREFIXES


_ETH_RE = re.compile(r"^0x[0-9a-f]{40}$")


def crypto_address_is_valid(value: str) -> bool:
    """Bitcoin (base58check, bech32) via python-stdnum; Ethereum by form (lower-case hex)."""
    return bool(_ETH_RE.match(value)) or bitcoin.is_valid(value)


def national_id_is_valid(value: str) -> bool:
    """True when any of the national-ID validators accepts ``value``."""
    checks: tuple[Callable[[str], bool], ...] = (
        my_nric.is_valid,
        sg_nric_is_valid,
        aadhaar.is_valid,
        us_ssn.is_valid,
        cn_ric.is_valid,
        uk_nino_is_valid,
        id_nik.is_valid,
        th_pin.is_valid,
    )
    return any(check(value) for check in checks)


_NUMERIC_SPAN = re.compile(r"\+?\d[\d \-]{4,}\d")
_DIGIT_RUN = re.compile(r"\d{5,}")


def phone_like(text: str) -> bool:
    """Whether some numeric string in ``text`` parses as a valid number in MY or with a +."""
    spans = {m.group() for m in _NUMERIC_SPAN.finditer(text)}
    spans |= {m.group() for m in _DIGIT_RUN.finditer(text)}
    for span in spans:
        digits = re.sub(r"\D", "", span)
        for candidate, region in ((span, "MY"), ("+" + digits, None)):
            try:
                number = phonenumbers.parse(candidate, region)
            except NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return True
    return False


def checksum_like(text: str) -> bool:
    """Whether a digit run in ``text`` would pass as a card/IMEI (Luhn) or an Aadhaar."""
    for run in re.findall(r"\d+", text):
        if 13 <= len(run) <= 19 and luhn.is_valid(run):
            return True
        if len(run) == 12 and aadhaar.is_valid(run):
            return True
    return False


def _b58encode(payload: bytes) -> str:
    number = int.from_bytes(payload, "big")
    text = ""
    while number:
        number, digit = divmod(number, 58)
        text = _B58[digit] + text
    zeros = len(payload) - len(payload.lstrip(b"\0"))
    return "1" * zeros + text


def _bech32_polymod(values: list[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            check ^= generator[i] if (top >> i) & 1 else 0
    return check


def _bech32_segwit_v0(program: bytes, hrp: str = "bc") -> str:
    """BIP-173 encoding of a version-0 witness program."""
    data = [0]
    acc = bits = 0
    for byte in program:  # 8-bit groups to 5-bit groups
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    polymod = _bech32_polymod([*expanded, *data, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[d] for d in data + checksum)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _iban_with_check(country: str, bban: str) -> str:
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


def _grouped(text: str, sizes: tuple[int, ...], sep: str) -> str:
    parts, start = [], 0
    for size in sizes:
        parts.append(text[start : start + size])
        start += size
    return sep.join(parts)


_MALAY_MESSAGES = (
    "Jom makan tengah hari nanti?",
    "Saya dah sampai, tunggu kat lobi ya",
    "Terima kasih banyak, nanti saya bayar balik",
    "Boleh tolong hantar dokumen tu petang ni?",
    "Mak kata balik kampung minggu depan",
    "Sorry lambat, jalan jem teruk tadi",
    "Esok meeting pukul berapa?",
    "Selamat hari jadi! Semoga panjang umur",
)
_EVENTS = (
    "sms.sent",
    "sms.delivered",
    "chat.message",
    "chat.read",
    "login",
    "otp.requested",
    "payment.created",
    "profile.updated",
    "http.request",
    "device.registered",
)
_MY_BIRTHPLACES = tuple(f"{code:02d}" for code in (*range(1, 17), 21, 22, 24, 30, 40, 50, 60, 71))
_CN_REGIONS = ("110101", "110105", "310101", "310104", "440103", "440106", "510104", "330106")
_ID_REGIONS = ("317101", "317402", "327301", "357801", "517101", "127101")


class _Maker:
    """All generators share one seeded random source and one seeded Faker."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)

    # -- primitives ---------------------------------------------------------------------------

    def digits(self, count: int) -> str:
        return "".join(self.rnd.choice(_DIGITS) for _ in range(count))

    def chars(self, alphabet: str, count: int) -> str:
        return "".join(self.rnd.choice(alphabet) for _ in range(count))

    def uuid(self) -> str:
        """A UUID whose digit runs are neither phone numbers nor checksummed numbers."""
        for _ in range(_MAX_TRIES):
            text = str(uuid.UUID(int=self.rnd.getrandbits(128), version=4))
            if not phone_like(text) and not checksum_like(text):
                return text
        raise RuntimeError("no clean uuid")

    def birth_date(self, low: int = 18, high: int = 70) -> date:
        return (_EPOCH - timedelta(days=self.rnd.randint(low * 365, high * 365))).date()

    # -- positives ----------------------------------------------------------------------------

    def phone(self) -> tuple[str, str]:
        """(how it is written, style) for a valid mobile number of one of REGIONS."""
        region = self.rnd.choice(REGIONS)
        example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
        assert example is not None, region  # every region in REGIONS has a mobile example
        national = str(example.national_number)
        for _ in range(_MAX_TRIES):
            candidate = national[:3] + self.digits(len(national) - 3)
            number = phonenumbers.parse(f"+{example.country_code}{candidate}", None)
            if phonenumbers.is_valid_number(number):
                break
        else:
            raise RuntimeError(f"no valid mobile for {region}")
        styles = ["e164", "international", "dashes", "msisdn"] + (["national"] * 2) * (
            region == "MY"
        )
        style = self.rnd.choice(styles)
        if style == "msisdn":
            return f"{number.country_code}{number.national_number}", style
        if style == "national":
            return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL), style
        if style == "e164":
            return phonenumbers.format_number(number, PhoneNumberFormat.E164), style
        text = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
        if style == "dashes":
            text = text.replace(" ", "-")
        return text, style

    def mykad(self) -> str:
        for _ in range(_MAX_TRIES):
            birth = self.birth_date()
            place = self.rnd.choice(_MY_BIRTHPLACES)
            value = f"{birth:%y%m%d}-{place}-{self.digits(4)}"
            if my_nric.is_valid(value):
                return value
        raise RuntimeError("no valid MyKad")

    def sg_nric(self) -> str:
        prefix = self.rnd.choice("ST")
        body = self.digits(7)
        return f"{prefix}{body}{sg_nric_check_letter(prefix, body)}"

    def aadhaar(self) -> str:
        for _ in range(_MAX_TRIES):
            value = str(self.rnd.randint(2, 9)) + self.digits(11)
            if aadhaar.is_valid(value):
                return _grouped(value, (4, 4, 4), " ") if self.rnd.random() < 0.5 else value
        raise RuntimeError("no valid Aadhaar")

    def ssn(self) -> str:
        for _ in range(_MAX_TRIES):
            value = f"{self.rnd.randint(100, 665)}-{self.rnd.randint(10, 99)}-{self.digits(4)}"
            if us_ssn.is_valid(value):
                return value
        raise RuntimeError("no valid SSN")

    def cn_ric(self) -> str:
        for _ in range(_MAX_TRIES):
            birth = self.birth_date()
            body = f"{self.rnd.choice(_CN_REGIONS)}{birth:%Y%m%d}{self.digits(3)}"
            value = body + cn_ric.calc_check_digit(body)
            if cn_ric.is_valid(value):
                return value
        raise RuntimeError("no valid China RIC")

    def nino(self) -> str:
        for _ in range(_MAX_TRIES):
            value = self.chars(_UPPER, 2) + self.digits(6) + self.rnd.choice("ABCD")
            if uk_nino_is_valid(value):
                if self.rnd.random() < 0.5:
                    return _grouped(value, (2, 2, 2, 2, 1), " ")
                return value
        raise RuntimeError("no valid NINO")

    def nik(self) -> str:
        for _ in range(_MAX_TRIES):
            birth = self.birth_date()
            day = birth.day + 40 * self.rnd.randint(0, 1)  # women: day + 40
            value = f"{self.rnd.choice(_ID_REGIONS)}{day:02d}{birth:%m%y}"
            value += f"{self.rnd.randint(1, 9999):04d}"
            if id_nik.is_valid(value):
                return value
        raise RuntimeError("no valid NIK")

    def th_pin(self) -> str:
        for _ in range(_MAX_TRIES):
            body = str(self.rnd.randint(1, 8)) + self.digits(11)
            value = body + th_pin.calc_check_digit(body)
            if th_pin.is_valid(value):
                return _grouped(value, (1, 4, 5, 2, 1), "-") if self.rnd.random() < 0.5 else value
        raise RuntimeError("no valid Thai PIN")

    def card(self) -> str:
        kind = self.rnd.choice(("visa", "mastercard", "mastercard2", "amex"))
        if kind == "visa":
            prefix, length = "4", 16
        elif kind == "mastercard":
            prefix, length = str(self.rnd.randint(51, 55)), 16
        elif kind == "mastercard2":
            prefix, length = str(self.rnd.randint(2221, 2720)), 16
        else:
            prefix, length = self.rnd.choice(("34", "37")), 15
        body = prefix + self.digits(length - 1 - len(prefix))
        number = body + luhn.calc_check_digit(body)
        sep = self.rnd.choice(("", " ", "-"))
        if not sep:
            return number
        return _grouped(number, (4, 6, 5) if length == 15 else (4, 4, 4, 4), sep)

    def iban(self) -> str:
        country = self.rnd.choice(("GB", "DE", "FR", "NL"))
        for _ in range(_MAX_TRIES):
            if country == "GB":
                bban = self.chars(_UPPER, 4) + self.digits(14)
            elif country == "NL":
                bban = self.chars(_UPPER, 4) + self.digits(10)
            elif country == "DE":
                bban = self.digits(18)
            else:
                bban = self.digits(23)
            value = _iban_with_check(country, bban)
            if iban.is_valid(value):
                return iban.format(value) if self.rnd.random() < 0.5 else value
        raise RuntimeError(f"no valid IBAN for {country}")

    def ip(self) -> str:
        if self.rnd.random() < 0.7:
            net = self.rnd.choice(("192.0.2", "198.51.100", "203.0.113"))
            return f"{net}.{self.rnd.randint(1, 254)}"
        address = ipaddress.IPv6Address((0x20010DB8 << 96) | self.rnd.getrandbits(64))
        return str(address)

    def imei(self) -> str:
        for _ in range(_MAX_TRIES):
            body = self.rnd.choice(("35", "86", "01")) + self.digits(12)
            value = body + luhn.calc_check_digit(body)
            if imei.is_valid(value):
                return value
        raise RuntimeError("no valid IMEI")

    def crypto(self) -> str:
        kind = self.rnd.choice(("p2pkh", "bech32", "eth"))
        if kind == "p2pkh":
            payload = b"\0" + self.rnd.randbytes(20)
            checksum = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
            value = _b58encode(payload + checksum)
        elif kind == "bech32":
            value = _bech32_segwit_v0(self.rnd.randbytes(20))
        else:
            value = "0x" + self.rnd.randbytes(20).hex()
        assert crypto_address_is_valid(value), value
        return value

    def secret(self) -> tuple[str, str]:
        """(key, value) of a fake but well-formed credential."""
        kind = self.rnd.choice(("aws", "github", "jwt", "rsa", "slack"))
        if kind == "aws":
            return "aws_access_key_id", "AKIA" + self.chars(_UPPER + _DIGITS, 16)
        if kind == "github":
            return "token", "ghp_" + self.chars(_ALNUM, 36)
        if kind == "slack":
            return "slack_token", (
                f"xoxb-{self.digits(11)}-{self.digits(13)}-{self.chars(_ALNUM, 24)}"
            )
        if kind == "rsa":
            return "private_key", "-----BEGIN RSA PRIVATE KEY-----"
        header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
        claims = {"sub": self.uuid(), "iat": _EPOCH_MS // 1000 + self.rnd.randint(0, 10**6)}
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        key = self.rnd.randbytes(32)
        signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return "authorization", f"{header}.{payload}.{_b64url(signature)}"

    def message(self) -> str:
        if self.rnd.random() < 0.3:
            return self.rnd.choice(_MALAY_MESSAGES)
        return str(self.fake.sentence(nb_words=self.rnd.randint(5, 12)))


def _positive(maker: _Maker) -> tuple[dict[str, object], list[Label]]:
    """One entity as it can appear in a record: (fields to add, labels they carry)."""
    rnd, fake = maker.rnd, maker.fake
    entity = rnd.choice((*ENTITIES, "PHONE", "NATIONAL_ID"))  # phones and IDs a bit more often

    if entity == "PHONE":
        text, style = maker.phone()
        key = "msisdn" if style == "msisdn" else rnd.choice(("to", "from", "phone", "recipient"))
        return {key: text}, [Label("PHONE", text)]
    if entity == "EMAIL":
        value = f"{fake.user_name()}@{rnd.choice(('example.com', 'example.org', 'example.net'))}"
        return {rnd.choice(("email", "reply_to", "user_email")): value}, [Label("EMAIL", value)]
    if entity == "NATIONAL_ID":
        kind = rnd.choice(("mykad", "mykad", "sg", "aadhaar", "ssn", "cn", "nino", "nik", "th"))
        if kind == "mykad":
            value = maker.mykad()
            if rnd.random() < 0.3:
                return {"note": f"customer verified, IC no: {value}"}, [Label("NATIONAL_ID", value)]
            return {rnd.choice(("ic", "nric", "mykad")): value}, [Label("NATIONAL_ID", value)]
        generators: dict[str, tuple[Callable[[], str], tuple[str, ...]]] = {
            "sg": (maker.sg_nric, ("sg_nric", "nric_fin")),
            "aadhaar": (maker.aadhaar, ("aadhaar", "aadhaar_no")),
            "ssn": (maker.ssn, ("ssn",)),
            "cn": (maker.cn_ric, ("id_card", "resident_id")),
            "nino": (maker.nino, ("nino", "ni_number")),
            "nik": (maker.nik, ("nik", "ktp")),
            "th": (maker.th_pin, ("citizen_id", "th_id")),
        }
        make, keys = generators[kind]
        value = make()
        return {rnd.choice(keys): value}, [Label("NATIONAL_ID", value)]
    if entity == "CREDIT_CARD":
        value = maker.card()
        if rnd.random() < 0.5:
            return {"note": f"paid with card {value}"}, [Label("CREDIT_CARD", value)]
        return {"card_number": value}, [Label("CREDIT_CARD", value)]
    if entity == "IBAN":
        value = maker.iban()
        return {rnd.choice(("payout_iban", "iban", "beneficiary_account")): value}, [
            Label("IBAN", value)
        ]
    if entity == "IP_ADDRESS":
        value = maker.ip()
        if rnd.random() < 0.3:
            return {"detail": f"connection from {value} accepted"}, [Label("IP_ADDRESS", value)]
        return {rnd.choice(("client_ip", "remote_addr", "ip")): value}, [Label("IP_ADDRESS", value)]
    if entity == "GEO_COORDINATE":
        lat, lon = round(rnd.uniform(-60, 60), 6), round(rnd.uniform(-170, 170), 6)
        style = rnd.choice(("float", "string", "pair"))
        if style == "float":
            return {"lat": lat, "lon": lon}, [
                Label("GEO_COORDINATE", json.dumps(lat)),
                Label("GEO_COORDINATE", json.dumps(lon)),
            ]
        if style == "string":
            return {"lat": f"{lat:.6f}", "lon": f"{lon:.6f}"}, [
                Label("GEO_COORDINATE", f"{lat:.6f}"),
                Label("GEO_COORDINATE", f"{lon:.6f}"),
            ]
        pair = f"{lat:.6f}, {lon:.6f}"
        return {"location": pair}, [Label("GEO_COORDINATE", pair)]
    if entity == "IMEI":
        value = maker.imei()
        return {"imei": value}, [Label("IMEI", value)]
    if entity == "CRYPTO_ADDRESS":
        value = maker.crypto()
        return {rnd.choice(("wallet", "payout_address")): value}, [Label("CRYPTO_ADDRESS", value)]
    if entity == "OTP_CODE":
        code = maker.digits(rnd.choice((4, 6, 6, 6)))
        text = rnd.choice(
            (
                f"Your TAC is {code}. Do not share it with anyone.",
                f"OTP: {code} (valid 5 min)",
                f"Kod pengesahan anda ialah {code}",
                f"RM0.00 Your verification code is {code}",
            )
        )
        return {"sms_text": text}, [Label("OTP_CODE", code)]
    if entity == "SECRET":
        key, value = maker.secret()
        if key == "private_key":
            pem = (
                f"{value}\nMIIEpAIBAAKCAQEA{maker.chars(_ALNUM, 48)}\n-----END RSA PRIVATE KEY-----"
            )
            return {key: pem}, [Label("SECRET", value)]
        if key == "authorization":
            return {key: f"Bearer {value}"}, [Label("SECRET", value)]
        return {key: value}, [Label("SECRET", value)]
    if entity == "MESSAGE_BODY":
        value = maker.message()
        return {rnd.choice(("msg", "body", "text", "content")): value}, [
            Label("MESSAGE_BODY", value)
        ]
    value = f"{fake.first_name()} {fake.last_name()}"
    return {rnd.choice(("name", "sender_name", "full_name")): value}, [Label("PERSON", value)]


# --- hard negatives -------------------------------------------------------------------------


def _bad_card(rnd: random.Random) -> str:
    body = rnd.choice("45") + "".join(rnd.choice(_DIGITS) for _ in range(14))
    return body + str((int(luhn.calc_check_digit(body)) + rnd.randint(1, 9)) % 10)


def _bad_sg_nric(maker: _Maker) -> str:
    good = maker.sg_nric()
    wrong = maker.rnd.choice([c for c in _SG_ST_LETTERS if c != good[-1]])
    return good[:-1] + wrong


def _bad_aadhaar(maker: _Maker) -> str:
    for _ in range(_MAX_TRIES):
        good = maker.aadhaar().replace(" ", "")
        bad = good[:-1] + str((int(good[-1]) + maker.rnd.randint(1, 9)) % 10)
        if not aadhaar.is_valid(bad):
            return bad
    raise RuntimeError("no bad Aadhaar")


def _bad_iban(maker: _Maker) -> str:
    good = iban.compact(maker.iban())
    check = (int(good[2:4]) + maker.rnd.randint(1, 90)) % 97 + 2
    bad = f"{good[:2]}{check:02d}{good[4:]}"
    assert not iban.is_valid(bad), bad
    return bad


def _hash(maker: _Maker, algorithm: str) -> str:
    return hashlib.new(algorithm, maker.rnd.randbytes(16), usedforsecurity=False).hexdigest()


def _negative_cases(maker: _Maker) -> list[tuple[str, str, Callable[[], str]]]:
    """(kind, key, make text) look-alikes, made on demand; none of them is personal data."""
    rnd = maker.rnd
    return [
        ("uuid", "trace_id", lambda: maker.uuid()),
        ("request_id", "req", lambda: f"req_{maker.chars(_ALNUM, 20)}"),
        ("epoch_ms", "created_ms", lambda: str(_EPOCH_MS + rnd.randint(0, 10**10))),
        ("version", "app_version", lambda: ".".join(str(rnd.randint(0, 20)) for _ in range(4))),
        (
            "version",
            "os",
            lambda: f"version=10.0.{rnd.randint(10000, 22999)}.{rnd.randint(1, 999)}",
        ),
        ("order", "order_no", lambda: f"ORD-2026-{rnd.randint(0, 999999):06d}"),
        ("md5", "etag", lambda: _hash(maker, "md5")),
        ("sha1", "commit", lambda: _hash(maker, "sha1")),
        ("sha256", "digest", lambda: _hash(maker, "sha256")),
        ("bad_card", "ref_no", lambda: _bad_card(rnd)),
        ("bad_sg_nric", "nric_draft", lambda: _bad_sg_nric(maker)),
        ("bad_aadhaar", "doc_ref", lambda: _bad_aadhaar(maker)),
        ("bad_iban", "account_ref", lambda: _bad_iban(maker)),
        ("decimal", "price", lambda: str(round(rnd.uniform(1, 10), 4))),
        ("decimal", "ratio", lambda: str(round(rnd.uniform(100, 180), 4))),
        ("build", "build_number", lambda: str(rnd.randint(1000, 99999))),
        ("port", "port", lambda: str(rnd.choice((443, 8080, 8443, 6379, 5432)))),
        ("duration", "duration_ms", lambda: str(rnd.randint(1, 30000))),
        ("status", "status", lambda: str(rnd.choice((200, 201, 204, 301, 404, 429, 500, 503)))),
    ]


def _clean(text: str) -> bool:
    """No phone number, checksummed number or national ID anywhere in ``text``."""
    if phone_like(text) or checksum_like(text) or national_id_is_valid(text):
        return False
    return not any(national_id_is_valid(run) for run in re.findall(r"\d{9,}", text))


def hard_negative_cases(seed: int = 7) -> list[tuple[str, str]]:
    """(kind, text) pairs: strings that look like personal data and are not."""
    maker = _Maker(seed)
    cases: list[tuple[str, str]] = []
    for _ in range(3):
        for kind, key, make in _negative_cases(maker):
            text = make()
            if _clean(text):
                # a bare dotted quad is an IPv4 address; a version string needs its context
                keyed = kind == "version" or maker.rnd.random() < 0.5
                cases.append((kind, f"{key}={text}" if keyed else text))
    cases += [
        ("version", "version=1.2.3.4"),
        ("version", "version=10.0.19041.1"),
        ("order", "ORD-2026-000123"),
        ("decimal", '"price": 3.1390'),
        ("decimal", '"ratio": 101.6869'),
        ("decimal", "price 3.139003, ratio 101.686855"),
        ("bad_sg_nric", "S1234567A"),
        ("bad_iban", "GB82 WEST 1234 5698 7654 33"),
        ("status", "took 1532 ms on port 8443, status 503"),
    ]
    return cases


def hard_negatives(seed: int = 7) -> list[str]:
    """Strings that look like personal data and are not."""
    return [text for _, text in hard_negative_cases(seed)]


def _negative_fields(maker: _Maker) -> dict[str, object]:
    fields: dict[str, object] = {}
    cases = _negative_cases(maker)
    for kind, key, make in maker.rnd.sample(cases, maker.rnd.randint(3, 8)):
        text = make()
        if not _clean(text):
            continue  # e.g. a hash whose digits happen to read as a phone number with a +
        if kind in ("port", "duration", "status"):
            fields[key] = int(text)
        elif kind == "decimal":
            fields[key] = float(text)
        else:
            fields[key] = text
    return fields


# --- records --------------------------------------------------------------------------------


def _record(maker: _Maker, index: int, negative_share: float) -> LabeledRecord:
    rnd = maker.rnd
    record: dict[str, object] = {
        "ts": (_EPOCH + timedelta(seconds=index * 7, milliseconds=rnd.randint(0, 999)))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "level": rnd.choice(("INFO", "INFO", "INFO", "WARN", "DEBUG")),
        "event": rnd.choice(_EVENTS),
        "request_id": maker.uuid(),
        "device_id": maker.uuid(),
        "latency_ms": rnd.randint(1, 2500),
    }
    labels: list[Label] = []
    if rnd.random() < negative_share:
        record.update(_negative_fields(maker))
    else:
        for _ in range(rnd.randint(1, 4)):
            fields, field_labels = _positive(maker)
            if any(key in record for key in fields):
                continue
            record.update(fields)
            labels.extend(field_labels)
    return LabeledRecord(record, tuple(labels))


def iter_records(seed: int = 7, negative_share: float = 0.3) -> Iterator[LabeledRecord]:
    """An endless, deterministic stream of records (memory stays flat)."""
    maker = _Maker(seed)
    for index in itertools.count():
        yield _record(maker, index, negative_share)


def generate(n: int, seed: int = 7, negative_share: float = 0.3) -> list[LabeledRecord]:
    """``n`` records; about ``negative_share`` of them hold no personal data at all."""
    return list(itertools.islice(iter_records(seed, negative_share), n))


def write_jsonl(path: Path, target_bytes: int, seed: int = 7) -> int:
    """Write records as JSON lines until at least ``target_bytes``; returns the bytes written."""
    written = 0
    records = iter_records(seed)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        while written < target_bytes:
            chunk = [json.dumps(item.record) + "\n" for item in itertools.islice(records, 256)]
            for line in chunk:
                handle.write(line)
                written += len(line.encode())
                if written >= target_bytes:
                    break
    return written
