"""Tell acceptance, defences (rate limit, lockout, challenge) and plain failures apart."""

from __future__ import annotations

import re

from perisai.api_audit.interface import Outcome

__all__ = ["classify_response", "defence_text"]

_LOCK = re.compile(
    r"\blocked\b|lock ?out"
    r"|too many (?:wrong|failed|invalid|incorrect)?\s*(?:attempts|tries|codes|guesses)"
    r"|attempts? (?:exceeded|limit)|maximum (?:number of )?attempts|temporarily blocked",
    re.IGNORECASE,
)
_RATE = re.compile(
    r"rate[ _-]?limit|too many requests|slow down|try again (?:later|in)|throttl|quota exceeded"
    r"|too many \w+ requests",
    re.IGNORECASE,
)
_CHALLENGE = re.compile(
    r"captcha|challenge[ _-]?(?:required|failed|token|missing|invalid)|proof[ _-]of[ _-]work"
    r"|attestation|are you (?:a )?human|turnstile|app[ _-]?check",
    re.IGNORECASE,
)
_SCAN_CHARS = 4096


def classify_response(status: int, headers: dict[str, str], text: str) -> Outcome:
    """The meaning of one answer. Defence texts count on any status; 429 is a rate limit."""
    body = text[:_SCAN_CHARS]
    retry_after = any(k.lower() == "retry-after" for k in headers)
    locked = bool(_LOCK.search(body)) and (status >= 400 or _looks_like_error(body))
    if status == 423 or locked:
        return Outcome.LOCKED_OUT
    if status == 429 or (status == 503 and retry_after):
        return Outcome.RATE_LIMITED
    if _CHALLENGE.search(body) and (status >= 400 or _looks_like_error(body)):
        return Outcome.CHALLENGED
    if _RATE.search(body) and (status >= 400 or _looks_like_error(body)):
        return Outcome.RATE_LIMITED
    if 200 <= status < 300:
        return Outcome.ACCEPTED
    if status in (401, 403, 407):
        return Outcome.AUTH_REQUIRED
    if status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.REJECTED


def _looks_like_error(body: str) -> bool:
    return bool(re.search(r'"(?:error|errors|success"\s*:\s*false)', body[:_SCAN_CHARS]))


def defence_text(outcome: Outcome, status: int, retry_after: str | None, after: int) -> str:
    """A human line for the defence seen, e.g. ``rate limit (HTTP 429, Retry-After 600) …``."""
    name = {
        Outcome.RATE_LIMITED: "rate limit",
        Outcome.LOCKED_OUT: "lockout",
        Outcome.CHALLENGED: "challenge (CAPTCHA / token) required",
    }.get(outcome, outcome.value)
    extra = f", Retry-After {retry_after}" if retry_after else ""
    return f"{name} (HTTP {status}{extra}) after {after} request{'s' if after != 1 else ''}"
