"""What every check shares: the run's settings, its request budget, pacing and masking.

Every request goes through :meth:`AuditContext.send`: it spends one request of the run's budget
and of the check's allowance (or refuses), waits the pacing interval, halts the check at the
first 429, and returns an :class:`Exchange` whose evidence line is masked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from perisai.api_audit.interface import ClassifiedOperation, Exchange, FieldKind, Operation, Outcome
from perisai.api_audit.responses import classify_response
from perisai.api_audit.sink import SmtpSink
from perisai.api_audit.sms_sink import SmsSink
from perisai.classify import redact_text

__all__ = [
    "DEFAULT_SINK_EMAIL",
    "DEFAULT_SINK_PHONE",
    "Allowance",
    "AuditConfig",
    "AuditContext",
    "BudgetExhausted",
    "Delivery",
    "account_kind",
    "mask_value",
    "random_like",
    "reserved_test_number",
]

# Ofcom reserves +44 7700 900000-900999 for drama: never a real subscriber.
_RESERVED_PREFIX = "+447700900"
DEFAULT_SINK_PHONE = _RESERVED_PREFIX + "555"
DEFAULT_SINK_EMAIL = "perisai-sink@example.invalid"  # .invalid never resolves (RFC 2606)
_REGIONS = ("MY", "SG", "ID", "GB", "US", "AU")
# what a password field is given: never a spec's example, which may be a seeded account's
NOT_A_PASSWORD = "perisai-Not-A-Password-" + secrets.token_hex(4)


def reserved_test_number(avoid: str = "") -> str:
    """A random number in the reserved drama range (never ``avoid``)."""
    while True:
        number = f"{_RESERVED_PREFIX}{secrets.randbelow(1000):03d}"
        if number != avoid:
            return number


_NATIONAL_ID = re.compile(r"^\d{6}-?\d{2}-?\d{4}$")


def account_kind(value: str) -> FieldKind:
    """What a ``--known-account`` is: an e-mail, a national ID, a phone number or a username."""
    if "@" in value:
        return FieldKind.EMAIL
    if _NATIONAL_ID.match(value):
        return FieldKind.NATIONAL_ID
    if re.fullmatch(r"\+?\d{8,15}", value.replace(" ", "").replace("-", "")):
        return FieldKind.PHONE
    return FieldKind.USERNAME


def random_like(value: str, kind: FieldKind) -> str:
    """An identifier of the same kind that names nobody who could be messaged: a reserved
    test number, an address at example.org (RFC 2606: reserved, takes no mail, yet passes the
    validators that refuse .invalid), a random username or ID."""
    if kind is FieldKind.PHONE:
        return reserved_test_number(avoid=value)
    if kind is FieldKind.EMAIL:
        return f"perisai-{secrets.token_hex(4)}@example.org"
    if kind is FieldKind.NATIONAL_ID:
        return "".join(str(secrets.randbelow(10)) if c.isdigit() else c for c in value)
    return f"perisai{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Delivery:
    """A message that reached one of perisai's sinks: by SMS or e-mail, to whom, its text."""

    channel: str  # "SMS" or "e-mail"
    to: str
    text: str
    at: float


def mask_value(value: str) -> str:
    """``+447700900555`` → ``+447******55``; ``ab@x.org`` → ``a***@x.org``."""
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if len(value) <= 4:
        return "*" * len(value)
    keep = 4 if len(value) >= 10 else 1
    return value[:keep] + "*" * (len(value) - keep - 2) + value[-2:]


@dataclass(frozen=True)
class AuditConfig:
    """How one audit runs (the CLI's options, as values)."""

    base_url: str
    budget: int = 100
    sink_phone: str = DEFAULT_SINK_PHONE
    sink_email: str = DEFAULT_SINK_EMAIL
    known_account: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    smtp_sink: tuple[str, int] | None = None
    sms_sink: tuple[str, int] | None = None
    otp_sends: int = 12
    verify_attempts: int = 20
    pace: float = 0.05
    timeout: float = 10.0
    mail_wait: float = 5.0  # seconds a sink waits for a message the target should send


class BudgetExhausted(Exception):
    """No request left in the run's budget or the check's allowance."""


@dataclass
class Allowance:
    """One check's share of the budget on one operation; closed at the first 429."""

    limit: int
    used: int = 0
    halted: bool = False

    @property
    def left(self) -> int:
        return 0 if self.halted else max(0, self.limit - self.used)


@dataclass
class AuditContext:
    config: AuditConfig
    operations: list[ClassifiedOperation]
    sink: SmtpSink | None = None
    sms_sink: SmsSink | None = None
    client: httpx.AsyncClient | None = None
    spent: int = 0
    allowance: Allowance = field(default_factory=lambda: Allowance(0))
    _last: float = 0.0
    _secrets: set[str] = field(default_factory=set)
    # every request sent, for the report: the check (or "preflight") that sent it, method,
    # the spec's path template, status (0: no answer), whether the auth headers were left off
    sent: list[dict[str, object]] = field(default_factory=list)
    checking: str = "preflight"
    # a flow's state the target hands back in an answer (allauth's meta.session_token) and
    # wants as a header on the flow's next request; kept only while a check carries a flow
    carry_flow: bool = False
    flow_headers: dict[str, str] = field(default_factory=dict)
    # statuses an operation answers when it did send (allauth's 401 "flow pending"), learnt
    # from a sink: later answers with them count as accepted
    delivering: dict[str, set[int]] = field(default_factory=dict)

    def _log(self, method: str, path: str, status: int, anonymous: bool) -> None:
        self.sent.append(
            {
                "check": self.checking,
                "method": method,
                "path": path,
                "status": status,
                "anonymous": anonymous,
            }
        )

    @property
    def budget_left(self) -> int:
        return max(0, self.config.budget - self.spent)

    def begin(self, planned: int) -> Allowance:
        """A fresh allowance for one check on one operation: what it plans, within budget."""
        self.allowance = Allowance(min(planned, self.budget_left))
        self.carry_flow = False
        self.flow_headers = {}
        return self.allowance

    # --- where messages go, and what arrived -----------------------------------------------

    def sink_addresses(self, recipient: str) -> tuple[str, ...]:
        """Where a message for ``recipient`` lands: the sink itself, or, for the known account
        (named by username or ID), the sink phone and address the tester registered for it."""
        if recipient == self.config.known_account:
            return (self.config.sink_phone, self.config.sink_email)
        return (recipient,)

    def can_prove(self, recipient: str) -> bool:
        """Whether sinks run for every way the target could message ``recipient`` (the known
        account may be texted or mailed: nothing at one sink refutes nothing without both)."""
        return all(
            (self.sink if "@" in address else self.sms_sink) is not None
            for address in self.sink_addresses(recipient)
        )

    def deliveries(self, recipient: str, after: float) -> list[Delivery]:
        """Messages for ``recipient`` that reached a sink since ``after`` (monotonic)."""
        out: list[Delivery] = []
        for address in self.sink_addresses(recipient):
            if "@" in address and self.sink is not None:
                wanted = address.lower()
                out += [
                    Delivery("e-mail", address, mail.text, mail.received_at)
                    for mail in self.sink.mails
                    if mail.received_at >= after and wanted in (r.lower() for r in mail.rcpt_tos)
                ]
            elif "@" not in address and self.sms_sink is not None:
                digits = re.sub(r"\D", "", address)
                out += [
                    Delivery("SMS", address, sms.body, sms.received_at)
                    for sms in self.sms_sink.messages
                    if sms.received_at >= after and re.sub(r"\D", "", sms.to) == digits
                ]
        return sorted(out, key=lambda d: d.at)

    async def wait_for_deliveries(
        self, recipient: str, after: float, count: int = 1
    ) -> list[Delivery]:
        """:meth:`deliveries`, waiting up to ``mail_wait`` seconds for ``count`` of them."""
        deadline = time.monotonic() + self.config.mail_wait
        while True:
            found = self.deliveries(recipient, after)
            if len(found) >= count or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(0.05)

    async def confirm_sent(
        self, op: Operation, recipient: str, asked: float, exchange: Exchange
    ) -> Exchange:
        """An answer that reads as 'sign in first' (401/403) but made the app send anyway is
        an accepted send: the sink decides, and the status is remembered for ``op``."""
        if exchange.outcome is not Outcome.AUTH_REQUIRED or not self.can_prove(recipient):
            return exchange
        if not await self.wait_for_deliveries(recipient, asked):
            return exchange
        self.delivering.setdefault(op.key, set()).add(exchange.status)
        return dataclasses.replace(exchange, outcome=Outcome.ACCEPTED)

    def remember_secret(self, value: str) -> None:
        """Mask ``value`` wherever it shows up in evidence from now on."""
        if value:
            self._secrets.add(value)

    def mask(self, text: str) -> str:
        for value in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(value, mask_value(value))
            if value.startswith("+"):
                text = text.replace(quote(value, safe=""), mask_value(value))
        return redact_text(text, _REGIONS)

    # --- building requests ------------------------------------------------------------------

    def values_for(self, op: Operation, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """A value for every field but challenge fields: sinks for recipients, the known account
        for account fields, then examples. Never a spec's example for a password, username or
        ID: those name real seeded accounts, and a request for one could message its owner."""
        overrides = overrides or {}
        known = self.config.known_account
        values: dict[str, Any] = {}
        branch = next(
            (p.alternative for p in op.params if p.name in overrides and p.alternative is not None),
            next((p.alternative for p in op.params if p.alternative is not None), None),
        )
        for param in op.params:
            if param.alternative is not None and param.alternative != branch:
                continue
            if param.name in overrides:
                values[param.name] = overrides[param.name]
                continue
            if param.kind is FieldKind.CHALLENGE or param.location == "header":
                continue
            if param.kind is FieldKind.PHONE:
                values[param.name] = self.config.sink_phone
            elif param.kind is FieldKind.EMAIL:
                values[param.name] = self.config.sink_email
            elif param.kind is FieldKind.TEXT:
                values[param.name] = "perisai audit test"
            elif param.kind is FieldKind.PASSWORD:
                values[param.name] = NOT_A_PASSWORD
            elif param.kind is FieldKind.USERNAME:
                values[param.name] = known or random_like("", FieldKind.USERNAME)
            elif param.kind is FieldKind.NATIONAL_ID:
                if known and account_kind(known) is FieldKind.NATIONAL_ID:
                    values[param.name] = known
            elif param.example is not None:
                values[param.name] = param.example
            elif param.type == "integer" or param.type == "number":
                values[param.name] = 1
            elif param.type == "boolean":
                values[param.name] = False
            elif param.required or param.location in ("path", "body", "form"):
                values[param.name] = "perisai-test"
        return values

    async def send(
        self,
        op: Operation,
        overrides: dict[str, Any] | None = None,
        *,
        anonymous: bool = False,
        values: dict[str, Any] | None = None,
        fresh: bool = False,
    ) -> Exchange:
        """One request for ``op``; raises :class:`BudgetExhausted` when none is left.
        ``fresh``: from a new client, with none of the run's cookies (a caller with no flow
        in progress)."""
        if self.allowance.left <= 0 or self.budget_left <= 0:
            raise BudgetExhausted()
        values = values if values is not None else self.values_for(op, overrides)
        path = op.path
        query: dict[str, Any] = {}
        body: dict[str, Any] = {}
        for param in op.params:
            if param.name not in values:
                continue
            value = values[param.name]
            if param.location == "path":
                path = path.replace("{" + param.name + "}", quote(str(value), safe=""))
            elif param.location == "query":
                query[param.name] = value
            elif param.location in ("body", "form"):
                body[param.name] = value
        headers = {} if anonymous else dict(self.config.headers)
        if self.carry_flow and not fresh:
            headers.update(self.flow_headers)
        kwargs: dict[str, Any] = {"params": query or None, "headers": headers}
        if op.body == "form":
            kwargs["data"] = {k: str(v) for k, v in body.items()}
        elif op.body == "json" or body:
            kwargs["json"] = body
        await self._pace()
        self.allowance.used += 1
        self.spent += 1
        url = self.config.base_url.rstrip("/") + path
        assert self.client is not None
        started = time.monotonic()
        try:
            if fresh:
                async with httpx.AsyncClient(
                    timeout=self.config.timeout, trust_env=False, follow_redirects=False
                ) as other:
                    response = await other.request(op.method, url, **kwargs)
            else:
                response = await self.client.request(op.method, url, **kwargs)
            text = response.text
            status = response.status_code
            answer_headers = dict(response.headers)
        except httpx.HTTPError as error:
            elapsed = time.monotonic() - started
            line = self._line(op.method, path, query, body, f"no answer ({type(error).__name__})")
            self._log(op.method, op.path, 0, anonymous)
            return Exchange(op.method, path, 0, Outcome.UNREACHABLE, elapsed, line)
        elapsed = time.monotonic() - started
        self._log(op.method, op.path, status, anonymous)
        if self.carry_flow and not fresh:
            self._keep_flow(op, text)
        outcome = classify_response(status, answer_headers, text)
        if status in self.delivering.get(op.key, ()):
            outcome = Outcome.ACCEPTED
        if status == 429:
            self.allowance.halted = True  # stop this check at the first 429
        summary = f"{status} {outcome.value} {_CODE_LIKE.sub(_hide_digits, _short(text))}"
        line = self._line(op.method, path, query, body, summary, elapsed)
        return Exchange(
            op.method,
            path,
            status,
            outcome,
            elapsed,
            line,
            text,
            tuple(answer_headers.items()),
        )

    def _keep_flow(self, op: Operation, text: str) -> None:
        """Keep a session token the answer hands out, to send back as a header."""
        try:
            document: Any = json.loads(text)
        except ValueError:
            return
        token = _session_token(document)
        if token:
            self.remember_secret(token)
            named = [
                p.name for p in op.params if p.location == "header" and "session" in p.name.lower()
            ]
            self.flow_headers[named[0] if named else "X-Session-Token"] = token

    async def send_raw(self, method: str, path: str, *, anonymous: bool = False) -> Exchange:
        """A bare request (the reachability and auth-header checks), within the run budget."""
        if self.budget_left <= 0:
            raise BudgetExhausted()
        await self._pace()
        self.spent += 1
        headers = {} if anonymous else dict(self.config.headers)
        assert self.client is not None
        started = time.monotonic()
        url = self.config.base_url.rstrip("/") + path
        try:
            response = await self.client.request(method, url, headers=headers)
        except httpx.HTTPError as error:
            line = self._line(method, path, {}, {}, f"no answer ({type(error).__name__})")
            self._log(method, path, 0, anonymous)
            return Exchange(method, path, 0, Outcome.UNREACHABLE, 0.0, line)
        self._log(method, path, response.status_code, anonymous)
        elapsed = time.monotonic() - started
        outcome = classify_response(response.status_code, dict(response.headers), response.text)
        line = self._line(method, path, {}, {}, f"{response.status_code} {outcome.value}", elapsed)
        return Exchange(method, path, response.status_code, outcome, elapsed, line, response.text)

    async def _pace(self) -> None:
        wait = self._last + self.config.pace - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last = time.monotonic()

    def _line(
        self,
        method: str,
        path: str,
        query: dict[str, Any],
        body: dict[str, Any],
        answer: str,
        elapsed: float | None = None,
    ) -> str:
        shown = path
        if query:
            shown += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        if body:
            shown += " " + json.dumps(body, ensure_ascii=False)
        took = f" ({elapsed * 1000:.0f} ms)" if elapsed is not None else ""
        return self.mask(f"{method} {shown} → {answer}{took}")


def _session_token(node: Any, depth: int = 0) -> str | None:
    """The first ``session_token`` / ``sessionToken`` string in a JSON answer (3 levels)."""
    if depth > 3:
        return None
    if isinstance(node, dict):
        for key, value in node.items():
            if re.sub(r"[^a-z]", "", str(key).lower()) == "sessiontoken" and isinstance(value, str):
                return value
        for value in node.values():
            if (found := _session_token(value, depth + 1)) is not None:
                return found
    return None


_CODE_LIKE = re.compile(r"(?<![\w.])\d{4,8}(?![\w.])")


def _hide_digits(match: re.Match[str]) -> str:
    """Codes in answers are evidence of a flaw, never evidence to reuse: ``482913`` → ``4*****``."""
    return match[0][0] + "*" * (len(match[0]) - 1)


def _short(text: str, limit: int = 80) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
