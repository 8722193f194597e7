"""perisai: find data stores anyone can read and the personal data inside them.

The library works without the CLI::

    import perisai
    report = perisai.scan(["127.0.0.1"], ports=[6379, 5432])
    for finding in report.findings:
        print(finding.severity.value, finding.title)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pathlib import Path

    from perisai.api_audit.context import AuditConfig
    from perisai.classify import Classifier as Classifier
    from perisai.findings import ScanReport
    from perisai.guard import Guard as Guard
    from perisai.probes.interface import ScanConfig
    from perisai.progress import Progress


def scan(
    targets: Sequence[str],
    ports: Sequence[int] | None = None,
    *,
    authorized: bool = False,
    config: ScanConfig | None = None,
    progress: Progress | None = None,
) -> ScanReport:
    """Scan ``targets`` (host, host:port, CIDR, @file) and return what was found.

    Raises :class:`perisai.targets.TargetError` for a bad target or one out of scope.
    """
    import asyncio

    from perisai.scanner import Scanner
    from perisai.targets import check_scope, parse_targets

    specs = parse_targets(targets)
    check_scope(specs, authorized)
    return asyncio.run(Scanner(config, progress=progress).scan(specs, ports))


def audit_api(
    spec: str, config: AuditConfig, *, flows: Path | None = None, authorized: bool = False
) -> ScanReport:
    """Prove whether the OTP, e-mail and account endpoints of the API described by ``spec``
    (an OpenAPI/Swagger file or URL) at ``config.base_url`` can be abused."""
    from perisai.api_audit.auditor import audit_api as run

    return run(spec, config, flows=flows, authorized=authorized)


def __getattr__(name: str) -> object:
    """``perisai.Classifier`` and ``perisai.Guard`` without importing them with the package
    (each compiles or loads what it needs on first use)."""
    if name == "Classifier":
        from perisai.classify import Classifier

        return Classifier
    if name == "Guard":
        from perisai.guard import Guard

        return Guard
    raise AttributeError(f"module 'perisai' has no attribute {name!r}")


__all__ = ["Classifier", "Guard", "__version__", "audit_api", "scan"]
