"""SARIF 2.1.0 for GitHub code scanning and other SARIF consumers.

One severity mapping for every rule: critical/high are errors, medium a warning, the rest notes;
``security-severity`` lets GitHub rank them the same way.
"""

from __future__ import annotations

import json
from typing import Any

from perisai import __version__
from perisai.findings import Finding, Rule, ScanDiff, ScanReport, Severity, sort_findings
from perisai.probes.common import entity_summary
from perisai.report.interface import Reporter

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/perisai/perisai"

SEVERITY_TO_SARIF: dict[Severity, tuple[str, str]] = {
    Severity.CRITICAL: ("error", "9.5"),
    Severity.HIGH: ("error", "8.0"),
    Severity.MEDIUM: ("warning", "5.5"),
    Severity.LOW: ("note", "3.0"),
    Severity.INFO: ("note", "0.0"),
}


class SarifReporter(Reporter):
    def render(self, report: ScanReport, diff: ScanDiff | None = None) -> str:
        findings = sort_findings(list(diff.new) if diff is not None else report.findings)
        rules = _rules_for(findings, report.rules)
        index = {rule.id: i for i, rule in enumerate(rules)}
        document = {
            "$schema": SARIF_SCHEMA,
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {
                        "driver": {
                            "name": "perisai",
                            "version": __version__,
                            "semanticVersion": __version__,
                            "informationUri": INFORMATION_URI,
                            "rules": [_rule(rule) for rule in rules],
                        }
                    },
                    "invocations": [
                        {
                            "executionSuccessful": True,
                            "startTimeUtc": report.started,
                            "endTimeUtc": report.finished,
                        }
                    ],
                    "results": [_result(f, index[f.rule]) for f in findings],
                }
            ],
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _rules_for(findings: list[Finding], known: dict[str, Rule]) -> list[Rule]:
    rules: dict[str, Rule] = {}
    for finding in findings:
        if finding.rule in rules:
            continue
        rules[finding.rule] = known.get(finding.rule) or Rule(
            id=finding.rule,
            name=finding.rule.replace(".", "-"),
            description=finding.title,
            remediation=finding.remediation or "See the finding's evidence.",
            default_severity=finding.severity,
        )
    return sorted(rules.values(), key=lambda rule: rule.id)


def _rule(rule: Rule) -> dict[str, Any]:
    level, security_severity = SEVERITY_TO_SARIF[rule.default_severity]
    references = "".join(f"\n- {ref}" for ref in rule.references)
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.description.split(";")[0].split(". ")[0]},
        "fullDescription": {"text": rule.description},
        "help": {
            "text": f"{rule.remediation}{references}",
            "markdown": f"**Fix:** {rule.remediation}{references}",
        },
        "defaultConfiguration": {"level": level},
        "properties": {
            "security-severity": security_severity,
            "tags": ["security", rule.id.split(".", 1)[0]],
        },
    }


def _result(finding: Finding, rule_index: int) -> dict[str, Any]:
    level, security_severity = SEVERITY_TO_SARIF[finding.severity]
    facts = [f"auth: {finding.auth.value}"]
    if finding.data.entities:
        facts.append(f"personal data: {entity_summary(finding.data.entities)}")
    if finding.data.records_estimated is not None:
        facts.append(f"records estimated: {finding.data.records_estimated}")
    if finding.ransom_note:
        facts.append("ransom note found")
    return {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": level,
        "message": {"text": f"{finding.title} ({'; '.join(facts)})"},
        "locations": [
            {"physicalLocation": {"artifactLocation": {"uri": finding.target.uri(finding.object)}}}
        ],
        "partialFingerprints": {"perisaiFindingId/v1": finding.id},
        "properties": {
            "severity": finding.severity.value,
            "security-severity": security_severity,
            "auth": finding.auth.value,
            "entities": dict(finding.data.entities),
            "ransom_note": finding.ransom_note,
            "evidence": [e.text for e in finding.evidence],
        },
    }
