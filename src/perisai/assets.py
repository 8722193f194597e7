"""Which open ports are one server: findings are grouped into assets by what servers say.

ClickHouse answers on an HTTP and a native port, RabbitMQ on AMQP and its management API; a
scan that reaches both reaches one server, and a security lead counts servers. The scanner
records, per port, what the server said about itself that tells it from any other server of
its kind on that host (:attr:`perisai.probes.interface.Fingerprint.identity`); ports of one
host and service with the same identity become one :class:`~perisai.findings.Asset`. A port
whose server said nothing of the kind stays an asset of its own: two servers are never merged
on a guess (same version, same product).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from perisai.findings import Asset, Finding, Severity, Target

__all__ = ["PortSeen", "asset_note", "group_assets", "with_assets"]


@dataclass(frozen=True)
class PortSeen:
    """One probed port and what its server said about itself ("" when nothing useful)."""

    host: str
    port: int
    service: str
    identity: str = ""


def group_assets(seen: Iterable[PortSeen]) -> dict[tuple[str, int], Asset]:
    """The asset of each (host, port): shared by the ports whose server gave one identity."""
    seen = list(seen)
    ports: dict[tuple[str, str, str], set[int]] = {}
    for item in seen:
        if item.identity:
            ports.setdefault((item.host, item.service, item.identity), set()).add(item.port)
    assets: dict[tuple[str, int], Asset] = {}
    for item in seen:
        if item.identity:
            key = (item.host, item.service, item.identity)
            assets[item.host, item.port] = Asset.named(*key, ports[key])
        else:
            assets[item.host, item.port] = Asset.of_port(Target(item.host, item.port, item.service))
    return assets


def with_assets(
    findings: Iterable[Finding], assets: Mapping[tuple[str, int], Asset]
) -> list[Finding]:
    """``findings``, each naming the asset of its port (unchanged where none is known)."""
    return [
        dataclasses.replace(finding, asset=assets.get((finding.target.host, finding.target.port)))
        for finding in findings
    ]


def asset_note(finding: Finding, severities: Mapping[str, Severity]) -> str:
    """``one server with port 9000 (worst finding: critical)`` for a finding whose server
    answered on other ports too; "" for a server known by one port."""
    asset = finding.server
    others = [port for port in asset.ports if port != finding.target.port]
    if not others:
        return ""
    worst = severities.get(asset.id, finding.severity)
    named = ", ".join(str(port) for port in others)
    return f"one server with port{'s' if len(others) > 1 else ''} {named} (worst finding: {worst})"
