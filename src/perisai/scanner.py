"""The scan flow: discover open ports → recognise each service by its answer → probe it.

Everything is bounded: discovery by ``concurrency`` and ``timeout``, each fingerprint by
``timeout``, each probe by ``probe_deadline``. A probe that fails or runs out of time still
yields a finding that says so, and the findings of every other service are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from perisai import __version__
from perisai.assets import PortSeen, group_assets, with_assets
from perisai.evidence import safe_findings
from perisai.findings import Auth, Evidence, Finding, Rule, ScanReport, Severity, Target
from perisai.probes import Probe, ProbeSkipped, ScanConfig, probe_classes
from perisai.probes.common import exchange, first_line
from perisai.probes.interface import Fingerprint
from perisai.progress import NoProgress, Progress
from perisai.targets import TargetSpec

BANNER_BYTES = 128
PROBE_CONCURRENCY = 16  # services probed at once: each holds a few connections to its target

RULE_UNIDENTIFIED = Rule(
    id="service.unidentified",
    name="UnidentifiedService",
    description="An open port whose service no perisai probe recognised.",
    remediation="Check what listens on this port; close it if nothing should.",
    default_severity=Severity.INFO,
)
RULE_INCOMPLETE = Rule(
    id="scan.incomplete",
    name="ProbeIncomplete",
    description="A recognised service could not be probed to the end (deadline, error or a "
    "hostile answer); what it holds is unknown.",
    remediation="Re-run with a longer --timeout, or inspect the service by hand.",
    default_severity=Severity.INFO,
)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


Examined = tuple[list[Finding], PortSeen]  # what examining one open endpoint found


class Scanner:
    """Runs one scan; build one per scan (it holds the probes, configured once)."""

    def __init__(
        self,
        config: ScanConfig | None = None,
        probes: Sequence[Probe] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.config = config or ScanConfig()
        self.probes = (
            list(probes) if probes is not None else [cls(self.config) for cls in probe_classes()]
        )
        self.progress = progress or NoProgress()

    @property
    def default_ports(self) -> tuple[int, ...]:
        return tuple(sorted({port for probe in self.probes for port in probe.default_ports}))

    async def scan(
        self, targets: Sequence[TargetSpec], ports: Sequence[int] | None = None
    ) -> ScanReport:
        started = now()
        port_list = tuple(ports) if ports else self.default_ports
        total = planned(targets, port_list)
        self.progress.phase("discover", total)
        open_endpoints = await self.discover(endpoints(targets, port_list))
        self.progress.phase("probe", len(open_endpoints))
        semaphore = asyncio.Semaphore(PROBE_CONCURRENCY)
        results = await asyncio.gather(
            *(self._examine(endpoint, semaphore) for endpoint in open_endpoints)
        )
        return self.report(targets, port_list, total, results, started)

    def report(
        self,
        targets: Sequence[TargetSpec],
        port_list: tuple[int, ...],
        checked: int,
        results: Sequence[Examined],
        started: str,
    ) -> ScanReport:
        """The report of ``results`` (one per open endpoint, in :meth:`discover`'s order): the
        one assembly a local scan and a scan on a cluster share, so their reports agree."""
        # every string a server said is masked and escaped here, once, for every report
        # format and store alike
        findings = safe_findings((f for group, _ in results for f in group), self.config.regions)
        findings = with_assets(findings, group_assets(seen for _, seen in results))
        rules = {rule.id: rule for probe in self.probes for rule in probe.report_rules()}
        rules.update({r.id: r for r in (RULE_UNIDENTIFIED, RULE_INCOMPLETE)})
        notes = [f"{checked} address:port pairs checked, {len(results)} open"]
        return ScanReport(
            version=__version__,
            started=started,
            finished=now(),
            targets=tuple(t.text for t in targets),
            ports=_port_spec(_scanned_ports(targets, port_list)),
            findings=findings,
            rules={
                rule_id: rule
                for rule_id, rule in rules.items()
                if any(f.rule == rule_id for f in findings)
            },
            notes=notes,
        )

    async def discover(self, endpoints: Iterator[Endpoint]) -> list[Endpoint]:
        """The open ones of ``endpoints``, sorted: each TCP-connected, at most
        ``concurrency`` attempts in flight."""
        found: list[Endpoint] = []

        async def worker() -> None:
            for endpoint in endpoints:  # a shared iterator: each endpoint is taken once
                if await self._is_open(endpoint):
                    found.append(endpoint)
                self.progress.advance()

        await asyncio.gather(*(worker() for _ in range(max(1, self.config.concurrency))))
        return sorted(found, key=lambda e: (e.host, e.port))

    async def _is_open(self, endpoint: Endpoint) -> bool:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(endpoint.host, endpoint.port), self.config.timeout
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        return True

    async def _examine(self, endpoint: Endpoint, semaphore: asyncio.Semaphore) -> Examined:
        async with semaphore:
            try:
                return await self.examine(endpoint)
            finally:
                self.progress.advance()

    async def examine(self, endpoint: Endpoint) -> Examined:
        """The port's findings (not yet masked: :meth:`report` does that), and what its
        server said about itself (to group its ports); bounded by ``probe_deadline``."""
        started = time.monotonic()  # the probe deadline counts the fingerprints' time too
        identified = await self._identify(endpoint)
        if identified is None:
            unknown = PortSeen(endpoint.host, endpoint.port, "unknown")
            return [await self._unidentified(endpoint)], unknown
        probe, fingerprint = identified
        findings, identity = await self._probe(endpoint, probe, fingerprint, started)
        seen = PortSeen(endpoint.host, endpoint.port, probe.service, identity)
        return findings, seen

    async def _probe(
        self, endpoint: Endpoint, probe: Probe, fingerprint: Fingerprint, started: float
    ) -> tuple[list[Finding], str]:
        """Run ``probe`` within what is left of its deadline; a failure is a finding too."""
        identity = fingerprint.identity
        target = Target(endpoint.host, endpoint.port, probe.service)
        remaining = max(1.0, self.config.probe_deadline - (time.monotonic() - started))
        try:
            result = await asyncio.wait_for(
                probe.probe(endpoint.host, endpoint.port, fingerprint), remaining
            )
        except TimeoutError:
            why = (
                f"probe did not finish within {remaining:.0f}s; "
                "stopped (raise --timeout to wait longer)"
            )
            return [incomplete(target, why)], identity
        except Exception as error:  # a hostile or broken server must not end the scan
            why = f"probe stopped: {type(error).__name__}: {first_line(error)}"
            return [incomplete(target, why)], identity
        identity = result.identity or identity
        if isinstance(result, ProbeSkipped):
            return [*result.findings, incomplete(target, result.reason)], identity
        return list(result.findings), identity

    async def _identify(self, endpoint: Endpoint) -> tuple[Probe, Fingerprint] | None:
        """Ask every probe at once whether it knows the answer; the port's usual owner wins.

        Each probe asks on its own connection, so a silent port costs one fingerprint timeout,
        not one per probe; a probe that fails or times out just does not claim the port.
        """
        ordered = sorted(self.probes, key=lambda p: endpoint.port not in p.default_ports)
        answers = await asyncio.gather(*(self._fingerprint(probe, endpoint) for probe in ordered))
        for probe, fingerprint in zip(ordered, answers, strict=True):
            if fingerprint is not None:
                return probe, fingerprint
        return None

    async def _fingerprint(self, probe: Probe, endpoint: Endpoint) -> Fingerprint | None:
        try:
            return await asyncio.wait_for(
                probe.fingerprint(endpoint.host, endpoint.port), self.config.timeout * 2
            )
        except (OSError, TimeoutError, EOFError, ValueError):
            return None
        except Exception:  # a probe's bug on a strange answer must not end the scan
            return None

    async def _unidentified(self, endpoint: Endpoint) -> Finding:
        wait = min(self.config.timeout, 1.5)
        banner = await _banner(endpoint, wait)
        http = "" if banner else await _http_answer(endpoint, wait)
        if banner:
            said = f"banner: {banner!r}"
        elif http:
            said = f"answers HTTP ({http}), but as none of the data stores perisai probes"
        else:
            said = "no banner, and no answer any probe recognised"
        return Finding(
            rule=RULE_UNIDENTIFIED.id,
            severity=RULE_UNIDENTIFIED.default_severity,
            title=f"Open port {endpoint.port}: service not recognised",
            target=Target(endpoint.host, endpoint.port, "unknown"),
            auth=Auth.UNKNOWN,
            evidence=(
                Evidence(said),
                Evidence(f"each fingerprint waited at most {self.config.timeout * 2:.1f}s"),
            ),
            remediation=RULE_UNIDENTIFIED.remediation,
        )


def planned(targets: Sequence[TargetSpec], ports: tuple[int, ...]) -> int:
    """How many address:port pairs discovery will try (arithmetic: nothing is listed)."""
    return sum(t.network.num_addresses * (1 if t.port else len(ports)) for t in targets)


def endpoints(targets: Sequence[TargetSpec], ports: tuple[int, ...]) -> Iterator[Endpoint]:
    """Every address:port pair of ``targets``, lazily: a /8 is never held in memory."""
    for target in targets:
        for host in target.addresses():
            for port in (target.port,) if target.port else ports:
                yield Endpoint(host, port)


async def _banner(endpoint: Endpoint, timeout: float) -> str:
    """What the service says first, if anything (printable, bounded)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(endpoint.host, endpoint.port), timeout
        )
    except (OSError, TimeoutError):
        return ""
    try:
        data = await asyncio.wait_for(reader.read(BANNER_BYTES), timeout)
    except (OSError, TimeoutError):
        data = b""
    finally:
        writer.close()
    return "".join(ch if ch.isprintable() else "." for ch in data.decode("latin-1")).strip()


async def _http_answer(endpoint: Endpoint, timeout: float) -> str:
    """``GET /: HTTP/1.1 404 Not Found; server: uvicorn`` when the port speaks HTTP, else "".

    The same harmless request the HTTP probes' fingerprints sent: said again to describe the
    service by what it answers, rather than as one that answered nothing."""
    request = f"GET / HTTP/1.0\r\nHost: {endpoint.host}\r\n\r\n".encode()
    try:
        answer = await exchange(endpoint.host, endpoint.port, request, timeout, BANNER_BYTES * 4)
    except (OSError, TimeoutError):
        return ""
    if not answer.startswith(b"HTTP/"):
        return ""
    status = answer.split(b"\r\n", 1)[0].decode("latin-1")[:80]
    server = _SERVER.search(answer)
    named = f"; server: {server.group(1).decode('latin-1')}" if server else ""
    return f"GET /: {status}{named}"


_SERVER = re.compile(rb"(?im)^server:[ \t]*([^\r\n]{1,80})")


def incomplete(target: Target, reason: str) -> Finding:
    """A ``scan.incomplete`` finding: what the target holds is unknown, and why."""
    return Finding(
        rule=RULE_INCOMPLETE.id,
        severity=RULE_INCOMPLETE.default_severity,
        title=f"{target.service} at {target.host}:{target.port} could not be fully probed",
        target=target,
        auth=Auth.UNKNOWN,
        evidence=(Evidence(reason),),
        remediation=RULE_INCOMPLETE.remediation,
    )


def now() -> str:
    """The time a report shows: UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _scanned_ports(targets: Sequence[TargetSpec], ports: tuple[int, ...]) -> tuple[int, ...]:
    """The ports this scan checked: a target's own port (``host:6379``), and the port list for
    the targets that name none. What the report's header shows, not the default list."""
    named = {target.port for target in targets if target.port}
    if any(not target.port for target in targets):
        named.update(ports)
    return tuple(sorted(named))


def _port_spec(ports: tuple[int, ...]) -> str:
    """``5432,6379,15000-15100``: the compact, normalised form used for scope keys."""
    parts: list[str] = []
    start = previous = None
    for port in ports:
        if previous is not None and port == previous + 1:
            previous = port
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = port
    if start is not None:
        parts.append(str(start) if start == previous else f"{start}-{previous}")
    return ",".join(parts)
