"""Fake servers the probe tests share, all on 127.0.0.1 with a port the kernel picks.

- :func:`fake_server` runs an asyncio handler per connection in the test's own event loop (the
  hostile handlers of :mod:`tests.hostile` fit it too), with :func:`http_400` for "some HTTP
  server that is not this one";
- :class:`ReplayServer` is an HTTP/1.1 server in a thread that answers from a route and records
  every request it gets (the read-only proof of the HTTP probes); a :class:`Reply`'s ``mode``
  makes it hostile (an endless body, a status line or body dripped a byte a second);
- :func:`elastic_cluster` is such a route replaying an Elasticsearch or OpenSearch cluster in
  the formats of Elastic's REST API reference (no such server installs here; the Elasticsearch,
  Kibana and CouchDB tests use it);
- :func:`http_server` serves a ``BaseHTTPRequestHandler`` class in a thread, and
  :func:`misbehave` is the body such a handler sends to drip or to flood;
- :func:`run_probe` fingerprints, then probes, the way the scanner does, bounded against a hang.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from perisai.findings import Finding
from perisai.lab.seed import RANSOM_NOTE, make_messages, make_people
from perisai.probes import ProbeResult, ProbeSkipped, ScanConfig
from perisai.probes.interface import Probe
from tests.hostile import Handler

HOSTILE_CONFIG = ScanConfig(timeout=0.5, probe_deadline=4.0)
BOUND = 60.0  # a guard against a hang, not a timing assertion: the probes stop far sooner

# ---------------------------------------------------------------------------------------------
# Raw TCP fakes in the test's event loop


@contextlib.asynccontextmanager
async def fake_server(handler: Handler) -> AsyncIterator[int]:
    """A loopback server running ``handler`` per connection; yields its port. On exit every
    connection is aborted, which ends the handlers (their next read or drain fails)."""
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.create_task(serve(reader, writer)))

    server = await asyncio.start_server(track, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await server.wait_closed()


async def http_400(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Some HTTP server: whatever is asked, ``400 Bad Request`` with no body."""
    await reader.read(1024)
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()


# ---------------------------------------------------------------------------------------------
# A replaying HTTP server, and hostile ones

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
        credentials = basic_credentials(self.authorization)
        return credentials[0] if credentials else None


Route = Callable[[Seen], Reply]


def hostile_route(mode: Mode) -> Route:
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


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic …`` header, if that is what it is."""
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
            credentials = basic_credentials(seen.authorization)
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
# Hand-written HTTP servers in a thread


@contextlib.contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serve ``handler`` from a thread; yields the port, shuts the server down on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def misbehave(wfile: io.BufferedIOBase, mode: str, drip: bytes, flood: bytes) -> None:
    """The body of a hostile answer: ``drip`` a byte every 0.2 s (``mode == "drip"``), else
    ``flood`` repeated to 128 MB at most; stops quietly when the client hangs up."""
    try:
        if mode == "drip":
            for byte in drip:
                wfile.write(bytes([byte]))
                wfile.flush()
                time.sleep(0.2)
        else:
            for _ in range(2000):
                wfile.write(flood)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# Running a probe


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
