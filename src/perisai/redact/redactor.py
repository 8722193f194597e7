"""Replace every entity the classifier finds with a mask, a keyed token or a type tag."""

from __future__ import annotations

import hashlib
import hmac
import re
from enum import StrEnum

from perisai.classify.engine import Classifier
from perisai.classify.match import EntityMatch
from perisai.classify.profile import classifier_for

TOKEN_HEX_CHARS = 16


class RedactionMode(StrEnum):
    MASK = "mask"  # +60 12-*** **89: keeps a hint for a human
    HASH = "hash"  # <PHONE:9f86d081884c7d65>: the same value → the same token, joinable
    TAG = "tag"  # <PHONE>: nothing of the value at all


class RedactorError(ValueError):
    """A redactor that cannot be built as asked; the message says how to fix it."""


class Redactor:
    """Redacts text and structured values with one classifier and one mode."""

    def __init__(
        self,
        mode: RedactionMode = RedactionMode.MASK,
        key: bytes | None = None,
        regions: tuple[str, ...] = ("MY",),
        classifier: Classifier | None = None,
    ) -> None:
        if mode is RedactionMode.HASH and not key:
            raise RedactorError("hash mode needs a secret key (e.g. --key-env PERISAI_REDACT_KEY)")
        self.mode = mode
        self._key = key or b""
        self.classifier = classifier or classifier_for(regions)

    def replacement(self, match: EntityMatch, value: str) -> str:
        if self.mode is RedactionMode.MASK:
            return match.masked
        if self.mode is RedactionMode.TAG:
            return f"<{match.entity}>"
        normalised = _canonical(match.entity, value)
        digest = hmac.new(self._key, normalised.encode(), hashlib.sha256).hexdigest()
        return f"<{match.entity}:{digest[:TOKEN_HEX_CHARS]}>"

    def text(self, text: str, key: str | None = None) -> str:
        """``text`` with every entity replaced."""
        return self.apply(text, self.classifier.scan_text(text, key))

    def apply(self, text: str, matches: list[EntityMatch]) -> str:
        """Replace ``matches`` (non-overlapping, from the classifier) in ``text``."""
        if not matches:
            return text
        out: list[str] = []
        cursor = 0
        for match in matches:
            if match.start < cursor:
                continue
            out.append(text[cursor : match.start])
            out.append(self.replacement(match, text[match.start : match.end]))
            cursor = match.end
        out.append(text[cursor:])
        return "".join(out)

    def value(self, value: object, key: str | None = None, depth: int = 0) -> object:
        """A JSON-like value with every string (and number) redacted; structure kept."""
        if depth > 64:
            return "<redacted: too deep>"
        if isinstance(value, dict):
            return {k: self.value(v, str(k), depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, key, depth + 1) for v in value]
        if isinstance(value, str):
            return self.text(value, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            as_text = str(value)
            redacted = self.text(as_text, key)
            return value if redacted == as_text else redacted
        return value


_SEPARATORS = re.compile(r"[\s().-]")


def _canonical(entity: str, value: str) -> str:
    """One spelling per value, so ``+60 12-345 6789`` and ``+60123456789`` share a token."""
    if entity in ("PHONE", "CREDIT_CARD", "IBAN", "NATIONAL_ID", "IMEI"):
        return _SEPARATORS.sub("", value).upper().lstrip("+")
    return value.strip().lower()
