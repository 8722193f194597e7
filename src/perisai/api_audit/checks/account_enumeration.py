"""api.account-enumeration: a known account and random identifiers get different answers.

Answers are compared by status and by the JSON leaves that stay the same between two asks of
the same kind (volatile values such as ticket ids drop out); timing is supporting evidence only.
Random phone numbers come from a reserved test range, never real subscribers.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from perisai.api_audit.checks._common import OWASP_AUTH, REPEAT
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

_NATIONAL_ID = re.compile(r"^\d{6}-?\d{2}-?\d{4}$")


def account_kind(value: str) -> FieldKind:
    if "@" in value:
        return FieldKind.EMAIL
    if _NATIONAL_ID.match(value):
        return FieldKind.NATIONAL_ID
    if re.fullmatch(r"\+?\d{8,15}", value.replace(" ", "").replace("-", "")):
        return FieldKind.PHONE
    return FieldKind.USERNAME


def random_like(value: str, kind: FieldKind) -> str:
    if kind is FieldKind.PHONE:
        return reserved_test_number()
    if kind is FieldKind.EMAIL:
        return f"perisai-{secrets.token_hex(4)}@example.invalid"
    if kind is FieldKind.NATIONAL_ID:
        return "".join(str(secrets.randbelow(10)) if c.isdigit() else c for c in value)
    return f"perisai{secrets.token_hex(4)}"


def _flat(text: str, identifier: str) -> dict[str, str]:
    text = text.replace(identifier, "<id>")
    try:
        document: Any = json.loads(text)
    except ValueError:
        return {"$text": re.sub(r"\d+", "0", text)}
    out: dict[str, str] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            out[path + "{}"] = ",".join(sorted(str(k) for k in node))
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            out[path + "[]"] = str(min(len(node), 2))
            for item in node[:3]:
                walk(item, path + "[]")
        else:
            out[path] = json.dumps(node)

    walk(document, "")
    return out


class AccountEnumeration(Check):
    rule = RULE
    roles = (Role.ACCOUNT_LOOKUP, Role.PASSWORD_RESET)

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
        kind = account_kind(known)
        fields = op.fields_of(kind)
        if not fields:
            return CheckSkipped(RULE.id, op, f"no {kind.value} field for the known account")
        ctx.remember_secret(known)
        name = fields[0].name
        asks: list[tuple[str, str]] = []  # (identifier, "known"/"random"), interleaved
        for _ in range(2):
            asks.append((known, "known"))
            other = random_like(known, kind)
            ctx.remember_secret(other)
            asks.append((other, "random"))
        answers: list[tuple[str, str, Exchange]] = []
        try:
            for identifier, label in asks:
                answers.append((identifier, label, await ctx.send(op, {name: identifier})))
        except BudgetExhausted:
            return CheckSkipped(RULE.id, op, "not enough requests left in the budget (needs 4)")
        flats = [(_flat(e.text, ident), label, e) for ident, label, e in answers]
        known_flats = [f for f, label, _ in flats if label == "known"]
        random_flats = [f for f, label, _ in flats if label == "random"]
        volatile = {
            key
            for group in (known_flats, random_flats)
            for key in set(group[0]) | set(group[1])
            if group[0].get(key) != group[1].get(key)
        }

        def signature(
            flat: dict[str, str], exchange: Exchange
        ) -> tuple[int, frozenset[tuple[str, str]]]:
            return exchange.status, frozenset((k, v) for k, v in flat.items() if k not in volatile)

        sigs = [(signature(f, e), label, e) for f, label, e in flats]
        known_sigs = {s for s, label, _ in sigs if label == "known"}
        random_sigs = {s for s, label, _ in sigs if label == "random"}
        lines = tuple(e.line for _, _, e in answers)
        timing = _timing(answers)
        if known_sigs == random_sigs:
            return CheckResult(
                RULE.id,
                op,
                False,
                "the known account and random identifiers got the same answer "
                f"(uniform answers){timing}",
                lines,
                "uniform answers",
            )
        if len(known_sigs) != 1 or len(random_sigs) != 1:
            return CheckSkipped(
                RULE.id,
                op,
                "answers vary between asks for the same account; cannot tell them apart reliably",
            )
        ((k_status, k_leaves),) = known_sigs
        ((r_status, r_leaves),) = random_sigs
        differences = []
        if k_status != r_status:
            differences.append(f"status {k_status} vs {r_status}")
        only_known = sorted(k for k, _ in k_leaves - r_leaves)
        if only_known:
            differences.append(
                "body differs at " + ", ".join(f"'{k.lstrip('.')}'" for k in only_known[:4])
            )
        summary = (
            f"the known account {mask_value(known)} and random identifiers are told apart: "
            f"{'; '.join(differences) or 'body shape differs'}{timing}"
        )
        return CheckResult(RULE.id, op, True, summary, lines)


def _timing(answers: list[tuple[str, str, Exchange]]) -> str:
    known = [e.elapsed for _, label, e in answers if label == "known"]
    other = [e.elapsed for _, label, e in answers if label == "random"]
    if not known or not other:
        return ""
    return (
        f" (timing, supporting only: known {sum(known) / len(known) * 1000:.0f} ms, "
        f"random {sum(other) / len(other) * 1000:.0f} ms)"
    )
