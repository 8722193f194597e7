"""api.mail-relay: caller-chosen text reaches a caller-chosen address, proven end to end.

perisai puts a unique marker into every free-text field, names ``--sink-email`` as the
recipient, and waits for the marker to arrive at its own SMTP sink (``--smtp-sink``), which the
target's test environment relays its mail to.
"""

from __future__ import annotations

import secrets
import time

from perisai.api_audit.checks._common import OWASP_API6, REPEAT
from perisai.api_audit.context import AuditContext, BudgetExhausted, mask_value
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
    id="api.mail-relay",
    name="Endpoint relays caller-written mail to any address",
    description="A caller chooses both the recipient and the text of an e-mail the app sends "
    "under its own name: a phishing and spam relay with the app's domain reputation.",
    remediation="Send only templated mail, with no caller-written text, and only to addresses "
    "verified for the signed-in account; keep free text inside the app (the ticket), not in the "
    "mail; limit mails per recipient and per account; require a challenge for anonymous forms.",
    default_severity=Severity.HIGH,
    references=(OWASP_API6,),
    verify=(
        "# with the staging app's mail relay pointed at a mailbox you read:",
        REPEAT + "   # your own address, a unique word in the text fields",
        "# the unique word arriving in the mail shows the flaw",
    ),
    fix=(
        "# templated mail only: no caller-written text in what the app sends",
        "# only to addresses verified for the signed-in account; keep free text in the ticket",
        "# limit mails per recipient and account; a challenge before anonymous forms",
    ),
)


class MailRelay(Check):
    rule = RULE
    roles = (Role.MAIL_SEND,)

    def planned_requests(self, op: Operation, ctx: AuditContext) -> int:
        return 1

    def describe(self, op: Operation, ctx: AuditContext) -> str:
        if ctx.config.smtp_sink is None:
            return "skipped: needs --smtp-sink"
        host, port = ctx.config.smtp_sink
        return (
            f"1 request with a unique marker to {mask_value(ctx.config.sink_email)}; "
            f"wait {ctx.config.mail_wait:.0f} s for it at the SMTP sink {host}:{port}"
        )

    async def run(self, op: Operation, ctx: AuditContext) -> CheckResult | CheckSkipped:
        if ctx.sink is None or ctx.config.smtp_sink is None:
            return CheckSkipped(
                RULE.id, op, "give --smtp-sink HOST:PORT to prove delivery end to end"
            )
        emails = op.fields_of(FieldKind.EMAIL)
        texts = op.fields_of(FieldKind.TEXT)
        if not emails or not texts:
            return CheckSkipped(RULE.id, op, "no recipient address and free-text fields")
        marker = f"perisai-relay-{secrets.token_hex(8)}"
        overrides: dict[str, object] = {emails[0].name: ctx.config.sink_email}
        for field in texts:
            overrides[field.name] = f"Caller-written text {marker}"
        ctx.remember_secret(ctx.config.sink_email)
        started = time.monotonic()
        try:
            exchange = await ctx.send(op, overrides)
        except BudgetExhausted:
            return CheckSkipped(RULE.id, op, "no request left in the budget")
        host, port = ctx.config.smtp_sink
        if exchange.outcome.is_defence:
            defence = defence_text(
                exchange.outcome, exchange.status, exchange.header("retry-after"), 1
            )
            return CheckResult(RULE.id, op, False, f"refused: {defence}", (exchange.line,), defence)
        if exchange.outcome is not Outcome.ACCEPTED:
            reason = f"recipient or caller refused (HTTP {exchange.status})"
            return CheckResult(RULE.id, op, False, f"refused: {reason}", (exchange.line,), reason)
        mail = await ctx.sink.wait_for(marker, ctx.config.mail_wait)
        if mail is None:
            other = [m for m in ctx.sink.mails if ctx.config.sink_email in m.rcpt_tos]
            why = (
                "a mail arrived without the caller's text (templated)"
                if other
                else f"nothing arrived at the SMTP sink {host}:{port} within "
                f"{ctx.config.mail_wait:.0f} s (is the target's test relay pointed at it?)"
            )
            return CheckResult(
                RULE.id,
                op,
                False,
                f"accepted, but {why}",
                (exchange.line,),
                "templated mail" if other else None,
            )
        where = "subject and body" if marker in mail.subject else "body"
        summary = (
            f"caller-written text with marker {marker} arrived at perisai's SMTP sink "
            f"{host}:{port} "
            f"for {mask_value(ctx.config.sink_email)} in {mail.received_at - started:.1f} s "
            f"(in the {where}, from {mask_value(mail.mail_from)}): anyone can mail anyone, "
            "any text, under the app's name"
        )
        return CheckResult(
            RULE.id, op, True, summary, (exchange.line,), entities={"MESSAGE_BODY": 1}
        )
