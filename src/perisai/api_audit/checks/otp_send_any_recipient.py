"""api.otp-send-any-recipient: an anonymous caller gets a code sent to a number no session owns.

Only a number from a reserved test range is named (Ofcom's +44 7700 900xxx drama range), never
a random real one. With ``--sms-sink`` the finding is *proven* by the message arriving at
perisai's SMS sink (high); without it an accepted request only *indicates* the flaw (medium,
and the finding says no message was seen); with a sink running and nothing arriving, an
accepted request is not a finding: some hardened APIs answer every number alike and send
nothing.
"""

from __future__ import annotations

import time

from perisai.api_audit.checks._common import GUARD_FIX, OWASP_API6, REPEAT, evidence
from perisai.api_audit.context import (
    AuditContext,
    BudgetExhausted,
    mask_value,
    reserved_test_number,
)
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
    id="api.otp-send-any-recipient",
    name="OTP send endpoint texts any number a caller names",
    description="An anonymous request makes the endpoint send a code to a number that no "
    "authenticated session owns: anyone can make the app text anyone (harassment, SMS pumping "
    "to premium ranges at the app's cost).",
    remediation="Send codes only to the number of the session or registration in progress, bound "
    "server-side (a registration id issued after a challenge), never to a number taken from the "
    "request alone; limit sends per recipient and per destination prefix; block premium and "
    "unallocated ranges; require a challenge before the first send.",
    default_severity=Severity.HIGH,
    references=(OWASP_API6,),
    verify=(
        REPEAT + "   # name a number you own that no session of yours has registered",
        "# a text arriving (or a 2xx with no session or registration id) shows the flaw",
    ),
    fix=(
        "# send only to the number bound server-side to the session or registration in progress",
        "# (a registration id issued after the challenge), never to a number from the request",
        "# limit sends per recipient and per number prefix; refuse premium and unallocated ranges",
        *GUARD_FIX,
    ),
)


class OtpSendAnyRecipient(Check):
    rule = RULE
    roles = (Role.OTP_SEND,)

    def planned_requests(self, op: Operation, ctx: AuditContext) -> int:
        return 1

    def describe(self, op: Operation, ctx: AuditContext) -> str:
        text = "1 anonymous send to a reserved test-range number (+44 7700 900xxx)"
        if ctx.config.sms_sink is not None:
            host, port = ctx.config.sms_sink
            text += f"; wait {ctx.config.mail_wait:.0f} s for it at the SMS sink {host}:{port}"
        return text

    async def run(self, op: Operation, ctx: AuditContext) -> CheckResult | CheckSkipped:
        phones = op.fields_of(FieldKind.PHONE)
        if not phones:
            return CheckSkipped(RULE.id, op, "no phone-number field in the spec")
        number = reserved_test_number(avoid=ctx.config.sink_phone)
        ctx.remember_secret(number)
        asked = time.monotonic()
        try:
            exchange = await ctx.send(op, {phones[0].name: number}, anonymous=True)
            exchange = await ctx.confirm_sent(op, number, asked, exchange)
        except BudgetExhausted:
            return CheckSkipped(RULE.id, op, "no request left in the budget")
        if exchange.outcome is Outcome.ACCEPTED:
            return await _accepted(op, ctx, number, asked, exchange)
        if exchange.outcome.is_defence:
            defence = defence_text(
                exchange.outcome, exchange.status, exchange.header("retry-after"), 1
            )
            return CheckResult(RULE.id, op, False, f"refused: {defence}", (exchange.line,), defence)
        if exchange.outcome is Outcome.AUTH_REQUIRED:
            defence = f"authentication required (HTTP {exchange.status})"
            return CheckResult(RULE.id, op, False, f"refused: {defence}", (exchange.line,), defence)
        if exchange.outcome is Outcome.REJECTED:
            defence = f"a number no account owns was refused (HTTP {exchange.status})"
            return CheckResult(RULE.id, op, False, f"refused: {defence}", (exchange.line,), defence)
        return CheckSkipped(
            RULE.id, op, f"the endpoint failed rather than refused ({exchange.line})"
        )


async def _accepted(
    op: Operation, ctx: AuditContext, number: str, asked: float, exchange: Exchange
) -> CheckResult:
    """Proven by the SMS sink, refuted by it, or (with no sink) only indicated."""
    masked = mask_value(number)
    if ctx.sms_sink is None or ctx.config.sms_sink is None:
        summary = (
            f"indicated, not proven: an anonymous request naming {masked}, a reserved test "
            f"number no session owns, was accepted (HTTP {exchange.status}); no message was "
            "seen: point the staging app's SMS provider at --sms-sink to prove it"
        )
        return CheckResult(
            RULE.id, op, True, summary, evidence([exchange]), severity=Severity.MEDIUM
        )
    host, port = ctx.config.sms_sink
    message = await ctx.sms_sink.wait_for(number, ctx.config.mail_wait, after=asked)
    if message is None:
        summary = (
            f"accepted (HTTP {exchange.status}) but no message to {masked} reached the SMS "
            f"sink {host}:{port} within {ctx.config.mail_wait:.0f} s: not proven, not reported"
        )
        return CheckResult(RULE.id, op, False, summary, (exchange.line,))
    summary = (
        f"proven: an anonymous request had the app text {masked}, a reserved test number no "
        f"session owns; perisai's SMS sink {host}:{port} received it ({message.api} API, "
        f"{len(message.body)} characters): any caller can make the app text any number"
    )
    return CheckResult(RULE.id, op, True, summary, evidence([exchange]))
