"""Replace every entity the classifier finds with a mask, a keyed token or a type tag."""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import re
from enum import StrEnum

from perisai.classify.engine import Classifier
from perisai.classify.match import EntityMatch
from perisai.classify.profile import classifier_for

TOKEN_HEX_CHARS = 16
_JSON_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')


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

    def json_line(self, line: str) -> str | None:
        """A JSON line with every entity replaced where it stands, every other byte as it was:
        values (read with their keys as context) and keys themselves (a number or address used
        as a key). A replacement outside a string (a bare number) is written as a string.
        None when the result would not be valid JSON (the caller re-serialises instead)."""
        (in_values,) = self.classifier.scan_json_lines([line])
        taken = [(m.start, m.end) for m in in_values]
        extra = [
            m
            for m in self.classifier.scan_text(line)
            if not any(m.start < end and start < m.end for start, end in taken)
        ]
        matches = sorted([*in_values, *extra], key=lambda m: m.start)
        if not matches:
            return line
        strings = [span.span() for span in _JSON_STRING.finditer(line)]
        starts = [start for start, _ in strings]
        out: list[str] = []
        cursor = 0
        for match in matches:
            if match.start < cursor:
                continue
            at = bisect.bisect_right(starts, match.start) - 1
            inside = at >= 0 and match.end < strings[at][1]
            if at >= 0 and match.start < strings[at][1] and not inside:
                continue  # straddles a string's end: cannot be replaced in place
            replacement = self.replacement(match, line[match.start : match.end])
            out.append(line[cursor : match.start])
            out.append(replacement if inside else json.dumps(replacement, ensure_ascii=False))
            cursor = match.end
        out.append(line[cursor:])
        redacted = "".join(out)
        try:
            json.loads(redacted)
        except (ValueError, RecursionError):
            return None
        return redacted

    def value(self, value: object, key: str | None = None, depth: int = 0) -> object:
        """A JSON-like value with every string (and number) redacted; structure kept."""
        if depth > 64:
            return "<redacted: too deep>"
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v, str(k), depth + 1) for k, v in value.items()}
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
