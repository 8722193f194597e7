"""Rules' shared references and small helpers for the checks."""

from __future__ import annotations

from perisai.api_audit.context import AuditContext, Delivery
from perisai.api_audit.interface import Exchange, FieldKind, Operation

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


def recipient(op: Operation, ctx: AuditContext) -> tuple[str, str] | None:
    """The field naming who gets the message, and the value for it: the sink phone, else the
    sink address, else (a flow keyed by username or ID) the known account, whose contact the
    tester registered as the sink."""
    phones = op.fields_of(FieldKind.PHONE)
    if phones:
        ctx.remember_secret(ctx.config.sink_phone)
        return phones[0].name, ctx.config.sink_phone
    emails = op.fields_of(FieldKind.EMAIL)
    if emails:
        ctx.remember_secret(ctx.config.sink_email)
        return emails[0].name, ctx.config.sink_email
    known = ctx.config.known_account
    accounts = op.fields_of(FieldKind.USERNAME) or op.fields_of(FieldKind.NATIONAL_ID)
    if accounts and known:
        ctx.remember_secret(known)
        return accounts[0].name, known
    return None


def no_recipient(op: Operation, ctx: AuditContext) -> str:
    """Why :func:`recipient` found none, for a skip line."""
    if op.fields_of(FieldKind.USERNAME) or op.fields_of(FieldKind.NATIONAL_ID):
        return "the request names an account: give --known-account (an account you own)"
    return "no recipient field (phone, e-mail or account) in the spec"


def messages(deliveries: list[Delivery], count: int | None = None) -> str:
    """``3 SMS`` / ``1 e-mail`` / ``2 messages`` for what arrived (or ``count`` of them)."""
    channels = {d.channel for d in deliveries}
    n = len(deliveries) if count is None else count
    if channels == {"SMS"}:
        return f"{n} SMS"
    if channels == {"e-mail"}:
        return f"{n} e-mail{'' if n == 1 else 's'}"
    return f"{n} message{'' if n == 1 else 's'}"


def sinks_named(ctx: AuditContext, arrived: list[Delivery] | None = None) -> str:
    """The sinks that run (or, given what ``arrived``, the ones it arrived at), for a
    summary: ``the SMS sink 127.0.0.1:2526``."""
    channels = {d.channel for d in arrived} if arrived else {"SMS", "e-mail"}
    names = []
    if "SMS" in channels and ctx.config.sms_sink is not None and ctx.sms_sink is not None:
        names.append("the SMS sink {}:{}".format(*ctx.config.sms_sink))
    if "e-mail" in channels and ctx.config.smtp_sink is not None and ctx.sink is not None:
        names.append("the SMTP sink {}:{}".format(*ctx.config.smtp_sink))
    return " and ".join(names) or "no sink"


def per_hour(count: int, seconds: float) -> int:
    return int(count / max(seconds, 1e-3) * 3600)
