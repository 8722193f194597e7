"""A real Mosquitto (MQTT) broker on a free loopback port, and its seeder.

Exposed: ``allow_anonymous true``; secured: anonymous refused, one user in a hashed password
file (``mosquitto_passwd -U`` hashes it in place: no password on a command line).
``log_type all`` records every packet a client sends, which is how the tests prove a probe
wrote nothing. Mosquitto daemonizes itself (``-d``) and writes its pid file: the supervisor's
:func:`~perisai.lab.supervisor.daemonize` mode.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from perisai.lab.binaries import BinarySearch, find_binary
from perisai.lab.errors import LabError, ServerStartError
from perisai.lab.instances import twin_password
from perisai.lab.seed import (
    RANSOM_NOTE,
    RANSOM_TABLE,
    SEED,
    SMS_TEMPLATE,
    chat_record,
    location_record,
    make_messages,
    make_people,
)
from perisai.lab.servers.brokers import (
    BROKER_START_TIMEOUT,
    BrokerInstance,
    fresh_root,
    mqtt_answers,
    port_taken,
    start_broker,
)
from perisai.lab.spec import ServerSpec
from perisai.lab.supervisor import HOST, daemonize, free_ports

__all__ = [
    "MQTT_RANSOM_TOPIC",
    "MQTT_RETAINED",
    "SPEC",
    "find_mosquitto",
    "seed_mosquitto",
    "start_mosquitto",
]

MQTT_RETAINED = {"chat": 40, "gps": 30, "sms": 10, "devices": 10}  # retained topics per root
MQTT_RANSOM_TOPIC = RANSOM_TABLE


def find_mosquitto(search: BinarySearch | None = None) -> Path:
    """``mosquitto`` (and ``mosquitto_passwd``), or :class:`MissingBinary`."""
    find_binary("mosquitto_passwd", "mosquitto", search)
    return find_binary("mosquitto", "mosquitto", search)


def start_mosquitto(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    user: str = "perisai",
    search: BinarySearch | None = None,
    timeout: float = BROKER_START_TIMEOUT,
) -> BrokerInstance:
    """Start ``mosquitto`` under ``base_dir/name``: anonymous clients welcome (exposed) or
    refused, with ``user``/``password`` (random if None) in a hashed password file.

    ``log_type all`` records every packet a client sends (CONNECT, SUBSCRIBE, PUBLISH…).
    Persistence is off: retained messages live in memory for the broker's lifetime.
    """
    password = twin_password(
        exposed, password, "an exposed Mosquitto takes anonymous clients; it has no password"
    )
    binary = find_binary("mosquitto", "mosquitto", search)
    passwd_tool = find_binary("mosquitto_passwd", "mosquitto", search)
    root = fresh_root(base_dir, name)
    return start_broker(
        root,
        lambda: _start_mosquitto_once(
            name, root, binary, passwd_tool, exposed, user, password, timeout
        ),
    )


def _start_mosquitto_once(
    name: str,
    root: Path,
    binary: Path,
    passwd_tool: Path,
    exposed: bool,
    user: str,
    password: str | None,
    timeout: float,
) -> BrokerInstance:
    (port,) = free_ports(1)
    log_file = root / "mosquitto.log"
    pid_file = root / "mosquitto.pid"
    conf = root / "mosquitto.conf"
    lines = [
        f"listener {port} {HOST}",
        f"allow_anonymous {'true' if exposed else 'false'}",
        "persistence false",
        f"log_dest file {log_file}",
        "log_type all",
        "connection_messages true",
        "log_timestamp true",
        f"pid_file {pid_file}",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # else it drops to `mosquitto`, who cannot write root's dir
    if not exposed:
        passwd = root / "passwd"
        passwd.touch(mode=0o600)
        passwd.write_text(f"{user}:{password}\n", encoding="utf-8")
        hashed = subprocess.run(
            [str(passwd_tool), "-U", str(passwd)],  # hashes in place: no password in argv
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if hashed.returncode != 0:
            raise ServerStartError(name, "mosquitto_passwd -U failed", hashed.stderr.strip())
        lines.append(f"password_file {passwd}")
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    launch = daemonize(
        name,
        [binary, "-c", conf, "-d"],
        root / "mosquitto.out",
        BrokerInstance.PROCESSES["mqtt"],
        pid_file=pid_file,
        cwd=root,
        logs=[log_file],
        timeout=timeout,
    )
    login_user = None if exposed else user
    pid = launch.await_ready(
        lambda: pid_file.exists() and mqtt_answers(HOST, port, login_user, password, 1.0),
        timeout,
        f"{HOST}:{port} (CONNACK)",
        port_taken=port_taken,
        interval=0.05,
    )
    return BrokerInstance(
        name=name,
        service="mqtt",
        host=HOST,
        port=port,
        exposed=exposed,
        user=login_user,
        password=password,
        pid=pid,
        root=root,
        log_file=log_file,
    )


def seed_mosquitto(instance: BrokerInstance, *, ransom_note: bool = False, seed: int = SEED) -> int:
    """Publish retained messages shaped like a chat app's MQTT traffic (chat logs with phone
    numbers, GPS fixes, OTP SMS, device status), and optionally a retained ransom note on
    ``README_TO_RECOVER_YOUR_DATA``. Returns the number of retained topics written."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(50, rng)
    messages = make_messages(people, 80, rng)
    payloads: list[tuple[str, str]] = []
    for n, message in enumerate(messages[: MQTT_RETAINED["chat"]], start=1):
        topic = f"chat/{message.sender.msisdn}/delivered/{n}"
        payloads.append((topic, json.dumps(chat_record(message))))
    for message in messages[40 : 40 + MQTT_RETAINED["gps"]]:
        topic = f"gps/{message.sender.device_id}/{message.sent_at:%H%M%S}"
        payloads.append((topic, json.dumps(location_record(message))))
    for n, person in enumerate(people[: MQTT_RETAINED["sms"]], start=1):
        text = f"to {person.e164}: " + SMS_TEMPLATE.format(code=rng.randrange(10**6))
        payloads.append((f"sms/outbox/{n}", text))
    for person in people[10 : 10 + MQTT_RETAINED["devices"]]:
        payloads.append((f"devices/{person.device_id[:8]}/status", "online"))
    if ransom_note:
        payloads.append((MQTT_RANSOM_TOPIC, RANSOM_NOTE))
    _mqtt_publish_retained(instance, payloads)
    return len(payloads)


def _mqtt_publish_retained(instance: BrokerInstance, payloads: list[tuple[str, str]]) -> None:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"perisai-seed-{os.getpid()}"
    )
    if instance.user is not None:
        client.username_pw_set(instance.user, instance.password)
    client.connect(instance.host, instance.port, keepalive=30)
    client.loop_start()
    try:
        infos = [client.publish(topic, body, qos=1, retain=True) for topic, body in payloads]
        for info in infos:
            info.wait_for_publish(timeout=10.0)
            if not info.is_published():
                raise LabError(f"{instance.name}: a retained seed message was not acknowledged")
    finally:
        client.disconnect()
        client.loop_stop()


SPEC = ServerSpec(
    service="mqtt",
    find=find_mosquitto,
    start=start_mosquitto,
    seed=seed_mosquitto,
)
