"""Kibana probe against replayed answers in Kibana's documented formats.

No Kibana installs here (Debian does not ship it; Elastic's archives come from its own site), so,
as DESIGN.md provides for, this module replays Kibana from a local HTTP server on 127.0.0.1 (a
free port picked by the kernel), with the replay server of :mod:`tests.fakes`: the
``GET /api/status`` document of Kibana 8 (``status.overall.level``) and 7 (``state: green``),
the redacted status an anonymous user gets when ``status.allowAnonymous`` is on, the 401 of a
Kibana with security on, the ``kbn-name`` / ``kbn-license-sig`` headers Kibana sets on every
answer, ``GET /api/saved_objects/_find`` results, and the ``302`` of ``GET /``. The replay's
record of every request is the read-only proof.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from perisai.findings import Auth, Severity
from perisai.probes import ProbeResult, ProbeSkipped, ScanConfig
from perisai.probes.couchdb import CouchDBProbe
from perisai.probes.elasticsearch import ElasticsearchProbe
from perisai.probes.interface import Fingerprint
from perisai.probes.kibana import KibanaProbe
from tests.fakes import (
    BOUND,
    HOSTILE_CONFIG,
    Mode,
    ReplayServer,
    Reply,
    Route,
    Seen,
    elastic_cluster,
    hostile_route,
    only,
    plain_http_route,
    run_probe,
)

CONFIG = ScanConfig(timeout=2.0)
KIBANA_HEADERS = (
    ("kbn-name", "kibana-prod"),
    ("kbn-license-sig", "da420c53321c02c93e0f8b5e5bf5d8ba1bd3e3d4f5b6c7d8e9f0a1b2c3d4e5f6"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer-when-downgrade"),
    ("cache-control", "private, no-cache, no-store, must-revalidate"),
)
STATUS_8: dict[str, Any] = {
    "name": "kibana-prod",
    "uuid": "5b2de169-2785-441b-ae8c-186a1936b17d",
    "version": {
        "number": "8.11.0",
        "build_hash": "f7a7a68f2a8c2ec1b8e5d1f2b3c4d5e6f7a8b9c0",
        "build_number": 68312,
        "build_snapshot": False,
        "build_flavor": "traditional",
        "build_date": "2023-11-04T11:31:47.000Z",
    },
    "status": {
        "overall": {"level": "available", "summary": "All services and plugins are available"},
        "core": {
            "elasticsearch": {"level": "available", "summary": "Elasticsearch is available"},
            "savedObjects": {"level": "available", "summary": "SavedObjects service has started"},
        },
        "plugins": {
            "security": {"level": "available", "summary": "All dependencies are available"}
        },
    },
    "metrics": {
        "last_updated": "2024-03-01T08:00:00.000Z",
        "collection_interval_in_millis": 5000,
        "concurrent_connections": 3,
    },
}
STATUS_7: dict[str, Any] = {
    "name": "kibana",
    "uuid": "0c6c9d4f-6f2b-4b2d-9c0b-5b7a1e1b2d3c",
    "version": {
        "number": "7.10.2",
        "build_hash": "a0b793698735eb1d0b0e0b4b5c4e5b1e3e0b0e0b",
        "build_number": 36264,
        "build_snapshot": False,
    },
    "status": {
        "overall": {
            "state": "green",
            "title": "Green",
            "nickname": "Looking good",
            "icon": "success",
            "uiColor": "secondary",
            "since": "2024-03-01T08:00:00.000Z",
        },
        "statuses": [{"id": "core:elasticsearch@7.10.2", "state": "green", "message": "Ready"}],
    },
    "metrics": {"last_updated": "2024-03-01T08:00:00.000Z", "collection_interval_in_millis": 5000},
}
REDACTED_STATUS: dict[str, Any] = {"status": {"overall": {"level": "available"}}}
UNAUTHORIZED: dict[str, Any] = {
    "statusCode": 401,
    "error": "Unauthorized",
    "message": "Unauthorized",
}
INDEX_PATTERNS = ("chatlog-*", "users")


def find_answer() -> dict[str, Any]:
    """``GET /api/saved_objects/_find?type=index-pattern`` as Kibana answers it."""
    return {
        "page": 1,
        "per_page": 20,
        "total": len(INDEX_PATTERNS),
        "saved_objects": [
            {
                "type": "index-pattern",
                "id": f"ff959d40-b880-11e8-a6d9-e546fe2bba5{n}",
                "namespaces": ["default"],
                "attributes": {"title": title, "timeFieldName": "@timestamp"},
                "references": [],
                "updated_at": "2024-03-01T08:00:00.000Z",
                "version": "WzEsMV0=",
                "score": 0,
            }
            for n, title in enumerate(INDEX_PATTERNS)
        ],
    }


def kibana(*, status: dict[str, Any] | None, find_open: bool = True) -> Route:
    """A Kibana: ``status=None`` means security on (401 without a login)."""

    def route(seen: Seen) -> Reply:
        if seen.path == "/":
            location = "/spaces/enter" if status is not None else "/login?next=%2F"
            return Reply(302, b"", (*KIBANA_HEADERS, ("location", location)))
        if seen.path == "/api/status":
            if status is None:
                return Reply(401, UNAUTHORIZED, KIBANA_HEADERS)
            return Reply(body=status, headers=KIBANA_HEADERS)
        if seen.path == "/api/saved_objects/_find":
            if status is None or not find_open:
                return Reply(401, UNAUTHORIZED, KIBANA_HEADERS)
            return Reply(body=find_answer(), headers=KIBANA_HEADERS)
        not_found = {"statusCode": 404, "error": "Not Found", "message": "Not Found"}
        return Reply(404, not_found, KIBANA_HEADERS)

    return route


@pytest.fixture(scope="module")
def open_kibana() -> Iterator[ReplayServer]:
    with ReplayServer(kibana(status=STATUS_8)) as server:
        yield server


@pytest.fixture(scope="module")
def secured_kibana() -> Iterator[ReplayServer]:
    with ReplayServer(kibana(status=None)) as server:
        yield server


async def test_open_kibana_is_high(open_kibana: ReplayServer) -> None:
    result = await run_probe(KibanaProbe(CONFIG), open_kibana.port)
    assert isinstance(result, ProbeResult)
    [finding] = result.findings
    assert finding.rule == "kibana.unauthenticated"
    assert finding.target.service == "kibana"
    assert finding.severity is Severity.HIGH  # it fronts Elasticsearch; no data was sampled
    assert finding.auth is Auth.NONE
    text = [e.text for e in finding.evidence]
    assert any("Kibana 8.11.0, name 'kibana-prod', overall status available" in t for t in text)
    assert any("2 index patterns (chatlog-*, users)" in t for t in text)
    assert any("read-only requests used" in t for t in text)


async def test_probe_sends_only_gets(open_kibana: ReplayServer) -> None:
    before = len(open_kibana.seen)
    await run_probe(KibanaProbe(CONFIG), open_kibana.port)
    seen = open_kibana.seen[before:]
    assert {s.method for s in seen} == {"GET"}
    assert {s.path for s in seen} == {"/api/status", "/api/saved_objects/_find"}
    assert all(s.authorization is None for s in seen)


async def test_secured_kibana_is_info_never_open(secured_kibana: ReplayServer) -> None:
    probe = KibanaProbe(CONFIG)
    fingerprint = await probe.fingerprint("127.0.0.1", secured_kibana.port)
    assert fingerprint == Fingerprint("kibana", "auth required: Kibana")
    result = await run_probe(probe, secured_kibana.port)
    assert isinstance(result, ProbeResult)
    assert [f.rule for f in result.findings] == ["kibana.auth-required"]
    assert result.findings[0].severity is Severity.INFO
    assert result.findings[0].auth is Auth.REQUIRED


@pytest.mark.parametrize(
    ("route", "said"),
    [
        (kibana(status=STATUS_7, find_open=False), "status.allowAnonymous"),
        (kibana(status=REDACTED_STATUS), "redacted status"),
    ],
    ids=["kibana7-public-status", "kibana8-redacted-status"],
)
async def test_public_status_page_alone_is_not_open(route: Route, said: str) -> None:
    with ReplayServer(route) as server:
        result = await run_probe(KibanaProbe(CONFIG), server.port)
    assert isinstance(result, ProbeResult)
    [finding] = result.findings
    assert finding.rule == "kibana.auth-required"
    assert said in finding.evidence[0].text


async def test_kibana_7_open_reads_the_legacy_status() -> None:
    with ReplayServer(kibana(status=STATUS_7)) as server:
        result = await run_probe(KibanaProbe(CONFIG), server.port)
    finding = only(result.findings, "kibana.unauthenticated")
    assert any(
        "Kibana 7.10.2" in e.text and "overall status green" in e.text for e in finding.evidence
    )


async def test_fingerprint_is_none_on_elasticsearch_and_other_http() -> None:
    probe = KibanaProbe(CONFIG)
    servers = [
        ReplayServer(elastic_cluster()),
        ReplayServer(elastic_cluster(users={"elastic": "Xk2-long-random-Secret"})),
        ReplayServer(plain_http_route),
    ]
    for server in servers:
        with server:
            assert await probe.fingerprint("127.0.0.1", server.port) is None


async def test_other_http_probes_do_not_take_kibana(
    open_kibana: ReplayServer, secured_kibana: ReplayServer
) -> None:
    for port in (open_kibana.port, secured_kibana.port):
        assert await ElasticsearchProbe(CONFIG).fingerprint("127.0.0.1", port) is None
        assert await CouchDBProbe(CONFIG).fingerprint("127.0.0.1", port) is None


@pytest.mark.parametrize("mode", ["endless", "drip-status", "drip-body"])
async def test_hostile_server_is_neither_recognised_nor_hangs(mode: Mode) -> None:
    with ReplayServer(hostile_route(mode)) as server:
        probe = KibanaProbe(HOSTILE_CONFIG)
        assert await asyncio.wait_for(probe.fingerprint("127.0.0.1", server.port), BOUND) is None
        result = await asyncio.wait_for(
            probe.probe("127.0.0.1", server.port, Fingerprint("kibana", "forced")), BOUND
        )
    assert isinstance(result, ProbeSkipped)
    assert result.reason.startswith("GET /api/status")
    assert "\n" not in result.reason


async def test_saved_objects_drip_keeps_what_was_proven() -> None:
    def route(seen: Seen) -> Reply:
        if seen.path == "/api/saved_objects/_find":
            return Reply(mode="drip-status")
        return kibana(status=STATUS_8)(seen)

    with ReplayServer(route) as server:
        result = await run_probe(KibanaProbe(HOSTILE_CONFIG), server.port)
    assert isinstance(result, ProbeSkipped)
    assert "/api/saved_objects/_find" in result.reason
    assert [f.rule for f in result.findings] == ["kibana.unauthenticated"]


def _heavy_find(*, with_total: bool) -> Route:
    """A Kibana 7 whose index patterns carry their whole field list (it ignores ``fields``):
    the answer runs past the probe's byte cap, as on a Beats install."""
    field_list = json.dumps([{"name": f"field_{n}", "type": "string"} for n in range(400)])
    patterns = [
        {"type": "index-pattern", "id": f"p{n}", "attributes": {"title": f"beat-{n}-*"}}
        | {"fields": field_list}
        for n in range(40)
    ]
    body: dict[str, Any] = {"page": 1, "per_page": 20}
    if with_total:
        body["total"] = 40
    body["saved_objects"] = patterns
    open_kibana = kibana(status=STATUS_7)

    def route(seen: Seen) -> Reply:
        if seen.path == "/api/saved_objects/_find":
            return Reply(body=body, headers=KIBANA_HEADERS)
        return open_kibana(seen)

    return route


@pytest.mark.parametrize(("with_total", "count"), [(True, "40"), (False, "at least ")])
async def test_a_find_answer_cut_at_its_cap_never_reads_as_the_whole(
    with_total: bool, count: str
) -> None:
    """The total Kibana states, read from the head of a cut answer; else "at least N", and
    the probe says it did not read the listing to its end (scan.incomplete)."""
    with ReplayServer(_heavy_find(with_total=with_total)) as server:
        result = await run_probe(KibanaProbe(CONFIG), server.port)
        [request] = [s for s in server.seen if s.path == "/api/saved_objects/_find"]
    assert isinstance(result, ProbeSkipped)
    assert "answer cut at" in result.reason
    [finding] = result.findings
    text = "\n".join(e.text for e in finding.evidence)
    assert f"without credentials: {count}" in text and "index patterns" in text, text
    assert request.query["fields"] == ["title"]
