"""CouchDB probe against npm's pouchdb-server, which speaks CouchDB's HTTP API.

Debian ships no CouchDB; as DESIGN.md says, the tests run PouchDB Server from the npm registry,
installed once before the tests (``make test`` must run it; nothing is downloaded here)::

    npm install --prefix ~/.cache/perisai/npm --no-audit --no-fund pouchdb-server@4.2.0

(or into any directory named by ``PERISAI_NPM_PREFIX``; ``perisai.lab.servers.couchdb.
install_pouchdb_server()`` runs the same command). Three servers on free 127.0.0.1 ports are
started by this module and stopped at its end: exposed (an "admin party", seeded with synthetic
personal data and a ransom-note database), secured (a random admin password, every database
locked to members) and one whose admin password is the vendor default ``admin:password``. The
read-only proof is pouchdb-server's own access log, one line per request with its method.
Hostile servers (an endless body, a byte a second) come from :mod:`tests.fakes`.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from perisai.findings import Auth, Finding, Severity
from perisai.lab.seed import RANSOM_BTC_ADDRESS, SEED, make_people
from perisai.lab.servers.couchdb import (
    COUCH_MESSAGES,
    COUCH_USERS,
    RANSOM_DATABASE,
    CouchDBInstance,
    seed_couchdb,
    start_couchdb,
)
from perisai.probes import ProbeResult, ProbeSkipped, ScanConfig
from perisai.probes import couchdb as couchdb_probe
from perisai.probes.couchdb import CouchDBProbe
from perisai.probes.elasticsearch import ElasticsearchProbe
from perisai.probes.interface import Fingerprint, Probe
from perisai.probes.kibana import KibanaProbe
from perisai.probes.postgres import PostgresProbe
from perisai.probes.redis import RedisProbe
from perisai.scanner import Scanner
from perisai.targets import parse_targets
from tests.conftest import LabServers
from tests.fakes import (
    BOUND,
    HOSTILE_CONFIG,
    Mode,
    ReplayServer,
    Reply,
    Seen,
    elastic_cluster,
    hostile_route,
    only,
    plain_http_route,
    run_probe,
)

pytestmark = pytest.mark.servers

CONFIG = ScanConfig(timeout=2.0)
READ_ONLY_METHODS = {"GET", "HEAD"}
_ACCESS_LINE = re.compile(r"\] \S+ - - ([A-Z]+) (\S+) (\d{3})\s*$")


@pytest.fixture(scope="module")
def couch(
    tmp_path_factory: pytest.TempPathFactory, lab_server: LabServers
) -> Iterator[dict[str, CouchDBInstance]]:
    """Exposed (with a ransom note) and secured (the lab's twins) and default-password
    pouchdb-servers, seeded; the last stopped at the end."""
    base = tmp_path_factory.mktemp("couchdb")
    twins = {
        "exposed": lab_server("couchdb", True, CouchDBInstance),
        "secured": lab_server("couchdb", False, CouchDBInstance),
    }
    started: dict[str, CouchDBInstance] = {}
    try:
        started["default"] = start_couchdb(
            "couchdb-default-password", base, exposed=False, password="password"
        )
        seed_couchdb(started["default"])
        yield {**twins, **started}
    finally:
        for instance in started.values():
            instance.stop()


async def _scan(port: int) -> list[Finding]:
    """A full scan of one port, every probe asking (HTTP and not), as the scanner does."""
    probes: list[Probe] = [
        cls(CONFIG)
        for cls in (RedisProbe, PostgresProbe, ElasticsearchProbe, KibanaProbe, CouchDBProbe)
    ]
    report = await Scanner(CONFIG, probes=probes).scan(parse_targets([f"127.0.0.1:{port}"]))
    return report.findings


async def test_admin_party_is_critical_with_personal_data(
    couch: dict[str, CouchDBInstance],
) -> None:
    findings = await _scan(couch["exposed"].port)
    main = [f for f in findings if f.rule == "couchdb.unauthenticated"]
    assert len(main) == 1, [f.rule for f in findings]
    [finding] = main
    assert finding.target.service == "couchdb"  # recognised on a random port by its answer
    assert finding.auth is Auth.NONE
    assert finding.severity is Severity.CRITICAL
    assert finding.data.entities["PHONE"] >= 20
    assert finding.data.entities["EMAIL"] >= 10
    assert finding.data.records_estimated == COUCH_MESSAGES + COUCH_USERS + 1
    text = [e.text for e in finding.evidence]
    assert any("admin party" in t and "PouchDB Server 4.2.0" in t for t in text)
    assert any(t.startswith("chatlog: 150 docs") and "PHONE" in t for t in text)
    assert any(t.startswith("users: 40 docs") and "EMAIL" in t for t in text)


async def test_ransom_database_note_is_reported(couch: dict[str, CouchDBInstance]) -> None:
    result = await run_probe(CouchDBProbe(CONFIG), couch["exposed"].port)
    assert isinstance(result, ProbeResult)
    assert only(result.findings, "couchdb.unauthenticated").ransom_note
    note = only(result.findings, "compromise.ransom-note")
    assert note.severity is Severity.CRITICAL
    assert note.object == f"{RANSOM_DATABASE}/README"
    assert "All your data is backed up" in note.evidence[0].text
    assert f"payment address: {RANSOM_BTC_ADDRESS}" in [e.text for e in note.evidence]


async def test_secured_couchdb_is_info_never_open(couch: dict[str, CouchDBInstance]) -> None:
    findings = await _scan(couch["secured"].port)
    assert [f.rule for f in findings] == ["couchdb.auth-required"]
    [finding] = findings
    assert finding.severity is Severity.INFO
    assert finding.auth is Auth.REQUIRED
    assert not finding.data.has_personal_data
    assert "none readable" in finding.evidence[0].text
    assert "3 vendor default credentials refused" in finding.evidence[0].text


async def test_default_password_is_found(couch: dict[str, CouchDBInstance]) -> None:
    result = await run_probe(CouchDBProbe(CONFIG), couch["default"].port)
    assert isinstance(result, ProbeResult)
    main = only(result.findings, "couchdb.default-credentials")
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert main.severity is Severity.CRITICAL
    assert main.data.entities["PHONE"] >= 1
    assert any(
        "user 'admin' logged in with a vendor default password" in e.text for e in main.evidence
    )


def _access_log(instance: CouchDBInstance) -> str:
    return Path(instance.log_file).read_text(encoding="utf-8", errors="replace")


async def _requests_during(
    instance: CouchDBInstance, action: Callable[[], Awaitable[object]]
) -> list[tuple[str, str]]:
    """(method, path) of every request the server logged while ``action`` ran."""
    token = uuid.uuid4().hex
    start, end = f"/perisai-test-start-{token}", f"/perisai-test-end-{token}"
    async with httpx.AsyncClient(base_url=instance.base_url, trust_env=False) as client:
        await client.get(start)
        await action()
        await client.get(end)
    for _ in range(200):  # the server appends to its log asynchronously
        if end in _access_log(instance):
            break
        await asyncio.sleep(0.05)
    lines = _access_log(instance).splitlines()
    first = next(i for i, line in enumerate(lines) if start in line)
    last = next(i for i, line in enumerate(lines) if end in line)
    found = [_ACCESS_LINE.search(line) for line in lines[first + 1 : last]]
    return [(match.group(1), match.group(2)) for match in found if match]


@pytest.mark.parametrize("which", ["exposed", "secured", "default"])
async def test_probe_issues_only_get_requests(
    couch: dict[str, CouchDBInstance], which: str
) -> None:
    """pouchdb-server's access log sees every request the scan sends: none may write."""
    instance = couch[which]
    requests = await _requests_during(instance, lambda: _scan(instance.port))
    methods = {method for method, _ in requests}
    assert methods and methods <= READ_ONLY_METHODS, requests
    paths = {path for _, path in requests}
    assert {"/", "/_session", "/_all_dbs"} <= paths
    if which != "secured":
        assert "/chatlog/_all_docs?limit=20&include_docs=true" in paths
    assert len(requests) < 100  # bounded: a few requests a database, not a crawl


async def test_evidence_masks_every_phone_number(couch: dict[str, CouchDBInstance]) -> None:
    findings = await _scan(couch["exposed"].port)
    people = make_people(COUCH_USERS, random.Random(SEED))  # what seed_couchdb stored
    digits = {p.e164.lstrip("+")[-9:] for p in people}
    output = json.dumps([f.to_dict() for f in findings])
    assert any(re.search(r"\+\d+ [\d*]+-\*\*\*", e.text) for f in findings for e in f.evidence)
    for number in digits:
        assert number not in output


async def test_other_http_probes_do_not_take_couchdb(couch: dict[str, CouchDBInstance]) -> None:
    for instance in couch.values():
        assert await ElasticsearchProbe(CONFIG).fingerprint("127.0.0.1", instance.port) is None
        assert await KibanaProbe(CONFIG).fingerprint("127.0.0.1", instance.port) is None


async def test_fingerprint_is_none_on_other_http_services() -> None:
    probe = CouchDBProbe(CONFIG)
    for route in (elastic_cluster(), plain_http_route):
        with ReplayServer(route) as server:
            assert await probe.fingerprint("127.0.0.1", server.port) is None


@pytest.mark.parametrize("mode", ["endless", "drip-status", "drip-body"])
async def test_hostile_server_is_neither_recognised_nor_hangs(mode: Mode) -> None:
    with ReplayServer(hostile_route(mode)) as server:
        probe = CouchDBProbe(HOSTILE_CONFIG)
        assert await asyncio.wait_for(probe.fingerprint("127.0.0.1", server.port), BOUND) is None
        result = await asyncio.wait_for(
            probe.probe("127.0.0.1", server.port, Fingerprint("couchdb", "forced")), BOUND
        )
    assert isinstance(result, ProbeSkipped)
    assert result.reason.startswith("GET /")
    assert "\n" not in result.reason


def _admin_party_dripping_listing(seen: Seen) -> Reply:
    """CouchDB's documented answers for an admin party, until ``_all_dbs`` starts dripping."""
    if seen.path == "/":
        return Reply(body={"couchdb": "Welcome", "version": "3.3.3", "vendor": {"name": "ASF"}})
    if seen.path == "/_session":
        context = {"name": None, "roles": ["_admin"]}
        return Reply(body={"ok": True, "userCtx": context, "info": {}})
    return Reply(mode="drip-status")


async def test_dripping_listing_ends_in_skip_with_findings_so_far() -> None:
    with ReplayServer(_admin_party_dripping_listing) as server:
        result = await run_probe(CouchDBProbe(HOSTILE_CONFIG), server.port)
    assert isinstance(result, ProbeSkipped)
    assert "/_all_dbs" in result.reason and "stopped" in result.reason
    main = only(result.findings, "couchdb.unauthenticated")
    assert main.severity is Severity.HIGH
    assert any("CouchDB 3.3.3" in e.text for e in main.evidence)


async def test_a_listing_read_up_to_its_item_limit_is_a_floor(
    couch: dict[str, CouchDBInstance], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A complete ``_all_dbs`` body with more names than the probe takes (5,000) is
    not the whole list: "at least", and the scan says the probe did not finish (4 here)."""
    monkeypatch.setattr(couchdb_probe, "MAX_LISTED", 4)
    findings = await _scan(couch["exposed"].port)
    [main] = [f for f in findings if f.rule == "couchdb.unauthenticated"]
    assert any(
        re.match(r"at least \d+ databases besides the system ones", e.text) for e in main.evidence
    ), main.evidence
    [incomplete] = [f for f in findings if f.rule == "scan.incomplete"]
    assert "read up to its first 4 names" in incomplete.evidence[0].text
