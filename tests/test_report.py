"""Reporters: the JSON findings contract, SARIF 2.1.0 structure, the terminal table."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from perisai.evidence import printable
from perisai.findings import (
    ENTITY_TYPES,
    DataProfile,
    Evidence,
    ScanDiff,
    ScanReport,
    Severity,
    Target,
)
from perisai.report import Reporter, ReportFormat, get_reporter
from perisai.report.sarif import SEVERITY_TO_SARIF
from tests.reports import (
    MASKED_PHONE,
    finding_of,
    redis_exposed,
    redis_secured,
    report,
    unknown_rule,
)

DATA = Path(__file__).parent / "data"
SEVERITIES = {"critical", "high", "medium", "low", "info"}
AUTHS = {"none", "default-credentials", "required", "unknown"}
FINDING_KEYS = {
    "id",
    "rule",
    "severity",
    "title",
    "target",
    "auth",
    "data",
    "ransom_note",
    "evidence",
    "remediation",
}


def _scan() -> ScanReport:
    return report(redis_exposed(), redis_secured(), unknown_rule())


def _render(fmt: ReportFormat, scan: ScanReport | None = None, diff: ScanDiff | None = None) -> Any:
    text = get_reporter(fmt).render(scan or _scan(), diff)
    return text if fmt is ReportFormat.TABLE else json.loads(text)


def _diffed() -> tuple[ScanReport, ScanDiff]:
    """Scan 4 saw the secured Redis; scan 5 sees the exposed one and the unknown rule."""
    before = report(redis_secured(), unknown_rule())
    after = report(redis_exposed(), unknown_rule())
    before.scan_id, after.scan_id = 4, 5
    return after, ScanDiff.between(after, before)


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_every_format_has_a_reporter_that_returns_text(fmt: ReportFormat) -> None:
    reporter = get_reporter(fmt, color=False)
    assert isinstance(reporter, Reporter)
    assert isinstance(reporter.render(_scan()), str)
    assert ReportFormat(fmt.value) is fmt  # the CLI parses the plain string


# --- JSON: the findings contract -----------------------------------------------------------


def test_json_follows_the_findings_contract() -> None:
    scan = _scan()
    document = _render(ReportFormat.JSON, scan)
    assert document == scan.to_dict()  # exactly the contract, nothing added
    assert document["tool"] == "perisai" and isinstance(document["version"], str)
    for key in ("started", "finished"):
        datetime.fromisoformat(document[key])
    assert len(document["findings"]) == 3
    for finding in document["findings"]:
        assert set(finding) >= FINDING_KEYS
        assert isinstance(finding["id"], str) and len(finding["id"]) == 16
        assert finding["severity"] in SEVERITIES
        assert finding["auth"] in AUTHS
        assert set(finding["target"]) == {"host", "port", "service"}
        assert isinstance(finding["target"]["host"], str)
        assert isinstance(finding["target"]["port"], int)
        assert set(finding["data"]) == {"records_estimated", "records_at_least", "entities"}
        records = finding["data"]["records_estimated"]
        assert records is None or isinstance(records, int)
        assert finding["data"]["records_at_least"] in (True, False)
        assert set(finding["asset"]) == {"id", "ports"}
        assert finding["target"]["port"] in finding["asset"]["ports"]
        assert set(finding["data"]["entities"]) <= set(ENTITY_TYPES)
        assert all(isinstance(n, int) and n > 0 for n in finding["data"]["entities"].values())
        assert isinstance(finding["ransom_note"], bool)
        assert isinstance(finding["evidence"], list)
        assert all(isinstance(line, str) for line in finding["evidence"])
        assert isinstance(finding["remediation"], str) and isinstance(finding["title"], str)
    assert [f["severity"] for f in document["findings"]] == ["critical", "medium", "info"]
    assert "diff" not in document


def test_json_is_pretty_and_keeps_non_ascii() -> None:
    scan = report(finding_of(Severity.LOW, title="Pangkalan data terdedah — ujian"))
    text = get_reporter(ReportFormat.JSON).render(scan)
    assert "— ujian" in text and "\\u2014" not in text
    assert '\n  "tool": "perisai",' in text  # indent 2


def test_json_diff_lists_new_ids_and_resolved_findings() -> None:
    after, diff = _diffed()
    document = _render(ReportFormat.JSON, after, diff)
    assert document["diff"] == {
        "previous_scan_id": 4,
        "new": [redis_exposed().id],
        "resolved": [redis_secured().to_dict()],
    }
    assert {k: v for k, v in document.items() if k != "diff"} == after.to_dict()


def test_json_diff_without_a_previous_scan() -> None:
    scan = _scan()
    document = _render(ReportFormat.JSON, scan, ScanDiff.between(scan, None))
    assert document["diff"]["previous_scan_id"] is None
    assert document["diff"]["new"] == [f["id"] for f in document["findings"]]
    assert document["diff"]["resolved"] == []


# --- SARIF ---------------------------------------------------------------------------------


def _run(sarif: dict[str, Any]) -> dict[str, Any]:
    assert sarif["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert sarif["version"] == "2.1.0"
    [run] = sarif["runs"]
    assert isinstance(run, dict)
    driver = run["tool"]["driver"]
    assert driver["name"] == "perisai" and driver["version"]
    assert driver["informationUri"] == "https://github.com/perisai/perisai"
    ids = [rule["id"] for rule in driver["rules"]]
    assert len(ids) == len(set(ids))
    for result in run["results"]:
        assert ids[result["ruleIndex"]] == result["ruleId"]
    assert set(ids) == {result["ruleId"] for result in run["results"]}
    return run


def _artifact(result: dict[str, Any]) -> str:
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert isinstance(uri, str)
    return uri


def _target(result: dict[str, Any]) -> str:
    [logical] = result["locations"][0]["logicalLocations"]
    assert logical["kind"] == "resource"
    assert isinstance(logical["fullyQualifiedName"], str)
    return logical["fullyQualifiedName"]


def test_sarif_structure() -> None:
    run = _run(_render(ReportFormat.SARIF))
    rules = {rule["id"]: rule for rule in run["tool"]["driver"]["rules"]}
    for rule in rules.values():
        assert rule["name"] and rule["shortDescription"]["text"]
        assert rule["fullDescription"]["text"]
        assert rule["help"]["text"] and rule["help"]["markdown"]
        assert isinstance(rule["properties"]["security-severity"], str)
        float(rule["properties"]["security-severity"])  # a number, as a string
        assert rule["properties"]["tags"][0] == "security"
        assert rule["defaultConfiguration"]["level"] in {"error", "warning", "note"}
    known = rules["redis.unauthenticated"]
    assert known["help"]["text"].startswith("Require authentication")
    assert known["helpUri"] == "https://cwe.mitre.org/data/definitions/306.html"
    assert known["properties"]["tags"] == ["security", "redis"]
    # The rule says its declared default (high); the result says what this store is.
    assert known["properties"]["security-severity"] == "8.0"
    assert known["defaultConfiguration"]["level"] == "error"
    synthesised = rules["example.not-declared"]
    assert synthesised["help"]["text"] == "Fix it."
    assert synthesised["shortDescription"]["text"] == "A rule no probe declares"
    assert synthesised["properties"] == {
        "security-severity": "5.5",
        "precision": "high",
        "tags": ["security", "example"],
    }
    assert "helpUri" not in synthesised

    results = {r["ruleId"]: r for r in run["results"]}
    assert {rule_id: r["level"] for rule_id, r in results.items()} == {
        "redis.unauthenticated": "error",
        "redis.auth-required": "note",
        "example.not-declared": "warning",
    }
    assert {rule_id: _target(r) for rule_id, r in results.items()} == {
        "redis.unauthenticated": "redis://127.0.0.1:6379/0",
        "redis.auth-required": "redis://127.0.0.1:6380",
        "example.not-declared": "example://[::1]:7000/db/1",
    }
    # Scheme-less on purpose: GitHub rejects an upload whose URIs' scheme is not "file".
    assert {rule_id: _artifact(r) for rule_id, r in results.items()} == {
        "redis.unauthenticated": "redis/127.0.0.1:6379/0",
        "redis.auth-required": "redis/127.0.0.1:6380",
        "example.not-declared": "example/%5B::1%5D:7000/db/1",
    }
    for result in results.values():
        assert urlsplit(_artifact(result)).scheme == ""
        assert result["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1
    exposed = results["redis.unauthenticated"]
    assert exposed["partialFingerprints"] == {"perisaiFindingId/v1": redis_exposed().id}
    assert exposed["properties"]["severity"] == "critical"
    assert exposed["properties"]["security-severity"] == "9.5"  # personal data: critical
    assert exposed["properties"]["auth"] == "none"
    assert exposed["properties"]["entities"] == {"EMAIL": 1, "PHONE": 3}
    assert exposed["properties"]["ransom_note"] is False
    text = exposed["message"]["text"]
    assert text.startswith("Redis readable without authentication at redis://127.0.0.1:6379/0")
    assert "auth: none" in text and "PHONE 3, EMAIL 1" in text and "records estimated: 120" in text
    assert "baselineState" not in exposed
    [invocation] = run["invocations"]
    assert invocation["startTimeUtc"] == "2026-11-23T01:00:00.000Z"


def test_sarif_severity_mapping_is_one_table() -> None:
    scan = report(*(finding_of(s, port=9000 + s.rank) for s in Severity))
    run = _run(_render(ReportFormat.SARIF, scan))
    expected = {
        "critical": ("error", "9.5"),
        "high": ("error", "8.0"),
        "medium": ("warning", "5.5"),
        "low": ("note", "3.0"),
        "info": ("note", "0.0"),
    }
    assert {s.value: pair for s, pair in SEVERITY_TO_SARIF.items()} == expected
    for result in run["results"]:
        level, score = expected[result["properties"]["severity"]]
        assert result["level"] == level
        assert result["properties"]["security-severity"] == score


def test_sarif_ranks_each_result_by_its_own_finding_not_by_the_worst_of_its_rule() -> None:
    """One rule, a high store and a critical one: each result is ranked as what it is, and the
    rule carries only its declared default (a high store never shows as critical)."""
    plain = redis_exposed(port=6390, phones=0)
    plain = dataclasses.replace(plain, severity=Severity.HIGH, data=DataProfile())
    run = _run(_render(ReportFormat.SARIF, report(redis_exposed(), plain)))
    by_port = {
        r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]: r for r in run["results"]
    }
    high = by_port["redis://127.0.0.1:6390/0"]["properties"]
    critical = by_port["redis://127.0.0.1:6379/0"]["properties"]
    assert (high["severity"], high["security-severity"]) == ("high", "8.0")
    assert (critical["severity"], critical["security-severity"]) == ("critical", "9.5")
    [rule] = run["tool"]["driver"]["rules"]
    assert rule["properties"]["security-severity"] == "8.0"  # RedisProbe's declared default


def test_sarif_is_valid_against_the_sarif_2_1_0_schema() -> None:
    """Every shape the reporter writes (all severities, a ransom note, an odd object name, an
    API operation, an undeclared rule, a diff's baseline states, an empty run) validates
    against the SARIF 2.1.0 JSON schema shipped in tests/data."""
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft4Validator(schema)
    api = finding_of(
        Severity.HIGH,
        rule="api.otp-send-unlimited",
        object="POST /api/v1/otp",
        target=Target("127.0.0.1", 8080, "http"),
    )
    note = finding_of(Severity.CRITICAL, ransom_note=True, object="public/readme to recover")
    everything = report(
        *(finding_of(s, port=9000 + s.rank) for s in Severity), api, note, *_scan().findings
    )
    after, diff = _diffed()
    for scan, changes in ((everything, None), (after, diff), (report(), None)):
        document = _render(ReportFormat.SARIF, scan, changes)
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    broken = _render(ReportFormat.SARIF, everything)
    broken["runs"][0]["results"][0]["level"] = "fatal"  # the test can fail: not a level
    assert not validator.is_valid(broken)


def test_sarif_ransom_note_and_odd_object_names() -> None:
    note = finding_of(
        Severity.CRITICAL,
        rule="postgres.ransom-note",
        title="A ransom note was left in the database",
        ransom_note=True,
        object="public/readme to recover",
    )
    run = _run(_render(ReportFormat.SARIF, report(note)))
    [result] = run["results"]
    assert _target(result) == "example://127.0.0.1:9000/public/readme%20to%20recover"
    assert _artifact(result) == "example/127.0.0.1:9000/public/readme%20to%20recover"
    assert result["properties"]["ransom_note"] is True
    assert "ransom note found" in result["message"]["text"]


def test_sarif_with_a_diff_keeps_every_finding_and_marks_new_ones() -> None:
    after, diff = _diffed()
    run = _run(_render(ReportFormat.SARIF, after, diff))
    states = {r["ruleId"]: r["baselineState"] for r in run["results"]}
    # Resolved findings are absent; unchanged ones stay, or GitHub would close their alerts.
    assert states == {"redis.unauthenticated": "new", "example.not-declared": "unchanged"}


def test_sarif_of_an_empty_scan() -> None:
    run = _run(_render(ReportFormat.SARIF, report()))
    assert run["results"] == [] and run["tool"]["driver"]["rules"] == []


# --- terminal ------------------------------------------------------------------------------


def test_terminal_table_shows_findings_and_masked_evidence() -> None:
    scan = _scan()
    scan.scan_id = 7
    text = _render(ReportFormat.TABLE, scan)
    assert "scan 7" in text and "2026-11-23T01:00:00+00:00" in text
    assert "findings: 1 critical, 0 high, 1 medium, 0 low, 1 info" in text
    assert "Redis readable without authentication" in text
    assert "127.0.0.1:6379" in text and "[::1]:7000" in text
    assert "PHONE 3, EMAIL 1" in text and "120" in text
    assert f"    e.g. PHONE: {MASKED_PHONE}" in text  # evidence, indented
    assert "fix: Require authentication" in text
    assert text.index("critical") < text.index("medium") < text.index("Redis requires")
    assert "\x1b[" not in text  # no colour codes unless asked


def test_terminal_flags_ransom_notes_and_colours_on_request() -> None:
    scan = report(finding_of(Severity.CRITICAL, ransom_note=True))
    assert "RANSOM NOTE" in get_reporter(ReportFormat.TABLE).render(scan)
    assert "\x1b[" in get_reporter(ReportFormat.TABLE, color=True).render(scan)


def test_terminal_escapes_control_characters_from_the_target() -> None:
    hostile = finding_of(
        Severity.CRITICAL,
        title="note \x1b]0;owned\x07",
        evidence=(Evidence("\x1b[2J[bold]pay up[/bold]\r\nBTC \u202eexe.txt"),),
    )
    text = get_reporter(ReportFormat.TABLE).render(report(hostile))
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert "\\x1b[2J[bold]pay up[/bold]\\r\\nBTC \\u202eexe.txt" in text  # visible, not markup
    assert printable("plain +60 12-*** **89 é") == "plain +60 12-*** **89 é"


def test_terminal_diff_sections() -> None:
    after, diff = _diffed()
    text = _render(ReportFormat.TABLE, after, diff)
    assert "New since scan 4: 1" in text
    assert "Resolved since scan 4: 1" in text and "Redis requires authentication" in text
    assert "Unchanged since scan 4: 1" in text
    assert text.index("New since") < text.index("Resolved since") < text.index("Unchanged")
    first = _render(ReportFormat.TABLE, after, ScanDiff.between(after, None))
    assert "no previous scan of these targets" in first
    assert "Redis readable without authentication" in first


def test_terminal_empty_report_and_empty_diff() -> None:
    text = _render(ReportFormat.TABLE, report())
    assert "No findings." in text and "findings: 0 critical" in text
    scan = report(redis_exposed())
    scan.scan_id = 2
    previous = report(redis_exposed())
    previous.scan_id = 1
    same = _render(ReportFormat.TABLE, scan, ScanDiff.between(scan, previous))
    assert "New since scan 1: 0" in same and "Resolved since scan 1: 0" in same
    assert same.count("No findings.") == 2


def test_sarif_clips_texts_to_githubs_limits() -> None:
    wordy = finding_of(Severity.HIGH, rule="example.wordy", title="x" * 5000)
    run = _run(_render(ReportFormat.SARIF, report(wordy)))
    [rule] = run["tool"]["driver"]["rules"]
    assert len(rule["shortDescription"]["text"]) <= 1024
    assert len(rule["fullDescription"]["text"]) <= 1024
    assert len(rule["name"]) <= 255


def test_an_api_operation_reads_method_then_url_in_every_format() -> None:
    """An audit-api finding is about ``POST /api/v1/otp``: people read ``POST
    http://127.0.0.1:8080/api/v1/otp``, never the method inside the path; SARIF's location is
    the URL itself."""
    api = finding_of(
        Severity.HIGH,
        port=8080,
        target=Target("127.0.0.1", 8080, "http"),
        object="POST /api/v1/otp",
        title="OTP send endpoint texts any number a caller names: POST /api/v1/otp",
    )
    scan = report(api)
    expected = "POST http://127.0.0.1:8080/api/v1/otp"
    for fmt in (ReportFormat.TABLE, ReportFormat.MD, ReportFormat.HTML):
        text = get_reporter(fmt).render(scan)
        assert expected in text.replace("&#x2F;", "/"), fmt
        assert "8080/POST" not in text, fmt
    [result] = _run(_render(ReportFormat.SARIF, scan))["results"]
    assert _target(result) == "http://127.0.0.1:8080/api/v1/otp"
    assert expected in result["message"]["text"]
    assert "POST" not in _artifact(result)
    # a scan finding's object is unchanged
    assert redis_exposed().where() == redis_exposed().target.uri(redis_exposed().object)


def test_one_rule_marks_compromise_in_every_output() -> None:
    """A planted cron job and a ransom note each mark their store's every finding, in the
    HTML box and badges, the JSON, the Markdown and the table; an open store without either
    is marked nowhere."""
    redis = redis_exposed()  # readable, no note flag: compromised only by its payload
    payload = finding_of(
        Severity.CRITICAL,
        rule="compromise.planted-payload",
        title="Cron job planted in redis at db0/backup1",
        target=redis.target,
        object="db0/backup1",
    )
    postgres = Target("127.0.0.1", 5432, "postgres")
    readable = finding_of(Severity.CRITICAL, rule="postgres.unauthenticated", target=postgres)
    readable = dataclasses.replace(readable, ransom_note=True)
    note = finding_of(
        Severity.CRITICAL,
        rule="compromise.ransom-note",
        title="Ransom note left in postgres at shop.public.readme",
        target=postgres,
        ransom_note=True,
        object="shop.public.readme",
    )
    clean = redis_exposed(port=6390)
    scan = report(redis, payload, readable, note, clean)
    marked = {redis.id, payload.id, readable.id, note.id}

    document = _render(ReportFormat.JSON, scan)
    assert {f["id"] for f in document["findings"] if f["compromised"]} == marked
    assert not next(f for f in document["findings"] if f["id"] == clean.id)["compromised"]

    page = get_reporter(ReportFormat.HTML).render(scan)
    box = page.split('id="compromised"', 1)[1].split("</section>", 1)[0]
    assert "Compromised stores: 2" in box
    assert all(f"#f-{i}" in box for i in marked) and f"#f-{clean.id}" not in box
    cards = {
        chunk.split('"', 1)[0]: chunk.split("</h3>", 1)[0]
        for chunk in page.split('data-finding-id="')[1:]
    }
    assert {i for i, head in cards.items() if "badge pwned" in head} == marked

    markdown = get_reporter(ReportFormat.MD).render(scan)
    flagged = [line for line in markdown.splitlines() if line.endswith("— COMPROMISED")]
    assert len(flagged) == 4 and not any(":6390" in line for line in flagged)
    assert "**Already compromised:** 4 finding(s)" in markdown

    table = _render(ReportFormat.TABLE, scan)
    assert table.count("COMPROMISED") == 2 and table.count("RANSOM NOTE") == 2
