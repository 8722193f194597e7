"""MongoDB: a hand-framed isMaster fingerprint, then pymongo for read-only commands.

Sent, and nothing else: ``isMaster`` (the fingerprint, an OP_QUERY on ``admin.$cmd``: every
MongoDB version answers it, including the pre-3.6 servers extortion bots wiped most; 5.1+ keep
OP_QUERY for exactly this handshake), and through pymongo its handshake (``hello``/``isMaster``,
SCRAM ``saslStart``/``saslContinue`` when a default credential is tried) and ``buildInfo``,
``listDatabases`` (``nameOnly: false``, for sizes), ``listCollections``, ``count`` (what
``estimated_document_count`` sends, from metadata), ``find`` (``limit`` and ``singleBatch``,
with ``maxTimeMS``) and, on close, ``endSessions``. Never a write, ``aggregate`` or ``getMore``.

Bounds: pymongo refuses any reply longer than the server's ``maxMessageSizeBytes``, so the probe
first checks that the server does not claim more than MongoDB's own 48 MB (a hostile server
could otherwise make the driver allocate what it announces); each ``find`` is one batch of at
most ``ScanConfig.sample`` documents; documents are decoded only while the probe has read less
than :data:`MAX_SAMPLE_BYTES`, and their strings are cut at ``ScanConfig.max_value_bytes``;
every call is bounded by ``ScanConfig.timeout`` and the whole probe by its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import NetworkTimeout, OperationFailure, ProtocolError, PyMongoError

from perisai.classify import redact_text
from perisai.compromise import RULE_RANSOM_NOTE, is_note_name
from perisai.findings import Auth, Evidence, Finding, Rule, Severity, Target
from perisai.probes.common import (
    human_bytes,
)
from perisai.probes.credentials import Credential, default_credentials
from perisai.probes.interface import Fingerprint, Probe, ProbeResult, ProbeSkipped
from perisai.probes.sampling import Sampler

MONGODB_MAX_MESSAGE_BYTES = 48_000_000  # what every MongoDB announces as maxMessageSizeBytes
MONGODB_MAX_BSON_BYTES = 16 * 1024 * 1024  # maxBsonObjectSize
MAX_HELLO_BYTES = 64 * 1024  # an isMaster reply is ~1 kB
MAX_SAMPLE_BYTES = 32 * 1024 * 1024  # documents decoded per probe, all collections together
MAX_FIELDS = 200  # leaves kept of one document
MAX_NESTING = 8
SKIPPED_DATABASES = ("local", "config")  # replication and sharding metadata, not user data
DEADLINE_SHARE = 0.8  # of ScanConfig.probe_deadline: stop (with a reason) before the scanner
SUPERUSER = "admin"  # whose password a bare line of defaults/mongodb.txt is
UNAUTHORIZED = 13  # MongoDB's error code for "requires authentication" / "not authorized"
_OP_QUERY = 2004
_OP_REPLY = 1
_OP_MSG = 2013

_REMEDIATION = (
    "Turn on access control (`security.authorization: enabled`) with a strong password for "
    "every user, bind mongod to 127.0.0.1 or a private interface (`net.bindIp`), enable TLS, "
    "and block port 27017 from the internet."
)


class _Violation(Exception):
    """The server broke the protocol or one of our bounds; the message says which, briefly."""


@dataclass
class _State:
    """What the probe has proven so far (kept when it has to stop half-way)."""

    target: Target
    sampler: Sampler | None = None  # once a login got in
    user: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    sampled_bytes: int = 0
    budget_spent: bool = False  # MAX_SAMPLE_BYTES ran out: later collections go unread


class MongoDBProbe(Probe):
    """Finds MongoDB servers anyone can read, the personal data inside and ransom notes."""

    service = "mongodb"
    default_ports = (27017,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "mongosh --host {host} --port {port} --quiet --eval 'db.adminCommand({listDatabases: 1})'",
    )
    fix = (  # configuration lines that close it
        "# mongod.conf",
        "security:",
        "  authorization: enabled",
        "net:",
        "  bindIp: 127.0.0.1,10.0.0.5",
    )
    rules = (
        Rule(
            id="mongodb.unauthenticated",
            name="MongoDBUnauthenticated",
            description="MongoDB runs without access control; anyone who reaches the port reads "
            "(and drops) every database — what extortion bots wipe and ransom.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/306.html",
                "https://www.mongodb.com/docs/manual/administration/security-checklist/",
            ),
        ),
        Rule(
            id="mongodb.default-credentials",
            name="MongoDBDefaultPassword",
            description="MongoDB accepts a user and password from vendor documentation or images.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/1392.html",),
        ),
        Rule(
            id="mongodb.auth-required",
            name="MongoDBAuthRequired",
            description="MongoDB is reachable and requires authentication.",
            remediation="Keep passwords long and random; restrict who can reach the port.",
            default_severity=Severity.INFO,
        ),
        RULE_RANSOM_NOTE,
    )

    # --- fingerprint ----------------------------------------------------------------------------

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        try:
            hello = await _is_master(host, port, self.config.timeout)
        except _Violation:
            return None
        if hello is None:
            return None
        return Fingerprint(self.service, f"wire {hello.get('maxWireVersion')}; {_role(hello)}")

    # --- probe ----------------------------------------------------------------------------------

    async def probe(
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        """The probe, bounded: a result, or :class:`ProbeSkipped` saying why it stopped (with
        whatever it had proven by then)."""
        state = _State(Target(host, port, self.service))
        budget = max(1.0, self.config.probe_deadline * DEADLINE_SHARE)
        try:
            async with asyncio.timeout(budget):
                return await self._probe(host, port, state)
        except TimeoutError:
            reason = f"no complete answer within the probe's {budget:.0f}s deadline"
            return ProbeSkipped(
                f"mongodb probe stopped: {reason} (a slow or dripping server)",
                self._partial(state),
            )
        except _Violation as violation:
            return ProbeSkipped(f"mongodb probe stopped: {violation}", self._partial(state))
        except ProtocolError as error:
            return ProbeSkipped(
                f"mongodb probe stopped: the server broke the wire protocol ({_first(error)})",
                self._partial(state),
            )
        except NetworkTimeout:
            return ProbeSkipped(
                f"mongodb probe stopped: no complete reply within {self.config.timeout:.1f}s "
                "(a stalled or dripping server)",
                self._partial(state),
            )
        except (PyMongoError, OSError) as error:
            reason = f"mongodb probe stopped: {type(error).__name__}: {_first(error)}"
            return ProbeSkipped(reason, self._partial(state))

    async def _probe(self, host: str, port: int, state: _State) -> ProbeResult:
        hello = await _is_master(host, port, self.config.timeout)
        if hello is None:
            raise _Violation("the server no longer answers isMaster like MongoDB")
        _check_limits(hello)
        client, databases, tried = await self._login(host, port, state)
        if client is None or databases is None or state.sampler is None:
            rule = self.rule("mongodb.auth-required")
            detail = (
                "listDatabases refused without authentication (Unauthorized, code 13); "
                f"{tried} vendor default credentials refused"
            )
            return ProbeResult(
                (
                    Finding(
                        rule=rule.id,
                        severity=rule.default_severity,
                        title="MongoDB requires authentication",
                        target=state.target,
                        auth=Auth.REQUIRED,
                        evidence=(Evidence(detail),),
                        remediation=rule.remediation,
                    ),
                )
            )
        try:
            await self._inspect(client, databases, hello, state, state.sampler)
        finally:
            await _close(client, self.config.timeout)
        return ProbeResult(self._partial(state))

    def _client(self, host: str, port: int, login: Credential | None) -> AsyncMongoClient[Any]:
        ms = max(500, int(self.config.timeout * 1000))
        options: dict[str, Any] = {
            "directConnection": True,
            "serverSelectionTimeoutMS": ms,
            "connectTimeoutMS": ms,
            "socketTimeoutMS": ms,
            "maxPoolSize": 1,
            "retryReads": False,
            "retryWrites": False,
            "appname": "perisai",
            "serverMonitoringMode": "poll",
            "connect": False,
        }
        if login is not None:
            user = login.user_or(SUPERUSER)
            options.update(username=user, password=login.password, authSource="admin")
        return AsyncMongoClient(f"[{host}]" if ":" in host else host, port, **options)

    async def _login(
        self, host: str, port: int, state: _State
    ) -> tuple[AsyncMongoClient[Any] | None, list[dict[str, Any]] | None, int]:
        """A client that may list databases, with the list; how it got in is in ``state``."""
        logins: list[Credential | None] = [None]
        if self.config.try_default_credentials:
            logins.extend(default_credentials(self.service))
        tried = 0
        for login in logins:
            tried += login is not None
            client = self._client(host, port, login)
            try:
                listing = await client.admin.command({"listDatabases": 1, "nameOnly": False})
            except OperationFailure as error:
                await _close(client, self.config.timeout)
                if error.code == UNAUTHORIZED or "auth" in str(error).lower():
                    continue
                raise
            except BaseException:
                await _close(client, self.config.timeout)
                raise
            auth = Auth.NONE if login is None else Auth.DEFAULT_CREDENTIALS
            state.sampler = Sampler(self, state.target, auth)
            state.user = None if login is None else login.user
            databases = listing.get("databases")
            if not isinstance(databases, list):
                await _close(client, self.config.timeout)
                raise _Violation("listDatabases answered without a databases list")
            return client, [d for d in databases if isinstance(d, dict)], tried
        return None, None, tried

    async def _inspect(
        self,
        client: AsyncMongoClient[Any],
        databases: list[dict[str, Any]],
        hello: Mapping[str, Any],
        state: _State,
        sampler: Sampler,
    ) -> None:
        how = (
            "listDatabases answered without authentication"
            if sampler.auth is Auth.NONE
            else f"a vendor default password for {state.user!r} was accepted (SCRAM)"
        )
        state.evidence.append(Evidence(how))
        version = "?"
        with contextlib.suppress(PyMongoError):
            info = await client.admin.command("buildInfo")
            version = str(info.get("version", "?"))[:40]
        names = [str(d.get("name", "")) for d in databases if d.get("name")]
        total = sum(int(d.get("sizeOnDisk") or 0) for d in databases)
        listed = ", ".join(
            f"{redact_text(str(d.get('name')))} ({human_bytes(int(d.get('sizeOnDisk') or 0))})"
            for d in sorted(databases, key=lambda d: -int(d.get("sizeOnDisk") or 0))[:10]
            if d.get("name")
        )
        state.evidence.append(
            Evidence(
                f"MongoDB {version} ({_role(hello)}): {len(names)} databases, "
                f"{human_bytes(total)} on disk: {listed}"
            )
        )
        ordered = sorted(
            (n for n in names if n not in SKIPPED_DATABASES), key=lambda n: (not is_note_name(n), n)
        )
        for name in ordered[: self.config.max_databases]:
            await self._sample_database(client[name], state, sampler)
        if len(ordered) > self.config.max_databases:  # their documents are nobody's count
            sampler.listed(
                f"{len(ordered) - self.config.max_databases} more databases",
                unread=f"not read (the first {self.config.max_databases} were)",
            )

    async def _sample_database(
        self, db: AsyncDatabase[Any], state: _State, sampler: Sampler
    ) -> None:
        ms = max(100, int(self.config.timeout * 1000))
        try:
            cursor = await db.list_collections()  # no filter: before 3.4 entries have no type
            entries: list[Any] = []
            more = False
            async for entry in cursor:
                if len(entries) >= self.config.max_tables:
                    more = True  # one past the limit: the listing did not end here
                    break
                entries.append(entry)
            await cursor.close()
        except OperationFailure as error:
            state.evidence.append(Evidence(f"{db.name}: not listable ({_first(error)})"))
            return
        names = sorted(
            (
                str(e.get("name"))
                for e in entries
                if not str(e.get("name", "")).startswith("system.")
            ),
            key=lambda n: (not is_note_name(n), n),
        )
        raw_options = CodecOptions(document_class=RawBSONDocument)
        for name in names:
            location = f"{db.name}.{name}"
            collection = db.get_collection(name, codec_options=raw_options)
            documents: int | None = None
            with contextlib.suppress(OperationFailure):
                documents = int(await collection.estimated_document_count(maxTimeMS=ms))
            records: list[dict[str, Any]] = []
            if not state.budget_spent:
                try:
                    records = await self._sample(collection, state)
                except OperationFailure as error:
                    state.evidence.append(Evidence(f"{location}: not readable ({_first(error)})"))
            count = "?" if documents is None else f"~{documents}"
            if state.budget_spent and not records:
                sampler.listed(
                    location,
                    estimated=documents,
                    head=f"{count} documents",
                    unread=f"not sampled (the probe's {human_bytes(MAX_SAMPLE_BYTES)} were spent)",
                )
                continue
            sampler.sample(location, records, estimated=documents, head=f"{count} documents")
            sampler.spot_notes(location, records)
        if more:
            sampler.listed(
                f"{db.name}: more collections",
                unread=f"not listed (the first {self.config.max_tables} were)",
            )

    async def _sample(self, collection: Any, state: _State) -> list[dict[str, Any]]:
        """One batch of at most ``sample`` documents (``singleBatch``: no getMore, no cursor
        left open), decoded while the byte budget lasts, strings cut at the cap."""
        ms = max(100, int(self.config.timeout * 1000))
        cursor = collection.find({}, limit=-self.config.sample, max_time_ms=ms)
        records: list[dict[str, Any]] = []
        try:
            async for raw in cursor:
                size = len(raw.raw)
                if state.sampled_bytes + size > MAX_SAMPLE_BYTES:
                    state.budget_spent = True
                    break
                state.sampled_bytes += size
                decoded = bson.decode(raw.raw)
                records.append(_bounded(decoded, self.config.max_value_bytes, self.config.sample))
        finally:
            await cursor.close()
        return records

    def _partial(self, state: _State) -> tuple[Finding, ...]:
        """The findings that what is proven so far supports (none before the auth check)."""
        if state.sampler is None:
            return ()
        state.sampler.read(
            "isMaster, buildInfo, listDatabases, listCollections, count, find (limit "
            f"{self.config.sample}, single batch, maxTimeMS; strings cut at "
            f"{self.config.max_value_bytes} bytes)"
        )
        state.sampler.reads_heading = "read-only commands only"
        return state.sampler.findings(
            state.evidence,
            (
                "MongoDB readable without authentication",
                "MongoDB accepts a vendor default password",
            ),
        )


async def _is_master(host: str, port: int, timeout: float) -> dict[str, Any] | None:
    """``isMaster`` as an OP_QUERY on ``admin.$cmd``; the reply document, or ``None`` when the
    answer is not MongoDB's. Reads at most :data:`MAX_HELLO_BYTES`."""
    query = (
        struct.pack("<i", 0)  # flags
        + b"admin.$cmd\x00"
        + struct.pack("<ii", 0, -1)  # numberToSkip, numberToReturn
        + bson.encode({"isMaster": 1})
    )
    request = struct.pack("<iiii", 16 + len(query), 0x7065_7269, 0, _OP_QUERY) + query
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(request)
        await asyncio.wait_for(writer.drain(), timeout)
        try:
            header = await asyncio.wait_for(reader.readexactly(16), timeout)
        except (asyncio.IncompleteReadError, TimeoutError):
            return None  # closed or silent: not a MongoDB
        length, _, response_to, op_code = struct.unpack("<iiii", header)
        if response_to != 0x7065_7269 or op_code not in (_OP_REPLY, _OP_MSG):
            return None
        if not 16 < length <= MAX_HELLO_BYTES:
            raise _Violation(f"an isMaster reply announces {length} bytes")
        try:
            body = await asyncio.wait_for(reader.readexactly(length - 16), timeout)
        except (asyncio.IncompleteReadError, TimeoutError) as error:
            raise _Violation("an isMaster reply stopped short (a dripping server)") from error
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    document = body[20:] if op_code == _OP_REPLY else body[5:]  # OP_REPLY / OP_MSG section 0
    try:
        hello = bson.decode(document[: struct.unpack_from("<i", document)[0]])
    except (bson.errors.InvalidBSON, struct.error, IndexError, ValueError):
        return None
    if "maxWireVersion" not in hello or not ({"ismaster", "isWritablePrimary"} & hello.keys()):
        return None
    return hello


def _check_limits(hello: Mapping[str, Any]) -> None:
    """Refuse a server that claims limits no MongoDB has: pymongo would believe them."""
    message = hello.get("maxMessageSizeBytes", MONGODB_MAX_MESSAGE_BYTES)
    document = hello.get("maxBsonObjectSize", MONGODB_MAX_BSON_BYTES)
    if not isinstance(message, int) or not 0 < message <= MONGODB_MAX_MESSAGE_BYTES:
        raise _Violation(
            f"isMaster claims maxMessageSizeBytes={message!r}, over MongoDB's "
            f"{MONGODB_MAX_MESSAGE_BYTES}; not probed further"
        )
    if not isinstance(document, int) or not 0 < document <= MONGODB_MAX_BSON_BYTES:
        raise _Violation(
            f"isMaster claims maxBsonObjectSize={document!r}, over MongoDB's "
            f"{MONGODB_MAX_BSON_BYTES}; not probed further"
        )


def _bounded(
    value: Any, cap: int, items: int, depth: int = 0, budget: list[int] | None = None
) -> Any:
    """A copy of a decoded document small enough to classify: strings cut at ``cap``, lists
    at ``items``, nesting at :data:`MAX_NESTING`, at most :data:`MAX_FIELDS` leaves."""
    budget = budget if budget is not None else [MAX_FIELDS]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, child in value.items():
            if budget[0] <= 0 or depth >= MAX_NESTING:
                break
            out[str(key)[:256]] = _bounded(child, cap, items, depth + 1, budget)
        return out
    if isinstance(value, (list, tuple)):
        return [_bounded(child, cap, items, depth + 1, budget) for child in value[:items]]
    budget[0] -= 1
    if isinstance(value, str):
        return value[:cap]
    if isinstance(value, bytes):
        return value[:cap].decode("utf-8", "replace")
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)[:cap]


async def _close(client: AsyncMongoClient[Any], timeout: float) -> None:
    with contextlib.suppress(PyMongoError, OSError, TimeoutError):
        await asyncio.wait_for(client.close(), timeout)


def _role(hello: Mapping[str, Any]) -> str:
    if hello.get("msg") == "isdbgrid":
        return "mongos"
    if hello.get("setName"):
        kind = "primary" if hello.get("ismaster") or hello.get("isWritablePrimary") else "member"
        return f"replica set {redact_text(str(hello['setName'])[:60])}, {kind}"
    return "standalone"


def _first(error: BaseException) -> str:
    return (str(error).strip().splitlines() or ["error"])[0][:200]
