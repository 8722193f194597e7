"""What each entity looks like: a coarse trigger for hyperscan, an exact pattern, a validator.

Stage 1 runs every ``trigger`` in one hyperscan database; stage 2 runs ``extract`` only around
the trigger hits and keeps what ``validate`` accepts; ``keywords`` (whole words shortly before
the value, or the record's key) are required where a value has no check digit of its own.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from perisai.classify import validators as check
from perisai.classify.keyhints import MESSAGE_KEYS, PERSON_KEYS, person_value

CONTEXT_CHARS = 32  # how far before a value a keyword may stand


@dataclass(frozen=True)
class Detector:
    """One way an entity shows up in text."""

    entity: str
    name: str  # why a match was made: the validator's name, shown in explanations
    trigger: str  # hyperscan expression: cheap, literal-anchored where possible
    extract: re.Pattern[str]  # exact pattern, run only near trigger hits
    validate: Callable[[str], bool]
    keywords: tuple[str, ...] = ()  # one must stand within CONTEXT_CHARS before, or in the key
    excluded_by: tuple[str, ...] = ()  # none may stand there: "build 10.0.19041.1" is no IP
    before: int = 48  # how far before a trigger's end a match may start
    after: int = 48  # how far after a trigger's end a match may end
    group: int = 0  # the regex group that is the value
    confidence: float = 0.9
    caseless: bool = False
    recurs: bool = True  # False: each value is new (a one-time code): nothing to cache
    # Whether hyperscan itself waits for a keyword: cheap where keywords are rare (`mykad`);
    # where they are everywhere in logs (`lat`), the value's own shape is the cheaper gate.
    gate: bool = True
    # Whether only the first match after each hit counts: for values that run long after
    # their hit (a quoted message), where searching the rest of a long window costs for nothing
    one_per_hit: bool = False
    keyword_pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    excluded_pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyword_pattern", whole_words(self.keywords))
        object.__setattr__(self, "excluded_pattern", whole_words(self.excluded_by))

    @property
    def gated_trigger(self) -> str:
        """The trigger hyperscan runs: a detector that needs a keyword fires only where one
        stands within CONTEXT_CHARS before the value (a superset of the exact check)."""
        if not self.keywords or not self.gate:
            return self.trigger
        words = alternatives(self.keywords)
        value = self.trigger.replace("(?:^|", "(?:", 1)  # a keyword stands before it
        return rf"(?:^|[^a-z0-9])(?:{words})[^\n]{{0,{CONTEXT_CHARS}}}{value}"


def alternatives(words: tuple[str, ...], blank: str = "[ _]") -> str:
    """``words`` as one regex alternation, each blank inside a word matching ``blank``."""
    return "|".join(re.escape(word).replace("\\ ", blank) for word in words)


def whole_words(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern for any of ``words`` as a whole word in lower-cased text (None: no words)."""
    if not words:
        return None
    alternatives = "|".join(re.escape(word) for word in words)
    return re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")


def _jwt(value: str) -> bool:
    header = value.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


def shannon_entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _high_entropy(value: str) -> bool:
    return len(value) >= 8 and shannon_entropy(value) >= 3.0 and not value.isalpha()


def _geo_pair(value: str) -> bool:
    lat_text, _, lon_text = value.partition(",")
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        return False
    return -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0.0, 0.0)


def _degrees(value: str) -> bool:
    """A latitude or longitude: within ±180 and not 0 (a default, not a place)."""
    try:
        degrees = float(value)
    except ValueError:
        return False
    return -180 <= degrees <= 180 and degrees != 0


def _geo_pair_in_prose(value: str) -> bool:
    """A pair with no place word before it: not within a degree of (0, 0), where ratios and
    probabilities sit and nobody lives."""
    lat_text, _, lon_text = value.partition(",")
    return _geo_pair(value) and not (abs(float(lat_text)) < 1 and abs(float(lon_text)) < 1)


# "code" in a compound name is some other number: a Vonage receipt's network-code=23410, an
# error_code, a zip code (the lookbehinds stand right before the word)
_NOT_A_CODE_KIND = "".join(
    f"(?<!{word}[-_ ])"
    for word in (
        "network",
        "error",
        "err",
        "status",
        "country",
        "area",
        "zip",
        "postal",
        "response",
        "exit",
        "reason",
        "return",
        "http",
        "product",
        "item",
        "promo",
        "discount",
        "voucher",
    )
)


def _not_a_year(value: str) -> bool:
    """A code written before its word: not a year ("2024 code review")."""
    return not (len(value) == 4 and value[:2] in ("19", "20"))


_WORDS = re.compile(r"[^\W\d_]{2,}")  # words in any script


def _prose(value: str) -> bool:
    """Three words or more: a message someone wrote, not a status or an id."""
    return len(_WORDS.findall(value)) >= 3


def _chat_text(value: str) -> bool:
    """A chat line's message: any words at all ("<Media omitted>" aside)."""
    return bool(_WORDS.search(value)) and not value.startswith("<Media omitted")


def _sender_name(value: str) -> bool:
    """A chat sender written as a name (a number is found as a phone), not a system line."""
    words = value.split()
    return 1 <= len(words) <= 5 and not any(ch.isdigit() for ch in value) and value[0].isupper()


def _always(value: str) -> bool:
    return True


ALWAYS_VALID = _always  # the validator of values whose context is their whole check


_ID_KEYWORDS_MY = ("ic", "nric", "mykad", "kad pengenalan", "identity card", "no ic", "ic no")
_ID_KEYWORDS_IN = ("aadhaar", "aadhar", "uidai", "uid")
_ID_KEYWORDS_ID = ("nik", "ktp", "nomor induk")
_ID_KEYWORDS_TH = ("thai id", "th id", "id card", "citizen id", "บัตรประชาชน")
_IMEI_KEYWORDS = ("imei",)
# A 16-digit NIK or a 13-digit Thai ID can pass Luhn: labelled as an ID, it is not a card.
_CARD_EXCLUDED_BY = ("nik", "ktp", "nomor induk", "nric", "mykad", "aadhaar", "citizen id", "th id")
_VERSION_WORDS = ("version", "ver", "v", "build", "release", "firmware", "fw", "sdk", "os", "app")
# words that put a pair of numbers on a map, in logs and in chat ("meet at 3.1412,101.6865")
_PLACE_WORDS = ("at", "near", "meet", "here", "pin", "map", "maps", "di", "dekat", "lokasi")
_GEO_KEYWORDS = (
    *_PLACE_WORDS,
    "lat",
    "lng",
    "lon",
    "gps",
    "location",
    "loc",
    "coord",
    "coords",
    "position",
    "latlng",
    "geo",
)

# Indonesian NIK: the first two digits are a province code (BPS), from 11 (Aceh) to 94 (Papua).
_NIK_PROVINCES = frozenset(
    f"{code}"
    for code in (
        *range(11, 20),
        21,
        31,
        32,
        33,
        34,
        35,
        36,
        51,
        52,
        53,
        *range(61, 66),
        *range(71, 77),
        81,
        82,
        91,
        92,
        94,
    )
)

# Boundaries for triggers, so that one value fires its trigger once (hyperscan reports every
# end offset at which a pattern matches) and digit runs inside longer runs, UUIDs and hashes do
# not fire at all. `^`/`$` need HS_FLAG_MULTILINE: every line is its own text.
# one-time-code words in scripts with no ASCII word boundary: Chinese, Thai, Hindi
_CODE_WORDS_CJK = "(?:验证码|驗證碼|校验码|动态码|認証コード|인증번호|รหัส|ओटीपी|कोड|குறியீடு)"
# Code-first templates: "551204 is your code", "[Brand] 551204 is your OTP", "G-551204 is
# your Google verification code", "Use 551204 to verify", "551204 आपका OTP है"
_CODE_WORDS_AFTER = (
    r"(?:otp|code|tac|pin|passcode|verification|verify|kod|kode|sandi|"
    r"验证码|驗證碼|รหัส|ओटीपी|कोड|குறியீடு)"
)
_MESSAGE_WORDS = "|".join(MESSAGE_KEYS)  # the keys the JSON hints read as messages
_NAME_WORDS = "|".join(PERSON_KEYS)
# "12/05/2024, 09:14 - " (Android) or "[12/05/2024, 09:14:05] " (iOS), at a line's start
_CHAT_LINE = (
    r"^\[?\d{1,2}[/.]\d{1,2}[/.]\d{2,4},? \d{1,2}[:.]\d{2}(?:[:.]\d{2})?(?:\s?[AaPp][Mm])?"
    r"(?:\] | - )"
)
_CHAT_LINE_TRIGGER = (
    r"(?:^|\n)\[?\d{1,2}[/.]\d{1,2}[/.]\d{2,4},? \d{1,2}[:.]\d{2}(?:[:.]\d{2})?"
    r"(?:\s?[AaPp][Mm])?(?:\] | - )[^:\n]{1,60}: "
)
_NOT_AFTER_DIGIT = r"(?:^|[^0-9])"
_NOT_BEFORE_DIGIT = r"(?:[^0-9]|$)"
_NOT_AFTER_ALNUM = r"(?:^|[^A-Za-z0-9])"
_NOT_BEFORE_ALNUM = r"(?:[^A-Za-z0-9]|$)"
_NOT_AFTER_WORD = r"(?:^|[^A-Za-z0-9_.-])"
_NOT_BEFORE_WORD = r"(?:[^A-Za-z0-9_.]|$)"
_SENTENCE_END = r"(?:[^A-Za-z0-9_.]|\.(?:\s|$)|$)"  # not before a word; a full stop may end it
_NOT_AFTER_NUMBER = r"(?:^|[^0-9.])"
_NOT_BEFORE_NUMBER = r"(?:[^0-9.]|$)"

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "EMAIL",
        "email",
        r"@[A-Za-z0-9-]+\.",
        re.compile(
            r"(?:(?<=\\[nrt])|(?<![\w.%+\\-]))"  # after a logged "\n" escape too, not on its n
            r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b"
        ),
        _always,
        before=80,
        after=260,
        confidence=0.95,
    ),
    Detector(
        # an address in a query string or form body, its "@" percent-encoded
        "EMAIL",
        "email-url-encoded",
        r"%40[A-Za-z0-9-]+\.",
        re.compile(
            r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._+-]{0,63}%40(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b"
        ),
        _always,
        before=80,
        after=260,
        confidence=0.9,
    ),
    Detector(
        "CREDIT_CARD",
        "luhn+issuer",
        # 4-4-4-4 (Visa, Mastercard, ...) or 4-6-5 / 4-6-4 (Amex, Diners).
        # An issuer's first digit, then 4-4-4-x (Visa, Mastercard, ...) or 4-6-5 / 4-6-4
        # (Amex, Diners), or 13 to 19 digits in one run.
        rf"{_NOT_AFTER_WORD}(?:[2-6](?:\d{{12,18}}|\d{{3}}[ -]?\d{{4}}[ -]?\d{{4}}[ -]?\d{{1,4}}"
        rf"|\d{{3}}[ -]?\d{{6}}[ -]?\d{{4,5}})|1800\d{{11}}){_SENTENCE_END}",
        # a sentence may end right after it ("I lost my card 4111….")
        re.compile(r"(?<![\w.-])(?:\d[ -]?){12,18}\d(?![\w]|\.\d)"),
        check.credit_card,
        excluded_by=_CARD_EXCLUDED_BY,
        before=30,
        after=8,
    ),
    Detector(
        "IBAN",
        "iban-mod97",
        rf"{_NOT_AFTER_ALNUM}[A-Z]{{2}}\d{{2}}[ ]?[A-Z0-9]{{4}}",
        re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b"),
        check.iban_number,
        before=12,
        after=40,
        confidence=0.95,
    ),
    Detector(
        "IMEI",
        "imei-luhn",
        rf"{_NOT_AFTER_DIGIT}\d{{15}}{_NOT_BEFORE_DIGIT}",
        re.compile(r"(?<!\d)\d{15}(?!\d)"),
        check.imei_number,
        keywords=_IMEI_KEYWORDS,
        before=16,
        after=1,
    ),
    Detector(
        "IP_ADDRESS",
        "ipv4",
        rf"{_NOT_AFTER_NUMBER}\d{{1,3}}\.\d{{1,3}}\.\d{{1,3}}\.\d{{1,3}}{_NOT_BEFORE_NUMBER}",
        re.compile(r"(?<![\w./-])(?<!v)(?:\d{1,3}\.){3}\d{1,3}(?![\w.-])"),
        check.ip_address,
        excluded_by=_VERSION_WORDS,
        before=16,
        after=4,
        confidence=0.85,
    ),
    Detector(
        "IP_ADDRESS",
        "ipv6",
        # Five groups, or "::": three-group times (12:00:07) are no addresses.
        r"(?:[0-9A-Fa-f]{1,4}:){4}[0-9A-Fa-f]{1,4}|[0-9A-Fa-f]{0,4}::",
        re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        lambda v: v.count(":") >= 2 and len(v) >= 6 and check.ip_address(v),
        before=40,
        after=40,
        confidence=0.85,
    ),
    Detector(
        "NATIONAL_ID",
        "my-mykad",
        rf"{_NOT_AFTER_DIGIT}\d{{6}}-?\d{{2}}-?\d{{4}}{_NOT_BEFORE_DIGIT}",
        re.compile(r"(?<![\d-])\d{6}-?\d{2}-?\d{4}(?![\d-])"),
        check.mykad,
        keywords=_ID_KEYWORDS_MY,
        before=16,
        after=1,
    ),
    Detector(
        # the printed shape, YYMMDD-PB-NNNN, needs no keyword: dashes where MyKad puts them,
        # a real birth date and a real place-of-birth code are rare anywhere else
        "NATIONAL_ID",
        "my-mykad-printed",
        rf"{_NOT_AFTER_DIGIT}\d{{6}}-\d{{2}}-\d{{4}}{_NOT_BEFORE_DIGIT}",
        re.compile(r"(?<![\d-])\d{6}-\d{2}-\d{4}(?![\d-])"),
        check.mykad,
        before=16,
        after=1,
    ),
    Detector(
        "NATIONAL_ID",
        "sg-nric",
        rf"{_NOT_AFTER_ALNUM}[STFGstfg]\d{{7}}[A-Za-z]{_NOT_BEFORE_ALNUM}",
        re.compile(r"\b[STFG]\d{7}[A-Z]\b", re.IGNORECASE),
        check.sg_nric,
        before=10,
        after=1,
    ),
    Detector(
        "NATIONAL_ID",
        "in-aadhaar",
        rf"{_NOT_AFTER_DIGIT}[2-9]\d{{3}} ?\d{{4}} ?\d{{4}}{_NOT_BEFORE_DIGIT}",
        re.compile(r"(?<![\d-])[2-9]\d{3} ?\d{4} ?\d{4}(?![\d-])"),
        check.aadhaar_number,
        keywords=_ID_KEYWORDS_IN,
        before=15,
        after=1,
    ),
    Detector(
        "NATIONAL_ID",
        "us-ssn",
        rf"{_NOT_AFTER_DIGIT}\d{{3}}-\d{{2}}-\d{{4}}{_NOT_BEFORE_DIGIT}",
        re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"),
        check.us_ssn_number,
        before=12,
        after=1,
    ),
    Detector(
        "NATIONAL_ID",
        "cn-ric",
        rf"{_NOT_AFTER_DIGIT}\d{{17}}[\dXx]{_NOT_BEFORE_ALNUM}",
        re.compile(r"(?<!\d)\d{17}[\dXx](?![\dA-Za-z])"),
        check.cn_resident_id,
        before=19,
        after=1,
    ),
    Detector(
        "NATIONAL_ID",
        "gb-nino",
        rf"{_NOT_AFTER_ALNUM}[A-Za-z]{{2}} ?\d{{2}} ?\d{{2}} ?\d{{2}} ?[A-Da-d]{_NOT_BEFORE_ALNUM}",
        re.compile(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
        check.uk_nino,
        before=14,
        after=1,
    ),
    Detector(
        "NATIONAL_ID",
        "th-id",
        # 13 digits, run together or grouped 1-4-5-2-1 as printed on the card.
        rf"{_NOT_AFTER_DIGIT}\d-?\d{{4}}-?\d{{5}}-?\d{{2}}-?\d{_NOT_BEFORE_DIGIT}",
        re.compile(r"(?<![\d-])\d(?:-?\d{4})(?:-?\d{5})(?:-?\d{2})-?\d(?![\d-])"),
        check.th_id,
        keywords=_ID_KEYWORDS_TH,
        before=18,
        after=1,
    ),
    Detector(
        "NATIONAL_ID",
        "id-nik",
        rf"{_NOT_AFTER_DIGIT}\d{{16}}{_NOT_BEFORE_DIGIT}",
        re.compile(r"(?<!\d)\d{16}(?!\d)"),
        lambda v: v[:2] in _NIK_PROVINCES,
        keywords=_ID_KEYWORDS_ID,
        before=17,
        after=1,
    ),
    Detector(
        "CRYPTO_ADDRESS",
        "btc-base58",
        rf"{_NOT_AFTER_ALNUM}[13][1-9A-HJ-NP-Za-km-z]{{25,34}}{_NOT_BEFORE_ALNUM}",
        re.compile(r"\b[13][1-9A-HJ-NP-Za-km-z]{25,34}\b"),
        check.bitcoin_base58,
        before=36,
        after=1,
        confidence=0.95,
    ),
    Detector(
        "CRYPTO_ADDRESS",
        "btc-bech32",
        rf"{_NOT_AFTER_ALNUM}bc1[02-9ac-hj-np-z]{{11}}",
        re.compile(r"\bbc1[02-9ac-hj-np-z]{11,71}\b", re.IGNORECASE),
        check.bitcoin_bech32,
        before=16,
        after=64,
        confidence=0.95,
        caseless=True,
    ),
    Detector(
        "CRYPTO_ADDRESS",
        "xmr-base58",
        rf"{_NOT_AFTER_ALNUM}[48][1-9A-HJ-NP-Za-km-z]{{94}}{_NOT_BEFORE_ALNUM}",
        re.compile(r"\b[48][1-9A-HJ-NP-Za-km-z]{94}\b"),
        check.monero,
        before=97,
        after=1,
        confidence=0.95,
    ),
    Detector(
        "CRYPTO_ADDRESS",
        "eth-address",
        rf"0x[0-9a-fA-F]{{40}}{_NOT_BEFORE_ALNUM}",
        re.compile(r"\b0x[0-9a-fA-F]{40}\b"),
        check.ethereum,
        before=43,
        after=1,
    ),
    Detector(
        "SECRET",
        "aws-access-key",
        r"(AKIA|ASIA)[0-9A-Z]{16}",
        re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        _always,
        before=21,
        after=1,
        confidence=0.95,
    ),
    Detector(
        "SECRET",
        "github-token",
        r"gh[pousr]_[A-Za-z0-9]{36}",
        re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b"),
        _always,
        before=41,
        after=220,
        confidence=0.95,
    ),
    Detector(
        "SECRET",
        "slack-token",
        r"xox[abprs]-[0-9A-Za-z-]{10}",
        re.compile(r"\bxox[abprs]-[0-9A-Za-z-]{10,250}"),
        _always,
        before=20,
        after=240,
    ),
    Detector(
        "SECRET",
        "google-api-key",
        r"AIza[0-9A-Za-z_-]{35}",
        re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
        _always,
        before=40,
        after=1,
    ),
    Detector(
        "SECRET",
        "jwt",
        r"eyJ[A-Za-z0-9_-]{8,}\.eyJ",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{8,}"),
        _jwt,
        before=600,
        after=2000,
        confidence=0.95,
    ),
    Detector(
        "SECRET",
        "private-key",
        r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----",
        re.compile(r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----"),
        _always,
        before=48,
        after=1,
        confidence=0.99,
    ),
    Detector(
        "SECRET",
        "keyword+entropy",
        r"(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)"
        r"[\"']?\s*[:=]",
        re.compile(
            r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|"
            # & ends a query's value; "…" and "<" start a mask's (masking twice changes nothing)
            r"auth[_-]?token)\b[\"']?\s*[:=]\s*[\"']?([^\s\"',;&<…]{8,200})"
        ),
        _high_entropy,
        group=1,
        before=32,
        after=230,
        confidence=0.7,
        caseless=True,
    ),
    Detector(
        "OTP_CODE",
        "otp-context",
        # The code follows its word within its own sentence or field: no quote in between,
        # and nothing glued to it ("code 5001abc" is no code).
        # Words of scripts without ASCII word boundaries (验证码, รหัส) stand on their own.
        rf"(?:\b(?:otp|tac|code|pin|passcode|verification|pengesahan|kod|kode)\b|{_CODE_WORDS_CJK})"
        # (hyperscan counts bytes: 90 of them hold the 30 characters of Thai or Tamil text)
        rf"[^0-9\n\"]{{0,90}}\d{{4,8}}{_NOT_BEFORE_ALNUM}",
        re.compile(
            rf"(?i)(?:\b(?:otp|tac|{_NOT_A_CODE_KIND}code|pin|passcode|verification|pengesahan|"
            rf"kod|kode)\b|{_CODE_WORDS_CJK})"
            r"[^0-9\n\"]{0,30}?(?<![\d.])(\d{4,8})(?![\dA-Za-z]|[.,]\d)"
        ),
        _always,
        group=1,
        before=60,
        after=2,
        confidence=0.8,
        caseless=True,
        recurs=False,
    ),
    Detector(
        "OTP_CODE",
        "otp-before-word",
        # the code first, then (in its sentence, no other digits between) what it is
        rf"(?:^|[^0-9A-Za-z.#-]|G-)\d{{4,8}}[^0-9\n\"]{{1,24}}{_CODE_WORDS_AFTER}",
        re.compile(
            r"(?i)(?:(?<=\bG-)|(?<![\w.#-]))(\d{4,8})(?![\w.,]\d|[\w])"
            # a linking word first ("is your", "adalah", "to verify"): "1234 code changes"
            # counts code, it is none
            r"(?=\s{0,3}(?:to\s+(?:verify|confirm|log\s*in|sign\s*in)|(?:is\s+(?:your|ur)|"
            r"is\s+the\s+(?=code|otp|pin)|adalah|ialah|merupakan|untuk|for\s+(?:your|verification)|"
            rf"sebagai|आपका|คือ|是|为)[^0-9\n\"]{{0,20}}{_CODE_WORDS_AFTER}))"
        ),
        _not_a_year,
        group=1,
        excluded_by=("order", "invoice", "error", "port", "ticket", "ref", "amount", "total"),
        before=44,
        after=4,
        confidence=0.75,
        caseless=True,
        recurs=False,
    ),
    Detector(
        # an origin-bound code at the end of an SMS: "@app.example.com #551204"
        "OTP_CODE",
        "otp-origin-bound",
        r"@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\s+#\d{4,8}",
        re.compile(r"@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\s+#(\d{4,8})(?![\w])"),
        _always,
        group=1,
        excluded_by=("order", "invoice"),
        before=80,
        after=2,
        confidence=0.85,
        recurs=False,
    ),
    Detector(
        # a message in a text log: text="…" (the key word right before it, as the JSON key
        # hints read "body": "…"); three words or more
        "MESSAGE_BODY",
        "message-field",
        rf"(?:^|[^a-z0-9_])(?:{_MESSAGE_WORDS})\s{{0,2}}[=:]\s{{0,2}}\"",
        re.compile(
            rf"(?i)(?<![a-z0-9_])(?:{_MESSAGE_WORDS})\s{{0,2}}[=:]\s{{0,2}}"
            r'"([^"\\\n]*+(?:\\.[^"\\\n]*+)*+)"'  # unrolled: a quoted string, escapes kept
        ),
        _prose,
        group=1,
        before=24,
        after=1024,  # a window this long around each key: longer messages are cut, not lost
        confidence=0.8,
        one_per_hit=True,
        caseless=True,
    ),
    Detector(
        # a name in a text log: sender_name="Siti Aminah" (the JSON hints' name keys)
        "PERSON",
        "name-field",
        rf"(?:^|[^a-z0-9_])(?:{_NAME_WORDS})\s{{0,2}}[=:]\s{{0,2}}\"",
        re.compile(
            rf"(?i)(?<![a-z0-9_])(?:{_NAME_WORDS})\s{{0,2}}[=:]\s{{0,2}}\"([^\"\\\n]{{3,80}})\""
        ),
        person_value,
        group=1,
        before=24,
        after=84,
        confidence=0.7,
        caseless=True,
        one_per_hit=True,
    ),
    Detector(
        # and body='…'
        "MESSAGE_BODY",
        "message-field-single-quoted",
        rf"(?:^|[^a-z0-9_])(?:{_MESSAGE_WORDS})\s{{0,2}}[=:]\s{{0,2}}'",
        re.compile(rf"(?i)(?<![a-z0-9_])(?:{_MESSAGE_WORDS})\s{{0,2}}[=:]\s{{0,2}}'([^'\n]*+)'"),
        _prose,
        group=1,
        before=24,
        after=1024,
        confidence=0.8,
        one_per_hit=True,
        caseless=True,
    ),
    Detector(
        # the same with the value running to the line's end: "msg: see you at the station"
        "MESSAGE_BODY",
        "message-field-line",
        rf"(?:^|[^a-z0-9_\"])(?:{_MESSAGE_WORDS})\s{{0,2}}:\s{{1,2}}[^\"'\s]",
        re.compile(
            rf"(?i)(?<![a-z0-9_\"])(?:{_MESSAGE_WORDS})\s{{0,2}}:\s{{1,2}}([^\"'\s][^\n]{{2,4096}})"
        ),
        _prose,
        group=1,
        before=24,
        after=1024,
        confidence=0.75,
        one_per_hit=True,
        caseless=True,
    ),
    Detector(
        # a chat export's line (WhatsApp on Android and iOS): date, time, sender, message
        "MESSAGE_BODY",
        "chat-export",
        _CHAT_LINE_TRIGGER,
        re.compile(_CHAT_LINE + r"[^:\n]{1,60}: ([^\n]{1,4096})", re.MULTILINE),
        _chat_text,
        group=1,
        before=40,
        after=4100,
        one_per_hit=True,
        confidence=0.85,
    ),
    Detector(
        "PERSON",
        "chat-export-sender",
        _CHAT_LINE_TRIGGER,
        re.compile(_CHAT_LINE + r"([^:\n+0-9][^:\n]{0,59}): ", re.MULTILINE),
        _sender_name,
        group=1,
        before=40,
        after=70,
        confidence=0.7,
    ),
    Detector(
        # Telegram Desktop's HTML export: the message on the line after <div class="text">
        # (or on the same line, as other exporters write it)
        "MESSAGE_BODY",
        "telegram-html-text",
        r'<div class="text">',
        re.compile(r'<div class="text">[ \t]*\n?[ \t]*([^\n]{1,4096}?)[ \t]*(?:</div>|$)', re.M),
        _chat_text,
        group=1,
        before=20,
        after=4200,
        one_per_hit=True,
        confidence=0.85,
    ),
    Detector(
        "PERSON",
        "telegram-html-sender",
        r'<div class="from_name">',
        re.compile(
            r'<div class="from_name">[ \t]*\n?[ \t]*([^\n<]{1,80}?)[ \t]*(?:</div>|$)', re.M
        ),
        _sender_name,
        group=1,
        before=24,
        after=110,
        one_per_hit=True,
        confidence=0.7,
    ),
    Detector(
        "GEO_COORDINATE",
        "lat-lon-pair",
        rf"\d\.\d{{4,}}\s*,\s*-?\d{{1,3}}\.\d{{4,}}{_NOT_BEFORE_DIGIT}",
        re.compile(r"(?<![\d.])-?\d{1,2}\.\d{4,}\s*,\s*-?\d{1,3}\.\d{4,}(?![\d.])"),
        _geo_pair,
        keywords=_GEO_KEYWORDS,
        before=40,
        after=24,
        confidence=0.85,
        gate=False,
    ),
    Detector(
        # one coordinate in a text log's key=value or key: value (lat=3.1412 lon=101.6865);
        # JSON keys are read by the key hints
        "GEO_COORDINATE",
        "lat-lon-key",
        r"(?:^|[^a-z0-9_\"])(?:lat|lng|lon|long|latitude|longitude)\s{0,2}[=:]\s{0,2}-?\d{1,3}\.\d+"
        rf"{_NOT_BEFORE_DIGIT}",
        re.compile(
            r"(?i)(?<![a-z0-9_\"])(?:lat|lng|lon|long|latitude|longitude)\s{0,2}[=:]\s{0,2}"
            r"(-?\d{1,3}\.\d+)(?![\d.])"  # any decimals, as under a JSON key
        ),
        _degrees,
        group=1,
        before=40,
        after=4,
        confidence=0.85,
        caseless=True,
    ),
    Detector(
        # a pair in prose ("meet at 3.1412,101.6865"): five decimals or more each, which
        # versions, amounts and ratios do not have; four with a place word before
        "GEO_COORDINATE",
        "lat-lon-pair-precise",
        rf"\d\.\d{{5,}}\s*,\s*-?\d{{1,3}}\.\d{{5,}}{_NOT_BEFORE_DIGIT}",
        re.compile(r"(?<![\d.])-?\d{1,2}\.\d{5,}\s*,\s*-?\d{1,3}\.\d{5,}(?![\d.])"),
        _geo_pair_in_prose,
        before=40,
        after=24,
        confidence=0.8,
    ),
)

# When two detectors claim overlapping text, the more specific one wins.
PRIORITY = {
    "SECRET": 0,
    "IBAN": 1,  # a grouped IBAN can hold a Luhn-valid run; a card never holds an IBAN
    "CREDIT_CARD": 2,
    "NATIONAL_ID": 3,
    "IMEI": 4,
    "CRYPTO_ADDRESS": 5,
    "EMAIL": 6,
    "IP_ADDRESS": 7,
    "PHONE": 8,
    "OTP_CODE": 9,
    "GEO_COORDINATE": 10,
    "MESSAGE_BODY": 11,
    "PERSON": 12,
}

# Personal ID numbers that python-stdnum validates, per region, read after a word that names
# one ("SSN:", "personnummer", "PESEL") for the regions the classifier is given: the
# number's own check (a date, a check digit) and the word decide, never the shape alone.
NATIONAL_ID_MODULES = {
    "BE": ("be.nn",),
    "BR": ("br.cpf",),
    "CA": ("ca.sin",),
    "CN": ("cn.ric",),
    "CZ": ("cz.rc",),
    "DK": ("dk.cpr",),
    "EE": ("ee.ik",),
    "ES": ("es.dni", "es.nie"),
    "FI": ("fi.hetu",),
    "FR": ("fr.nir",),
    "ID": ("id.nik",),
    "IN": ("in_.aadhaar",),
    "IS": ("is_.kennitala",),
    "IT": ("it.codicefiscale",),
    "MY": ("my.nric",),
    "NL": ("nl.bsn",),
    "NO": ("no.fodselsnummer",),
    "PL": ("pl.pesel",),
    "SE": ("se.personnummer",),
    "TH": ("th.pin",),
    "US": ("us.ssn",),
    "ZA": ("za.idnr",),
}
ID_WORDS = (
    "ssn",
    "social security",
    "social insurance",
    "sin number",
    "national id",
    "national identity",
    "identity number",
    "identity no",
    "id number",
    "id no",
    "personal number",
    "personal id",
    "personnummer",
    "personnr",
    "cpr",
    "cpr-nr",
    "hetu",
    "henkilötunnus",
    "pesel",
    "cpf",
    "nir",
    "sécurité sociale",
    "securite sociale",
    "fødselsnummer",
    "fodselsnummer",
    "kennitala",
    "isikukood",
    "rodné číslo",
    "rodne cislo",
    "bsn",
    "burgerservicenummer",
    "rijksregisternummer",
    "dni",
    "codice fiscale",
    "nik",
    "ktp",
    "nric",
    "mykad",
    "aadhaar",
    "id card",
    "citizen id",
)
_ID_ALTERNATIVES = alternatives(ID_WORDS, "[ _-]")
# (the gap in bytes; or a JSON key's closing quote and colon: "national_id": "9001…")
ID_WORD_TRIGGER = (
    rf"(?:^|[^a-z0-9])(?:{_ID_ALTERNATIVES})(?:[^0-9\n\"]{{0,90}}|\"\s{{0,2}}:\s{{0,2}}\"?)\d"
)
# the number after its word: a run of digits (letters as some check characters are), with
# the separators IDs are printed with, and one group after a blank (France's NIR key)
ID_AFTER_WORD = re.compile(
    rf"(?i)(?<![a-z0-9])(?:{_ID_ALTERNATIVES})(?![a-z0-9])"
    r"(?:[^0-9\n\"]{0,30}?|\"\s{0,2}:\s{0,2}\")(?<![\w.-])"
    r"(\d[\dA-Za-z.\-/+]{1,20}(?: \d{2,4}){0,3})(?![\w])"
)
ID_WORD_BEFORE = re.compile(
    rf"(?i)(?<![a-z0-9])(?:{_ID_ALTERNATIVES})(?![a-z0-9])[^0-9\n\"]{{0,30}}$"
)


# Phone numbers are found by phonenumbers' own matcher, run only near digit runs like these.
# International (``+`` or its URL encoding ``%2B``) after anything but a word or another
# ``+`` (``phone=+60…``, ``to:+60…``, ``/users/+60…``, next to CJK text); bracketed or
# trunk-prefixed when not glued to a word, decimal, path or address. Either may end a
# sentence or a chat export's sender (``… 23456: ok``). Bytes of non-ASCII text are not
# ``\w`` here, so a number between Chinese characters fires.
# an extension may follow (x924, ext 12); a logged "\n" escape may come before
_PHONE_END = r"(?:[^\w.:/@]|[.:](?:\s|$)|x\d|$)"
_INTERNATIONAL_END = r"(?:[^\w.:@]|[.:](?:\s|$)|x\d|$)"  # a path segment too: /users/+60…/x
PHONE_TRIGGER = (
    rf"(?:(?:^|[^\w+]|\\[nrt])(?:\+|%2[Bb])\d[\d \-().]{{4,16}}\d{_INTERNATIONAL_END}"
    rf"|(?:^|[^\w.@/+-]|\\[nrt])(?:\(\d|0\d)[\d \-().]{{4,16}}\d{_PHONE_END}"
    # North American numbers have no trunk prefix: 623-991-6122, 283.393.8729 (read only
    # when US or CA is among the regions)
    rf"|(?:^|[^\w.@/+-]|\\[nrt])[2-9]\d\d(?:-[2-9]\d\d-|\.[2-9]\d\d\.)\d{{4}}{_PHONE_END})"
)
# Country-code digits without ``+`` (``msisdn=60123456789``, logfmt, ``key: value``) are read
# as a number only after a key that says phone: bare digit runs are too often ids, amounts and
# timestamps.
PHONE_KEYS = (
    "phone",
    "phone_number",
    "phonenumber",
    "msisdn",
    "mobile",
    "mobile_no",
    "tel",
    "telephone",
    "handphone",
    "hp",
    "wa_id",
    "whatsapp",
    "recipient",
    "sender",
    "to",
    "dst",
    "src",
    "from",
    "destination",
    "source_addr",
    "dest_addr",
)
PHONE_KEYED_TRIGGER = (
    r"(?:^|[^\w\"'])(?:"
    + "|".join(PHONE_KEYS)
    + r")\s{0,2}[=:]\s{0,2}[\"']?\d[\d -]{6,16}\d(?:[^\w.]|$)"
)  # not a quoted JSON key: those are read by the JSON key triggers
# A number written the national way after a word that says phone ("You can call 779 021
# 982", "ring me on 914 54 925"): how people write them where the plan has no trunk prefix
# (Spain, Norway, Estonia, Uruguay), valid for one of the classifier's regions.
PHONE_WORDS = (
    "call",
    "calls",
    "called",
    "calling",
    "phone",
    "phoned",
    "tel",
    "telephone",
    "mobile",
    "cell",
    "cellphone",
    "fax",
    "whatsapp",
    "sms",
    "text me",
    "reach me",
    "ring",
    "contact",
    "hubungi",
    "telefon",
    "telepon",
    "nombor",
    "nomor hp",
    "no hp",
    "handphone",
    # Thai, Tamil, Hindi, Chinese: call, telephone, mobile, the number to call
    "โทร",
    "เบอร์",
    "தொலைபேசி",
    "கைபேசி",
    "அலைபேசி",
    "அழைக்க",
    "फ़ोन",
    "फोन",
    "मोबाइल",
    "电话",
    "電話",
    "手机",
    "手機",
)
_PHONE_ALTERNATIVES = alternatives(PHONE_WORDS, " ")
PHONE_WORD_TRIGGER = (
    rf"(?:^|[^a-z0-9_])(?:{_PHONE_ALTERNATIVES})[^0-9\n\"]{{0,48}}\d[\d \-.]{{5,14}}\d"
    r"(?:[^\w.]|$)"
)
PHONE_AFTER_WORD = re.compile(
    rf"(?i)(?<![a-z0-9_])(?:{_PHONE_ALTERNATIVES})(?![a-z0-9_])([^0-9\n\"]{{0,16}}?)"
    r"(?<![\w+.-])(\d[\d \-.]{5,14}\d)(?![\w.]|-\d)"
)
# between the word and the number: a code's word makes it a code ("call with PIN 5509 3109")
CODE_WORD = re.compile(r"(?i)(?<![a-z])(?:otp|pin|code|tac|kod|kode|passcode)(?![a-z])")
