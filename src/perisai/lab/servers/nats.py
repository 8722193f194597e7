"""A real NATS server with JetStream on a free loopback port, and its seeder.

Exposed: no authorization block; secured: one user and password, in the 0600 config file.
``trace`` (on request) logs every protocol operation a client sends, which is how the tests
prove a probe wrote nothing. ``nats-server`` runs in the foreground, our child in its own
session (the supervisor's :func:`~perisai.lab.supervisor.spawn` mode).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from pathlib import Path

from nats.js.api import AckPolicy

from perisai.lab.binaries import BinarySearch, find_binary
from perisai.lab.instances import twin_password
from perisai.lab.seed import SEED, chat_record, location_record, make_messages, make_people
from perisai.lab.servers.brokers import (
    BROKER_START_TIMEOUT,
    BrokerInstance,
    fresh_root,
    nats_connect,
    node_safe,
    port_taken,
    start_broker,
)
from perisai.lab.spec import ServerSpec
from perisai.lab.supervisor import HOST, free_ports, spawn

__all__ = [
    "NATS_CHAT_MESSAGES",
    "NATS_CONSUMER",
    "NATS_KV_BUCKET",
    "NATS_STREAMS",
    "SPEC",
    "find_nats",
    "seed_nats",
    "start_nats",
]

NATS_STREAMS = {"CHAT": "chat.>", "LOCATIONS": "gps.>"}
NATS_CHAT_MESSAGES = 150
NATS_LOCATIONS = 40
NATS_KV_BUCKET = "sessions"
NATS_KV_KEYS = 20
NATS_CONSUMER = "archiver"  # a durable consumer on CHAT, so consumer counts are not all zero


def find_nats(search: BinarySearch | None = None) -> Path:
    """``nats-server``, or :class:`MissingBinary`."""
    return find_binary("nats-server", "nats-server", search)


def start_nats(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    user: str = "perisai",
    trace: bool = False,
    search: BinarySearch | None = None,
    timeout: float = BROKER_START_TIMEOUT,
) -> BrokerInstance:
    """Start ``nats-server`` with JetStream under ``base_dir/name``: open (exposed) or with one
    ``user``/``password`` (random if None). ``trace`` logs every protocol operation each client
    sends (the read-only proof reads it); it also logs payloads, so it is off by default."""
    password = twin_password(exposed, password, "an exposed NATS has no password")
    binary = find_nats(search)
    root = fresh_root(base_dir, name)
    return start_broker(
        root,
        lambda: _start_nats_once(name, root, binary, exposed, user, password, trace, timeout),
    )


def _start_nats_once(
    name: str,
    root: Path,
    binary: Path,
    exposed: bool,
    user: str,
    password: str | None,
    trace: bool,
    timeout: float,
) -> BrokerInstance:
    (port,) = free_ports(1)
    log_file = root / "nats.log"
    pid_file = root / "nats.pid"
    conf = root / "nats.conf"
    q = json.dumps
    lines = [
        f"listen: {q(f'{HOST}:{port}')}",
        f"server_name: {q('perisai_' + node_safe(name))}",
        f"pid_file: {q(str(pid_file))}",
        f"log_file: {q(str(log_file))}",
        "logtime: true",
        f"trace: {'true' if trace else 'false'}",
        "jetstream {",
        f"  store_dir: {q(str(root / 'jetstream'))}",
        "  max_memory_store: 64MB",
        "  max_file_store: 256MB",
        "}",
    ]
    if not exposed:
        lines.append(f"authorization {{ user: {q(user)}, password: {q(password)} }}")
    conf.touch(mode=0o600)
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    launch = spawn(
        name,
        [binary, "-c", conf],
        root / "nats.out",
        BrokerInstance.PROCESSES["nats"],
        logs=[log_file],
    )
    pid = launch.await_ready(
        lambda: pid_file.exists() and _nats_info(HOST, port, 1.0),
        timeout,
        f"{HOST}:{port} (INFO)",
        port_taken=port_taken,
        interval=0.05,
    )
    return BrokerInstance(
        name=name,
        service="nats",
        host=HOST,
        port=port,
        exposed=exposed,
        user=None if exposed else user,
        password=password,
        pid=pid,
        root=root,
        log_file=log_file,
    )


def _nats_info(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(5) == b"INFO "
    except OSError:
        return False


def seed_nats(instance: BrokerInstance, *, seed: int = SEED) -> int:
    """Create the CHAT and LOCATIONS streams, the ``sessions`` key-value bucket and a durable
    consumer on CHAT, and publish synthetic messages into them. Returns the messages stored."""
    return asyncio.run(_seed_nats(instance, seed))


async def _seed_nats(instance: BrokerInstance, seed: int) -> int:
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(40, rng)
    messages = make_messages(people, NATS_CHAT_MESSAGES + NATS_LOCATIONS, rng)
    client = await nats_connect(instance, 5.0)
    try:
        js = client.jetstream(timeout=5.0)
        for stream, subject in NATS_STREAMS.items():
            await js.add_stream(name=stream, subjects=[subject])
        for message in messages[:NATS_CHAT_MESSAGES]:
            subject = f"chat.{message.sender.msisdn}.delivered"
            await js.publish(subject, json.dumps(chat_record(message)).encode())
        for message in messages[NATS_CHAT_MESSAGES:]:
            subject = f"gps.{message.sender.device_id}"
            await js.publish(subject, json.dumps(location_record(message)).encode())
        bucket = await js.create_key_value(bucket=NATS_KV_BUCKET)
        for person in people[:NATS_KV_KEYS]:
            session = {"msisdn": person.msisdn, "email": person.email, "device": person.device_id}
            await bucket.put(f"user.{person.msisdn}", json.dumps(session).encode())
        await js.add_consumer("CHAT", durable_name=NATS_CONSUMER, ack_policy=AckPolicy.EXPLICIT)
    finally:
        await client.close()
    return NATS_CHAT_MESSAGES + NATS_LOCATIONS + NATS_KV_KEYS


SPEC = ServerSpec(service="nats", find=find_nats, start=start_nats, seed=seed_nats)
