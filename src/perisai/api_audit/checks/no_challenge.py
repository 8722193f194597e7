"""api.no-challenge: an anonymous send flow accepts a request with no challenge token."""

from __future__ import annotations

import time

from perisai.api_audit.checks._common import (
    OWASP_API6,
    REPEAT,
    messages,
    no_recipient,
    recipient,
    sinks_named,
)
from perisai.api_audit.context import AuditContext, BudgetExhausted, mask_value
from perisai.api_audit.interface import (
    Check,
    CheckResult,
    CheckSkipped,
    Exchange,
    FieldKind,
    Operation,
    Outcome,
    Role,
)
from perisai.api_audit.responses import defence_text
from perisai.findings import Rule, Severity

RULE = Rule(
    id="api.no-challenge",
    name="Anonymous send flow has no challenge",
    description="An anonymous request that makes the app send an SMS or e-mail is accepted with "
    "no CAPTCHA, proof-of-work or app-attestation token: nothing slows a script down.",
    remediation="Require a challenge verified server-side before anonymous sends (CAPTCHA such "
    "as Turnstile/hCaptcha/reCAPTCHA, proof-of-work, or Play Integrity / App Attest tokens), "
    "single-use and bound to the request, on the request that makes the app send (not only on "
    "the page before it); keep rate limits as well.",
    default_severity=Severity.MEDIUM,
    references=(OWASP_API6,),
    verify=(
        REPEAT + "   # no challenge token, no session",
        "# a message sent (or a 2xx) with no token shows the flaw",
    ),
    fix=(
        "# verify the challenge token server-side on the send request itself, single-use,",
        "# bound to the recipient; a page-level CAPTCHA the API does not check is no defence",
        "# with perisai guard: pass challenge_passed only after your server verified the token",
    ),
)


class NoChallenge(Check):
    rule = RULE
    roles = (Role.OTP_SEND, Role.MAIL_SEND, Role.PASSWORD_RESET)

    def planned_requests(self, op: Operation, ctx: AuditContext) -> int:
        return 1

    def describe(self, op: Operation, ctx: AuditContext) -> str:
        return "1 anonymous request to the sink with no challenge token"

    async def run(self, op: Operation, ctx: AuditContext) -> CheckResult | CheckSkipped:
        target = recipient(op, ctx)
        if target is None:
            return CheckSkipped(RULE.id, op, no_recipient(op, ctx))
        declared = [p.name for p in op.fields_of(FieldKind.CHALLENGE)]
        asked = time.monotonic()
        try:
            exchange = await ctx.send(op, {target[0]: target[1]}, anonymous=True)
            exchange = await ctx.confirm_sent(op, target[1], asked, exchange)
        except BudgetExhausted:
            return CheckSkipped(RULE.id, op, "no request left in the budget")
        if exchange.outcome is Outcome.CHALLENGED:
            defence = defence_text(exchange.outcome, exchange.status, None, 1)
            return CheckResult(
                RULE.id, op, False, f"challenge enforced: {defence}", (exchange.line,), defence
            )
        if exchange.outcome is Outcome.ACCEPTED:
            return await _accepted(op, ctx, target[1], declared, asked, exchange)
        if exchange.outcome.is_defence:
            defence = defence_text(
                exchange.outcome, exchange.status, exchange.header("retry-after"), 1
            )
            return CheckSkipped(RULE.id, op, f"a {defence} answered first; challenge not seen")
        if exchange.outcome is Outcome.AUTH_REQUIRED:
            return CheckResult(
                RULE.id,
                op,
                False,
                "not anonymous: authentication required",
                (exchange.line,),
                f"authentication required (HTTP {exchange.status})",
            )
        return CheckSkipped(
            RULE.id, op, f"the endpoint failed rather than answered ({exchange.line})"
        )


async def _accepted(
    op: Operation,
    ctx: AuditContext,
    value: str,
    declared: list[str],
    asked: float,
    exchange: Exchange,
) -> CheckResult:
    """An accepted anonymous request is a flaw only if it makes the app send something:
    proven by a sink, refuted by a silent one, indicated when no sink runs."""
    spec = (
        f"the spec declares {', '.join(declared)} but it is not enforced"
        if declared
        else "the spec declares no challenge field"
    )
    if not ctx.can_prove(value):
        summary = (
            "indicated, not proven: an anonymous request with no CAPTCHA, proof-of-work or "
            f"attestation token was accepted ({spec}); no message was seen: run with "
            "--sms-sink / --smtp-sink to prove it sends"
        )
        return CheckResult(RULE.id, op, True, summary, (exchange.line,), severity=Severity.LOW)
    arrived = await ctx.wait_for_deliveries(value, asked)
    if not arrived:
        summary = (
            f"accepted (HTTP {exchange.status}) but nothing reached {sinks_named(ctx)} within "
            f"{ctx.config.mail_wait:.0f} s: the request sends nothing, so no challenge is owed"
        )
        return CheckResult(RULE.id, op, False, summary, (exchange.line,))
    summary = (
        "proven: an anonymous request with no CAPTCHA, proof-of-work or attestation token made "
        f"the app send {messages(arrived)} to {mask_value(value)} ({spec})"
    )
    return CheckResult(RULE.id, op, True, summary, (exchange.line,))
