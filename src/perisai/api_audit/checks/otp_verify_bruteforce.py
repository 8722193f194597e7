"""api.otp-verify-bruteforce: wrong codes for a real pending code, answered 'wrong' again and
again with no lockout; the time to try the whole code space.

A finding needs three things (else the check says why it cannot judge): a code really issued
to the tester's identity (it reached a sink, or the send's answer carried it: *proven*, high;
an accepted send alone only *indicates* it, medium); wrong-code answers that differ from the
answer for an unknown user (or for a caller with no flow in progress), so the guesses were
checked against that code; and no defence within the budget: a 429/423, a challenge, or the
answer changing mid-run (the code invalidated after N wrong tries) all mean not vulnerable.
The code space is read from the delivered code (length and alphabet), else from the spec.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

from perisai.api_audit.checks._common import (
    NIST_63B,
    OWASP_AUTH,
    REPEAT,
    evidence,
    no_recipient,
    recipient,
    sinks_named,
)
from perisai.api_audit.checks.otp_in_response import find_codes
from perisai.api_audit.context import (
    AuditContext,
    BudgetExhausted,
    account_kind,
    random_like,
)
from perisai.api_audit.interface import (
    Check,
    CheckResult,
    CheckSkipped,
    Exchange,
    FieldKind,
    Operation,
    Outcome,
    Param,
    Role,
)
from perisai.api_audit.responses import defence_text
from perisai.api_audit.roles import tokens
from perisai.findings import Rule, Severity

RULE = Rule(
    id="api.otp-verify-bruteforce",
    name="OTP verify endpoint allows unlimited guesses",
    description="Wrong codes are answered 'wrong' again and again with no lockout, rate limit or "
    "challenge: a script can try the whole code space and take over the number's registration.",
    remediation="Allow a few wrong codes per issued code (e.g. 5), then invalidate it and lock "
    "the recipient/account for a while (429 or 423 with Retry-After); count attempts per "
    "recipient and account across resends (a new code must not reset the count), not only per "
    "IP; make codes expire within minutes.",
    default_severity=Severity.HIGH,
    references=(OWASP_AUTH, NIST_63B),
    verify=(
        "# ask for a code to your own test number, then send wrong codes:",
        f"for i in $(seq 1 10); do {REPEAT}; done",
        "# still answered 'wrong' after 10, with no 429/423 and the real code still valid: open",
    ),
    fix=(
        "# per issued code: 5 wrong answers, then invalidate it",
        "# per recipient and account: 10 wrong answers a day across resends, then lock (423)",
        "# codes expire within 10 minutes; answer over-limit tries 429 with Retry-After",
        "# perisai guard's Verify API does this: POST /v1/verifications, then .../check",
    ),
)

DEFAULT_CODE_LENGTH = 6
DIGITS = "0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
MIXED = UPPER + "abcdefghijklmnopqrstuvwxyz"
UNGUESSABLE = 16  # characters: a token this long is not a code anyone types or guesses

_SEP = r"[A-Za-z0-9_\-]"
_DIGIT_CODE = re.compile(rf"(?<!{_SEP})\d{{4,8}}(?!{_SEP}|\.\w)")
_WORD_CODE = re.compile(
    rf"(?<!{_SEP})(?:(?=[A-Za-z-]*\d)[A-Za-z0-9]{{3,5}}-?[A-Za-z0-9]{{2,5}}"
    rf"|[A-Z0-9]{{4,5}}-[A-Z0-9]{{4,5}})(?!{_SEP})"
)
_LONG_TOKEN = re.compile(r"[A-Za-z0-9_\-]{20,}(?:\.[A-Za-z0-9_\-]+)*")
# a link's scheme and host, or a bare host:port (allauth names "127.0.0.1:8000" in its mails)
_HOST = re.compile(
    r"https?://[^/\s]+|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?|\b[a-z0-9-]+(?:\.[a-z0-9-]+)+:\d{2,5}\b"
)


def code_length(param: Param) -> int:
    """The code's length from the spec (maxLength, pattern, example), else 6."""
    if param.max_length and 3 <= param.max_length <= 10:
        return param.max_length
    if param.pattern and (match := re.search(r"\{(\d+)\}", param.pattern)):
        return int(match[1])
    if param.example is not None and str(param.example).isdigit():
        return len(str(param.example))
    return DEFAULT_CODE_LENGTH


def code_in_message(text: str) -> str | None:
    """The code a message carries: a 4-8 digit group, else a short letters-and-digits code
    (``NQ3T-M5KX``), else a long token (a JWT, a reset key); host:port parts of links are
    ignored so a port is never read as a code."""
    text = _HOST.sub(" ", text)
    for pattern in (_DIGIT_CODE, _WORD_CODE, _LONG_TOKEN):
        if match := pattern.search(text):
            return match[0]
    return None


@dataclass(frozen=True)
class CodeSpace:
    """What a code looks like: its alphabet and length, and how many codes there are."""

    alphabet: str
    length: int
    source: str  # "the delivered code", "the spec"

    @property
    def size(self) -> int:
        return int(len(self.alphabet) ** self.length)

    def words(self) -> str:
        kind = {DIGITS: "digit", UPPER: "letter-and-digit"}.get(self.alphabet, "mixed-case")
        return f"{self.length}-{'character' if kind != 'digit' else 'digit'} ({kind}) code"

    def guess(self, avoid: set[str]) -> str:
        while True:
            guess = "".join(secrets.choice(self.alphabet) for _ in range(self.length))
            if guess not in avoid:
                avoid.add(guess)
                return guess


def code_space(code: str | None, param: Param) -> CodeSpace:
    """From the delivered code when there is one, else from the spec (digits)."""
    if code:
        bare = code.replace("-", "")
        alphabet = DIGITS if bare.isdigit() else MIXED if bare != bare.upper() else UPPER
        return CodeSpace(alphabet, len(bare), "the delivered code")
    return CodeSpace(DIGITS, code_length(param), "the spec")


def paired_send_op(op: Operation, ctx: AuditContext) -> Operation | None:
    """The send that issues the codes ``op`` checks: of the operations that send a code or a
    reset, the one sharing most of ``op``'s path (then most of its words)."""
    sends = [c.operation for c in ctx.operations if c.role in (Role.OTP_SEND, Role.PASSWORD_RESET)]
    if not sends:
        return None
    segments = op.path.strip("/").split("/")
    words = set(tokens(op.path))

    def score(send: Operation) -> tuple[int, int]:
        other = send.path.strip("/").split("/")
        shared = 0
        for mine, theirs in zip(segments, other, strict=False):
            if mine != theirs:
                break
            shared += 1
        return shared, len(words & set(tokens(send.path)))

    return max(sends, key=score)


def _signature(exchange: Exchange) -> tuple[int, str]:
    """An answer's shape: status and body with digits and quoted tokens flattened."""
    body = re.sub(r'"[A-Za-z0-9_\-]{16,}"', '"<token>"', exchange.text[:2000])
    return exchange.status, re.sub(r"\d+", "0", body)


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.0f} seconds"


class OtpVerifyBruteforce(Check):
    rule = RULE
    roles = (Role.OTP_VERIFY,)

    def planned_requests(self, op: Operation, ctx: AuditContext) -> int:
        # the send that issues a code, one guess as an unknown user, then the guesses
        return ctx.config.verify_attempts + 1 + (1 if paired_send_op(op, ctx) else 0)

    def describe(self, op: Operation, ctx: AuditContext) -> str:
        send_op = paired_send_op(op, ctx)
        if send_op is None:
            return "skipped: no operation sends the code (state one with --flows)"
        return (
            f"1 send to the sink by {send_op.key}, 1 wrong code as an unknown user, then "
            f"{ctx.config.verify_attempts} wrong codes, stopping at the first defence"
        )

    async def run(self, op: Operation, ctx: AuditContext) -> CheckResult | CheckSkipped:
        codes = op.fields_of(FieldKind.CODE)
        if not codes:
            return CheckSkipped(RULE.id, op, "no code field in the spec")
        send_op = paired_send_op(op, ctx)
        if send_op is None:
            return CheckSkipped(RULE.id, op, "no operation sends the code; state it with --flows")
        target = recipient(send_op, ctx)
        if target is None:
            return CheckSkipped(RULE.id, op, f"{send_op.key}: {no_recipient(send_op, ctx)}")
        identity = recipient(op, ctx)
        ctx.carry_flow = True  # the flow the send starts (a session token) goes to the guesses
        asked = time.monotonic()
        try:
            sent = await ctx.send(send_op, {target[0]: target[1]})
            sent = await ctx.confirm_sent(send_op, target[1], asked, sent)
        except BudgetExhausted:
            return CheckSkipped(RULE.id, op, "no request left in the budget")
        ctx.allowance.halted = False  # a limit on sends says nothing about guesses
        leaked = {code for _, code in find_codes(sent)}
        real: str | None = next(iter(leaked), None)
        proof = "the send's answer carried it" if real else ""
        if real is None and sent.outcome is Outcome.ACCEPTED and ctx.can_prove(target[1]):
            arrived = await ctx.wait_for_deliveries(target[1], asked)
            real = next((c for d in arrived if (c := code_in_message(d.text))), None)
            if real is None:
                what = "nothing" if not arrived else "no code"
                return CheckSkipped(
                    RULE.id,
                    op,
                    f"{send_op.key} answered {sent.status} but {what} reached "
                    f"{sinks_named(ctx)}: no code was issued to guess at",
                )
            proof = f"it reached {sinks_named(ctx, arrived)}"
        if real is not None:
            ctx.remember_secret(real)
            if len(real.replace("-", "")) >= UNGUESSABLE:
                summary = (
                    f"the code issued is a {len(real)}-character token ({proof}): guessing it "
                    "is hopeless, whatever the attempt limits"
                )
                return CheckResult(RULE.id, op, False, summary, (sent.line,), "unguessable code")
        # a refused send (a limit, a challenge) still leaves the guesses to judge: codes that
        # need no send (TOTP) or one issued earlier may be pending; unproven either way
        space = code_space(real, codes[0])
        return await self._guess(op, ctx, codes[0], identity, space, real, proof)

    async def _guess(
        self,
        op: Operation,
        ctx: AuditContext,
        code: Param,
        identity: tuple[str, str] | None,
        space: CodeSpace,
        real: str | None,
        proof: str,
    ) -> CheckResult | CheckSkipped:
        avoid = {real.replace("-", "")} if real else set()
        guesses: list[Exchange] = []
        control: Exchange | None = None
        started = time.monotonic()

        def ask(guess: str, who: tuple[str, str] | None) -> dict[str, str]:
            overrides = {code.name: guess}
            if who is not None:
                overrides[who[0]] = who[1]
            return overrides

        try:
            while len(guesses) < ctx.config.verify_attempts:
                exchange = await ctx.send(op, ask(space.guess(avoid), identity))
                guesses.append(exchange)
                if exchange.outcome is not Outcome.REJECTED:
                    break
                if _signature(exchange) != _signature(guesses[0]):
                    break
                if control is None:
                    # the same wrong code as someone with no code pending: a made-up user, or
                    # (a flow held in a session) a caller with none in progress
                    if identity is not None:
                        made_up = random_like(identity[1], account_kind(identity[1]))
                        ctx.remember_secret(made_up)
                        control = await ctx.send(
                            op, ask(space.guess(avoid), (identity[0], made_up))
                        )
                    else:
                        control = await ctx.send(op, ask(space.guess(avoid), None), fresh=True)
        except BudgetExhausted:
            pass
        elapsed = time.monotonic() - started
        if not guesses:
            return CheckSkipped(RULE.id, op, "no request left in the budget")
        last = guesses[-1]
        lines = evidence(guesses)
        if last.outcome.is_defence:
            defence = defence_text(
                last.outcome, last.status, last.header("retry-after"), len(guesses)
            )
            return CheckResult(
                RULE.id, op, False, f"not brute-forceable: {defence}", lines, defence
            )
        if last.outcome is Outcome.ACCEPTED and len(guesses) > 1:
            # after wrong answers, a guess went through: the code fell to guessing (rare with a
            # real code space; TOTP accepts several codes at once)
            summary = (
                f"proven: guess {len(guesses)} was accepted after {len(guesses) - 1} wrong "
                "ones, with no lockout, rate limit or challenge in between: a "
                f"{space.words()} fell to guessing"
            )
            return CheckResult(RULE.id, op, True, summary, lines)
        if guesses[0].outcome is not Outcome.REJECTED:
            return CheckSkipped(
                RULE.id,
                op,
                f"a wrong code was not answered 'wrong' ({guesses[0].line}); cannot judge",
            )
        if _signature(last) != _signature(guesses[0]):
            defence = (
                f"the code stopped being checked after {len(guesses) - 1} wrong codes "
                f"(the answer changed to HTTP {last.status})"
            )
            return CheckResult(
                RULE.id, op, False, f"not brute-forceable: {defence}", lines, defence
            )
        if control is not None and _signature(control) == _signature(guesses[0]):
            return CheckSkipped(
                RULE.id,
                op,
                "a wrong code got the same answer as one from a user with no code pending: "
                "cannot tell the guesses were checked against a real code",
            )
        if len(guesses) < min(10, ctx.config.verify_attempts):
            return CheckSkipped(RULE.id, op, f"only {len(guesses)} guesses fitted in the budget")
        rate = len(guesses) / max(elapsed, 1e-3)
        found = (
            f"{len(guesses)} wrong codes in a row for a real pending {space.words()} were "
            f"answered 'wrong' (HTTP {last.status}) with no lockout, rate limit or challenge, "
            f"and differently from a user with no code pending; at the observed {rate:.1f} "
            f"guesses/s one client tries all {space.size:,} codes (length and alphabet from "
            f"{space.source}) in {_duration(space.size / rate)} (half that on average; "
            "parallel clients divide it)"
        )
        if not proof:
            summary = (
                "indicated, not proven: the send was accepted but no code was seen (run with "
                f"--sms-sink / --smtp-sink to prove one was issued); {found}"
            )
            return CheckResult(RULE.id, op, True, summary, lines, severity=Severity.MEDIUM)
        return CheckResult(RULE.id, op, True, f"proven ({proof}): {found}", lines)
