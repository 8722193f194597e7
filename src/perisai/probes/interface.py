"""What every data-store probe is: a fingerprint, an auth check, a bounded read-only sample.

Adding a service is adding one module with a :class:`Probe` subclass and registering it in
the ``perisai.probes`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import ClassVar

from perisai.findings import Finding, Rule


@dataclass(frozen=True)
class ScanConfig:
    """Everything that bounds a scan: deadlines, sample sizes, byte caps, scope."""

    timeout: float = 3.0  # seconds per connection attempt and per network read
    probe_deadline: float = 60.0  # seconds for one probe of one service, all steps together
    sample: int = 20  # records sampled per database / table / keyspace
    max_value_bytes: int = 4096  # bytes read of any single value
    max_databases: int = 16  # databases / keyspaces enumerated per service
    max_tables: int = 50  # tables per database
    concurrency: int = 256  # simultaneous connections in discovery
    regions: tuple[str, ...] = ("MY",)  # phone-number regions for national formats
    try_default_credentials: bool = True
    deep: bool = False  # read message bodies where that is only safe-ish (see each probe)


class Access(Enum):
    """What a fingerprint's harmless request already showed of the service's door."""

    UNKNOWN = "unknown"  # the answer did not say
    OPEN = "open"  # it answered a request that needs a login when auth is on
    AUTH_REQUIRED = "auth required"
    REFUSED = "refused"  # it turned the client away before any login (host not allowed, ...)


@dataclass(frozen=True)
class Fingerprint:
    """A service recognised by what it answered, not by its port.

    ``detail`` is for people (it goes into evidence); the typed fields are for the probe that
    follows, so no probe parses its own words back. A probe needing more facts subclasses this.
    """

    service: str
    detail: str = ""  # e.g. "auth required", "protected mode", version if the answer held it
    access: Access = Access.UNKNOWN
    version: str = ""  # the server's version, when the answer held it
    interface: str = ""  # which of the service's interfaces answered, when it has several
    tls: bool = False  # the answer came over TLS
    related_port: int | None = None  # another port of the same server that the answer named
    # What the server says about itself that tells it from any other server of its kind on the
    # host (RabbitMQ's cluster name; the HTTP port ClickHouse's native port names): ports with
    # the same identity are one asset. Empty when it said nothing of the kind.
    identity: str = ""


@dataclass(frozen=True)
class ProbeResult:
    """What a probe proved about one service."""

    findings: tuple[Finding, ...]
    identity: str = ""  # learned while reading (after a login), as for Fingerprint.identity


@dataclass(frozen=True)
class ProbeSkipped:
    """The probe could not finish; ``reason`` says why in one line a user understands."""

    reason: str
    findings: tuple[Finding, ...] = field(default=())  # whatever was proven before it stopped
    identity: str = ""


class Probe(ABC):
    """Base class of one protocol's probe. Implementations must never write to the target."""

    service: ClassVar[str]
    default_ports: ClassVar[tuple[int, ...]]
    rules: ClassVar[tuple[Rule, ...]]
    # What a report tells the reader beside each of this probe's findings: the read-only
    # commands that show the exposure as the probe saw it, and the configuration lines that
    # close it; templates with {host} and {port}. Declared here so a new service is one module.
    verify: ClassVar[tuple[str, ...]] = ()
    fix: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ScanConfig) -> None:
        self.config = config

    @abstractmethod
    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        """Recognise the service from its answer to a harmless request; ``None`` if not ours."""

    @abstractmethod
    async def probe(
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        """Auth check, enumeration, bounded sample, classification: findings for one service;
        :class:`ProbeSkipped` with what was proven so far when it cannot finish."""

    @classmethod
    def rule(cls, rule_id: str) -> Rule:
        """The declared rule with this id (a typo fails loudly, at the first use)."""
        for rule in cls.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(f"{cls.__name__} declares no rule {rule_id!r}")

    @classmethod
    def report_rules(cls) -> tuple[Rule, ...]:
        """The rules as reports carry them: the probe's own rules with its verify commands and
        config fix, unless a rule declares its own; shared rules (``compromise.*``) as they are."""
        own = f"{cls.service}."
        return tuple(
            replace(rule, verify=rule.verify or cls.verify, fix=rule.fix or cls.fix)
            if rule.id.startswith(own)
            else rule
            for rule in cls.rules
        )

    @classmethod
    def validate(cls) -> None:
        """Check the declared metadata when the probe is loaded, not when it first reports."""
        if not getattr(cls, "service", "") or not getattr(cls, "default_ports", ()):
            raise TypeError(f"{cls.__name__} must declare service and default_ports")
        prefixes = {rule.id.split(".", 1)[0] for rule in cls.rules}
        if not cls.rules or not prefixes <= {cls.service, "compromise"}:
            raise TypeError(f"{cls.__name__} rules must be named '{cls.service}.<check>'")
