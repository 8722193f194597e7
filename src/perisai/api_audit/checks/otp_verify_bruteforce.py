"""api.otp-verify-bruteforce: M wrong codes, none locked out; time to exhaust the code space."""

from __future__ import annotations

import re
import secrets
import time

from perisai.api_audit.checks._common import (
    NIST_63B,
    OWASP_AUTH,
    REPEAT,
    evidence,
    first_send_op,
    recipient,
)
from perisai.api_audit.checks.otp_in_response import find_codes
from perisai.api_audit.context import AuditContext, BudgetExhausted
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


def code_length(param: Param) -> int:
    """The code's length from the spec (maxLength, pattern, example), else 6."""
    if param.max_length and 3 <= param.max_length <= 10:
        return param.max_length
    if param.pattern and (match := re.search(r"\{(\d+)\}", param.pattern)):
        return int(match[1])
    if param.example is not None and str(param.example).isdigit():
        return len(str(param.example))
    return DEFAULT_CODE_LENGTH


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.0f} seconds"


class OtpVerifyBruteforce(Check):
    rule = RULE
    roles = (Role.OTP_VERIFY,)

    def planned_requests(self, op: Operation, ctx: AuditContext) -> int:
        return ctx.config.verify_attempts + (1 if first_send_op(ctx) else 0)

    def describe(self, op: Operation, ctx: AuditContext) -> str:
        send_op = first_send_op(ctx)
        first = f"1 send to the sink by {send_op.key}, then " if send_op else ""
        return f"{first}{ctx.config.verify_attempts} wrong codes, stopping at the first defence"

    async def run(self, op: Operation, ctx: AuditContext) -> CheckResult | CheckSkipped:
        codes = op.fields_of(FieldKind.CODE)
        if not codes:
            return CheckSkipped(RULE.id, op, "no code field in the spec")
        length = code_length(codes[0])
        identity = recipient(op, ctx)
        leaked: set[str] = set()
        send_op = first_send_op(ctx)
        try:
            if send_op is not None and (target := recipient(send_op, ctx)) is not None:
                sent = await ctx.send(send_op, {target[0]: target[1]})  # a pending code to guess at
                leaked = {code for _, code in find_codes(sent)}
        except BudgetExhausted:
            return CheckSkipped(RULE.id, op, "no request left in the budget")
        exchanges: list[Exchange] = []
        tried: set[str] = set()
        started = time.monotonic()
        try:
            while len(exchanges) < ctx.config.verify_attempts:
                guess = f"{secrets.randbelow(10**length):0{length}d}"
                if guess in leaked or guess in tried:
                    continue
                tried.add(guess)
                overrides = {codes[0].name: guess}
                if identity is not None:
                    overrides[identity[0]] = identity[1]
                exchange = await ctx.send(op, overrides)
                exchanges.append(exchange)
                if exchange.outcome is not Outcome.REJECTED:
                    break
        except BudgetExhausted:
            pass
        elapsed = time.monotonic() - started
        if not exchanges:
            return CheckSkipped(RULE.id, op, "no request left in the budget")
        last = exchanges[-1]
        if last.outcome.is_defence:
            defence = defence_text(
                last.outcome, last.status, last.header("retry-after"), len(exchanges)
            )
            return CheckResult(
                RULE.id, op, False, f"not brute-forceable: {defence}", evidence(exchanges), defence
            )
        if last.outcome is not Outcome.REJECTED:
            return CheckSkipped(
                RULE.id, op, f"a wrong code was not answered 'wrong' ({last.line}); cannot judge"
            )
        if len(exchanges) < min(10, ctx.config.verify_attempts):
            return CheckSkipped(RULE.id, op, f"only {len(exchanges)} guesses fitted in the budget")
        rate = len(exchanges) / max(elapsed, 1e-3)
        space = 10**length
        summary = (
            f"{len(exchanges)} wrong {length}-digit codes in a row were answered 'wrong' "
            f"(HTTP {last.status}) with no lockout, rate limit or challenge; at the observed "
            f"{rate:.1f} guesses/s one client exhausts the {space:,} codes in "
            f"{_duration(space / rate)} (half that on average; parallel clients divide it)"
        )
        return CheckResult(RULE.id, op, True, summary, evidence(exchanges))
