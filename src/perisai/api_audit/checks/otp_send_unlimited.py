"""api.otp-send-unlimited: K sends to the sink recipient in a short window, all accepted."""

from __future__ import annotations

import time

from perisai.api_audit.checks._common import (
    GUARD_FIX,
    NIST_63B,
    OWASP_API4,
    OWASP_API6,
    REPEAT,
    evidence,
    messages,
    no_recipient,
    per_hour,
    recipient,
    sinks_named,
)
from perisai.api_audit.context import AuditContext, BudgetExhausted, mask_value
from perisai.api_audit.interface import (
    Check,
    CheckResult,
    CheckSkipped,
    Exchange,
    Operation,
    Outcome,
    Role,
)
from perisai.api_audit.responses import defence_text
from perisai.findings import Rule, Severity

RULE = Rule(
    id="api.otp-send-unlimited",
    name="OTP send endpoint has no rate limit",
    description="The endpoint sends a one-time code every time it is asked, with no rate limit, "
    "Retry-After or challenge: one script can flood a number with SMS (OTP bombing) and run up "
    "the SMS bill (SMS pumping).",
    remediation="Limit sends per recipient (e.g. 3 per 10 minutes, 10 per day) and per account "
    "and device, not only per IP; answer over-limit requests with 429 and Retry-After; add a "
    "challenge (CAPTCHA, proof-of-work or app attestation) before anonymous sends; alert on "
    "send-volume spikes per destination prefix.",
    default_severity=Severity.HIGH,
    references=(OWASP_API4, OWASP_API6, NIST_63B),
    verify=(
        f"for i in 1 2 3 4 5 6; do {REPEAT}; done",
        "# every answer 2xx, no 429 and no Retry-After: the flaw is still there",
    ),
    fix=(
        "# per recipient: 1 send / 30 s, 5 / 10 min, 10 / day, answered 429 with Retry-After",
        "# per client IP: 100 / 10 min; per /24 (IPv6 /64): 600 / 10 min",
        "# per account and device where there is one; alert on sends per number prefix",
        *GUARD_FIX,
    ),
)


class OtpSendUnlimited(Check):
    rule = RULE
    roles = (Role.OTP_SEND, Role.PASSWORD_RESET)

    def planned_requests(self, op: Operation, ctx: AuditContext) -> int:
        return ctx.config.otp_sends

    def describe(self, op: Operation, ctx: AuditContext) -> str:
        target = recipient(op, ctx)
        who = mask_value(target[1]) if target else "the sink"
        return f"{ctx.config.otp_sends} sends to {who}, stopping at the first defence"

    async def run(self, op: Operation, ctx: AuditContext) -> CheckResult | CheckSkipped:
        target = recipient(op, ctx)
        if target is None:
            return CheckSkipped(RULE.id, op, no_recipient(op, ctx))
        field, value = target
        exchanges: list[Exchange] = []
        started = time.monotonic()
        try:
            while True:
                asked = time.monotonic()
                exchange = await ctx.send(op, {field: value})
                if not exchanges:
                    exchange = await ctx.confirm_sent(op, value, asked, exchange)
                exchanges.append(exchange)
                if exchange.outcome is not Outcome.ACCEPTED:
                    break
        except BudgetExhausted:
            pass
        elapsed = time.monotonic() - started
        if not exchanges:
            return CheckSkipped(RULE.id, op, "no request left in the budget")
        last = exchanges[-1]
        accepted = sum(e.outcome is Outcome.ACCEPTED for e in exchanges)
        retry_after = next(
            (e.header("retry-after") for e in exchanges if e.header("retry-after")), None
        )
        if last.outcome.is_defence:
            defence = defence_text(
                last.outcome, last.status, last.header("retry-after"), len(exchanges)
            )
            return CheckResult(
                RULE.id, op, False, f"not abusable: {defence}", evidence(exchanges), defence
            )
        if last.outcome is Outcome.AUTH_REQUIRED:
            defence = f"authentication required (HTTP {last.status})"
            return CheckResult(
                RULE.id, op, False, f"not anonymous: {defence}", evidence(exchanges), defence
            )
        if last.outcome is Outcome.REJECTED and len(exchanges) == 1:
            return CheckSkipped(
                RULE.id,
                op,
                f"the first send to {mask_value(value)} was refused ({last.line}): is it "
                "registered? Name your own account with --known-account, or fix the request "
                "shape with --flows",
            )
        if last.outcome is not Outcome.ACCEPTED:
            return CheckSkipped(
                RULE.id,
                op,
                f"the endpoint failed rather than defended ({last.line}); not a defence, "
                "fix the request shape with --flows",
            )
        if accepted < min(3, ctx.config.otp_sends) or retry_after:
            return CheckSkipped(RULE.id, op, f"only {accepted} sends fitted in the budget")
        who = mask_value(value)
        if not ctx.can_prove(value):
            summary = (
                f"indicated, not proven: {accepted}/{len(exchanges)} sends to {who} were "
                f"accepted in {elapsed:.1f} s with no 429, challenge or Retry-After; no message "
                "was seen: point the staging app's SMS provider or mail relay at --sms-sink / "
                "--smtp-sink to prove it"
            )
            return CheckResult(
                RULE.id, op, True, summary, evidence(exchanges), severity=Severity.MEDIUM
            )
        arrived = await ctx.wait_for_deliveries(value, started, accepted)
        if not arrived:
            summary = (
                f"{accepted} sends to {who} were accepted but nothing reached "
                f"{sinks_named(ctx)} within {ctx.config.mail_wait:.0f} s: the app sent {who} "
                "nothing (an unregistered recipient answered like a registered one?); not "
                "reported"
            )
            return CheckResult(RULE.id, op, False, summary, evidence(exchanges))
        if len(arrived) < min(3, ctx.config.otp_sends):
            summary = (
                f"{accepted} sends to {who} were accepted but only {len(arrived)} message(s) "
                f"reached {sinks_named(ctx, arrived)} within {ctx.config.mail_wait:.0f} s of "
                "the last: the app limits what it sends without saying so (not reported)"
            )
            return CheckResult(RULE.id, op, False, summary, evidence(exchanges), "silent limit")
        summary = (
            f"proven: {accepted} sends to {who} in {elapsed:.1f} s were accepted with no 429, "
            f"challenge or Retry-After, and {messages(arrived)} reached "
            f"{sinks_named(ctx, arrived)}: one script can make the app send about "
            f"{per_hour(len(arrived), elapsed):,} an hour to one recipient"
        )
        return CheckResult(RULE.id, op, True, summary, evidence(exchanges))
