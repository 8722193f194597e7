"""Tell two kinds of answers apart: the known account's and a made-up identifier's.

Answers are compared by status and by the JSON leaves that stay the same between two asks of
the same kind (volatile values such as ticket ids drop out); timing is supporting evidence only.
Made-up identifiers name nobody who could be messaged (:func:`random_like`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from perisai.api_audit.context import AuditContext, BudgetExhausted, random_like
from perisai.api_audit.interface import CheckResult, Exchange, FieldKind, Operation

__all__ = ["Comparison", "compare_accounts"]

Signature = tuple[int, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Comparison:
    """Two asks each for the known account and for made-up ones, and what told them apart
    (empty when the answers were the same)."""

    differences: tuple[str, ...]
    lines: tuple[str, ...]
    timing: str

    @property
    def told_apart(self) -> bool:
        return bool(self.differences)

    def verdict(self, rule: str, op: Operation, same: str, apart: str) -> CheckResult:
        """The check's result: ``apart`` with the differences when the answers told the
        accounts apart, else not vulnerable, ``same`` (uniform answers); timing appended."""
        if not self.told_apart:
            summary = f"{same} (uniform answers){self.timing}"
            return CheckResult(rule, op, False, summary, self.lines, "uniform answers")
        summary = f"{apart}: {'; '.join(self.differences)}{self.timing}"
        return CheckResult(rule, op, True, summary, self.lines)


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


async def compare_accounts(
    op: Operation,
    ctx: AuditContext,
    field: str,
    known: str,
    kind: FieldKind,
    fixed: dict[str, Any] | None = None,
) -> Comparison | str:
    """Ask ``op`` twice with ``field`` = the known account and twice with made-up ones of the
    same kind, interleaved, the other fields ``fixed``; a :class:`Comparison`, or why none
    could be made (a one-line reason)."""
    ctx.remember_secret(known)
    asks: list[tuple[str, str]] = []
    for _ in range(2):
        asks.append((known, "known"))
        other = random_like(known, kind)
        ctx.remember_secret(other)
        asks.append((other, "random"))
    answers: list[tuple[str, str, Exchange]] = []
    try:
        for identifier, label in asks:
            exchange = await ctx.send(op, {**(fixed or {}), field: identifier})
            answers.append((identifier, label, exchange))
    except BudgetExhausted:
        if ctx.allowance.halted:
            return "a rate limit (HTTP 429) answered before the answers could be compared"
        return "not enough requests left in the budget (needs 4)"
    if any(e.outcome.is_defence for _, _, e in answers):
        first = next(e for _, _, e in answers if e.outcome.is_defence)
        return f"a {first.outcome.value} answered before the answers could be compared"
    statuses = {
        label: {e.status for _, lab, e in answers if lab == label} for label in ("known", "random")
    }
    if statuses["random"] == {422} and statuses["known"] != {422}:
        return (
            "the API refused the made-up identifier as malformed (HTTP 422), not as unknown; "
            "cannot compare"
        )
    flats = [(_flat(e.text, ident), label, e) for ident, label, e in answers]
    known_flats = [f for f, label, _ in flats if label == "known"]
    random_flats = [f for f, label, _ in flats if label == "random"]
    volatile = {
        key
        for group in (known_flats, random_flats)
        for key in set(group[0]) | set(group[1])
        if group[0].get(key) != group[1].get(key)
    }

    def signature(flat: dict[str, str], exchange: Exchange) -> Signature:
        return exchange.status, frozenset((k, v) for k, v in flat.items() if k not in volatile)

    sigs = [(signature(f, e), label) for f, label, e in flats]
    known_sigs = {s for s, label in sigs if label == "known"}
    random_sigs = {s for s, label in sigs if label == "random"}
    lines = tuple(e.line for _, _, e in answers)
    timing = _timing(answers)
    if known_sigs == random_sigs:
        return Comparison((), lines, timing)
    if len(known_sigs) != 1 or len(random_sigs) != 1:
        return "answers vary between asks for the same account; cannot tell them apart reliably"
    ((k_status, k_leaves),) = known_sigs
    ((r_status, r_leaves),) = random_sigs
    differences = []
    if k_status != r_status:
        differences.append(f"status {k_status} vs {r_status}")
    changed = sorted({k for k, _ in k_leaves ^ r_leaves})
    if changed:
        differences.append(
            "body differs at " + ", ".join(f"'{k.lstrip('.') or '$'}'" for k in changed[:4])
        )
    return Comparison(tuple(differences) or ("body shape differs",), lines, timing)


def _timing(answers: list[tuple[str, str, Exchange]]) -> str:
    known = [e.elapsed for _, label, e in answers if label == "known"]
    other = [e.elapsed for _, label, e in answers if label == "random"]
    if not known or not other:
        return ""
    return (
        f" (timing, supporting only: known {sum(known) / len(known) * 1000:.0f} ms, "
        f"made-up {sum(other) / len(other) * 1000:.0f} ms)"
    )
