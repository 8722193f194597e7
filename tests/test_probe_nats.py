"""NATS probe against real nats-server processes (Debian's nats-server, JetStream on).

Three servers on free loopback ports (never the system's on 4222), each seeded with the CHAT
and LOCATIONS streams, a ``sessions`` key-value bucket and a durable consumer: an exposed one
(no auth, ``trace`` logging every protocol operation), a secured one (random password) and one
whose only login is the official examples' ``ruser``/``T0pS3cr3t``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATSClient

from perisai.findings import Auth, Finding, Severity
from perisai.lab import Instance, start_redis
from perisai.lab.servers.brokers import BrokerInstance
from perisai.lab.servers.mqtt import start_mosquitto
from perisai.lab.servers.nats import (
    NATS_CHAT_MESSAGES,
    NATS_CONSUMER,
    NATS_KV_BUCKET,
    seed_nats,
    start_nats,
)
from perisai.probes import ScanConfig
from perisai.probes.credentials import default_credentials
from perisai.probes.nats import NATSProbe
from perisai.scanner import Scanner
from perisai.targets import parse_targets
from tests.conftest import LabServers

pytestmark = pytest.mark.servers

CONFIG = ScanConfig(timeout=2.0)
STREAMS = ("CHAT", "LOCATIONS", f"KV_{NATS_KV_BUCKET}")
# The only subjects the probe may publish to: JetStream API reads, nothing else.
READ_ONLY_API = re.compile(r"^\$JS\.API\.(INFO|STREAM\.LIST|STREAM\.MSG\.GET\.[^.\s]+)$")


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, lab_server: LabServers
) -> Iterator[dict[str, BrokerInstance]]:
    base = tmp_path_factory.mktemp("nats")
    started: dict[str, BrokerInstance] = {}
    try:
        started["exposed"] = start_nats("nats-exposed", base, exposed=True, trace=True)
        started["default"] = start_nats(
            "nats-default", base, exposed=False, user="ruser", password="T0pS3cr3t"
        )
        for instance in started.values():
            seed_nats(instance)
        yield {**started, "secured": lab_server("nats", False, BrokerInstance)}
    finally:
        for instance in started.values():
            instance.stop()


@pytest.fixture(scope="module")
def neighbours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """Other protocols on free ports: the NATS fingerprint must not claim them."""
    base = tmp_path_factory.mktemp("nats-neighbours")
    started: list[BrokerInstance | Instance] = []
    try:
        mqtt = start_mosquitto("mqtt", base, exposed=True)
        started.append(mqtt)
        redis = start_redis("redis", base, exposed=True)
        started.append(redis)
        yield {"mqtt": mqtt.port, "redis": redis.port}
    finally:
        for instance in started:
            instance.stop()


async def _scan(port: int) -> list[Finding]:
    probe = NATSProbe(CONFIG)
    report = await Scanner(CONFIG, probes=[probe]).scan(parse_targets([f"127.0.0.1:{port}"]))
    return report.findings


def _texts(finding: Finding) -> str:
    return "\n".join(e.text for e in finding.evidence)


async def _connect(instance: BrokerInstance) -> NATSClient:
    return await nats.connect(
        instance.url, name="perisai-test", allow_reconnect=False, connect_timeout=5
    )


async def _state(instance: BrokerInstance) -> dict[str, Any]:
    """Every stream's state and the durable consumer's delivery state (the harness's view)."""
    client = await _connect(instance)
    try:
        jsm = client.jsm()
        state: dict[str, Any] = {}
        for name in STREAMS:
            info = await jsm.stream_info(name)
            state[name] = (
                info.state.messages,
                info.state.bytes,
                info.state.first_seq,
                info.state.last_seq,
                info.state.consumer_count,
            )
        consumer = await jsm.consumer_info("CHAT", NATS_CONSUMER)
        state["consumer"] = (
            consumer.num_pending,
            consumer.num_ack_pending,
            consumer.delivered.stream_seq if consumer.delivered else None,
            consumer.ack_floor.stream_seq if consumer.ack_floor else None,
        )
        for name in STREAMS:
            consumers = await jsm.consumers_info(name)
            state[f"{name} consumers"] = sorted(c.name or "" for c in consumers)
        return state
    finally:
        await client.close()


def test_defaults_file_holds_a_login_and_tokens() -> None:
    defaults = default_credentials("nats")
    pairs = {(c.user, c.password) for c in defaults}
    assert ("ruser", "T0pS3cr3t") in pairs
    assert (None, "s3cr3t") in pairs  # a bare line is a token
    assert len(defaults) <= 6


async def test_info_line_is_the_fingerprint(servers: dict[str, BrokerInstance]) -> None:
    probe = NATSProbe(CONFIG)
    exposed = await probe.fingerprint("127.0.0.1", servers["exposed"].port)
    secured = await probe.fingerprint("127.0.0.1", servers["secured"].port)
    assert exposed is not None and exposed.detail.startswith("NATS 2.")
    assert "auth required" not in exposed.detail and "JetStream" in exposed.detail
    assert secured is not None and "auth required" in secured.detail


async def test_exposed_server_is_critical_with_personal_data(
    servers: dict[str, BrokerInstance],
) -> None:
    findings = await _scan(servers["exposed"].port)
    [main] = findings
    assert main.rule == "nats.unauthenticated"
    assert main.target.service == "nats"
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL
    assert main.data.entities["PHONE"] >= 1
    assert main.data.entities["EMAIL"] >= 1  # from the key-value bucket
    assert main.data.entities["GEO_COORDINATE"] >= 1
    assert main.data.records_estimated is not None and main.data.records_estimated >= 210
    evidence = _texts(main)
    assert "CONNECT without credentials accepted" in evidence
    assert f"stream CHAT (chat.>): {NATS_CHAT_MESSAGES} messages" in evidence
    assert f"stream KV_{NATS_KV_BUCKET}" in evidence
    assert "$JS.API.STREAM.MSG.GET" in evidence
    assert re.search(r"\+\d+ [\d*]+", evidence), "phone numbers appear masked"


async def test_core_subjects_are_sampled_while_listening(
    servers: dict[str, BrokerInstance],
) -> None:
    """An app keeps publishing OTP SMS on core subjects while the probe listens."""
    exposed = servers["exposed"]
    publisher = await _connect(exposed)
    stop = asyncio.Event()

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            body = {"to": f"+6012345{n % 10000:04d}", "text": f"Your code is {n % 1000000:06d}"}
            await publisher.publish(f"sms.outbound.{n}", json.dumps(body).encode())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)

    task = asyncio.create_task(publish())
    try:
        findings = await _scan(exposed.port)
    finally:
        stop.set()
        await task
        await publisher.close()
    [main] = findings
    heard = re.search(r"core subjects \(>\) for \S+: (\d+) messages heard; (.*)", _texts(main))
    assert heard is not None
    assert int(heard.group(1)) >= 1
    assert "PHONE" in heard.group(2)


async def test_secured_server_is_info_never_open(servers: dict[str, BrokerInstance]) -> None:
    findings = await _scan(servers["secured"].port)
    assert [f.rule for f in findings] == ["nats.auth-required"]
    assert findings[0].severity is Severity.INFO
    assert findings[0].auth is Auth.REQUIRED
    assert "Authorization Violation" in _texts(findings[0])


async def test_default_login_is_found(servers: dict[str, BrokerInstance]) -> None:
    findings = await _scan(servers["default"].port)
    [main] = findings
    assert main.rule == "nats.default-credentials"
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert main.severity is Severity.CRITICAL
    assert "CONNECT with ruser/T0*** accepted" in _texts(main)


async def test_probe_leaves_streams_and_consumers_unchanged(
    servers: dict[str, BrokerInstance],
) -> None:
    """Read-only proof: stream and consumer state are identical, and the server's trace log
    shows the probe published only to the JetStream API's read endpoints."""
    exposed = servers["exposed"]
    before = await _state(exposed)
    log_start = len(exposed.log_file.read_text(encoding="utf-8").splitlines())
    await _scan(exposed.port)
    after = await _state(exposed)
    assert after == before
    assert before["CHAT"][0] == NATS_CHAT_MESSAGES and before["CHAT"][4] == 1
    lines = exposed.log_file.read_text(encoding="utf-8").splitlines()[log_start:]
    probe_ids = {
        match.group(1)
        for line in lines
        if '"name": "perisai"' in line and (match := re.search(r" - (cid:\d+) - ", line))
    }
    assert probe_ids, "the trace log recorded the probe's CONNECT"
    operations = [
        match.group(1, 2)
        for line in lines
        if any(f" - {cid} - " in line for cid in probe_ids)
        and (match := re.search(r"<<- \[(PUB|HPUB|SUB|UNSUB|CONNECT|PING|PONG) ?(\S*)", line))
    ]
    published = {subject for op, subject in operations if op in ("PUB", "HPUB")}
    assert published, "the probe asked the JetStream API"
    assert all(READ_ONLY_API.match(subject) for subject in published), published
    assert any(s.startswith("$JS.API.STREAM.MSG.GET.") for s in published)
    assert ("SUB", ">") in operations


async def test_fingerprint_is_none_on_other_protocols(neighbours: dict[str, int]) -> None:
    probe = NATSProbe(CONFIG)
    for service, port in neighbours.items():
        assert await probe.fingerprint("127.0.0.1", port) is None, service


async def test_streams_past_the_sample_limit_are_counted_not_read(
    servers: dict[str, BrokerInstance],
) -> None:
    """One stream read: the other keeps its message count (the server's), marked unread."""
    config = ScanConfig(timeout=2.0, max_tables=1)
    report = await Scanner(config, probes=[NATSProbe(config)]).scan(
        parse_targets([f"127.0.0.1:{servers['exposed'].port}"])
    )
    [main] = [f for f in report.findings if f.rule == "nats.unauthenticated"]
    text = "\n".join(e.text for e in main.evidence)
    assert "not sampled (the 1 largest were)" in text, text
    assert main.data.records_estimated is not None and not main.data.records_at_least
