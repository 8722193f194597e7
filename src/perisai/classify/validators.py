"""Checksum and structure validators, each returning True only for a well-formed value.

python-stdnum and phonenumbers do the work wherever they cover an identifier; the few checks
written here (Singapore NRIC, UK NINO, Bitcoin base58check and bech32, Monero's block base58)
are ones no well-kept package offers, each a published algorithm of a few lines; Keccak comes
from pycryptodome.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from functools import lru_cache

from Crypto.Hash import keccak
from stdnum import iban, imei, luhn
from stdnum.cn import ric as cn_ric
from stdnum.exceptions import ValidationError
from stdnum.in_ import aadhaar
from stdnum.my import nric as my_nric
from stdnum.th import pin as th_pin
from stdnum.us import ssn as us_ssn

_DIGITS = re.compile(r"\D")


def digits_of(value: str) -> str:
    return _DIGITS.sub("", value)


def credit_card(value: str) -> bool:
    """Luhn and a real issuer range (Visa, Mastercard, Amex, Discover, JCB, UnionPay, Diners
    Club's 36, 38 and 300-305)."""
    number = digits_of(value)
    if not 13 <= len(number) <= 19 or not luhn.is_valid(number):
        return False
    if len(set(number)) == 1:
        return False  # 0000…, 4444…: fillers, not cards
    two, four = int(number[:2]), int(number[:4])
    return (
        (number[0] == "4" and len(number) in (13, 16, 19))
        or (51 <= two <= 55 and len(number) == 16)
        or (2221 <= four <= 2720 and len(number) == 16)
        or (two in (34, 37) and len(number) == 15)
        or ((number.startswith("6011") or number.startswith("65")) and len(number) >= 16)
        or (3528 <= four <= 3589 and len(number) >= 16)
        or (number.startswith("62") and len(number) >= 16)
        or ((two in (36, 38) or 300 <= int(number[:3]) <= 305) and len(number) == 14)
        or (number[:4] in ("2131", "1800") and len(number) == 15)  # JCB's 15-digit ranges
    )


def iban_number(value: str) -> bool:
    return iban.is_valid(value)


def imei_number(value: str) -> bool:
    number = digits_of(value)
    return len(number) == 15 and imei.is_valid(number)


def ip_address(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return not address.is_unspecified


def mykad(value: str) -> bool:
    """Malaysian IC: a valid birth date and a real place-of-birth code (no check digit);
    ``my_nric.is_valid``'s checks, with its place lookup remembered per code."""
    number = digits_of(value)
    if len(number) != 12:
        return False
    try:
        my_nric.get_birth_date(number)
    except ValidationError:
        return False
    return _known_birth_place(number[6:8])


@lru_cache(maxsize=128)
def _known_birth_place(code: str) -> bool:
    """Whether a MyKad place-of-birth code exists: python-stdnum reads it from its number
    database each time (tens of µs); there are a hundred codes, and every new IC asks."""
    try:
        my_nric.get_birth_place(f"000000{code}0000")
    except ValidationError:
        return False
    return True


_NRIC_WEIGHTS = (2, 7, 6, 5, 4, 3, 2)
_NRIC_LETTERS = {"S": "JZIHGFEDCBA", "T": "JZIHGFEDCBA", "F": "XWUTRQPNMLK", "G": "XWUTRQPNMLK"}


def sg_nric(value: str) -> bool:
    """Singapore NRIC/FIN (S, T, F, G series): 7 digits, a check letter from weights 2765432
    (+4 for the T and G series)."""
    value = value.upper()
    if len(value) != 9 or value[0] not in _NRIC_LETTERS or not value[1:8].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[1:8], _NRIC_WEIGHTS, strict=True))
    total += 4 if value[0] in "TG" else 0
    return _NRIC_LETTERS[value[0]][total % 11] == value[8]


def aadhaar_number(value: str) -> bool:
    number = digits_of(value)
    return len(number) == 12 and aadhaar.is_valid(number)


def us_ssn_number(value: str) -> bool:
    return us_ssn.is_valid(value)


def cn_resident_id(value: str) -> bool:
    return len(value) == 18 and cn_ric.is_valid(value)


def th_id(value: str) -> bool:
    number = digits_of(value)
    return len(number) == 13 and th_pin.is_valid(number)


_NINO = re.compile(r"^(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\d{6}[A-D]$")


def uk_nino(value: str) -> bool:
    return bool(_NINO.match(value.replace(" ", "").upper()))


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def bitcoin_base58(value: str) -> bool:
    """A P2PKH/P2SH address whose last 4 bytes are the double-SHA256 of the rest."""
    number = 0
    for char in value:
        index = _B58.find(char)
        if index < 0:
            return False
        number = number * 58 + index
    raw = number.to_bytes(25, "big") if number.bit_length() <= 200 else b""
    if len(raw) != 25 or raw[0] not in (0x00, 0x05):
        return False
    return hashlib.sha256(hashlib.sha256(raw[:21]).digest()).digest()[:4] == raw[21:]


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bitcoin_bech32(value: str) -> bool:
    """BIP-173/350 segwit address: ``bc1`` + data whose polymod checksum is 1 or 0x2bc830a3."""
    value = value.lower()
    hrp, sep, data = value.rpartition("1")
    if hrp != "bc" or not sep or len(data) < 8 or any(c not in _BECH32 for c in data):
        return False
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    values += [_BECH32.index(c) for c in data]
    checksum = 1
    for v in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ v
        for i, generator in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            checksum ^= generator if (top >> i) & 1 else 0
    return checksum in (1, 0x2BC830A3)


_MONERO_BLOCK_CHARS = {11: 8, 7: 5}  # Monero's base58 works in blocks: 11 chars → 8 bytes
_MONERO_PREFIXES = (18, 42)  # mainnet standard address (4…) and subaddress (8…)


def monero(value: str) -> bool:
    """A mainnet Monero address (95 chars): the last 4 bytes are Keccak-256 of the rest."""
    if len(value) != 95 or value[0] not in "48":
        return False
    raw = bytearray()
    for start in range(0, 95, 11):
        block = value[start : start + 11]
        number = 0
        for char in block:
            index = _B58.find(char)
            if index < 0:
                return False
            number = number * 58 + index
        size = _MONERO_BLOCK_CHARS.get(len(block), 0)
        if not size or number.bit_length() > size * 8:
            return False
        raw += number.to_bytes(size, "big")
    if raw[0] not in _MONERO_PREFIXES:
        return False
    digest = keccak.new(digest_bits=256, data=bytes(raw[:-4])).digest()
    return digest[:4] == raw[-4:]


def ethereum(value: str) -> bool:
    """0x + 40 hex digits, not all one digit (a zero address is a placeholder)."""
    body = value[2:]
    return len(body) == 40 and len(set(body.lower())) > 4
