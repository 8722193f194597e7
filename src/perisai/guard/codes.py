"""One-time codes: drawn from ``secrets``, kept only as keyed hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass

__all__ = ["CodeRecord", "hash_code", "new_code"]


def new_code(length: int) -> str:
    """``length`` decimal digits, uniformly drawn."""
    return "".join(secrets.choice("0123456789") for _ in range(length))


def hash_code(secret: bytes, recipient: str, verification_id: str, code: str) -> str:
    """HMAC-SHA256 of the code, bound to its recipient and verification id."""
    message = f"{recipient}\x00{verification_id}\x00{code}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class CodeRecord:
    """What is stored for a live code: never the code itself."""

    id: str
    digest: str
    expires: float
    channel: str

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> CodeRecord:
        data = json.loads(text)
        return cls(
            id=str(data["id"]),
            digest=str(data["digest"]),
            expires=float(data["expires"]),
            channel=str(data["channel"]),
        )

    def matches(self, secret: bytes, recipient: str, code: str) -> bool:
        candidate = hash_code(secret, recipient, self.id, code)
        return hmac.compare_digest(candidate, self.digest)
