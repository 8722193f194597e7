"""Elasticsearch / OpenSearch probe against replayed answers in Elastic's documented formats.

No Elasticsearch or OpenSearch server installs here (Debian ships neither; the vendors' archives
come from their own sites), so, as DESIGN.md provides for, this module starts a local HTTP
server (127.0.0.1, a free port picked by the kernel) that replays what a cluster answers, in the
formats of Elastic's REST API reference: the root document (``GET /``), ``GET /_cat/indices``
with ``format=json&bytes=b``, ``GET /<index>/_search`` hits, and the 401 a cluster with
security on sends (``WWW-Authenticate: Basic realm="security"`` and a ``security_exception``
body; OpenSearch's ``Basic realm="OpenSearch Security"``). The replay records every request it
gets: that record is the read-only proof. The indices hold synthetic personal data from
:mod:`perisai.lab.seed`, a ``read_me`` ransom note and a Meow-wiped index.

The replay server, the replayed cluster and the hostile servers (endless body, one byte a
second) live in :mod:`tests.fakes`, shared with the Kibana and CouchDB probe tests.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator

import pytest

from perisai.findings import Auth, Severity
from perisai.lab.seed import RANSOM_BTC_ADDRESS
from perisai.probes import ProbeResult, ProbeSkipped, ScanConfig
from perisai.probes.couchdb import CouchDBProbe
from perisai.probes.credentials import default_logins
from perisai.probes.elasticsearch import ElasticsearchProbe
from perisai.probes.http import (
    HttpProbeError,
    bounded_get,
    http_client,
    json_array_items,
)
from perisai.probes.interface import Access, Fingerprint, Probe
from perisai.probes.kibana import KibanaProbe
from perisai.scanner import Scanner
from perisai.targets import parse_targets
from tests.fakes import (
    BOUND,
    CHATLOG_INDEX,
    ES_ROOT,
    HIDDEN_INDEX,
    HOSTILE_CONFIG,
    MEOW_INDEX,
    NOTE_INDEX,
    USERS_INDEX,
    Mode,
    ReplayServer,
    Reply,
    Route,
    Seen,
    elastic_cluster,
    hostile_route,
    make_indices,
    only,
    plain_http_route,
    run_probe,
    search_answer,
)

CONFIG = ScanConfig(timeout=2.0)


@pytest.fixture(scope="module")
def exposed() -> Iterator[ReplayServer]:
    with ReplayServer(elastic_cluster()) as server:
        yield server


@pytest.fixture(scope="module")
def secured() -> Iterator[ReplayServer]:
    with ReplayServer(elastic_cluster(users={"elastic": "Xk2-long-random-Secret"})) as server:
        yield server


@pytest.fixture(scope="module")
def plain_http() -> Iterator[ReplayServer]:
    with ReplayServer(plain_http_route) as server:
        yield server


async def test_exposed_cluster_is_critical_with_personal_data(exposed: ReplayServer) -> None:
    result = await run_probe(ElasticsearchProbe(CONFIG), exposed.port)
    assert isinstance(result, ProbeResult)
    main = only(result.findings, "elasticsearch.unauthenticated")
    assert main.target.service == "elasticsearch"
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL
    assert main.data.entities["PHONE"] >= 20
    assert main.data.entities["EMAIL"] >= 20
    assert main.data.records_sampled >= 40
    assert main.data.records_estimated == 12_400 + 1_930_112 + 1 + 0 + 1
    text = [e.text for e in main.evidence]
    assert any("Elasticsearch 8.11.1, cluster 'chat-logs'" in t for t in text)
    assert any(t.startswith("GET / answered 200 without credentials") for t in text)
    assert any(t.startswith("users: 12400 docs") and "PHONE" in t for t in text)
    assert any("read-only requests used" in t for t in text)


async def test_ransom_note_and_meow_indices_are_reported(exposed: ReplayServer) -> None:
    result = await run_probe(ElasticsearchProbe(CONFIG), exposed.port)
    main = only(result.findings, "elasticsearch.unauthenticated")
    assert main.ransom_note
    notes = [f for f in result.findings if f.rule == "compromise.ransom-note"]
    assert {f.severity for f in notes} == {Severity.CRITICAL}
    [note] = [f for f in notes if f.object.startswith(f"{NOTE_INDEX}/")]
    assert "All your data is backed up" in note.evidence[0].text
    assert f"payment address: {RANSOM_BTC_ADDRESS}" in [e.text for e in note.evidence]
    [meow] = [f for f in notes if MEOW_INDEX in f.object]
    assert "Meow" in meow.evidence[0].text


async def test_probe_sends_only_bounded_gets(exposed: ReplayServer) -> None:
    """The replay's request record is the access log: only GETs, each bounded in size."""
    before = len(exposed.seen)
    await run_probe(ElasticsearchProbe(CONFIG), exposed.port)
    seen = exposed.seen[before:]
    assert {s.method for s in seen} == {"GET"}
    searched = {s.path for s in seen if s.path.endswith("/_search")}
    assert searched == {f"/{name}/_search" for name in (USERS_INDEX, CHATLOG_INDEX, NOTE_INDEX)} | {
        f"/{MEOW_INDEX}/_search"
    }
    assert f"/{HIDDEN_INDEX}/_search" not in searched  # hidden indices are not sampled
    for request in seen:
        if request.path.endswith("/_search"):
            assert request.query["size"] == [str(CONFIG.sample)]
    listing = [s for s in seen if s.path == "/_cat/indices"]
    assert listing and listing[0].query["format"] == ["json"] and listing[0].query["bytes"] == ["b"]
    assert {s.path for s in seen} <= {"/", "/_cat/indices"} | searched


async def test_secured_cluster_is_info_never_open(secured: ReplayServer) -> None:
    before = len(secured.seen)
    result = await run_probe(ElasticsearchProbe(CONFIG), secured.port)
    assert isinstance(result, ProbeResult)
    assert [f.rule for f in result.findings] == ["elasticsearch.auth-required"]
    [finding] = result.findings
    assert finding.severity is Severity.INFO
    assert finding.auth is Auth.REQUIRED
    assert not finding.data.has_personal_data
    assert "Elasticsearch security" in finding.evidence[0].text
    logins = [s for s in secured.seen[before:] if s.authorization]
    # Each vendor default once, on GET / only: a short list, never a brute force.
    assert len(logins) == len(default_logins("elasticsearch", "elastic")) == 2
    assert {s.path for s in logins} == {"/"}
    assert {s.method for s in secured.seen[before:]} == {"GET"}


async def test_default_password_is_found_and_used_for_the_sample() -> None:
    with ReplayServer(elastic_cluster(users={"elastic": "changeme"})) as server:
        result = await run_probe(ElasticsearchProbe(CONFIG), server.port)
        searched = [s for s in server.seen if s.path.endswith("/_search")]
    assert isinstance(result, ProbeResult)
    main = only(result.findings, "elasticsearch.default-credentials")
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert main.severity is Severity.CRITICAL
    assert main.data.entities["PHONE"] >= 1
    assert any(
        "user 'elastic' logged in with a vendor default password" in e.text for e in main.evidence
    )
    assert searched and all(s.basic_user == "elastic" for s in searched)


async def test_opensearch_demo_admin_is_found() -> None:
    route = elastic_cluster(users={"admin": "admin"}, opensearch=True)
    with ReplayServer(route) as server:
        probe = ElasticsearchProbe(CONFIG)
        fingerprint = await probe.fingerprint("127.0.0.1", server.port)
        result = await run_probe(probe, server.port)
    assert fingerprint == Fingerprint(
        "elasticsearch", "auth required (OpenSearch security)", Access.AUTH_REQUIRED
    )
    main = only(result.findings, "elasticsearch.default-credentials")
    assert any("OpenSearch 2.11.0" in e.text and "'admin'" in e.text for e in main.evidence)


async def test_fingerprint_is_none_on_other_http_services(plain_http: ReplayServer) -> None:
    probe = ElasticsearchProbe(CONFIG)
    assert await probe.fingerprint("127.0.0.1", plain_http.port) is None
    basic_site = ReplayServer(
        lambda _: Reply(
            401,
            "<html>401 Authorization Required</html>",
            (("WWW-Authenticate", 'Basic realm="Restricted"'), ("Content-Type", "text/html")),
        )
    )
    with basic_site:  # a generic password-protected site is not a secured cluster
        assert await probe.fingerprint("127.0.0.1", basic_site.port) is None


async def test_fingerprints_tell_the_http_stores_apart(
    exposed: ReplayServer, secured: ReplayServer, plain_http: ReplayServer
) -> None:
    """Every probe asks every port; each answers only to its own service."""
    probes: list[Probe] = [KibanaProbe(CONFIG), CouchDBProbe(CONFIG), ElasticsearchProbe(CONFIG)]
    ports = [exposed.port, secured.port, plain_http.port]
    report = await Scanner(CONFIG, probes=probes).scan(parse_targets(["127.0.0.1"]), ports)
    services = {f.target.port: f.target.service for f in report.findings}
    assert services == {
        exposed.port: "elasticsearch",
        secured.port: "elasticsearch",
        plain_http.port: "unknown",
    }


@pytest.mark.parametrize("mode", ["endless", "drip-status", "drip-body"])
async def test_hostile_server_is_neither_recognised_nor_hangs(mode: Mode) -> None:
    with ReplayServer(hostile_route(mode)) as server:
        probe = ElasticsearchProbe(HOSTILE_CONFIG)
        fingerprint = await asyncio.wait_for(probe.fingerprint("127.0.0.1", server.port), BOUND)
        assert fingerprint is None
        # Even when told it is Elasticsearch, the probe stops with one clear line.
        result = await asyncio.wait_for(
            probe.probe("127.0.0.1", server.port, Fingerprint("elasticsearch", "forced")), BOUND
        )
    assert isinstance(result, ProbeSkipped)
    assert result.reason.startswith("GET /")
    assert "stopped" in result.reason
    assert "\n" not in result.reason


async def test_dripping_search_ends_in_skip_with_findings_so_far() -> None:
    """A cluster that answers / and the listing, then drips on one index's search."""
    route = elastic_cluster(overrides={f"/{USERS_INDEX}/_search": Reply(mode="drip-status")})
    with ReplayServer(route) as server:
        result = await run_probe(ElasticsearchProbe(HOSTILE_CONFIG), server.port)
    assert isinstance(result, ProbeSkipped)
    assert f"/{USERS_INDEX}/_search" in result.reason and "stopped" in result.reason
    main = only(result.findings, "elasticsearch.unauthenticated")  # proven before it stopped
    assert main.auth is Auth.NONE
    assert main.ransom_note  # the note index is sampled first, before the dripping one


async def test_endless_listing_is_cut_at_the_cap() -> None:
    route = elastic_cluster(overrides={"/_cat/indices": Reply(mode="endless")})
    with ReplayServer(route) as server:
        result = await run_probe(ElasticsearchProbe(HOSTILE_CONFIG), server.port)
    # a bounded read, nothing hung; and the scan says the count is a floor (scan.incomplete)
    assert isinstance(result, ProbeSkipped)
    assert "/_cat/indices" in result.reason and "at least" in result.reason
    main = only(result.findings, "elasticsearch.unauthenticated")
    assert main.severity is Severity.HIGH
    assert any(e.text.startswith("at least 0 indices") for e in main.evidence)


# ---------------------------------------------------------------------------------------------
# The shared HTTP helpers (perisai.probes.http) every HTTP probe relies on


def _redirecting(other_port: int) -> Route:
    def route(seen: Seen) -> Reply:
        if seen.path == "/elsewhere":
            return Reply(302, b"", (("Location", f"http://127.0.0.2:{other_port}/"),))
        if seen.path == "/moved":
            return Reply(301, b"", (("Location", "/"),))
        if seen.path == "/bomb":
            bomb = gzip.compress(b"\0" * (16 * 1024 * 1024))
            return Reply(body=bomb, headers=(("Content-Encoding", "gzip"),))
        return Reply(body=ES_ROOT)

    return route


async def test_bounded_get_stays_on_its_origin(plain_http: ReplayServer) -> None:
    before = len(plain_http.seen)
    with ReplayServer(_redirecting(plain_http.port)) as server:
        async with http_client("127.0.0.1", server.port, timeout=2.0) as client:
            away = await bounded_get(
                client, "/elsewhere", max_bytes=1024, timeout=2.0, max_redirects=3
            )
            moved = await bounded_get(client, "/moved", max_bytes=1024, timeout=2.0)
            followed = await bounded_get(
                client, "/moved", max_bytes=4096, timeout=2.0, max_redirects=1
            )
    assert away.status == 302  # another host: returned, never followed
    assert plain_http.seen[before:] == []
    assert moved.status == 301  # no redirect is followed unless asked for
    assert followed.status == 200 and followed.json() == ES_ROOT
    async with http_client("127.0.0.1", server.port, timeout=2.0) as client:
        for path in (f"//127.0.0.2:{plain_http.port}/", f"http://127.0.0.2:{plain_http.port}/"):
            with pytest.raises(HttpProbeError, match="refused"):
                await bounded_get(client, path, max_bytes=1024, timeout=2.0)
    assert plain_http.seen[before:] == []


async def test_bounded_get_caps_a_gzip_bomb() -> None:
    with ReplayServer(_redirecting(0)) as server:
        async with http_client("127.0.0.1", server.port, timeout=2.0) as client:
            answer = await bounded_get(client, "/bomb", max_bytes=64 * 1024, timeout=5.0)
    assert answer.status == 200
    assert answer.truncated and not answer.timed_out
    assert len(answer.body) == 64 * 1024
    assert answer.json() is None  # a truncated body is never parsed


async def test_client_ignores_proxies_from_the_environment(
    exposed: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # discard port: a proxy would fail
    async with http_client("127.0.0.1", exposed.port, timeout=2.0) as client:
        answer = await bounded_get(client, "/", max_bytes=4096, timeout=2.0)
    assert answer.status == 200 and answer.json() == ES_ROOT


def test_json_array_items_recovers_whole_items_from_a_cut_body() -> None:
    body = json.dumps(search_answer(make_indices()[0], 5)).encode()
    cut = body[: body.index(b'"_id": "4"')]
    items = json_array_items(cut, "hits")
    assert [item["_id"] for item in items] == ["1", "2", "3"]  # the fourth was cut mid-way
    assert json_array_items(b'[{"index": "a"}, {"index": "b"}]') == [{"index": "a"}, {"index": "b"}]
    assert json_array_items(b"<html>") == []


def test_defaults_files_hold_a_short_list() -> None:
    assert default_logins("elasticsearch", "elastic") == (
        ("elastic", "changeme"),
        ("admin", "admin"),
    )
    assert ("admin", "password") in default_logins("couchdb", "admin")
    assert default_logins("no-such-service", "admin") == ()
