"""api.account-enumeration: a known account and made-up identifiers get different answers
from a lookup, a password reset or a code send (compared as in :mod:`._compare`)."""

from __future__ import annotations

from perisai.api_audit.checks._common import OWASP_AUTH, REPEAT
from perisai.api_audit.checks._compare import compare_accounts
from perisai.api_audit.context import AuditContext, account_kind, mask_value
from perisai.api_audit.interface import (
    Check,
    CheckResult,
    CheckSkipped,
    FieldKind,
    Operation,
    Param,
    Role,
)
from perisai.findings import Rule, Severity

RULE = Rule(
    id="api.account-enumeration",
    name="Account existence can be enumerated",
    description="The endpoint answers differently for a registered identifier than for an "
    "unregistered one: a script can test a list of phone numbers, e-mails or IDs and learn who "
    "uses the app (targeting for phishing and SIM-swap).",
    remediation="Give one answer, same status, body shape and timing, whether or not the account "
    "exists (e.g. 202 'if an account matches, its owner is notified'); send the result over the "
    "account's own channel; rate-limit lookups per IP and per identifier.",
    default_severity=Severity.MEDIUM,
    references=(OWASP_AUTH,),
    verify=(
        "# the same request twice: once naming your own registered account, once an unknown one",
        REPEAT.replace("-s -o /dev/null -w '%{http_code}\\n'", "-si"),
        "# a different status or body between the two shows the flaw",
    ),
    fix=(
        "# one answer whether or not the account exists: same status, body and timing",
        '# e.g. 202 {"status": "if an account matches, its owner has been notified"}',
        "# tell the result over the account's own channel; limit lookups per IP and identifier",
    ),
)


class AccountEnumeration(Check):
    rule = RULE
    roles = (Role.ACCOUNT_LOOKUP, Role.PASSWORD_RESET, Role.OTP_SEND)

    def planned_requests(self, op: Operation, ctx: AuditContext) -> int:
        return 4

    def describe(self, op: Operation, ctx: AuditContext) -> str:
        if not ctx.config.known_account:
            return "skipped: needs --known-account"
        return "2 asks for the known account, 2 for random identifiers; compare the answers"

    async def run(self, op: Operation, ctx: AuditContext) -> CheckResult | CheckSkipped:
        known = ctx.config.known_account
        if not known:
            return CheckSkipped(RULE.id, op, "give --known-account (a registered test account)")
        field = identifier_field(op, known)
        if field is None:
            kind = account_kind(known).value
            return CheckSkipped(RULE.id, op, f"no {kind} or account field for the known account")
        compared = await compare_accounts(op, ctx, field.name, known, account_kind(known))
        if isinstance(compared, str):
            return CheckSkipped(RULE.id, op, compared)
        return compared.verdict(
            RULE.id,
            op,
            "the known account and made-up identifiers got the same answer",
            f"the known account {mask_value(known)} and made-up identifiers are told apart",
        )


def identifier_field(op: Operation, known: str) -> Param | None:
    """The field that names an account: one of the known account's kind, else a username or
    identity field (which takes any identifier)."""
    fields = op.fields_of(account_kind(known)) or op.fields_of(FieldKind.USERNAME)
    return fields[0] if fields else None
