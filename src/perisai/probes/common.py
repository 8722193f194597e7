"""Pieces every probe needs the same way: raw fingerprint I/O, time budgets, evidence lines,
findings."""

from __future__ import annotations

import asyncio
import contextlib
import time

from perisai.compromise import (
    RULE_PLANTED_PAYLOAD,
    RULE_RANSOM_NOTE,
    WIPED_EVIDENCE,
    PlantedPayload,
    RansomNote,
    looks_wiped,
)
from perisai.findings import (
    Auth,
    DataProfile,
    Evidence,
    Finding,
    Target,
    entity_summary,
    exposure_severity,
)
from perisai.probes.interface import Probe, ScanConfig

MAX_EXAMPLES_IN_EVIDENCE = 6
LARGEST_REPLY_BYTES = 1 << 20  # one reply (a value, a page) over this is refused, not read
CONNECTION_BUDGET_BYTES = 32 << 20  # all a probe reads on one connection


class Deadline:
    """One probe's time budget: every request gets ``min(its timeout, what is left)``."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + max(0.0, seconds)

    @classmethod
    def for_probe(cls, config: ScanConfig) -> Deadline:
        """A little less than ``probe_deadline``: the scanner counts the fingerprint time too and
        cancels a probe at the deadline, losing its findings; a probe that stops itself first
        can still report what it proved (as a ``ProbeSkipped``)."""
        return cls(max(1.0, config.probe_deadline - 2 * config.timeout - 1.0))

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def cap(self, timeout: float) -> float:
        """``timeout``, or less when the budget has less left."""
        return min(timeout, self.remaining())


class ReplyTooLarge(Exception):
    """A server announced or sent more than perisai reads. Not an OSError on purpose: client
    libraries then drop the connection and pass this on unchanged, message and all."""


def bound_stream(
    reader: asyncio.StreamReader,
    largest: int = LARGEST_REPLY_BYTES,
    budget: int = CONNECTION_BUDGET_BYTES,
) -> None:
    """Make a client library's ``reader`` refuse replies over ``largest`` bytes and stop after
    ``budget`` bytes in all, so a hostile server's "1 GB follows" costs nothing to believe.

    Wraps ``readexactly``, ``readline`` and ``read`` in place (libraries keep the object).
    """
    spent = 0
    read_exactly, read_line, read_some = reader.readexactly, reader.readline, reader.read

    def spend(data: bytes) -> bytes:
        nonlocal spent
        spent += len(data)
        if spent > budget:
            raise ReplyTooLarge(f"the server sent over {budget >> 20} MiB on one connection")
        return data

    async def readexactly(n: int) -> bytes:
        if n > largest:
            raise ReplyTooLarge(f"the server announced a {n:,}-byte reply (cap {largest:,})")
        return spend(await read_exactly(n))

    async def readline() -> bytes:
        return spend(await read_line())

    async def read(n: int = -1) -> bytes:
        return spend(await read_some(largest if n < 0 or n > largest else n))

    reader.readexactly = readexactly  # type: ignore[method-assign]
    reader.readline = readline  # type: ignore[method-assign]
    reader.read = read  # type: ignore[method-assign]


async def exchange(host: str, port: int, request: bytes, timeout: float, limit: int = 512) -> bytes:
    """Send ``request`` on a fresh connection and return at most ``limit`` bytes of the answer.

    Bounded in bytes and seconds, so a silent or hostile server costs one timeout, nothing more.
    Raises OSError / TimeoutError when the service does not answer.
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        if request:
            writer.write(request)
            await asyncio.wait_for(writer.drain(), timeout)
        return await asyncio.wait_for(reader.read(limit), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none), at most 200 chars."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def profile_evidence(profile: DataProfile) -> list[Evidence]:
    """Evidence lines for what a sample held: counts, then a few masked examples."""
    lines = [
        Evidence(
            f"sampled {profile.records_sampled} records, {profile.records_with_personal_data} with "
            f"personal data: {entity_summary(profile.entities)}"
        )
    ]
    messages = profile.entities.get("MESSAGE_BODY", 0)
    if messages:
        # the breach perisai was built for: an "end-to-end encrypted" app logging messages
        lines.append(
            Evidence(
                f"stores message content in clear: {messages} message bodies in the "
                f"{profile.records_sampled} sampled records (whatever the app says about "
                "encryption, these are readable here)"
            )
        )
    lines.extend(Evidence(f"e.g. {ex}") for ex in profile.spread_examples(MAX_EXAMPLES_IN_EVIDENCE))
    return lines


def exposure_finding(
    *,
    rule_id: str,
    title: str,
    target: Target,
    auth: Auth,
    profile: DataProfile,
    notes: list[RansomNote],
    evidence: list[Evidence],
    remediation: str,
) -> Finding:
    """The finding for a readable service; severity follows DESIGN.md from what was seen."""
    ransom = bool(notes)
    # a floor says nothing about a wipe: the uncounted part may hold everything
    if not profile.records_at_least and looks_wiped(profile.records_estimated, len(notes)):
        evidence = [*evidence, Evidence(WIPED_EVIDENCE)]
    return Finding(
        rule=rule_id,
        severity=exposure_severity(auth, profile, ransom),
        title=title,
        target=target,
        auth=auth,
        data=profile,
        ransom_note=ransom,
        evidence=tuple(evidence),
        remediation=remediation,
    )


def readable_findings(
    probe: Probe,
    *,
    target: Target,
    auth: Auth,
    profile: DataProfile,
    notes: list[RansomNote],
    evidence: list[Evidence],
    titles: tuple[str, str],
) -> tuple[Finding, ...]:
    """What a probe reports about a service it could read: its ``<service>.unauthenticated``
    finding (titled ``titles[0]``) when ``auth`` is none, else ``<service>.default-credentials``
    (``titles[1]``), then one ransom-note finding per note."""
    readable_without_login = auth is Auth.NONE
    rule = probe.rule(
        f"{probe.service}.unauthenticated"
        if readable_without_login
        else f"{probe.service}.default-credentials"
    )
    exposure = exposure_finding(
        rule_id=rule.id,
        title=titles[0] if readable_without_login else titles[1],
        target=target,
        auth=auth,
        profile=profile,
        notes=notes,
        evidence=evidence,
        remediation=rule.remediation,
    )
    return (exposure, *ransom_findings(target, auth, notes))


def ransom_findings(target: Target, auth: Auth, notes: list[RansomNote]) -> list[Finding]:
    """One ``compromise.ransom-note`` finding per note, with its location and masked text."""
    findings = []
    for note in notes:
        evidence = [Evidence(f"note at {note.location}: {note.preview}")]
        evidence.extend(Evidence(f"payment address: {a}") for a in note.payment_addresses)
        findings.append(
            Finding(
                rule=RULE_RANSOM_NOTE.id,
                severity=RULE_RANSOM_NOTE.default_severity,
                title=f"Ransom note left in {target.service} at {note.location}",
                target=target,
                auth=auth,
                ransom_note=True,
                evidence=tuple(evidence),
                remediation=RULE_RANSOM_NOTE.remediation,
                object=note.location,
            )
        )
    return findings


def payload_findings(target: Target, auth: Auth, payloads: list[PlantedPayload]) -> list[Finding]:
    """One ``compromise.planted-payload`` finding per cron job or SSH key found as a value."""
    return [
        Finding(
            rule=RULE_PLANTED_PAYLOAD.id,
            severity=RULE_PLANTED_PAYLOAD.default_severity,
            title=f"{payload.kind.capitalize()} planted in {target.service} at {payload.location}",
            target=target,
            auth=auth,
            evidence=(Evidence(f"{payload.kind} at {payload.location}: {payload.preview}"),),
            remediation=RULE_PLANTED_PAYLOAD.remediation,
            object=payload.location,
        )
        for payload in payloads
    ]


def auth_required_finding(probe: Probe, target: Target, title: str, *evidence: Evidence) -> Finding:
    """The info finding for a service that let no one in (``<service>.auth-required``)."""
    rule = probe.rule(f"{probe.service}.auth-required")
    return Finding(
        rule=rule.id,
        severity=rule.default_severity,
        title=title,
        target=target,
        auth=Auth.REQUIRED,
        evidence=evidence,
        remediation=rule.remediation,
    )


def human_bytes(size: int | None) -> str:
    """``208 kB``-style sizes for evidence lines (``? B`` when unknown)."""
    if size is None:
        return "? B"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
