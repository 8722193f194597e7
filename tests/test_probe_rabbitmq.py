"""RabbitMQ probe against real RabbitMQ nodes (Debian's rabbitmq-server, management plugin on).

Two nodes are started once for the module, each with its own node name, ports, epmd and data
directory (never the machine's own RabbitMQ on 5672/15672): an exposed one with the stock
guest/guest login and a secured one without guest. Both are seeded with synthetic chat logs,
GPS fixes and OTP SMS; the exposed one also holds a ransom-note queue.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aio_pika
import pytest

from perisai.findings import Auth, Finding, Severity
from perisai.lab import Instance, start_redis
from perisai.lab.instances import instance_record, load_instance
from perisai.lab.seed import RANSOM_BTC_ADDRESS
from perisai.lab.servers.brokers import BrokerInstance
from perisai.lab.servers.mqtt import start_mosquitto
from perisai.lab.servers.nats import start_nats
from perisai.lab.servers.rabbitmq import (
    RABBITMQ_QUEUES,
    RABBITMQ_RANSOM_QUEUE,
    seed_rabbitmq,
    start_rabbitmq,
)
from perisai.probes import Probe, ScanConfig
from perisai.probes.credentials import default_credentials
from perisai.probes.mqtt import MQTTProbe
from perisai.probes.nats import NATSProbe
from perisai.probes.postgres import PostgresProbe
from perisai.probes.rabbitmq import RabbitMQProbe
from perisai.probes.redis import RedisProbe
from perisai.scanner import Scanner
from perisai.targets import parse_targets
from tests.twins import started_in_parallel

pytestmark = pytest.mark.servers

CONFIG = ScanConfig(timeout=2.0)
SEEDED_MESSAGES = sum(count for _, _, count in RABBITMQ_QUEUES)


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BrokerInstance]]:
    """An exposed (guest/guest, ransom note) and a secured RabbitMQ, started in parallel."""
    base = tmp_path_factory.mktemp("rabbitmq")

    def start(name: str) -> BrokerInstance:
        return start_rabbitmq(f"rabbitmq-{name}", base, exposed=name == "exposed")

    def seed(name: str, instance: BrokerInstance) -> None:
        seed_rabbitmq(instance, ransom_note=name == "exposed")

    with started_in_parallel(("exposed", "secured"), start, seed) as started:
        yield started


@pytest.fixture(scope="module")
def neighbours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """Other protocols on free ports: the probe must not claim any of them."""
    base = tmp_path_factory.mktemp("rabbitmq-neighbours")
    started: list[BrokerInstance | Instance] = []
    try:
        mqtt = start_mosquitto("mqtt", base, exposed=True)
        started.append(mqtt)
        nats = start_nats("nats", base, exposed=True)
        started.append(nats)
        redis = start_redis("redis", base, exposed=True)
        started.append(redis)
        yield {"mqtt": mqtt.port, "nats": nats.port, "redis": redis.port}
    finally:
        for instance in started:
            instance.stop()


async def _probe(port: int, *, deep: bool = False) -> list[Finding]:
    probe = RabbitMQProbe(CONFIG, deep=deep)
    report = await Scanner(CONFIG, probes=[probe]).scan(parse_targets([f"127.0.0.1:{port}"]))
    return report.findings


def _texts(finding: Finding) -> str:
    return "\n".join(e.text for e in finding.evidence)


async def _live_counts(instance: BrokerInstance) -> dict[str, int]:
    """Exact ready-message counts from passive declares (the harness's AMQP, not the probe)."""
    connection = await aio_pika.connect(instance.url, timeout=10)
    try:
        counts: dict[str, int] = {}
        for name in [q for q, _, _ in RABBITMQ_QUEUES] + [RABBITMQ_RANSOM_QUEUE]:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, passive=True)
            counts[name] = queue.declaration_result.message_count or 0
            await channel.close()
        return counts
    finally:
        await connection.close()


def _access_log(instance: BrokerInstance) -> list[str]:
    return [
        line
        for path in sorted((instance.root / "http_log").glob("access.log*"))
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
    ]


def test_defaults_file_is_short_and_has_guest() -> None:
    defaults = default_credentials("rabbitmq")
    assert ("guest", "guest") in {(c.user, c.password) for c in defaults}
    assert len(defaults) <= 6


async def test_both_interfaces_are_recognised_by_their_answers(
    rabbit: dict[str, BrokerInstance],
) -> None:
    probe = RabbitMQProbe(CONFIG)
    exposed = rabbit["exposed"]
    amqp = await probe.fingerprint(exposed.host, exposed.port)
    assert amqp is not None and amqp.detail.startswith("amqp: RabbitMQ 3.")
    assert exposed.management_port is not None
    management = await probe.fingerprint(exposed.host, exposed.management_port)
    assert management is not None and management.detail == "management: auth required"


async def test_management_with_guest_is_counted_but_not_read_by_default(
    rabbit: dict[str, BrokerInstance],
) -> None:
    port = rabbit["exposed"].management_port
    assert port is not None
    findings = await _probe(port)
    assert [f.rule for f in findings] == ["rabbitmq.default-credentials"]
    [main] = findings
    assert main.target.service == "rabbitmq"
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert main.severity is Severity.HIGH  # readable; no body read, so no personal data seen
    assert main.data.records_estimated == SEEDED_MESSAGES + 1
    assert not main.data.has_personal_data and not main.ransom_note
    evidence = _texts(main)
    assert "management API accepted guest/gu***" in evidence
    assert "queue chat.delivered (classic): 120 messages" in evidence
    assert "message bodies not read" in evidence
    assert "extortion note: README_TO_RECOVER_YOUR_DATA" in evidence


async def test_deep_peek_finds_personal_data_and_the_ransom_note(
    rabbit: dict[str, BrokerInstance],
) -> None:
    port = rabbit["exposed"].management_port
    assert port is not None
    findings = await _probe(port, deep=True)
    [main] = [f for f in findings if f.rule == "rabbitmq.default-credentials"]
    assert main.severity is Severity.CRITICAL
    assert main.ransom_note
    assert main.data.entities["PHONE"] >= 1
    assert main.data.entities["GEO_COORDINATE"] >= 1
    assert main.data.entities["MESSAGE_BODY"] >= 1
    evidence = _texts(main)
    assert "ackmode=ack_requeue_true" in evidence
    assert "audit.events (quorum): 10 messages" in evidence and "not peeked" in evidence
    assert re.search(r"\+60 1\d-\*\*\*", evidence), "phone numbers appear masked"
    [note] = [f for f in findings if f.rule == "compromise.ransom-note"]
    assert note.severity is Severity.CRITICAL
    assert note.object == f"queue {RABBITMQ_RANSOM_QUEUE}"
    assert f"payment address: {RANSOM_BTC_ADDRESS}" in _texts(note)
    assert "All your data is backed up" in _texts(note)


async def test_deep_peek_leaves_every_message_in_place(
    rabbit: dict[str, BrokerInstance],
) -> None:
    """Read-only proof: live counts unchanged, and the access log holds only reads."""
    exposed = rabbit["exposed"]
    assert exposed.management_port is not None
    before = await _live_counts(exposed)
    log_start = len(_access_log(exposed))
    await _probe(exposed.port)
    await _probe(exposed.management_port, deep=True)
    after = await _live_counts(exposed)
    assert after == before
    assert before["chat.delivered"] == 120 and before[RABBITMQ_RANSOM_QUEUE] == 1
    requests = [
        match.group(1, 2)
        for line in _access_log(exposed)[log_start:]
        if "perisai" in line and (match := re.search(r'"(\w+) (\S+) HTTP', line))
    ]
    assert requests, "the management API logged the probe's requests"
    writes = [(m, path) for m, path in requests if m != "GET"]
    assert writes, "deep sampling used the re-queueing get"
    assert all(m == "POST" and path.endswith("/get") for m, path in writes)
    assert not any(path.endswith("/get") and "audit.events" in path for _, path in writes)


async def test_peeked_messages_come_back_flagged_redelivered(
    rabbit: dict[str, BrokerInstance],
) -> None:
    """The documented caveat: a re-queued message is marked redelivered for its next reader."""
    exposed = rabbit["exposed"]
    await _probe(exposed.management_port or 0, deep=True)
    connection = await aio_pika.connect(exposed.url, timeout=10)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue("sms.outbox", passive=True)
        message = await queue.get(no_ack=False, fail=True)
        assert message is not None
        assert message.redelivered
        await message.nack(requeue=True)  # the harness puts it back too
    finally:
        await connection.close()


async def test_amqp_port_accepts_guest(rabbit: dict[str, BrokerInstance]) -> None:
    findings = await _probe(rabbit["exposed"].port)
    [main] = findings
    assert main.rule == "rabbitmq.default-credentials"
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert main.severity is Severity.HIGH
    assert "AMQP login guest/gu*** accepted" in _texts(main)


async def test_secured_node_is_info_never_open(rabbit: dict[str, BrokerInstance]) -> None:
    secured = rabbit["secured"]
    assert secured.management_port is not None
    for port in (secured.port, secured.management_port):
        findings = await _probe(port)
        assert [f.rule for f in findings] == ["rabbitmq.auth-required"]
        assert findings[0].severity is Severity.INFO
        assert findings[0].auth is Auth.REQUIRED
        assert not findings[0].data.has_personal_data


@pytest.fixture
async def auth_injecting_proxy(rabbit: dict[str, BrokerInstance]) -> AsyncIterator[int]:
    """A loopback reverse proxy that adds the guest login to every request: the classic way a
    management API ends up open to anyone who reaches the proxy."""
    upstream = rabbit["exposed"].management_port
    assert upstream is not None
    header = b"Authorization: Basic " + base64.b64encode(b"guest:guest") + b"\r\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = [
                line
                for line in head.split(b"\r\n")
                if not line.lower().startswith((b"authorization:", b"connection:"))
            ]
            request = b"\r\n".join([*lines[:1], header.strip(), b"Connection: close", *lines[1:]])
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
            up_writer.write(request)
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if length:
                up_writer.write(await reader.readexactly(int(length.group(1))))
            await up_writer.drain()
            writer.write(await up_reader.read(-1))
            await writer.drain()
            up_writer.close()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_management_behind_auth_injecting_proxy_is_unauthenticated(
    auth_injecting_proxy: int,
) -> None:
    findings = await _probe(auth_injecting_proxy)
    [main] = findings
    assert main.rule == "rabbitmq.unauthenticated"
    assert main.auth is Auth.NONE
    assert main.severity is Severity.HIGH
    assert "answered 200 without credentials" in _texts(main)
    assert main.data.records_estimated == SEEDED_MESSAGES + 1


async def test_fingerprint_is_none_on_other_protocols(
    rabbit: dict[str, BrokerInstance], neighbours: dict[str, int]
) -> None:
    probe = RabbitMQProbe(CONFIG)
    for service, port in neighbours.items():
        assert await probe.fingerprint("127.0.0.1", port) is None, service
    exposed = rabbit["exposed"]
    others: list[Probe] = [MQTTProbe(CONFIG), NATSProbe(CONFIG), RedisProbe(CONFIG)]
    for other in others:
        for port in (exposed.port, exposed.management_port or 0):
            try:
                seen = await other.fingerprint("127.0.0.1", port)
            except (OSError, TimeoutError, EOFError):
                seen = None
            assert seen is None, (other.service, port)


async def test_scanner_names_each_broker_port_by_its_answer(
    rabbit: dict[str, BrokerInstance], neighbours: dict[str, int]
) -> None:
    exposed = rabbit["exposed"]
    ports = {
        exposed.port: "rabbitmq",
        exposed.management_port or 0: "rabbitmq",
        neighbours["mqtt"]: "mqtt",
        neighbours["nats"]: "nats",
        neighbours["redis"]: "redis",
    }
    probes: list[Probe] = [
        RabbitMQProbe(CONFIG),
        MQTTProbe(CONFIG),
        NATSProbe(CONFIG),
        RedisProbe(CONFIG),
        PostgresProbe(CONFIG),
    ]
    report = await Scanner(CONFIG, probes=probes).scan(parse_targets(["127.0.0.1"]), list(ports))
    services = {f.target.port: f.target.service for f in report.findings}
    assert services == ports


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0)


async def test_silent_and_lying_servers_are_not_rabbitmq() -> None:
    """A server that never answers, and one that claims a 1 GB AMQP frame, cost one timeout."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(8)
        writer.write(b"\x01\x00\x00\x40\x00\x00\x00" + b"\x00" * 64)  # a 1 GiB "frame"
        await writer.drain()
        await reader.read(-1)
        writer.close()

    probe = RabbitMQProbe(ScanConfig(timeout=0.5))
    for handler in (silent, liar):
        server = await _serve(handler)
        try:
            port = server.sockets[0].getsockname()[1]
            assert await probe.fingerprint("127.0.0.1", port) is None
        finally:
            server.close()


def test_lab_state_round_trips(rabbit: dict[str, BrokerInstance]) -> None:
    exposed = rabbit["exposed"]
    assert load_instance(instance_record(exposed)) == exposed
    assert exposed.running() and exposed.answering()
    assert exposed.epmd_port not in (None, 4369)
