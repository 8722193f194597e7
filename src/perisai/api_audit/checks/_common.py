"""Rules' shared references and small helpers for the checks."""

from __future__ import annotations

from perisai.api_audit.context import AuditContext
from perisai.api_audit.interface import Exchange, FieldKind, Operation, Role

OWASP_API4 = (
    "https://owasp.org/API-Security/editions/2023/en/0xa4-unrestricted-resource-consumption/"
)
OWASP_API6 = "https://owasp.org/API-Security/editions/2023/en/0xa6-unrestricted-access-to-sensitive-business-flows/"
OWASP_SMS_PUMPING = (
    "https://cheatsheetseries.owasp.org/cheatsheets/Forgot_Password_Cheat_Sheet.html"
)
NIST_63B = "https://pages.nist.gov/800-63-3/sp800-63b.html#throttle"
OWASP_AUTH = "https://cheatsheetseries.owasp.org/cheatsheets/Authentication_Cheat_Sheet.html"

MAX_EVIDENCE = 6

# The request a reader repeats to see a flaw: the evidence's masked request, with their own
# test recipient. Templates for Rule.verify ({method} and {url} are filled in by reporters).
REPEAT = (
    "curl -s -o /dev/null -w '%{http_code}\\n' -X {method} {url} "
    "-H 'Content-Type: application/json' -d '<the body in the evidence, your own test recipient>'"
)
GUARD_FIX = (
    "# or put perisai guard in front of the send: one decision per send, before the provider",
    "#   perisai guard serve --config guard.yaml   then   POST /v1/decisions {recipient, ip}",
)


def evidence(exchanges: list[Exchange]) -> tuple[str, ...]:
    """The first requests and the last one, masked (a long run is summarised, not listed)."""
    lines = [e.line for e in exchanges]
    if len(lines) <= MAX_EVIDENCE:
        return tuple(lines)
    head = lines[: MAX_EVIDENCE - 2]
    return (*head, f"… {len(lines) - len(head) - 1} more like these …", lines[-1])


def first_send_op(ctx: AuditContext) -> Operation | None:
    for classified in ctx.operations:
        if classified.role is Role.OTP_SEND:
            return classified.operation
    return None


def recipient(op: Operation, ctx: AuditContext) -> tuple[str, str] | None:
    """The recipient field and the sink value to put in it (phone first, then e-mail)."""
    phones = op.fields_of(FieldKind.PHONE)
    if phones:
        ctx.remember_secret(ctx.config.sink_phone)
        return phones[0].name, ctx.config.sink_phone
    emails = op.fields_of(FieldKind.EMAIL)
    if emails:
        ctx.remember_secret(ctx.config.sink_email)
        return emails[0].name, ctx.config.sink_email
    return None


def per_hour(count: int, seconds: float) -> int:
    return int(count / max(seconds, 1e-3) * 3600)
