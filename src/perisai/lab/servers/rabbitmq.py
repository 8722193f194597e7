"""A real RabbitMQ node with the management plugin, on free loopback ports, and its seeder.

Exposed: the stock ``guest``/``guest`` login (loopback-only, as shipped); secured: no ``guest``
at all, one administrator with ``password`` or a random one. Each node gets a unique node name,
its own Erlang distribution port and its own ``epmd`` on a free port (the system node's epmd
on 4369 is never asked), and ``HOME`` in its directory for the Erlang cookie. It writes an HTTP
access log (how the tests prove a probe wrote nothing).

``rabbitmq-server`` runs in the foreground, so ``setsid -f`` detaches it and the node writes
its pid file (the supervisor's :func:`~perisai.lab.supervisor.daemonize` mode): an Erlang node
with its own epmd is the one server here best left as it always started.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from pathlib import Path
from urllib.parse import quote

import httpx

from perisai.lab.binaries import BinarySearch, find_binary
from perisai.lab.errors import LabError, MissingBinary
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
    BrokerInstance,
    fresh_root,
    kill_epmd,
    node_safe,
    port_taken,
    rabbitmq_answers,
    start_broker,
)
from perisai.lab.spec import ServerSpec
from perisai.lab.supervisor import (
    HOST,
    clean_env,
    daemonize,
    free_ports,
    wait_for,
)

__all__ = [
    "RABBITMQ_QUEUES",
    "RABBITMQ_RANSOM_QUEUE",
    "RABBITMQ_START_TIMEOUT",
    "SPEC",
    "find_rabbitmq",
    "rabbitmq_queue_counts",
    "seed_rabbitmq",
    "start_rabbitmq",
]

RABBITMQ_START_TIMEOUT = 120.0  # an Erlang node with the management plugin: seconds, not ms
RABBITMQ_SCRIPTS = Path("/usr/lib/rabbitmq/bin")  # Debian's /usr/sbin wrapper would `su rabbitmq`
RABBITMQ_SECURED_USER = "perisai-admin"

# (queue, type, messages) the RabbitMQ seeder creates; the ransom queue only when asked.
RABBITMQ_QUEUES: tuple[tuple[str, str, int], ...] = (
    ("chat.delivered", "classic", 120),
    ("location.updates", "classic", 40),
    ("sms.outbox", "classic", 30),
    ("audit.events", "quorum", 10),
    ("jobs.idle", "classic", 0),
)
RABBITMQ_RANSOM_QUEUE = RANSOM_TABLE


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
    password = twin_password(
        exposed, password, "an exposed RabbitMQ keeps guest/guest; it takes no password"
    )
    server = _rabbitmq_binary(search)
    epmd = find_binary("epmd", "erlang-base", search)
    setsid = find_binary("setsid", "util-linux", search)
    root = fresh_root(base_dir, name)
    return start_broker(
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
        RABBITMQ_NODENAME=f"perisai-{node_safe(name)}-{amqp_port}@localhost",
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
    launch = daemonize(
        name,
        [setsid, "-f", server],  # rabbitmq-server stays in the foreground: setsid detaches it
        log_file,
        BrokerInstance.PROCESSES["rabbitmq"],
        pid_file=pid_file,
        env=env,
        cwd=root,
        logs=[root / "log" / f"{env['RABBITMQ_NODENAME']}.log"],
        cleanup=lambda: kill_epmd(epmd_port),
    )
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
    pid = launch.await_ready(
        lambda: pid_file.exists() and rabbitmq_answers(instance, 1.0),
        timeout,
        f"the management API {HOST}:{management_port}",
        port_taken=port_taken,
        log_lines=40,
        interval=0.25,
    )
    return dataclasses.replace(instance, pid=pid)


def find_rabbitmq(search: BinarySearch | None = None) -> Path:
    """``rabbitmq-server`` (and the ``epmd`` it needs), or :class:`MissingBinary`."""
    server = _rabbitmq_binary(search)
    find_binary("epmd", "erlang-base", search)
    return server


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
        "chat.delivered": [json.dumps(chat_record(m)) for m in messages[:120]],
        "location.updates": [json.dumps(location_record(m)) for m in messages[120:160]],
        "sms.outbox": [
            json.dumps({"to": p.e164, "text": SMS_TEMPLATE.format(code=rng.randrange(10**6))})
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


SPEC = ServerSpec(
    service="rabbitmq",
    find=find_rabbitmq,
    start=start_rabbitmq,
    seed=seed_rabbitmq,
)
