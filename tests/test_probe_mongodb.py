"""MongoDB probe against mockupdb, MongoDB's own wire-protocol test server, plus hostile fakes.

No MongoDB server installs from Debian's packages, so these tests run the probe against
``mockupdb`` (PyPI), answering each command the probe sends the way the MongoDB manual
documents it: ``isMaster``/``hello`` with the real limits (16 MB documents, 48 MB messages),
``buildInfo``, ``listDatabases`` with ``sizeOnDisk``, ``listCollections`` and ``find`` as
cursors, ``count``, ``endSessions``, error code 13 ``Unauthorized`` when access control is on,
and SCRAM-SHA-256 (RFC 7677, as MongoDB runs it in ``saslStart``/``saslContinue``) for users.
Every command the fake receives is logged: the read-only test checks that log. The hostile
servers are raw asyncio fakes that answer ``isMaster`` and then announce a 1 GB reply, drip,
or claim limits no MongoDB has.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import secrets
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import bson
import pytest
from bson.binary import Binary
from bson.objectid import ObjectId
from mockupdb import MockupDB

from perisai.findings import Auth, Finding, Severity
from perisai.lab.instances import Instance
from perisai.lab.seed import (
    RANSOM_BTC_ADDRESS,
    RANSOM_NOTE,
    log_record,
    make_messages,
    make_people,
)
from perisai.lab.servers.memcached import seed_memcached, start_memcached
from perisai.probes import ProbeResult, ProbeSkipped, ScanConfig
from perisai.probes.credentials import default_credentials
from perisai.probes.interface import Probe
from perisai.probes.mongodb import MongoDBProbe
from perisai.probes.postgres import PostgresProbe
from perisai.probes.redis import RedisProbe
from perisai.scanner import Scanner
from perisai.targets import parse_targets
from tests.fakes import fake_server, http_400
from tests.hostile import Handler, silent

SAFETY_NET = 120.0  # a hung probe fails the test instead of hanging the suite
RANSOM_DATABASE = "READ__ME_TO_RECOVER_YOUR_DATA"  # as the 2017-2020 campaigns named it
# Commands that cannot change data; anything else in the fake's log fails the read-only test.
READ_ONLY_COMMANDS = {
    "ismaster",
    "hello",
    "buildinfo",
    "listdatabases",
    "listcollections",
    "count",
    "find",
    "endsessions",
    "killcursors",
    "saslstart",
    "saslcontinue",
    "ping",
}
HELLO = {
    "ismaster": True,
    "isWritablePrimary": True,
    "maxBsonObjectSize": 16 * 1024 * 1024,
    "maxMessageSizeBytes": 48_000_000,
    "maxWriteBatchSize": 100_000,
    "logicalSessionTimeoutMinutes": 30,
    "connectionId": 1,
    "minWireVersion": 0,
    "maxWireVersion": 21,  # MongoDB 7.0
    "readOnly": False,
    "ok": 1.0,
}

Documents = dict[str, dict[str, list[dict[str, Any]]]]


def _chat_data(ransom_note: bool) -> Documents:
    """A messaging app's logging database from the lab's generators (and a ransom note)."""
    rng = random.Random(20240301)
    people = make_people(40, rng)
    messages = make_messages(people, 60, rng)
    data: Documents = {
        "chatlog": {
            "messages": [{"_id": ObjectId(), **log_record(m, rng)} for m in messages],
            "users": [
                {
                    "_id": ObjectId(),
                    "name": p.name,
                    "phone": p.e164,
                    "email": p.email,
                    "device": {"id": p.device_id, "registered": datetime(2024, 3, 1, tzinfo=UTC)},
                }
                for p in people
            ],
        },
        "admin": {"system.version": [{"_id": "featureCompatibilityVersion", "version": "7.0"}]},
    }
    if ransom_note:
        data[RANSOM_DATABASE] = {"README": [{"_id": ObjectId(), "content": RANSOM_NOTE}]}
    return data


class FakeMongo:
    """A mockupdb server answering as MongoDB documents its commands; logs every command."""

    def __init__(self, databases: Documents, users: dict[str, str] | None = None) -> None:
        self.databases = databases
        self.users = users or {}  # with users, access control is on
        self.commands: list[str] = []
        self._logged_in: set[int] = set()  # client ports of authenticated connections
        self._conversations: dict[int, tuple[str, str, str, bytes]] = {}
        self.server = MockupDB()
        self.server.autoresponds(self._handle)

    def __enter__(self) -> FakeMongo:
        self.server.run()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.stop()

    @property
    def port(self) -> int:
        port: int = self.server.port
        return port

    def _handle(self, request: Any) -> bool:
        name = str(request.command_name).lower()
        doc = request.doc
        self.commands.append(name)
        db = str(doc.get("$db") or str(request.namespace).split(".", 1)[0])
        if name in ("ismaster", "hello"):
            reply = dict(HELLO, localTime=datetime.now(UTC))
            if doc.get("helloOk"):
                reply["helloOk"] = True
            if "saslSupportedMechs" in doc:
                reply["saslSupportedMechs"] = ["SCRAM-SHA-256"]
            return bool(request.replies(reply))
        if name in ("endsessions", "ping"):
            return bool(request.replies(ok=1.0))
        if name == "saslstart":
            return self._sasl_start(request, doc)
        if name == "saslcontinue":
            return self._sasl_continue(request, doc)
        if self.users and request.client_port not in self._logged_in:
            return bool(
                request.replies(
                    ok=0.0,
                    errmsg=f"command {name} requires authentication",
                    code=13,
                    codeName="Unauthorized",
                )
            )
        if name == "buildinfo":
            return bool(request.replies(version="7.0.12", versionArray=[7, 0, 12, 0], ok=1.0))
        if name == "listdatabases":
            sizes = {
                n: 8192 * (1 + sum(len(c) for c in colls.values()))
                for n, colls in self.databases.items()
            }
            databases = [
                {"name": n, "sizeOnDisk": size, "empty": False} for n, size in sorted(sizes.items())
            ]
            total = sum(sizes.values())
            return bool(request.replies(databases=databases, totalSize=total, ok=1.0))
        if name == "listcollections":
            batch = [
                {"name": c, "type": "collection", "options": {}, "info": {"readOnly": False}}
                for c in sorted(self.databases.get(db, {}))
            ]
            cursor = {"id": 0, "ns": f"{db}.$cmd.listCollections", "firstBatch": batch}
            return bool(request.replies(cursor=cursor, ok=1.0))
        if name == "count":
            return bool(request.replies(n=len(self._collection(db, doc["count"])), ok=1.0))
        if name == "find":
            documents = self._collection(db, doc["find"])
            limit = abs(int(doc.get("limit", 0))) or 101
            cursor = {"id": 0, "ns": f"{db}.{doc['find']}", "firstBatch": documents[:limit]}
            return bool(request.replies(cursor=cursor, ok=1.0))
        return bool(
            request.replies(
                ok=0.0, errmsg=f"no such command: '{name}'", code=59, codeName="CommandNotFound"
            )
        )

    def _collection(self, db: str, name: str) -> list[dict[str, Any]]:
        return self.databases.get(db, {}).get(name, [])

    # SCRAM-SHA-256 as MongoDB runs it: saslStart carries client-first, saslContinue the proof.

    def _sasl_start(self, request: Any, doc: Any) -> bool:
        message = bytes(doc["payload"]).decode()
        bare = message.split(",", 2)[2]
        fields = dict(part.split("=", 1) for part in bare.split(","))
        nonce = fields["r"] + base64.b64encode(secrets.token_bytes(18)).decode()
        salt = hashlib.sha256(fields["n"].encode()).digest()[:16]
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i=4096"
        self._conversations[request.client_port] = (fields["n"], bare, server_first, salt)
        return bool(
            request.replies(
                conversationId=1, done=False, payload=Binary(server_first.encode()), ok=1.0
            )
        )

    def _sasl_continue(self, request: Any, doc: Any) -> bool:
        message = bytes(doc["payload"]).decode()
        if not message:
            return bool(request.replies(conversationId=1, done=True, payload=Binary(b""), ok=1.0))
        user, bare, server_first, salt = self._conversations.pop(request.client_port)
        without_proof, _, proof = message.rpartition(",p=")
        auth_message = f"{bare},{server_first},{without_proof}".encode()
        password = self.users.get(user)
        salted = hashlib.pbkdf2_hmac("sha256", (password or "").encode(), salt, 4096)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
        expected = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        if password is None or base64.b64decode(proof) != expected:
            return bool(
                request.replies(
                    ok=0.0,
                    errmsg="Authentication failed.",
                    code=18,
                    codeName="AuthenticationFailed",
                )
            )
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        verifier = base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()
        self._logged_in.add(request.client_port)
        return bool(
            request.replies(
                conversationId=1, done=True, payload=Binary(f"v={verifier}".encode()), ok=1.0
            )
        )


@pytest.fixture(scope="module")
def memcached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """Another protocol to point the MongoDB fingerprint at."""
    instance = start_memcached(
        "mc-beside-mongodb", tmp_path_factory.mktemp("mongodb"), exposed=True
    )
    try:
        seed_memcached(instance)
        yield instance
    finally:
        instance.stop()


def _probes(config: ScanConfig) -> list[Probe]:
    """The reviewed probes of other protocols (they fingerprint the port first, as in a real
    scan of a non-default port), then this one."""
    return [RedisProbe(config), PostgresProbe(config), MongoDBProbe(config)]


async def _scan(
    port: int, config: ScanConfig | None = None, *, only_mongodb: bool = False
) -> list[Finding]:
    config = config or ScanConfig(timeout=2.0)
    probes = [MongoDBProbe(config)] if only_mongodb else _probes(config)
    report = await asyncio.wait_for(
        Scanner(config, probes=probes).scan(parse_targets([f"127.0.0.1:{port}"])), SAFETY_NET
    )
    return report.findings


async def test_open_mongodb_is_critical_with_personal_data_and_the_ransom_note() -> None:
    with FakeMongo(_chat_data(ransom_note=True)) as mongo:
        findings = await _scan(mongo.port)
    [main] = [f for f in findings if f.rule == "mongodb.unauthenticated"]
    assert main.target.service == "mongodb"  # recognised on a random port by its answer
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL
    assert main.ransom_note
    assert main.data.entities["PHONE"] >= 1 and main.data.entities["EMAIL"] >= 1
    # The count of every collection sampled (admin's system.* collections are not).
    assert main.data.records_estimated == 60 + 40 + 1
    assert any("MongoDB 7.0.12" in e.text and "3 databases" in e.text for e in main.evidence)
    assert any(e.text.startswith("chatlog.users: ~40 documents") for e in main.evidence)
    [note] = [f for f in findings if f.rule == "compromise.ransom-note"]
    assert note.object == f"{RANSOM_DATABASE}.README"
    assert any(e.text == f"payment address: {RANSOM_BTC_ADDRESS}" for e in note.evidence)
    assert any("Bitcoin" in e.text for e in note.evidence)


async def test_mongodb_with_access_control_is_info_never_open() -> None:
    with FakeMongo(
        _chat_data(ransom_note=False), users={"app": secrets.token_urlsafe(18)}
    ) as mongo:
        findings = await _scan(mongo.port)
        commands = set(mongo.commands)
    assert [f.rule for f in findings] == ["mongodb.auth-required"]
    assert findings[0].severity is Severity.INFO
    assert findings[0].auth is Auth.REQUIRED
    assert "code 13" in findings[0].evidence[0].text
    assert f"{len(default_credentials('mongodb'))} vendor default" in findings[0].evidence[0].text
    assert "find" not in commands and "listcollections" not in commands


async def test_default_credentials_are_found() -> None:
    with FakeMongo(_chat_data(ransom_note=False), users={"root": "example"}) as mongo:
        findings = await _scan(mongo.port)
        commands = set(mongo.commands)
    [main] = [f for f in findings if f.rule == "mongodb.default-credentials"]
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert main.severity is Severity.CRITICAL
    assert any("'root'" in e.text and "default password" in e.text for e in main.evidence)
    assert {"saslstart", "saslcontinue", "find"} <= commands


def test_default_credentials_come_from_the_data_file() -> None:
    credentials = default_credentials("mongodb")
    assert ("admin", "admin") in {(c.user, c.password) for c in credentials}
    assert 3 <= len(credentials) <= 20  # a short list, never a brute force


async def test_probe_sends_only_read_commands() -> None:
    with FakeMongo(_chat_data(ransom_note=True)) as mongo:
        findings = await _scan(mongo.port, only_mongodb=True)
        commands = list(mongo.commands)
    assert any(f.rule == "mongodb.unauthenticated" for f in findings)
    assert {"listdatabases", "listcollections", "count", "find"} <= set(commands)
    assert set(commands) - READ_ONLY_COMMANDS == set(), commands


async def test_other_protocols_are_not_taken_for_mongodb(memcached: Instance) -> None:
    probe = MongoDBProbe(ScanConfig(timeout=1.0))
    assert await probe.fingerprint("127.0.0.1", memcached.port) is None
    async with fake_server(http_400) as port:
        assert await probe.fingerprint("127.0.0.1", port) is None
    async with fake_server(silent) as port:
        assert await probe.fingerprint("127.0.0.1", port) is None


# --- hostile servers ---------------------------------------------------------------------------


async def _read_command(reader: asyncio.StreamReader) -> tuple[int, int, str]:
    """(requestID, opCode, command name) of the next OP_QUERY / OP_MSG command."""
    length, request_id, _, op_code = struct.unpack("<iiii", await reader.readexactly(16))
    body = await reader.readexactly(length - 16)
    # OP_QUERY: flags, namespace (a C string), skip, return, query; OP_MSG: flagBits, kind 0.
    start = body.index(b"\x00", 4) + 1 + 8 if op_code == 2004 else 5
    (size,) = struct.unpack_from("<i", body, start)
    document = bson.decode(body[start : start + size])
    return request_id, op_code, next(iter(document))


def _reply(request_id: int, op_code: int, document: dict[str, Any]) -> bytes:
    payload = bson.encode(document)
    if op_code == 2004:
        body = struct.pack("<iqii", 0, 0, 0, 1) + payload
        return struct.pack("<iiii", 16 + len(body), 1, request_id, 1) + body
    body = struct.pack("<I", 0) + b"\x00" + payload
    return struct.pack("<iiii", 16 + len(body), 1, request_id, 2013) + body


def _mongo_like(misbehave: Handler, hello: dict[str, Any] | None = None) -> Handler:
    """A fake that answers isMaster/hello (and endSessions) like MongoDB; ``misbehave`` takes
    over at the first other command."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request_id, op_code, name = await _read_command(reader)
            if name.lower() in ("ismaster", "hello"):
                writer.write(_reply(request_id, op_code, dict(hello or HELLO)))
            elif name.lower() == "endsessions":
                writer.write(_reply(request_id, op_code, {"ok": 1.0}))
            else:
                await misbehave(reader, writer)
                return
            await writer.drain()

    return handler


async def _drip_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while not writer.is_closing():
        writer.write(b"\x00")
        await writer.drain()
        try:
            if not await asyncio.wait_for(reader.read(1024), 0.1):
                return
        except TimeoutError:
            continue


async def _examine(port: int, config: ScanConfig) -> ProbeResult | ProbeSkipped:
    probe = MongoDBProbe(config)
    fingerprint = await probe.fingerprint("127.0.0.1", port)
    assert fingerprint is not None and fingerprint.service == "mongodb"
    return await asyncio.wait_for(probe.probe("127.0.0.1", port, fingerprint), SAFETY_NET)


async def test_a_reply_header_announcing_1_gb_ends_bounded() -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(struct.pack("<iiii", 1 << 30, 1, 0, 2013))
        await _drip_forever(reader, writer)

    async with fake_server(_mongo_like(huge)) as port:
        outcome = await _examine(port, ScanConfig(timeout=1.0))
    assert isinstance(outcome, ProbeSkipped)
    assert "1073741824" in outcome.reason and "48000000" in outcome.reason
    assert outcome.findings == ()  # nothing proven: listDatabases never answered


async def test_a_dripping_reply_ends_bounded() -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(struct.pack("<iiii", 1000, 1, 0, 2013))
        await _drip_forever(reader, writer)

    async with fake_server(_mongo_like(drip)) as port:
        outcome = await _examine(port, ScanConfig(timeout=1.0, probe_deadline=5.0))
    assert isinstance(outcome, ProbeSkipped)
    assert "dripping" in outcome.reason


async def test_impossible_limits_are_refused_before_pymongo_sees_them() -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("the probe must not send a command to this server")

    lying = dict(HELLO, maxMessageSizeBytes=2**31 - 1)
    async with fake_server(_mongo_like(never, hello=lying)) as port:
        outcome = await _examine(port, ScanConfig(timeout=1.0))
    assert isinstance(outcome, ProbeSkipped)
    assert "maxMessageSizeBytes=2147483647" in outcome.reason


async def test_an_is_master_reply_announcing_1_gb_is_not_mongodb() -> None:
    async def huge_hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_id, _, _ = await _read_command(reader)
        writer.write(struct.pack("<iiii", 1 << 30, 1, request_id, 1))
        await _drip_forever(reader, writer)

    async with fake_server(huge_hello) as port:
        assert await MongoDBProbe(ScanConfig(timeout=1.0)).fingerprint("127.0.0.1", port) is None


async def test_scanner_reports_a_skipped_probe_as_incomplete() -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(struct.pack("<iiii", 1 << 30, 1, 0, 2013))
        await _drip_forever(reader, writer)

    async with fake_server(_mongo_like(huge)) as port:
        findings = await _scan(port, ScanConfig(timeout=1.0))
    [incomplete] = [f for f in findings if f.rule == "scan.incomplete"]
    assert incomplete.target.service == "mongodb"
    assert any("1073741824" in e.text for e in incomplete.evidence)
