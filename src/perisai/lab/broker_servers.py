"""Real message brokers for the lab: RabbitMQ, Mosquitto (MQTT) and NATS, on free loopback ports.

Each server gets its own directory under ``base_dir`` (config, data, logs, pid file) and its own
ports, so it never meets the machine's own brokers on 5672/15672/1883/4222. RabbitMQ also gets
a unique node name, its own Erlang distribution port and its own ``epmd`` on a free port (the
system node's epmd on 4369 is never asked), and ``HOME`` in its directory for the Erlang cookie.

Exposed and secured twins:

- RabbitMQ exposed: the stock ``guest``/``guest`` login (loopback-only, as shipped); secured: no
  ``guest`` at all, one administrator with ``password`` or a random one.
- Mosquitto exposed: ``allow_anonymous true``; secured: anonymous refused, one user in a
  hashed password file.
- NATS exposed: no authorization block; secured: one user and password. JetStream is on in both.

The seeders write synthetic personal data (chat logs with phone numbers, GPS fixes, OTP SMS)
made by :mod:`perisai.lab.seed`'s generators: the harness writes, the probes only ever read.
Every server logs what its clients do (RabbitMQ's HTTP access log, Mosquitto ``log_type all``,
NATS ``trace`` on request), which is how the tests prove a probe wrote nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import quote

import httpx
import nats
import paho.mqtt.client as paho
from nats.aio.client import Client as NATSClient
from nats.js.api import AckPolicy
from paho.mqtt.enums import CallbackAPIVersion

from perisai.lab.binaries import BinarySearch, find_binary
from perisai.lab.errors import LabError, MissingBinary, ServerStartError
from perisai.lab.instances import (
    HOST,
    STOP_TIMEOUT,
    clean_env,
    free_ports,
    is_process,
    log_tail,
    make_root,
    read_pid,
    start_with_retries,
    stop_pid,
    userinfo,
    wait_for,
)
from perisai.lab.redis_server import random_password
from perisai.lab.seed import (
    RANSOM_NOTE,
    RANSOM_TABLE,
    SEED,
    ChatMessage,
    Person,
    make_messages,
    make_people,
)

__all__ = [
    "MQTT_RANSOM_TOPIC",
    "MQTT_RETAINED",
    "NATS_CHAT_MESSAGES",
    "NATS_CONSUMER",
    "NATS_KV_BUCKET",
    "NATS_STREAMS",
    "RABBITMQ_QUEUES",
    "RABBITMQ_RANSOM_QUEUE",
    "RABBITMQ_START_TIMEOUT",
    "BrokerInstance",
    "BrokerService",
    "rabbitmq_queue_counts",
    "seed_mosquitto",
    "seed_nats",
    "seed_rabbitmq",
    "start_mosquitto",
    "start_nats",
    "start_rabbitmq",
]

BrokerService = Literal["rabbitmq", "mqtt", "nats"]

RABBITMQ_START_TIMEOUT = 120.0  # an Erlang node with the management plugin: seconds, not ms
BROKER_START_TIMEOUT = 30.0
RABBITMQ_SCRIPTS = Path("/usr/lib/rabbitmq/bin")  # Debian's /usr/sbin wrapper would `su rabbitmq`
RABBITMQ_SECURED_USER = "perisai-admin"
SYSTEM_EPMD_PORT = 4369  # the machine's own epmd: never started, asked or stopped by the lab
_PORT_TAKEN = ("eaddrinuse", "Address already in use", "address already in use")

# (queue, type, messages) the RabbitMQ seeder creates; the ransom queue only when asked.
RABBITMQ_QUEUES: tuple[tuple[str, str, int], ...] = (
    ("chat.delivered", "classic", 120),
    ("location.updates", "classic", 40),
    ("sms.outbox", "classic", 30),
    ("audit.events", "quorum", 10),
    ("jobs.idle", "classic", 0),
)
RABBITMQ_RANSOM_QUEUE = RANSOM_TABLE
MQTT_RETAINED = {"chat": 40, "gps": 30, "sms": 10, "devices": 10}  # retained topics per root
MQTT_RANSOM_TOPIC = RANSOM_TABLE
NATS_STREAMS = {"CHAT": "chat.>", "LOCATIONS": "gps.>"}
NATS_CHAT_MESSAGES = 150
NATS_LOCATIONS = 40
NATS_KV_BUCKET = "sessions"
NATS_KV_KEYS = 20
NATS_CONSUMER = "archiver"  # a durable consumer on CHAT, so consumer counts are not all zero

_PROCESS_NAMES: dict[BrokerService, str] = {
    "rabbitmq": "beam.smp",
    "mqtt": "mosquitto",
    "nats": "nats-server",
}
_SMS_TEXT = "Your verification code is {code}. It expires in 5 minutes."


@dataclass(frozen=True)
class BrokerInstance:
    """A lab broker: where it listens, how to log in, and what :meth:`stop` cleans up.

    Mirrors :class:`perisai.lab.Instance` field for field (``port`` is the protocol port:
    AMQP, MQTT or NATS client), plus RabbitMQ's management port and private epmd port.
    ``user``/``password`` are the harness's own login (``guest``/``guest`` on an exposed
    RabbitMQ; None on an exposed Mosquitto or NATS, which need none).
    """

    name: str
    service: BrokerService
    host: str
    port: int
    exposed: bool
    user: str | None
    password: str | None
    pid: int
    root: Path
    log_file: Path
    database: str = ""  # RabbitMQ: the vhost ("/"); unused elsewhere
    management_port: int | None = None
    epmd_port: int | None = None

    @property
    def url(self) -> str:
        """A client URL with the harness's credentials (amqp://, mqtt://, nats://)."""
        scheme = {"rabbitmq": "amqp", "mqtt": "mqtt", "nats": "nats"}[self.service]
        return f"{scheme}://{userinfo(self.user, self.password)}{self.host}:{self.port}"

    @property
    def management_url(self) -> str:
        """RabbitMQ's management API base URL (no credentials)."""
        if self.management_port is None:
            raise LabError(f"{self.name} has no management API")
        return f"http://{self.host}:{self.management_port}"

    def answering(self, timeout: float = 2.0) -> bool:
        """Whether the broker accepts the harness's own login right now."""
        try:
            if self.service == "rabbitmq":
                return _rabbitmq_answers(self, timeout)
            if self.service == "mqtt":
                return _mqtt_answers(self.host, self.port, self.user, self.password, timeout)
            return asyncio.run(_nats_answers(self, timeout))
        except (OSError, httpx.HTTPError, nats.errors.Error, TimeoutError):
            return False

    def running(self) -> bool:
        return _is_broker_process(self.pid, self.service)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the broker (SIGTERM, then SIGKILL), its private epmd, and remove its files."""
        _stop_broker(self.pid, self.service, timeout)
        if self.epmd_port is not None:
            _kill_epmd(self.epmd_port)
        shutil.rmtree(self.root, ignore_errors=True)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["root"] = str(self.root)
        data["log_file"] = str(self.log_file)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BrokerInstance:
        """The inverse of :meth:`to_json`; ValueError on anything malformed."""
        try:
            service = data["service"]
            if service not in get_args(BrokerService):
                raise ValueError(f"unknown broker service {service!r}")
            return cls(
                name=str(data["name"]),
                service=service,
                host=str(data["host"]),
                port=int(data["port"]),
                exposed=bool(data["exposed"]),
                user=None if data["user"] is None else str(data["user"]),
                password=None if data["password"] is None else str(data["password"]),
                pid=int(data["pid"]),
                root=Path(data["root"]),
                log_file=Path(data["log_file"]),
                database=str(data.get("database", "")),
                management_port=_opt_int(data.get("management_port")),
                epmd_port=_opt_int(data.get("epmd_port")),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed broker record: {error}") from error


# --- RabbitMQ --------------------------------------------------------------------------------


def start_rabbitmq(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    search: BinarySearch | None = None,
    timeout: float = RABBITMQ_START_TIMEOUT,
) -> BrokerInstance:
    """Start a RabbitMQ node with the management plugin under ``base_dir/name``.

    Exposed: the stock ``guest``/``guest`` user (RabbitMQ lets it in from loopback only, which
    is where the lab listens). Secured: ``guest`` is never created; the only user is
    ``perisai-admin`` with ``password`` or a random one. The management API writes an access
    log under ``root/http_log``; queue statistics refresh every second.
    """
    if exposed and password is not None:
        raise ValueError("an exposed RabbitMQ keeps guest/guest; it takes no password")
    server = _rabbitmq_binary(search)
    epmd = find_binary("epmd", "erlang-base", search)
    setsid = find_binary("setsid", "util-linux", search)
    if not exposed and password is None:
        password = random_password()
    root = _fresh_root(base_dir, name)
    return _start_with_retries(
        root,
        lambda: _start_rabbitmq_once(name, root, server, epmd, setsid, exposed, password, timeout),
    )


def _start_rabbitmq_once(
    name: str,
    root: Path,
    server: Path,
    epmd: Path,
    setsid: Path,
    exposed: bool,
    password: str | None,
    timeout: float,
) -> BrokerInstance:
    amqp_port, management_port, dist_port, epmd_port = free_ports(4)
    log_file = root / "rabbitmq.out"
    pid_file = root / "rabbitmq.pid"
    conf = root / "rabbitmq.conf"
    lines = [
        f"listeners.tcp.default = {HOST}:{amqp_port}",
        f"management.tcp.ip = {HOST}",
        f"management.tcp.port = {management_port}",
        f"management.http_log_dir = {root / 'http_log'}",
        "collect_statistics_interval = 1000",
        "log.console = false",
        "log.file.level = info",
    ]
    if not exposed:
        lines += [
            f"default_user = {RABBITMQ_SECURED_USER}",
            f"default_pass = {password}",
            "default_user_tags.administrator = true",
        ]
    conf.touch(mode=0o600)
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "enabled_plugins").write_text("[rabbitmq_management].\n", encoding="utf-8")
    (root / "rabbitmq-env.conf").write_text("# the lab's own: /etc/rabbitmq's is not read\n")
    env = clean_env("RABBITMQ_", "ERL_")
    env.update(
        HOME=str(root),  # the Erlang cookie lands here, not in the system node's home
        RABBITMQ_NODENAME=f"perisai-{_node_safe(name)}-{amqp_port}@localhost",
        RABBITMQ_NODE_IP_ADDRESS=HOST,
        RABBITMQ_NODE_PORT=str(amqp_port),
        RABBITMQ_DIST_PORT=str(dist_port),
        ERL_EPMD_PORT=str(epmd_port),  # erl starts a private epmd here: never the system's
        ERL_EPMD_ADDRESS=HOST,
        RABBITMQ_CONF_ENV_FILE=str(root / "rabbitmq-env.conf"),
        RABBITMQ_CONFIG_FILE=str(conf),
        RABBITMQ_ADVANCED_CONFIG_FILE=str(root / "advanced.config"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(root / "enabled_plugins"),
        RABBITMQ_MNESIA_BASE=str(root / "mnesia"),
        RABBITMQ_LOG_BASE=str(root / "log"),
        RABBITMQ_PID_FILE=str(pid_file),
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
    )
    _launch([str(setsid), "-f", str(server)], root, log_file, env)
    user = "guest" if exposed else RABBITMQ_SECURED_USER
    login = "guest" if exposed else password
    instance = BrokerInstance(
        name=name,
        service="rabbitmq",
        host=HOST,
        port=amqp_port,
        exposed=exposed,
        user=user,
        password=login,
        pid=0,
        root=root,
        log_file=log_file,
        database="/",
        management_port=management_port,
        epmd_port=epmd_port,
    )

    def ready() -> bool:
        if _port_taken(log_tail(log_file, 40)):
            raise ServerStartError(name, "a port is taken", log_tail(log_file))
        return pid_file.exists() and _rabbitmq_answers(instance, 1.0)

    try:
        if not wait_for(ready, timeout, interval=0.25):
            raise ServerStartError(
                name,
                f"no management API on {HOST}:{management_port} after {timeout:.0f} s",
                log_tail(log_file) or _rabbitmq_log_tail(root),
            )
    except ServerStartError:
        _kill_from_pid_file(pid_file, "rabbitmq")
        _kill_epmd(epmd_port)
        raise
    pid = read_pid(pid_file)
    if pid is None:
        _kill_epmd(epmd_port)
        raise ServerStartError(name, "no pid in RABBITMQ_PID_FILE", log_tail(log_file))
    return BrokerInstance(**{**asdict(instance), "pid": pid})


def find_rabbitmq(search: BinarySearch | None = None) -> Path:
    """``rabbitmq-server`` (and the ``epmd`` it needs), or :class:`MissingBinary`."""
    server = _rabbitmq_binary(search)
    find_binary("epmd", "erlang-base", search)
    return server


def find_mosquitto(search: BinarySearch | None = None) -> Path:
    """``mosquitto`` (and ``mosquitto_passwd``), or :class:`MissingBinary`."""
    find_binary("mosquitto_passwd", "mosquitto", search)
    return find_binary("mosquitto", "mosquitto", search)


def find_nats(search: BinarySearch | None = None) -> Path:
    """``nats-server``, or :class:`MissingBinary`."""
    return find_binary("nats-server", "nats-server", search)


def _rabbitmq_binary(search: BinarySearch | None) -> Path:
    if search is not None and search.path is not None:
        found = shutil.which("rabbitmq-server", path=search.path)
        if found is None:
            raise MissingBinary("rabbitmq-server", "rabbitmq-server")
        return Path(found)
    binary = RABBITMQ_SCRIPTS / "rabbitmq-server"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise MissingBinary(str(binary), "rabbitmq-server")
    return binary


def _rabbitmq_answers(instance: BrokerInstance, timeout: float) -> bool:
    auth = (instance.user or "", instance.password or "")
    try:
        response = httpx.get(
            f"{instance.management_url}/api/overview", auth=auth, timeout=timeout, trust_env=False
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _rabbitmq_log_tail(root: Path) -> str:
    logs = sorted((root / "log").glob("*.log"))
    return log_tail(logs[0]) if logs else ""


def _management(instance: BrokerInstance) -> httpx.Client:
    return httpx.Client(
        base_url=instance.management_url,
        auth=(instance.user or "", instance.password or ""),
        timeout=10.0,
        trust_env=False,
    )


def rabbitmq_queue_counts(instance: BrokerInstance) -> dict[str, int]:
    """``{queue: messages}`` for the default vhost, from the management API's statistics."""
    with _management(instance) as api:
        response = api.get("/api/queues/%2F", params={"columns": "name,messages"})
        response.raise_for_status()
        return {q["name"]: int(q.get("messages", 0)) for q in response.json()}


def seed_rabbitmq(instance: BrokerInstance, *, ransom_note: bool = False, seed: int = SEED) -> int:
    """Declare the lab's queues and publish synthetic messages into them (the harness writes;
    a probe never does); waits until the statistics show every message. Returns the count."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(60, rng)
    messages = make_messages(people, 200, rng)
    bodies: dict[str, list[str]] = {
        "chat.delivered": [json.dumps(_chat_record(m)) for m in messages[:120]],
        "location.updates": [json.dumps(_location_record(m)) for m in messages[120:160]],
        "sms.outbox": [
            json.dumps({"to": p.e164, "text": _SMS_TEXT.format(code=rng.randrange(10**6))})
            for p in people[:30]
        ],
        "audit.events": [
            json.dumps({"event": "login", "user": p.email, "device_id": p.device_id})
            for p in people[30:40]
        ],
        "jobs.idle": [],
    }
    queues = [(name, kind) for name, kind, _ in RABBITMQ_QUEUES]
    if ransom_note:
        queues.append((RABBITMQ_RANSOM_QUEUE, "classic"))
        bodies[RABBITMQ_RANSOM_QUEUE] = [RANSOM_NOTE]
    written = 0
    with _management(instance) as api:
        for name, kind in queues:
            api.put(
                f"/api/queues/%2F/{quote(name, safe='')}",
                json={"durable": True, "arguments": {"x-queue-type": kind}},
            ).raise_for_status()
            for body in bodies[name]:
                routed = api.post(
                    "/api/exchanges/%2F/amq.default/publish",
                    json={
                        "properties": {"delivery_mode": 2, "content_type": "application/json"},
                        "routing_key": name,
                        "payload": body,
                        "payload_encoding": "string",
                    },
                )
                routed.raise_for_status()
                if not routed.json().get("routed"):
                    raise LabError(f"{instance.name}: a seed message to {name} was not routed")
                written += 1
    expected = {name: len(bodies[name]) for name, _ in queues}
    if not wait_for(lambda: rabbitmq_queue_counts(instance) == expected, 30.0, interval=0.25):
        raise LabError(f"{instance.name}: queue statistics never showed the seeded messages")
    return written


# --- Mosquitto (MQTT) ------------------------------------------------------------------------


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
    if exposed and password is not None:
        raise ValueError("an exposed Mosquitto takes anonymous clients; it has no password")
    binary = find_binary("mosquitto", "mosquitto", search)
    passwd_tool = find_binary("mosquitto_passwd", "mosquitto", search)
    if not exposed and password is None:
        password = random_password()
    root = _fresh_root(base_dir, name)
    return _start_with_retries(
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
    started = subprocess.run(
        [str(binary), "-c", str(conf), "-d"],
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    if started.returncode != 0:
        raise ServerStartError(
            name,
            f"mosquitto exited with {started.returncode}",
            started.stderr.strip() or log_tail(log_file),
        )
    login_user = None if exposed else user
    instance = BrokerInstance(
        name=name,
        service="mqtt",
        host=HOST,
        port=port,
        exposed=exposed,
        user=login_user,
        password=password,
        pid=0,
        root=root,
        log_file=log_file,
    )

    def ready() -> bool:
        if _port_taken(log_tail(log_file, 10)):
            raise ServerStartError(name, f"port {port} is taken", log_tail(log_file))
        return pid_file.exists() and _mqtt_answers(HOST, port, login_user, password, 1.0)

    try:
        if not wait_for(ready, timeout, interval=0.05):
            raise ServerStartError(
                name, f"no CONNACK on {HOST}:{port} after {timeout:.0f} s", log_tail(log_file)
            )
    except ServerStartError:
        _kill_from_pid_file(pid_file, "mqtt")
        raise
    pid = read_pid(pid_file)
    if pid is None:
        raise ServerStartError(name, "no pid file", log_tail(log_file))
    return BrokerInstance(**{**asdict(instance), "pid": pid})


def _mqtt_answers(
    host: str, port: int, user: str | None, password: str | None, timeout: float
) -> bool:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"perisai-lab-{os.getpid()}-{time.monotonic_ns()}",
    )
    if user is not None:
        client.username_pw_set(user, password)
    try:
        client.connect(host, port, keepalive=10)
    except OSError:
        return False
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not client.is_connected():
            if client.loop(timeout=0.05) != paho.MQTT_ERR_SUCCESS:
                return False
        return client.is_connected()
    finally:
        with suppress(OSError):
            client.disconnect()
        with suppress(OSError):
            client.loop(timeout=0.05)


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
        payloads.append((topic, json.dumps(_chat_record(message))))
    for message in messages[40 : 40 + MQTT_RETAINED["gps"]]:
        topic = f"gps/{message.sender.device_id}/{message.sent_at:%H%M%S}"
        payloads.append((topic, json.dumps(_location_record(message))))
    for n, person in enumerate(people[: MQTT_RETAINED["sms"]], start=1):
        text = f"to {person.e164}: " + _SMS_TEXT.format(code=rng.randrange(10**6))
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


# --- NATS ------------------------------------------------------------------------------------


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
    if exposed and password is not None:
        raise ValueError("an exposed NATS has no password")
    binary = find_binary("nats-server", "nats-server", search)
    setsid = find_binary("setsid", "util-linux", search)
    if not exposed and password is None:
        password = random_password()
    root = _fresh_root(base_dir, name)
    return _start_with_retries(
        root,
        lambda: _start_nats_once(
            name, root, binary, setsid, exposed, user, password, trace, timeout
        ),
    )


def _start_nats_once(
    name: str,
    root: Path,
    binary: Path,
    setsid: Path,
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
        f"server_name: {q('perisai_' + _node_safe(name))}",
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
    _launch([str(setsid), "-f", str(binary), "-c", str(conf)], root, root / "nats.out", None)
    instance = BrokerInstance(
        name=name,
        service="nats",
        host=HOST,
        port=port,
        exposed=exposed,
        user=None if exposed else user,
        password=password,
        pid=0,
        root=root,
        log_file=log_file,
    )

    def ready() -> bool:
        tail = log_tail(log_file, 10) + log_tail(root / "nats.out", 10)
        if _port_taken(tail):
            raise ServerStartError(name, f"port {port} is taken", tail)
        return pid_file.exists() and _nats_info(HOST, port, 1.0)

    try:
        if not wait_for(ready, timeout, interval=0.05):
            raise ServerStartError(
                name,
                f"no INFO on {HOST}:{port} after {timeout:.0f} s",
                log_tail(log_file) or log_tail(root / "nats.out"),
            )
    except ServerStartError:
        _kill_from_pid_file(pid_file, "nats")
        raise
    pid = read_pid(pid_file)
    if pid is None:
        raise ServerStartError(name, "no pid file", log_tail(log_file))
    return BrokerInstance(**{**asdict(instance), "pid": pid})


def _nats_info(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(5) == b"INFO "
    except OSError:
        return False


async def _nats_connect(instance: BrokerInstance, timeout: float) -> NATSClient:
    async def quiet(_: Exception) -> None:
        return None

    return await nats.connect(
        servers=[f"nats://{instance.host}:{instance.port}"],
        user=instance.user,
        password=instance.password,
        name="perisai-lab",
        connect_timeout=timeout,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        error_cb=quiet,
    )


async def _nats_answers(instance: BrokerInstance, timeout: float) -> bool:
    client = await _nats_connect(instance, timeout)
    await client.close()
    return True


def seed_nats(instance: BrokerInstance, *, seed: int = SEED) -> int:
    """Create the CHAT and LOCATIONS streams, the ``sessions`` key-value bucket and a durable
    consumer on CHAT, and publish synthetic messages into them. Returns the messages stored."""
    return asyncio.run(_seed_nats(instance, seed))


async def _seed_nats(instance: BrokerInstance, seed: int) -> int:
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(40, rng)
    messages = make_messages(people, NATS_CHAT_MESSAGES + NATS_LOCATIONS, rng)
    client = await _nats_connect(instance, 5.0)
    try:
        js = client.jetstream(timeout=5.0)
        for stream, subject in NATS_STREAMS.items():
            await js.add_stream(name=stream, subjects=[subject])
        for message in messages[:NATS_CHAT_MESSAGES]:
            subject = f"chat.{message.sender.msisdn}.delivered"
            await js.publish(subject, json.dumps(_chat_record(message)).encode())
        for message in messages[NATS_CHAT_MESSAGES:]:
            subject = f"gps.{message.sender.device_id}"
            await js.publish(subject, json.dumps(_location_record(message)).encode())
        bucket = await js.create_key_value(bucket=NATS_KV_BUCKET)
        for person in people[:NATS_KV_KEYS]:
            session = {"msisdn": person.msisdn, "email": person.email, "device": person.device_id}
            await bucket.put(f"user.{person.msisdn}", json.dumps(session).encode())
        await js.add_consumer("CHAT", durable_name=NATS_CONSUMER, ack_policy=AckPolicy.EXPLICIT)
    finally:
        await client.close()
    return NATS_CHAT_MESSAGES + NATS_LOCATIONS + NATS_KV_KEYS


# --- shared plumbing -------------------------------------------------------------------------


def _chat_record(message: ChatMessage) -> dict[str, object]:
    """A chat gateway's log line for one delivered message: what leaked in the real breach."""
    return {
        "ts": message.sent_at.isoformat().replace("+00:00", "Z"),
        "event": "message.delivered",
        "msisdn": message.sender.msisdn,
        "to": message.recipient.e164,
        "msg": message.body,
        "lat": message.lat,
        "lon": message.lon,
        "device_id": message.sender.device_id,
    }


def _location_record(message: ChatMessage) -> dict[str, object]:
    sender: Person = message.sender
    return {
        "ts": message.sent_at.isoformat().replace("+00:00", "Z"),
        "event": "location.update",
        "msisdn": sender.msisdn,
        "lat": message.lat,
        "lon": message.lon,
        "device_id": sender.device_id,
    }


def _fresh_root(base_dir: Path, name: str) -> Path:
    root = Path(base_dir).absolute() / name
    if root.exists() and any(root.iterdir()):
        raise LabError(f"{root} already holds files: choose another name or directory")
    return make_root(base_dir, name)


def _start_with_retries(root: Path, attempt: Callable[[], BrokerInstance]) -> BrokerInstance:
    """Retry a start whose free port was taken in between, on an emptied ``root``; on failure
    remove ``root``."""
    return start_with_retries(root, attempt, _port_taken, before_retry=lambda: _reset_dir(root))


def _reset_dir(root: Path) -> None:
    """Empty ``root`` before another start attempt (a half-started node leaves data behind)."""
    for entry in root.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _port_taken(text: str) -> bool:
    return any(marker in text for marker in _PORT_TAKEN)


def _node_safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)[:40] or "node"


def _launch(argv: list[str], root: Path, output: Path, env: dict[str, str] | None) -> None:
    """Start a server detached from us (``setsid -f``): it keeps its pid file, we keep no
    child process object (which Python would complain about when it is collected)."""
    with output.open("ab") as sink:
        done = subprocess.run(
            argv,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=30,
            check=False,
        )
    if done.returncode != 0:
        raise ServerStartError(root.name, f"{argv[-1]} exited with {done.returncode}")


def _is_broker_process(pid: int, service: BrokerService) -> bool:
    return is_process(pid, _PROCESS_NAMES[service])


def _stop_broker(pid: int, service: BrokerService, timeout: float) -> None:
    """SIGTERM (every broker here stops cleanly on it), then SIGKILL; bounded waits."""
    stop_pid(pid, lambda p: _is_broker_process(p, service), f"{service} broker", timeout)


def _kill_from_pid_file(pid_file: Path, service: BrokerService) -> None:
    """Stop a server that came up half-way, so a failed start leaves nothing running."""
    pid = read_pid(pid_file)
    if pid is not None:
        _stop_broker(pid, service, STOP_TIMEOUT)


def _kill_epmd(port: int) -> None:
    """Stop the private epmd a lab RabbitMQ node started (the system's, on 4369, is never
    addressed: the port is always the lab's own)."""
    epmd = shutil.which("epmd", path=BinarySearch().search_path())
    if epmd is None or port == SYSTEM_EPMD_PORT:
        return
    env = dict(clean_env("ERL_"), ERL_EPMD_PORT=str(port))
    with suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            [epmd, "-port", str(port), "-kill"],
            env=env,
            capture_output=True,
            timeout=10,
            check=False,
        )


def _opt_int(value: object) -> int | None:
    return None if value is None else int(str(value))
