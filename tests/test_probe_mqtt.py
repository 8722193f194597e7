"""MQTT probe against real Mosquitto brokers (Debian's mosquitto), never the system's on 1883.

Three brokers on free loopback ports, each seeded with retained messages shaped like a chat
app's traffic (chat logs with phone numbers, GPS fixes, OTP SMS): an exposed one (anonymous
clients welcome, plus a retained ransom note), a secured one (random password) and one whose
only login is admin/admin. Every broker logs every packet (``log_type all``), which is how the
read-only test proves the probe never published.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from perisai.findings import Auth, Finding, Severity
from perisai.lab import Instance, start_redis
from perisai.lab.seed import RANSOM_BTC_ADDRESS
from perisai.lab.servers.brokers import BrokerInstance
from perisai.lab.servers.mqtt import (
    MQTT_RANSOM_TOPIC,
    MQTT_RETAINED,
    seed_mosquitto,
    start_mosquitto,
)
from perisai.lab.servers.nats import start_nats
from perisai.probes import ScanConfig
from perisai.probes.credentials import default_credentials
from perisai.probes.mqtt import MQTTProbe
from perisai.scanner import Scanner
from perisai.targets import parse_targets

pytestmark = pytest.mark.servers

CONFIG = ScanConfig(timeout=2.0)
RETAINED = sum(MQTT_RETAINED.values())


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BrokerInstance]]:
    base = tmp_path_factory.mktemp("mqtt")
    started: dict[str, BrokerInstance] = {}
    try:
        started["exposed"] = start_mosquitto("mqtt-exposed", base, exposed=True)
        seed_mosquitto(started["exposed"], ransom_note=True)
        started["secured"] = start_mosquitto("mqtt-secured", base, exposed=False)
        seed_mosquitto(started["secured"])
        started["default"] = start_mosquitto(
            "mqtt-default", base, exposed=False, user="admin", password="admin"
        )
        seed_mosquitto(started["default"])
        yield started
    finally:
        for instance in started.values():
            instance.stop()


@pytest.fixture(scope="module")
def neighbours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """Other protocols on free ports: the MQTT fingerprint must not claim them."""
    base = tmp_path_factory.mktemp("mqtt-neighbours")
    started: list[BrokerInstance | Instance] = []
    try:
        nats = start_nats("nats", base, exposed=True)
        started.append(nats)
        redis = start_redis("redis", base, exposed=True)
        started.append(redis)
        yield {"nats": nats.port, "redis": redis.port}
    finally:
        for instance in started:
            instance.stop()


async def _scan(port: int) -> list[Finding]:
    probe = MQTTProbe(CONFIG)
    report = await Scanner(CONFIG, probes=[probe]).scan(parse_targets([f"127.0.0.1:{port}"]))
    return report.findings


def _texts(finding: Finding) -> str:
    return "\n".join(e.text for e in finding.evidence)


def test_defaults_file_is_short() -> None:
    defaults = default_credentials("mqtt")
    assert 0 < len(defaults) <= 6
    assert ("admin", "admin") in {(c.user, c.password) for c in defaults}


async def test_connack_is_the_fingerprint(brokers: dict[str, BrokerInstance]) -> None:
    probe = MQTTProbe(CONFIG)
    exposed = await probe.fingerprint("127.0.0.1", brokers["exposed"].port)
    secured = await probe.fingerprint("127.0.0.1", brokers["secured"].port)
    assert exposed is not None and exposed.detail == "anonymous CONNECT accepted"
    assert secured is not None and secured.detail.startswith("auth required")


async def test_exposed_broker_is_critical_with_personal_data_and_the_ransom_note(
    brokers: dict[str, BrokerInstance],
) -> None:
    findings = await _scan(brokers["exposed"].port)
    [main] = [f for f in findings if f.rule == "mqtt.unauthenticated"]
    assert main.target.service == "mqtt"
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL
    assert main.ransom_note
    assert main.data.entities["PHONE"] >= 1
    assert main.data.entities["GEO_COORDINATE"] >= 1
    assert main.data.entities["MESSAGE_BODY"] >= 1
    assert main.data.records_estimated is not None
    assert main.data.records_estimated >= RETAINED + 1
    evidence = _texts(main)
    assert "CONNECT without username accepted" in evidence
    assert f"{RETAINED + 1} retained" in evidence
    assert "mosquitto version 2." in evidence  # from $SYS/broker/version
    assert "stores message content in clear" in evidence  # said plainly, as in the breach
    assert "chat/#: 40 messages heard (40 retained)" in evidence
    assert re.search(r"\+\d+ [\d*]+", evidence), "phone numbers appear masked"
    [note] = [f for f in findings if f.rule == "compromise.ransom-note"]
    assert note.severity is Severity.CRITICAL
    assert note.object == f"topic {MQTT_RANSOM_TOPIC}"
    assert "All your data is backed up" in _texts(note)
    assert f"payment address: {RANSOM_BTC_ADDRESS}" in _texts(note)


async def test_a_listen_stopped_at_its_cap_says_at_least_and_is_incomplete(
    brokers: dict[str, BrokerInstance],
) -> None:
    """With room for 10 messages, the 91 retained ones are not all heard: no count may read
    as the broker's content, and the scan says the probe did not finish."""
    config = ScanConfig(timeout=2.0, sample=2, max_tables=5)
    scanner = Scanner(config, probes=[MQTTProbe(config)])
    report = await scanner.scan(parse_targets([f"127.0.0.1:{brokers['exposed'].port}"]))
    [main] = [f for f in report.findings if f.rule == "mqtt.unauthenticated"]
    evidence = _texts(main)
    assert "listened" in evidence and ": at least 10 messages (" in evidence
    [incomplete] = [f for f in report.findings if f.rule == "scan.incomplete"]
    assert "listening stopped at its cap of 10 messages" in _texts(incomplete)
    # the cap came before $SYS said how many retained messages it holds: the count is a floor
    assert main.data.records_at_least
    assert main.data.records_text == "at least 10"


async def test_live_messages_are_heard_after_the_retained_ones(
    brokers: dict[str, BrokerInstance],
) -> None:
    """A device keeps publishing while the probe listens: live traffic is sampled too."""
    exposed = brokers["exposed"]
    stop = threading.Event()
    publisher = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="device")
    publisher.connect(exposed.host, exposed.port)
    publisher.loop_start()

    def publish() -> None:
        n = 0
        while not stop.wait(0.05):
            n += 1
            body = f'{{"msisdn": "60123456{n % 100:03d}", "lat": 3.1390, "lon": 101.6869}}'
            publisher.publish(f"telemetry/{n}", body, qos=0, retain=False)

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        findings = await _scan(exposed.port)
    finally:
        stop.set()
        thread.join()
        publisher.disconnect()
        publisher.loop_stop()
    [main] = [f for f in findings if f.rule == "mqtt.unauthenticated"]
    heard = re.search(r"\((\d+) retained, (\d+) live\)", _texts(main))
    assert heard is not None
    assert int(heard.group(1)) == RETAINED + 1
    assert int(heard.group(2)) >= 1
    assert "telemetry/#" in _texts(main)


async def test_secured_broker_is_info_never_open(brokers: dict[str, BrokerInstance]) -> None:
    findings = await _scan(brokers["secured"].port)
    assert [f.rule for f in findings] == ["mqtt.auth-required"]
    assert findings[0].severity is Severity.INFO
    assert findings[0].auth is Auth.REQUIRED
    tried = len(default_credentials("mqtt"))
    assert f"{tried} vendor default logins refused" in _texts(findings[0])


async def test_default_login_is_found(brokers: dict[str, BrokerInstance]) -> None:
    findings = await _scan(brokers["default"].port)
    [main] = findings
    assert main.rule == "mqtt.default-credentials"
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert main.severity is Severity.CRITICAL
    assert "CONNECT as admin/ad*** accepted" in _texts(main)
    assert main.data.entities["PHONE"] >= 1


async def test_probe_never_publishes(brokers: dict[str, BrokerInstance]) -> None:
    """Mosquitto logs every packet: the probe's clients subscribe, and never publish."""
    exposed = brokers["exposed"]
    start = len(_log(exposed.log_file))
    await _scan(exposed.port)
    lines = _log(exposed.log_file)[start:]
    clients = set(
        re.findall(r"New client connected from \S+ as (perisai-[0-9a-f]+)", "\n".join(lines))
    )
    assert clients, "the probe's connections were logged"
    from_probe = [line for line in lines if any(c in line for c in clients)]
    received = {m.group(1) for line in from_probe if (m := re.search(r"Received (\w+) from", line))}
    assert "SUBSCRIBE" in received
    assert received <= {"SUBSCRIBE", "DISCONNECT", "PINGREQ"}, received
    assert not any("Will message specified" in line for line in from_probe)
    assert _retained_count(exposed) == RETAINED + 1  # everything still there


def _log(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _retained_count(instance: BrokerInstance) -> int:
    """How many retained messages a fresh subscriber gets (the harness's own reader)."""
    seen: set[str] = set()
    done = threading.Event()
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="counter")

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        if message.retain:
            seen.add(message.topic)

    client.on_message = on_message
    client.connect(instance.host, instance.port)
    client.subscribe("#")
    client.loop_start()
    done.wait(1.0)  # retained messages arrive at once; this only bounds the wait
    client.disconnect()
    client.loop_stop()
    return len(seen)


async def test_fingerprint_is_none_on_other_protocols(neighbours: dict[str, int]) -> None:
    probe = MQTTProbe(CONFIG)
    for service, port in neighbours.items():
        assert await probe.fingerprint("127.0.0.1", port) is None, service
