"""The watch's Prometheus metrics: what is open now, and whether the watch itself is healthy.

Served with ``prometheus_client`` on ``--metrics-port`` (loopback unless told otherwise: the
figures describe where an estate is weak). Gauges are set from each finished round; counters
count alerts sent and failed since the watch started. README "Watch your estate" has an
example alert rule.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server

from perisai.findings import Finding, Severity, asset_severities
from perisai.report.history import exposed_services
from perisai.watch.changes import ChangeKind

__all__ = ["WatchMetrics"]


class WatchMetrics:
    """One registry per watch, so tests and several watches in a process never share it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.open_stores = Gauge(
            "perisai_open_stores",
            "Servers readable without auth or with default credentials, by worst severity",
            ["severity"],
            registry=self.registry,
        )
        self.compromised = Gauge(
            "perisai_compromise_findings",
            "Ransom notes and planted payloads seen in the last round",
            registry=self.registry,
        )
        self.round_started = Gauge(
            "perisai_round_started_timestamp_seconds",
            "When the last finished round started (Unix time)",
            registry=self.registry,
        )
        self.round_finished = Gauge(
            "perisai_round_finished_timestamp_seconds",
            "When the last round finished (Unix time)",
            registry=self.registry,
        )
        self.round_duration = Gauge(
            "perisai_round_duration_seconds",
            "How long the last round took",
            registry=self.registry,
        )
        self.rounds = Counter(
            "perisai_rounds", "Rounds finished since the watch started", registry=self.registry
        )
        self.alerts_sent = Counter(
            "perisai_alerts_sent", "Alerts delivered", ["kind"], registry=self.registry
        )
        self.alerts_failed = Counter(
            "perisai_alerts_failed",
            "Alert deliveries that failed every attempt (kept for the next round)",
            registry=self.registry,
        )
        for severity in Severity:
            self.open_stores.labels(severity=severity.value).set(0)
        for kind in ChangeKind:
            self.alerts_sent.labels(kind=kind.value)

    def round(self, findings: Iterable[Finding], started: float, finished: float) -> None:
        """Set the gauges from one finished round's findings (open servers by their worst
        severity, as every report counts them)."""
        findings = list(findings)
        open_servers = set(exposed_services(findings))
        worst = asset_severities(f for f in findings if f.server.id in open_servers)
        by_severity = Tally(worst.values())
        for severity in Severity:
            self.open_stores.labels(severity=severity.value).set(by_severity[severity])
        self.compromised.set(sum(1 for f in findings if f.is_compromise))
        self.round_started.set(started)
        self.round_finished.set(finished)
        self.round_duration.set(max(finished - started, 0.0))
        self.rounds.inc()

    def sent(self, kind: ChangeKind, count: int = 1) -> None:
        self.alerts_sent.labels(kind=kind.value).inc(count)

    def failed(self, count: int = 1) -> None:
        self.alerts_failed.inc(count)

    def text(self) -> str:
        """The exposition text, as the endpoint serves it."""
        return generate_latest(self.registry).decode()

    def serve(self, port: int, host: str = "127.0.0.1") -> WSGIServer:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; the server (to shut down)."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server
