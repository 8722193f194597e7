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

The replay server and the hostile servers (endless body, one byte a second) are reused by the
Kibana and CouchDB probe tests.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from perisai.findings import Auth, Finding, Severity
from perisai.lab.seed import RANSOM_BTC_ADDRESS, RANSOM_NOTE, make_messages, make_people
from perisai.probes import ProbeResult, ProbeSkipped, ScanConfig
from perisai.probes.couchdb import CouchDBProbe
from perisai.probes.elasticsearch import ElasticsearchProbe
from perisai.probes.http import (
    HttpProbeError,
    bounded_get,
    default_credentials,
    http_client,
    json_array_items,
)
from perisai.probes.interface import Fingerprint, Probe
from perisai.probes.kibana import KibanaProbe
from perisai.scanner import Scanner
from perisai.targets import parse_targets

# ---------------------------------------------------------------------------------------------
# A replaying HTTP server, and hostile ones (shared with the Kibana and CouchDB tests)

Mode = Literal["normal", "endless", "drip-status", "drip-body"]
ENDLESS_LENGTH = 10**12  # announced, never sent in full
DRIP_INTERVAL = 1.0  # seconds between two bytes of a dripping answer


@dataclass(frozen=True)
class Reply:
    """One canned answer; ``mode`` makes it hostile."""

    status: int = 200
    body: Any = b""  # bytes, str, or a JSON-ready value
    headers: tuple[tuple[str, str], ...] = ()
    mode: Mode = "normal"

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Seen:
    """One request the replay server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None

    @property
    def basic_user(self) -> str | None:
        credentials = _basic(self.authorization)
        return credentials[0] if credentials else None


Route = Callable[[Seen], Reply]


def hostile(mode: Mode) -> Route:
    """A route answering every request the hostile way ``mode`` says."""
    return lambda _: Reply(mode=mode)


@dataclass
class ReplayServer:
    """An HTTP/1.1 server on 127.0.0.1 (a free port) answering from ``route``; use ``with``."""

    route: Route
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def stopping(self) -> threading.Event:
        return self._stop


def _handler_for(replay: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10  # a blocked write to a client that went away ends, eventually

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            self._serve()

        do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 1 << 20))
            parts = urlsplit(self.path)
            seen = Seen(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                authorization=self.headers.get("Authorization"),
            )
            replay.seen.append(seen)
            reply = replay.route(seen)
            try:
                self._write(reply)
            except OSError:
                self.close_connection = True  # the client hung up: what a hostile test wants

        def _write(self, reply: Reply) -> None:
            stop = replay.stopping
            if reply.mode == "drip-status":
                self.close_connection = True
                for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}":
                    if stop.wait(DRIP_INTERVAL):
                        return
                    self.wfile.write(bytes([byte]))
                return
            body = reply.payload()
            self.send_response_only(reply.status)
            names = {name.lower() for name, _ in reply.headers}
            for name, value in reply.headers:
                self.send_header(name, value)
            if "content-type" not in names:
                self.send_header("Content-Type", "application/json; charset=UTF-8")
            hostile_body = reply.mode in ("endless", "drip-body")
            self.send_header("Content-Length", str(ENDLESS_LENGTH if hostile_body else len(body)))
            self.end_headers()
            if reply.mode == "endless":
                self.close_connection = True
                self.wfile.write(b'{"padding": "')
                chunk = b"x" * 65536
                while not stop.is_set():
                    self.wfile.write(chunk)
            elif reply.mode == "drip-body":
                self.close_connection = True
                while not stop.wait(DRIP_INTERVAL):
                    self.wfile.write(b" ")
            elif self.command != "HEAD":
                self.wfile.write(body)

    return Handler


def _basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    return user, password


def plain_http_route(seen: Seen) -> Reply:
    """Some other web service: an HTML page and a JSON API that are not Elastic's."""
    if seen.path == "/api/status":
        return Reply(body={"status": "ok", "version": {"number": "1.4.2"}, "uptime": 1234})
    return Reply(
        body="<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head></html>",
        headers=(("Content-Type", "text/html"), ("Server", "nginx/1.22.1")),
    )


# ---------------------------------------------------------------------------------------------
# A cluster in Elastic's documented formats

ES_ROOT: dict[str, Any] = {
    "name": "es-node-1",
    "cluster_name": "chat-logs",
    "cluster_uuid": "bP8xT0c4R7e3kq0Xn2ZQ1A",
    "version": {
        "number": "8.11.1",
        "build_flavor": "default",
        "build_type": "docker",
        "build_hash": "6f9ff581fbcde658e6f69d6ce03050f060d1fd0c",
        "build_date": "2023-11-11T10:05:59.421038163Z",
        "build_snapshot": False,
        "lucene_version": "9.8.0",
        "minimum_wire_compatibility_version": "7.17.0",
        "minimum_index_compatibility_version": "7.0.0",
    },
    "tagline": "You Know, for Search",
}
OPENSEARCH_ROOT: dict[str, Any] = {
    "name": "opensearch-node1",
    "cluster_name": "opensearch-cluster",
    "cluster_uuid": "Jq2n1Zb7QeWmW0l9cSgk3g",
    "version": {
        "distribution": "opensearch",
        "number": "2.11.0",
        "build_type": "tar",
        "build_hash": "4dcad6dd1fd45b6bd91f041a041829c8687278fa",
        "build_date": "2023-10-13T02:55:55.511945994Z",
        "build_snapshot": False,
        "lucene_version": "9.7.0",
        "minimum_wire_compatibility_version": "7.10.0",
        "minimum_index_compatibility_version": "7.0.0",
    },
    "tagline": "The OpenSearch Project: https://opensearch.org/",
}
ES_CHALLENGE = 'Basic realm="security" charset="UTF-8"'
ES_PRODUCT_HEADER = ("X-elastic-product", "Elasticsearch")
MEOW_INDEX = "a7f3kq9x2m-meow"
NOTE_INDEX = "read_me"
HIDDEN_INDEX = ".kibana_1"
USERS_INDEX = "users"
CHATLOG_INDEX = "chatlog-2024.03"


@dataclass(frozen=True)
class IndexData:
    name: str
    docs: tuple[dict[str, Any], ...]
    docs_count: int  # what _cat/indices reports (the replay holds a sample of them)
    store_size: int


def make_indices() -> list[IndexData]:
    rng = random.Random(7)
    people = make_people(40, rng)
    messages = make_messages(people, 60, rng)
    users = tuple(
        {
            "name": p.name,
            "phone": p.e164,
            "email": p.email,
            "device_id": p.device_id,
            "country": p.region,
        }
        for p in people
    )
    logs = tuple(
        {
            "@timestamp": m.sent_at.isoformat(),
            "event": "message.delivered",
            "msisdn": m.sender.msisdn,
            "to": m.recipient.e164,
            "msg": m.body,
            "geo": {"lat": m.lat, "lon": m.lon},
        }
        for m in messages
    )
    return [
        IndexData(USERS_INDEX, users, 12_400, 3_481_266),
        IndexData(CHATLOG_INDEX, logs, 1_930_112, 812_331_520),
        IndexData(NOTE_INDEX, ({"message": RANSOM_NOTE},), 1, 5_520),
        IndexData(MEOW_INDEX, (), 0, 225),
        IndexData(HIDDEN_INDEX, ({"type": "config", "config": {"buildNum": 68312}},), 1, 9_000),
    ]


def cat_row(index: IndexData) -> dict[str, str]:
    """One row of ``GET /_cat/indices?format=json&bytes=b`` (every value is a string)."""
    return {
        "health": "yellow",
        "status": "open",
        "index": index.name,
        "uuid": base64.urlsafe_b64encode(index.name.encode()).decode()[:22],
        "pri": "1",
        "rep": "1",
        "docs.count": str(index.docs_count),
        "docs.deleted": "0",
        "store.size": str(index.store_size),
        "pri.store.size": str(index.store_size),
    }


def search_answer(index: IndexData, size: int) -> dict[str, Any]:
    """``GET /<index>/_search?size=N`` as Elasticsearch 8 answers it."""
    hits = [
        {"_index": index.name, "_id": str(n), "_score": 1.0, "_source": doc}
        for n, doc in enumerate(index.docs[:size], start=1)
    ]
    return {
        "took": 3,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {
            "total": {"value": index.docs_count, "relation": "eq"},
            "max_score": 1.0 if hits else None,
            "hits": hits,
        },
    }


def es_unauthorized(path: str, opensearch: bool, presented: str | None) -> Reply:
    """The 401 of a cluster with security on, as each vendor sends it."""
    if opensearch:
        return Reply(
            401,
            "Unauthorized",
            (
                ("WWW-Authenticate", 'Basic realm="OpenSearch Security"'),
                ("Content-Type", "text/plain; charset=UTF-8"),
            ),
        )
    reason = (
        f"unable to authenticate user [{presented}] for REST request [{path}]"
        if presented
        else f"missing authentication credentials for REST request [{path}]"
    )
    cause = {
        "type": "security_exception",
        "reason": reason,
        "header": {"WWW-Authenticate": [ES_CHALLENGE, "ApiKey"]},
    }
    return Reply(
        401,
        {"error": {"root_cause": [cause], **cause}, "status": 401},
        (("WWW-Authenticate", ES_CHALLENGE), ("WWW-Authenticate", "ApiKey")),
    )


def elastic_cluster(
    *,
    users: dict[str, str] | None = None,
    opensearch: bool = False,
    indices: list[IndexData] | None = None,
    overrides: dict[str, Reply] | None = None,
) -> Route:
    """A cluster: open when ``users`` is None, else Basic auth against ``users``."""
    by_name = {index.name: index for index in (indices if indices is not None else make_indices())}
    root = OPENSEARCH_ROOT if opensearch else ES_ROOT
    product = () if opensearch else (ES_PRODUCT_HEADER,)

    def route(seen: Seen) -> Reply:
        if overrides and seen.path in overrides:
            return overrides[seen.path]
        if users is not None:
            credentials = _basic(seen.authorization)
            if credentials is None or users.get(credentials[0]) != credentials[1]:
                return es_unauthorized(seen.path, opensearch, seen.basic_user)
        if seen.method not in ("GET", "HEAD"):
            return Reply(405, {"error": "Incorrect HTTP method", "status": 405}, product)
        if seen.path == "/":
            return Reply(body=root, headers=product)
        if seen.path == "/_cat/indices":
            return Reply(body=[cat_row(i) for i in by_name.values()], headers=product)
        parts = seen.path.strip("/").split("/")
        if len(parts) == 2 and parts[1] == "_search" and unquote(parts[0]) in by_name:
            size = int(seen.query.get("size", ["10"])[0])
            return Reply(body=search_answer(by_name[unquote(parts[0])], size), headers=product)
        return Reply(
            400,
            {"error": f"no handler found for uri [{seen.path}] and method [{seen.method}]"},
            product,
        )

    return route


# ---------------------------------------------------------------------------------------------
# Tests

CONFIG = ScanConfig(timeout=2.0)
HOSTILE_CONFIG = ScanConfig(timeout=0.5, probe_deadline=4.0)
BOUND = 60.0  # a guard against a hang, not a timing assertion: the probes stop far sooner


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


async def run_probe(probe: Probe, port: int) -> ProbeResult | ProbeSkipped:
    """Fingerprint, then probe, the way the scanner does (bounded against a hang)."""
    fingerprint = await asyncio.wait_for(probe.fingerprint("127.0.0.1", port), BOUND)
    assert fingerprint is not None, f"{probe.service} did not recognise its own service"
    result: ProbeResult | ProbeSkipped = await asyncio.wait_for(
        probe.probe("127.0.0.1", port, fingerprint), BOUND
    )
    return result


def only(findings: tuple[Finding, ...], rule: str) -> Finding:
    [finding] = [f for f in findings if f.rule == rule]
    return finding


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
    assert len(logins) == len(default_credentials("elasticsearch")) == 2
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
    assert fingerprint == Fingerprint("elasticsearch", "auth required (OpenSearch security)")
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
    with ReplayServer(hostile(mode)) as server:
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
    assert isinstance(result, ProbeResult)  # a bounded read: nothing listed, nothing hung
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
    assert default_credentials("elasticsearch") == (
        ("elastic", "changeme"),
        ("admin", "admin"),
    )
    assert ("admin", "password") in default_credentials("couchdb")
    assert default_credentials("no-such-service") == ()
