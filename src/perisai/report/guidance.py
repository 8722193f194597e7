"""What a report reader needs beside a finding: how to check it, how to fix it, where to read.

The commands and config lines come from the finding's rule, which carries its probe's
(``Probe.verify`` and ``Probe.fix``) or, for an API check, its own; a rule shared by every
service (a ransom note) borrows those of the service's own rules in the report, and a report
stored before rules carried them borrows the installed probe's. A finding with none gets
generic advice; nothing here ever comes from the scanned server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from perisai.findings import Finding, Rule

GENERIC_VERIFY = ("nc -vz {host} {port}",)
GENERIC_CONFIG = (
    "# require authentication, listen on a private interface only,",
    "# and block the port from the internet at the firewall",
)

# OWASP API Security Top 10 (2023) ids, by the last part of a rule id.
_OWASP_API: dict[str, tuple[str, ...]] = {
    "unauthenticated": ("OWASP API8:2023 Security Misconfiguration",),
    "default-credentials": (
        "OWASP API2:2023 Broken Authentication",
        "OWASP API8:2023 Security Misconfiguration",
    ),
    "otp-bombing": (
        "OWASP API4:2023 Unrestricted Resource Consumption",
        "OWASP API6:2023 Unrestricted Access to Sensitive Business Flows",
    ),
    "sms-pumping": (
        "OWASP API4:2023 Unrestricted Resource Consumption",
        "OWASP API6:2023 Unrestricted Access to Sensitive Business Flows",
    ),
    "otp-brute-force": ("OWASP API2:2023 Broken Authentication",),
    "mail-relay": ("OWASP API6:2023 Unrestricted Access to Sensitive Business Flows",),
    # audit-api's rules
    "otp-send-unlimited": (
        "OWASP API4:2023 Unrestricted Resource Consumption",
        "OWASP API6:2023 Unrestricted Access to Sensitive Business Flows",
    ),
    "otp-send-any-recipient": ("OWASP API6:2023 Unrestricted Access to Sensitive Business Flows",),
    "otp-verify-bruteforce": ("OWASP API2:2023 Broken Authentication",),
    "otp-in-response": ("OWASP API2:2023 Broken Authentication",),
    "account-enumeration": ("OWASP API2:2023 Broken Authentication",),
    "login-enumeration": ("OWASP API2:2023 Broken Authentication",),
    "no-challenge": ("OWASP API6:2023 Unrestricted Access to Sensitive Business Flows",),
}
_CWE_BY_SUFFIX: dict[str, str] = {
    "unauthenticated": "CWE-306",
    "default-credentials": "CWE-1392",
    "ransom-note": "CWE-306",
    "planted-payload": "CWE-506",
    "otp-bombing": "CWE-799",
    "sms-pumping": "CWE-799",
    "otp-brute-force": "CWE-307",
    "mail-relay": "CWE-799",
    "otp-send-unlimited": "CWE-799",
    "otp-send-any-recipient": "CWE-799",
    "otp-verify-bruteforce": "CWE-307",
    "otp-in-response": "CWE-200",
    "account-enumeration": "CWE-204",
    "login-enumeration": "CWE-204",
    "no-challenge": "CWE-799",
}
_CWE_URL = re.compile(r"cwe\.mitre\.org/data/definitions/(\d+)\.html")
_SHELL_SAFE = re.compile(r"[A-Za-z0-9_.:/\-]+")


@dataclass(frozen=True)
class Reference:
    """A label (``CWE-306``) and, where there is one, where to read it."""

    label: str
    url: str | None = None


def _shell(value: str) -> str:
    return value if _SHELL_SAFE.fullmatch(value) else "'" + value.replace("'", "'\\''") + "'"


def _fill(templates: tuple[str, ...], finding: Finding) -> list[str]:
    """A rule's templates for this finding: {method} and {url} of an API operation, {host},
    {port}; ``str.replace`` rather than ``format`` so JSON braces in a template stay as written."""
    method, path = finding.operation or ("GET", finding.object)
    values = {
        "{method}": method,
        "{url}": _shell(finding.target.uri(path)),
        "{host}": _shell(finding.target.host),
        "{port}": str(finding.target.port),
    }
    out = []
    for template in templates:
        for key, value in values.items():
            template = template.replace(key, value)
        out.append(template)
    return out


def _guiding_rule(finding: Finding, rules: Mapping[str, Rule]) -> Rule | None:
    """The rule whose commands fit this finding: its own, else (a rule every service shares)
    the first rule of the finding's service in the report that has some."""
    rule = rules.get(finding.rule)
    if rule is not None and (rule.verify or rule.fix):
        return rule
    own = f"{finding.target.service}."
    found = next((r for r in rules.values() if r.id.startswith(own) and r.verify), None)
    return found or _installed_guidance().get(finding.target.service)


@cache
def _installed_guidance() -> dict[str, Rule]:
    """Per service, a rule carrying the installed probe's verify commands and fix: for reports
    whose rules carry none (stored before probes declared them, or built by hand)."""
    from perisai.probes import probe_classes  # here: reporting needs no probe unless asked

    return {
        probe.service: rule
        for probe in probe_classes()
        for rule in probe.report_rules()[:1]
        if rule.verify or rule.fix
    }


def verify_commands(finding: Finding, rules: Mapping[str, Rule]) -> list[str]:
    """How to see it yourself: read-only commands (an API check's requests), filled in."""
    rule = _guiding_rule(finding, rules)
    return _fill(rule.verify if rule and rule.verify else GENERIC_VERIFY, finding)


def config_lines(finding: Finding, rules: Mapping[str, Rule]) -> list[str]:
    """Concrete changes that close it: the service's configuration, or an API check's fix."""
    rule = _guiding_rule(finding, rules)
    return _fill(rule.fix, finding) if rule and rule.fix else list(GENERIC_CONFIG)


def references(finding: Finding, rule: Rule | None) -> list[Reference]:
    """CWE ids (from the rule's declared references or its kind) and OWASP API Top 10 ids."""
    found: list[Reference] = []
    seen: set[str] = set()

    def add(label: str, url: str | None) -> None:
        if label not in seen:
            seen.add(label)
            found.append(Reference(label, url))

    for ref in rule.references if rule else ():
        match = _CWE_URL.search(ref)
        add(f"CWE-{match.group(1)}" if match else ref, ref)
    suffix = finding.rule.rsplit(".", 1)[-1]
    cwe = _CWE_BY_SUFFIX.get(suffix)
    if cwe:
        number = cwe.split("-", 1)[1]
        add(cwe, f"https://cwe.mitre.org/data/definitions/{number}.html")
    for owasp in _OWASP_API.get(suffix, ()):
        add(owasp, "https://owasp.org/API-Security/editions/2023/en/0x11-t10/")
    return found
