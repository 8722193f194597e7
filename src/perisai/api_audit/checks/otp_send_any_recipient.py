"""api.otp-send-any-recipient: an anonymous caller gets a code sent to a number no session owns.

Only a number from a reserved test range is named (Ofcom's +44 7700 900xxx drama range), never
a random real one.
"""

from __future__ import annotations

from perisai.api_audit.checks._common import OWASP_API6, evidence
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
)


class OtpSendAnyRecipient(Check):
    rule = RULE
    roles = (Role.OTP_SEND,)

    def planned_requests(self, op: Operation, ctx: AuditContext) -> int:
        return 1

    def describe(self, op: Operation, ctx: AuditContext) -> str:
        return "1 anonymous send to a reserved test-range number (+44 7700 900xxx)"

    async def run(self, op: Operation, ctx: AuditContext) -> CheckResult | CheckSkipped:
        phones = op.fields_of(FieldKind.PHONE)
        if not phones:
            return CheckSkipped(RULE.id, op, "no phone-number field in the spec")
        number = reserved_test_number(avoid=ctx.config.sink_phone)
        ctx.remember_secret(number)
        try:
            exchange = await ctx.send(op, {phones[0].name: number}, anonymous=True)
        except BudgetExhausted:
            return CheckSkipped(RULE.id, op, "no request left in the budget")
        if exchange.outcome is Outcome.ACCEPTED:
            summary = (
                f"an anonymous request had a code sent to {mask_value(number)}, a reserved test "
                "number no session owns: any caller can make the app text any number"
            )
            return CheckResult(RULE.id, op, True, summary, evidence([exchange]))
        if exchange.outcome.is_defence:
            defence = defence_text(
                exchange.outcome, exchange.status, exchange.header("retry-after"), 1
            )
            return CheckResult(RULE.id, op, False, f"refused: {defence}", (exchange.line,), defence)
        if exchange.outcome is Outcome.AUTH_REQUIRED:
            defence = f"authentication required (HTTP {exchange.status})"
            return CheckResult(RULE.id, op, False, f"refused: {defence}", (exchange.line,), defence)
        return CheckSkipped(
            RULE.id, op, f"the endpoint failed rather than refused ({exchange.line})"
        )
