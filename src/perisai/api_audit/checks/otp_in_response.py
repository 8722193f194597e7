"""api.otp-in-response: the one-time code comes back in the send endpoint's answer."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from perisai.api_audit.checks._common import (
    OWASP_API6,
    OWASP_AUTH,
    REPEAT,
    no_recipient,
    recipient,
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
    Param,
    Role,
)
from perisai.api_audit.roles import field_kind
from perisai.findings import Rule, Severity

RULE = Rule(
    id="api.otp-in-response",
    name="One-time code returned in the API response",
    description="The send endpoint returns the code it just texted (in the body or a header): "
    "anyone can verify any number without receiving the SMS, so the OTP proves nothing.",
    remediation="Never return the code, or anything derived from it, to the caller; keep it "
    "server-side (hashed, with an expiry) and send it only over the SMS/e-mail channel; remove "
    "debug echo fields before release and test for them in CI.",
    default_severity=Severity.HIGH,
    references=(OWASP_API6, OWASP_AUTH),
    verify=(
        REPEAT.replace("-s -o /dev/null -w '%{http_code}\\n'", "-si"),
        "# the code texted to your number appears in the answer's body or headers",
    ),
    fix=(
        '# answer a send with no code and nothing derived from it: {"status": "sent"}',
        "# keep the code server-side, hashed, with an expiry; remove debug echo fields",
    ),
)

_CODE_VALUE = re.compile(r"^\d{4,8}$")
_CODE_IN_TEXT = re.compile(
    r"(?:otp|tac|pin|code|passcode)\D{0,20}?(?<!\d)(\d{4,8})(?!\d)", re.IGNORECASE
)


def find_codes(exchange: Exchange) -> list[tuple[str, str]]:
    """``(where, code)`` pairs: code-named JSON fields or headers holding 4-8 digits."""
    found: list[tuple[str, str]] = []
    try:
        document: Any = json.loads(exchange.text)
    except ValueError:
        document = None
    if document is not None:
        _walk(document, "", found)
    elif match := _CODE_IN_TEXT.search(exchange.text):
        found.append(("body text", match[1]))
    for name, value in exchange.headers:
        if field_kind(Param(name, "header")) is FieldKind.CODE and _CODE_VALUE.match(value.strip()):
            found.append((f"header {name}", value.strip()))
    return found


def _walk(node: Any, where: str, found: list[tuple[str, str]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                text = str(value).strip()
                if (
                    _CODE_VALUE.match(text)
                    and field_kind(Param(str(key), "body")) is FieldKind.CODE
                ):
                    found.append((f"field '{path}'", text))
                elif isinstance(value, str) and (match := _CODE_IN_TEXT.search(value)):
                    found.append((f"field '{path}' text", match[1]))
            else:
                _walk(value, path, found)
    elif isinstance(node, list):
        for index, item in enumerate(node[:50]):
            _walk(item, f"{where}[{index}]", found)


class OtpInResponse(Check):
    rule = RULE
    roles = (Role.OTP_SEND, Role.PASSWORD_RESET)

    def planned_requests(self, op: Operation, ctx: AuditContext) -> int:
        return 1

    def describe(self, op: Operation, ctx: AuditContext) -> str:
        return f"1 send to the sink {mask_value(ctx.config.sink_phone)}; read the answer for a code"

    async def run(self, op: Operation, ctx: AuditContext) -> CheckResult | CheckSkipped:
        target = recipient(op, ctx)
        if target is None:
            return CheckSkipped(RULE.id, op, no_recipient(op, ctx))
        asked = time.monotonic()
        try:
            exchange = await ctx.send(op, {target[0]: target[1]})
            exchange = await ctx.confirm_sent(op, target[1], asked, exchange)
        except BudgetExhausted:
            return CheckSkipped(RULE.id, op, "no request left in the budget")
        if exchange.outcome is not Outcome.ACCEPTED:
            return CheckSkipped(
                RULE.id, op, f"no code was sent, so none could leak ({exchange.line})"
            )
        codes = find_codes(exchange)
        if not codes:
            return CheckResult(
                RULE.id, op, False, "no code in the answer's body or headers", (exchange.line,)
            )
        for _, code in codes:
            ctx.remember_secret(code)
        where, code = codes[0]
        summary = (
            f"the answer carries the {len(code)}-digit code in {where} "
            f"({code[0]}{'*' * (len(code) - 1)}): the SMS is not needed to verify the number"
        )
        return CheckResult(
            RULE.id,
            op,
            True,
            summary,
            (ctx.mask(exchange.line),),
            entities={"OTP_CODE": len(codes)},
        )
