"""``perisai audit-api`` end to end against the lab's API twins (real uvicorn servers on
loopback) and perisai's own SMTP sink: every check positive on the vulnerable twin, none on the
fixed twin, and the safety rules (dry run, budget, scope, auth headers, bad input)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from perisai.api_audit.checks import all_rules
from perisai.findings import ScanReport
from perisai.lab.api_server import KNOWN_ACCOUNT, LAB_TOKEN, ApiInstance, start_api_server
from perisai.lab.instances import free_port
from perisai.report import ReportFormat, get_reporter
from tests.api_targets import TWIN_FLAWS
from tests.clirun import perisai

RULES = TWIN_FLAWS  # every check but login enumeration fires on the vulnerable twin

Twin = Callable[..., tuple[ApiInstance, int]]


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[Twin]:
    """Start a fresh twin (its limits start empty) whose mail goes to a free sink port."""
    started: list[ApiInstance] = []

    def start(
        exposed: bool = True, challenge: bool = True, sms_provider: str | None = None
    ) -> tuple[ApiInstance, int]:
        port = free_port()
        instance = start_api_server(
            tmp_path,
            exposed,
            smtp_relay=f"127.0.0.1:{port}",
            challenge=challenge,
            sms_provider=sms_provider,
        )
        started.append(instance)
        return instance, port

    yield start
    for instance in started:
        instance.stop()


def audit(instance: ApiInstance, sink_port: int, *extra: str, spec: str | None = None) -> list[str]:
    return [
        "audit-api",
        "--spec",
        spec or instance.spec_url,
        "--base-url",
        instance.url,
        "--smtp-sink",
        f"127.0.0.1:{sink_port}",
        "--known-account",
        KNOWN_ACCOUNT,
        "--sink-phone",  # the twin's registered number stands for the tester's own
        KNOWN_ACCOUNT,
        "--header",
        f"Authorization: Bearer {LAB_TOKEN}",
        "--pace",
        "0",
        "--format",
        "json",
        *extra,
    ]


def test_every_check_fires_on_the_vulnerable_twin(twin: Twin) -> None:
    """With both sinks, every flaw of the vulnerable twin is found and proven."""
    sms_port = free_port()
    instance, port = twin(exposed=True, sms_provider=f"http://127.0.0.1:{sms_port}")
    result = perisai(*audit(instance, port, "--sms-sink", f"127.0.0.1:{sms_port}"))
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    rules = {f["rule"] for f in report["findings"]}
    assert rules == RULES
    for finding in report["findings"]:
        assert finding["severity"] in ("high", "medium")
        assert finding["remediation"]
        assert len(finding["evidence"]) >= 2  # the summary and the requests made
        text = " ".join(finding["evidence"])
        assert "indicated" not in text
        assert KNOWN_ACCOUNT not in text and "+447700900555" not in text  # masked
        assert "perisai-sink@example.invalid" not in text
        assert not re.search(r'"tac":"\d{6}"', text)  # codes in answers are masked
    by_rule = {f["rule"]: f for f in report["findings"]}
    assert "arrived at perisai's SMTP sink" in by_rule["api.mail-relay"]["evidence"][0]
    for rule in ("api.otp-send-unlimited", "api.otp-verify-bruteforce"):
        assert by_rule[rule]["severity"] == "high"
        assert by_rule[rule]["evidence"][0].startswith("proven"), rule
    brute = by_rule["api.otp-verify-bruteforce"]["evidence"][0]
    assert "6-digit (digit) code" in brute and "from the delivered code" in brute
    assert "auth headers accepted" in result.stderr
    used = int(re.search(r"(\d+) of 100 requests used", result.stderr)[1])  # type: ignore[index]
    assert len(instance.requests()) == used <= 100
    # every request is in the report, by the spec's path template, and none changes data
    sent = report["requests"]
    assert len(sent) == used
    assert {r["method"] for r in sent} <= {"GET", "POST"}
    assert all(isinstance(r["status"], int) and r["path"].startswith("/") for r in sent)
    assert not any(KNOWN_ACCOUNT in r["path"] for r in sent)
    # sinks only: the tester's own number, or the reserved test range
    assert instance.sms()
    assert all(s["to"] == KNOWN_ACCOUNT or s["to"].startswith("+447700900") for s in instance.sms())


def test_without_sinks_sends_are_only_indicated(twin: Twin) -> None:
    """No sink, no proof: send findings drop a level and never claim a message was sent."""
    instance, port = twin(exposed=True)
    args = audit(instance, port)
    args[args.index("--smtp-sink") : args.index("--smtp-sink") + 2] = []
    report = json.loads(perisai(*args).stdout)
    by_rule = {f["rule"]: f for f in report["findings"]}
    expected = {
        "api.otp-send-unlimited": "medium",
        "api.otp-send-any-recipient": "medium",
        "api.no-challenge": "low",
    }
    for rule, severity in expected.items():
        summary = by_rule[rule]["evidence"][0]
        assert by_rule[rule]["severity"] == severity, rule
        assert summary.startswith("indicated, not proven"), rule
        assert "had a code sent" not in summary and not summary.startswith("proven")
    # the send's answer carries the code: that proves the code, and the guesses, on its own
    assert by_rule["api.otp-in-response"]["severity"] == "high"
    brute = by_rule["api.otp-verify-bruteforce"]
    assert brute["severity"] == "high"
    assert brute["evidence"][0].startswith("proven (the send's answer carried it)")


def test_sms_sink_proves_a_send_and_refutes_a_bare_200(twin: Twin) -> None:
    """With --sms-sink the finding stands on the message that arrived: high when the twin's
    SMS provider is the sink, no finding when the twin answers 200 but texts nowhere."""
    sms_port = free_port()
    sink = f"127.0.0.1:{sms_port}"
    proven, port = twin(exposed=True, sms_provider=f"http://{sink}")
    result = perisai(*audit(proven, port, "--sms-sink", sink))
    findings = {f["rule"]: f for f in json.loads(result.stdout)["findings"]}
    texts = findings["api.otp-send-any-recipient"]
    assert texts["severity"] == "high"
    assert texts["evidence"][0].startswith("proven: ")
    assert f"perisai's SMS sink {sink} received it (twilio API" in texts["evidence"][0]
    assert "+447700900" not in texts["evidence"][0]  # the test number stays masked
    silent, port = twin(exposed=True)  # accepts every send, hands none to a provider
    result = perisai(*audit(silent, port, "--sms-sink", f"127.0.0.1:{free_port()}"))
    rules = {f["rule"] for f in json.loads(result.stdout)["findings"]}
    assert "api.otp-send-any-recipient" not in rules
    assert re.search(r"otp-send-any-recipient .*not proven, not reported", result.stderr)


def test_every_report_format_speaks_api(twin: Twin) -> None:
    """An API audit's table, Markdown, HTML and SARIF name operations as ``METHOD URL``, give
    each rule's own way to check and fix it, and carry none of a store scan's wording."""
    instance, port = twin(exposed=True)
    raw = json.loads(perisai(*audit(instance, port)).stdout)
    assert raw["kind"] == "api-audit"
    rules = {rule_id: rule.to_dict() for rule_id, rule in all_rules().items()}
    report = ScanReport.from_dict(raw, rules)
    scan_words = ("records (est.)", "read-only", "nc -vz", "firewall", "ports:", "exposed service")
    for fmt in (ReportFormat.TABLE, ReportFormat.MD, ReportFormat.HTML, ReportFormat.SARIF):
        text = get_reporter(fmt).render(report)
        for words in scan_words:
            assert words not in text, (fmt, words)
        assert f"POST {instance.url}/" in text, fmt
        assert "/POST" not in text and "/GET" not in text, fmt
    markdown = get_reporter(ReportFormat.MD).render(report)
    assert markdown.startswith("# API abuse audit: ")
    assert f"perisai sent {len(raw['requests'])} requests" in markdown
    assert "per recipient: 1 send / 30 s" in markdown  # otp-send-unlimited's own fix
    assert f"curl -s -o /dev/null -w '%{{http_code}}\\n' -X POST {instance.url}/" in markdown
    assert "one answer whether or not the account exists" in markdown  # enumeration's fix
    html = get_reporter(ReportFormat.HTML).render(report)
    assert "What perisai saw" in html and 'data-summary="requests"' in html
    table = get_reporter(ReportFormat.TABLE).render(report)
    assert f"{len(raw['requests'])} requests sent" in table
    assert "operation" in table and "caller" in table


def test_no_findings_on_the_fixed_twin(twin: Twin) -> None:
    instance, port = twin(exposed=False)
    spec = instance.url + "/swagger.json"  # the fixed twin's spec, as Swagger 2.0
    result = perisai(*audit(instance, port, spec=spec))
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["findings"] == []
    assert "lockout (HTTP 429" in result.stderr
    assert "challenge (CAPTCHA / token) required (HTTP 403)" in result.stderr
    assert "uniform answers" in result.stderr
    assert instance.sms() == []


def test_rate_limit_is_told_apart_from_failure(twin: Twin) -> None:
    instance, port = twin(exposed=False, challenge=False)
    result = perisai(*audit(instance, port))
    rules = {f["rule"] for f in json.loads(result.stdout)["findings"]}
    assert "api.otp-send-unlimited" not in rules
    assert "api.otp-verify-bruteforce" not in rules
    assert "api.otp-in-response" not in rules
    assert re.search(
        r"otp-send-unlimited .*rate limit \(HTTP 429, Retry-After 600\)", result.stderr
    )


def test_dry_run_sends_nothing(twin: Twin) -> None:
    instance, port = twin(exposed=True)
    result = perisai(*audit(instance, port, "--dry-run"))
    assert result.returncode == 0, result.stderr
    assert "nothing is sent" in result.stdout
    for rule in RULES:
        assert rule in result.stdout
    assert instance.requests() == []
    assert instance.sms() == []


def test_the_report_lists_what_the_dry_run_planned(twin: Twin) -> None:
    """Every request of a run is in the JSON report under the check that sent it, and no
    check sends more to an operation than --dry-run said it would."""
    instance, port = twin(exposed=True)
    dry = perisai(*audit(instance, port, "--dry-run")).stdout
    planned = {
        (rule, key): int(count)
        for rule, key, count in re.findall(
            r"^\s+(api\.[\w-]+)\s+((?:GET|POST|HEAD) \S+)\s+(\d+)\s", dry, re.MULTILINE
        )
    }
    assert planned
    report = json.loads(perisai(*audit(instance, port)).stdout)
    per_check: dict[str, int] = {}
    for request in report["requests"]:
        if request["check"] == "preflight":
            continue
        # a check may call a second operation (a send before guessing codes): the plan names it
        assert f"{request['method']} {request['path']}" in dry, request
        per_check[request["check"]] = per_check.get(request["check"], 0) + 1
    for check, count in per_check.items():
        assert count <= sum(n for (rule, _), n in planned.items() if rule == check), check
    assert len(report["requests"]) == len(instance.requests())


@pytest.mark.parametrize("budget", [5, 30])
def test_budget_is_a_hard_limit(twin: Twin, budget: int) -> None:
    instance, port = twin(exposed=True)
    result = perisai(*audit(instance, port, "--budget", str(budget)))
    assert result.returncode in (0, 1), result.stderr
    assert 0 < len(instance.requests()) <= budget
    assert "budget" in result.stderr


def test_refused_auth_header_is_one_line(twin: Twin) -> None:
    instance, port = twin(exposed=True)
    args = audit(instance, port)
    args[args.index(f"Authorization: Bearer {LAB_TOKEN}")] = "Authorization: Bearer wrong"
    result = perisai(*args)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "were refused" in result.stderr


def test_spec_without_such_endpoints_says_so(tmp_path: Path) -> None:
    spec = tmp_path / "health.yaml"
    spec.write_text(
        "openapi: 3.0.0\ninfo: {title: t, version: '1'}\n"
        "paths:\n  /health:\n    get:\n      summary: Health check\n"
        "      responses: {'200': {description: ok}}\n",
        encoding="utf-8",
    )
    result = perisai("audit-api", "--spec", str(spec), "--base-url", "http://127.0.0.1:9")
    assert result.returncode == 0
    assert "no OTP, e-mail or account endpoints" in result.stderr


@pytest.mark.parametrize(
    "content",
    ["{not: [valid", "just a string", '{"openapi": "1.0", "paths": {}}', '{"swagger": "2.0"}'],
)
def test_broken_spec_is_one_line(tmp_path: Path, content: str) -> None:
    spec = tmp_path / "broken.json"
    spec.write_text(content, encoding="utf-8")
    result = perisai("audit-api", "--spec", str(spec), "--base-url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr.startswith("perisai: error: ")
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


def test_missing_spec_and_unreachable_spec_url() -> None:
    for source in ("/nonexistent/spec.json", f"http://127.0.0.1:{free_port()}/openapi.json"):
        result = perisai("audit-api", "--spec", source, "--base-url", "http://127.0.0.1:9")
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0


def test_unreachable_base_url_is_one_line(twin: Twin) -> None:
    instance, _ = twin(exposed=True)
    dead = f"http://127.0.0.1:{free_port()}"
    result = perisai("audit-api", "--spec", instance.spec_url, "--base-url", dead)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "cannot reach" in result.stderr


def test_public_base_url_needs_authorized(twin: Twin) -> None:
    instance, _ = twin(exposed=True)
    result = perisai("audit-api", "--spec", instance.spec_url, "--base-url", "http://8.8.8.8")
    assert result.returncode == 2
    assert "--authorized" in result.stderr
    assert instance.requests() == []


def test_explain_and_flows(twin: Twin, tmp_path: Path) -> None:
    instance, _ = twin(exposed=True)
    result = perisai("audit-api", "--spec", instance.spec_url, "--explain")
    assert result.returncode == 0
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert "otp-send" in lines["/api/v1/register/request-tac"]
    assert "otp-verify" in lines["/api/v1/register/verify-tac"]
    assert "account-lookup" in lines["/api/v1/accounts/exists"]
    assert "mail-send" in lines["/api/v1/helpdesk/tickets"]
    assert "login" in lines["/api/v1/auth/login"]
    assert "password-reset" in lines["/api/v1/auth/forgot-password"]
    flows = tmp_path / "flows.yaml"
    flows.write_text(
        "flows:\n  - operation: GET /api/v1/me\n    role: account-lookup\n"
        "  - operation: POST /api/v1/register/request-tac\n    role: none\n",
        encoding="utf-8",
    )
    result = perisai("audit-api", "--spec", instance.spec_url, "--flows", str(flows), "--explain")
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert "account-lookup" in lines["/api/v1/me"] and "--flows" in lines["/api/v1/me"]
    assert "otp-send" not in lines["/api/v1/register/request-tac"]
    assert instance.requests() == []
