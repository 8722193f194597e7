"""api.login-enumeration: a wrong password for the known account and for a made-up account get
different answers from the login operation.

The password is perisai's own wrong one, never a spec's example (which may be a seeded
account's real password); two wrong tries on the tester's own account at most.
"""

from __future__ import annotations

from perisai.api_audit.checks._common import OWASP_AUTH, REPEAT
from perisai.api_audit.checks._compare import compare_accounts
from perisai.api_audit.checks.account_enumeration import identifier_field
from perisai.api_audit.context import NOT_A_PASSWORD, AuditContext, account_kind, mask_value
from perisai.api_audit.interface import (
    Check,
    CheckResult,
    CheckSkipped,
    FieldKind,
    Operation,
    Role,
)
from perisai.findings import Rule, Severity

RULE = Rule(
    id="api.login-enumeration",
    name="Login tells registered accounts apart",
    description="A wrong password is answered differently for a registered account than for an "
    "unknown one ('invalid password' vs 'no such user'): a script learns who has an account, "
    "then aims password guessing, phishing and SIM-swap at them.",
    remediation="Answer every failed login the same way, same status, body and timing (e.g. "
    "400 'invalid credentials'), whether or not the account exists; hash a dummy password for "
    "unknown accounts; limit attempts per account and per IP.",
    default_severity=Severity.MEDIUM,
    references=(OWASP_AUTH,),
    verify=(
        "# your own account with a wrong password, then an unknown account:",
        REPEAT.replace("-s -o /dev/null -w '%{http_code}\\n'", "-si"),
        "# a different status or message between the two shows the flaw",
    ),
    fix=(
        "# one failure answer: same status, body and timing for unknown user and wrong password",
        "# hash a dummy password for unknown accounts so timing matches",
        "# limit failed logins per account (e.g. 10 a day) and per IP",
    ),
)


class LoginEnumeration(Check):
    rule = RULE
    roles = (Role.LOGIN,)

    def planned_requests(self, op: Operation, ctx: AuditContext) -> int:
        return 4

    def describe(self, op: Operation, ctx: AuditContext) -> str:
        if not ctx.config.known_account:
            return "skipped: needs --known-account"
        return "2 wrong passwords for the known account, 2 for made-up ones; compare the answers"

    async def run(self, op: Operation, ctx: AuditContext) -> CheckResult | CheckSkipped:
        known = ctx.config.known_account
        if not known:
            return CheckSkipped(RULE.id, op, "give --known-account (an account you own)")
        passwords = op.fields_of(FieldKind.PASSWORD)
        field = identifier_field(op, known)
        if not passwords or field is None:
            return CheckSkipped(RULE.id, op, "no account and password fields in the spec")
        compared = await compare_accounts(
            op, ctx, field.name, known, account_kind(known), {passwords[0].name: NOT_A_PASSWORD}
        )
        if isinstance(compared, str):
            return CheckSkipped(RULE.id, op, compared)
        return compared.verdict(
            RULE.id,
            op,
            "a wrong password got the same answer for the known account and made-up ones",
            f"a wrong password for the known account {mask_value(known)} and for made-up "
            "accounts are told apart",
        )
