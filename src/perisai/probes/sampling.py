"""The part of a probe that is not protocol code, owned here once: classify what was sampled,
spot ransom notes and planted payloads, merge the containers' profiles, write the standard
evidence, and turn it all into the standard findings.

A probe logs in and reads in its own protocol; it hands each container's sampled records
(a table, collection, queue, key space, measurement) to a :class:`Sampler` and says what it
read. The sampler decides what that means, the same way for every service::

    sampler = Sampler(self, target, login.auth)
    sampler.sample("shop.public.users", records, estimated=rows, head="~120 rows, 8 kB")
    sampler.spot_note("shop.public.README", value)
    sampler.read("SELECT … LIMIT 20")
    return sampler.result(evidence, titles=("… without a password", "… default password"))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from perisai.classify import profile_records
from perisai.compromise import (
    PlantedPayload,
    RansomNote,
    detect_planted_payload,
    detect_ransom_note,
    is_note_name,
)
from perisai.findings import Auth, DataProfile, Evidence, Finding, Target
from perisai.probes.common import (
    exposure_finding,
    payload_findings,
    profile_evidence,
    ransom_findings,
    readable_findings,
)
from perisai.probes.http import json_strings
from perisai.probes.interface import Probe, ProbeResult, ProbeSkipped

MAX_CONTAINERS_IN_EVIDENCE = 8
NOTE_MIN_CHARS = 80  # a value shorter than this is no demand, unless its container is named so


@dataclass
class Container:
    """One sampled container and what its sample held."""

    label: str
    profile: DataProfile
    head: str = ""  # what the listing said of it, e.g. "~120 rows, 8 kB"
    unread: str = ""  # why its records were not read ("" when they were)

    @property
    def summary(self) -> str:
        """``label: head; sampled N records, …`` — the container's evidence line."""
        said = self.unread or profile_evidence(self.profile)[0].text
        return f"{self.label}: {self.head}; {said}" if self.head else f"{self.label}: {said}"

    @property
    def found(self) -> int:
        return sum(self.profile.entities.values())


class Sampler:
    """Collects what one probe read of one service and makes the standard findings of it."""

    def __init__(self, probe: Probe, target: Target, auth: Auth) -> None:
        self.probe = probe
        self.target = target
        self.auth = auth
        self.containers: list[Container] = []
        self.notes: list[RansomNote] = []
        self.payloads: list[PlantedPayload] = []
        self.reads: list[str] = []
        self.reads_heading = "reads"
        self.stopped = ""  # why the probe stopped before it had read all it meant to

    # --- what the probe hands over ------------------------------------------------------------

    def sample(
        self,
        label: str,
        records: list[dict[str, Any]],
        *,
        estimated: int | None = None,
        head: str = "",
    ) -> Container:
        """Classify one container's sampled records; ``estimated`` is how many it holds."""
        profile = profile_records(records, self.probe.config.regions)
        profile.records_estimated = estimated
        container = Container(label, profile, head)
        self.containers.append(container)
        return container

    def listed(
        self,
        label: str,
        *,
        estimated: int | None = None,
        head: str = "",
        unread: str = "not sampled",
    ) -> Container:
        """A container the probe saw but did not read (``unread`` says why): its records
        count, what they hold is unknown."""
        container = Container(label, DataProfile(records_estimated=estimated), head, unread)
        self.containers.append(container)
        return container

    def spot_note(self, location: str, text: str) -> bool:
        """Whether ``text`` (found at ``location``) is a ransom note; kept when it is. Text
        shorter than :data:`NOTE_MIN_CHARS` counts only under a note-like name."""
        if len(text) < NOTE_MIN_CHARS and not is_note_name(location):
            return False
        if any(note.location == location for note in self.notes):
            return False  # one note per place, however many copies the bot left there
        note = detect_ransom_note(location, text)
        if note is not None:
            self.notes.append(note)
        return note is not None

    def spot_notes(self, location: str, records: Iterable[Mapping[str, Any]]) -> None:
        """Look for a ransom note in the records' text, nested documents too: one note per
        container (a bot leaves the same note in many rows; one finding says it)."""
        for record in records:
            for text in json_strings(record):
                if self.spot_note(location, text):
                    return

    def spot_payload(self, location: str, text: str) -> bool:
        """Whether ``text`` carries a planted cron job or SSH key; kept when it does."""
        payload = detect_planted_payload(location, text)
        if payload is not None:
            self.payloads.append(payload)
        return payload is not None

    def read(self, what: str) -> None:
        """One kind of request the probe sent, for the evidence's list of reads."""
        self.reads.append(what)

    def stop(self, reason: str) -> None:
        """The probe stops early; the findings so far are still reported, with ``reason``."""
        self.stopped = self.stopped or reason

    # --- what the sampler makes of it ---------------------------------------------------------

    def total(self) -> DataProfile:
        """Every container's profile merged; the estimate sums those that are known (unknown
        when none is)."""
        profile = DataProfile(records_estimated=None)
        for container in self.containers:
            profile.merge(container.profile)
        return profile

    def container_lines(self, limit: int = MAX_CONTAINERS_IN_EVIDENCE) -> list[Evidence]:
        """The ``limit`` containers that held the most personal data, one line each."""
        ranked = sorted(
            self.containers,
            key=lambda c: (-c.found, -(c.profile.records_estimated or 0), c.label),
        )
        return [Evidence(container.summary) for container in ranked[:limit]]

    def findings(
        self,
        evidence: Iterable[Evidence],
        titles: tuple[str, str],
        profile: DataProfile | None = None,
        *,
        containers: bool = True,
        rule_id: str | None = None,
    ) -> tuple[Finding, ...]:
        """The service's exposure finding (``titles``: without login, with a default one;
        or ``rule_id``, titled ``titles[0]``, where the login's kind has a rule of its own),
        its ransom-note and planted-payload findings.

        Evidence, in order: the probe's own lines; what the whole sample held; one line per
        container that held the most (``containers``); a few masked examples; the reads.
        """
        profile = self.total() if profile is None else profile
        lines = [*evidence]
        counts, *examples = profile_evidence(profile)
        lines.append(counts)
        if containers and self.containers:
            lines.extend(self.container_lines())
        lines.extend(examples)
        if self.reads:
            lines.append(Evidence(f"{self.reads_heading}: " + "; ".join(self.reads)))
        if rule_id is None:
            exposure = readable_findings(
                self.probe,
                target=self.target,
                auth=self.auth,
                profile=profile,
                notes=self.notes,
                evidence=lines,
                titles=titles,
            )
        else:
            exposure = (
                exposure_finding(
                    rule_id=rule_id,
                    title=titles[0],
                    target=self.target,
                    auth=self.auth,
                    profile=profile,
                    notes=self.notes,
                    evidence=lines,
                    remediation=self.probe.rule(rule_id).remediation,
                ),
                *ransom_findings(self.target, self.auth, self.notes),
            )
        return (*exposure, *payload_findings(self.target, self.auth, self.payloads))

    def result(
        self,
        evidence: Iterable[Evidence],
        titles: tuple[str, str],
        profile: DataProfile | None = None,
        *,
        containers: bool = True,
        identity: str = "",
    ) -> ProbeResult | ProbeSkipped:
        """:meth:`findings`, as a result, or as a skip saying why the probe stopped early;
        ``identity`` is what the server said about itself (see ``Fingerprint.identity``)."""
        found = self.findings(evidence, titles, profile, containers=containers)
        if self.stopped:
            return ProbeSkipped(self.stopped, found, identity=identity)
        return ProbeResult(found, identity=identity)
