"""What the lab's message brokers (RabbitMQ, Mosquitto, NATS) share: their instance record,
the harness's login checks and their start plumbing.

Each server gets its own directory under ``base_dir`` (config, data, logs, pid file) and its own
ports, so it never meets the machine's own brokers on 5672/15672/1883/4222. Every server logs
what its clients do (RabbitMQ's HTTP access log, Mosquitto ``log_type all``, NATS ``trace`` on
request), which is how the tests prove a probe wrote nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

import httpx
import nats
import paho.mqtt.client as paho
from nats.aio.client import Client as NATSClient
from paho.mqtt.enums import CallbackAPIVersion

from perisai.lab.binaries import BinarySearch
from perisai.lab.errors import LabError
from perisai.lab.instances import Instance, userinfo
from perisai.lab.supervisor import (
    Process,
    clean_env,
    make_root,
    reset_dir,
    start_with_retries,
)

__all__ = [
    "BROKER_START_TIMEOUT",
    "BrokerInstance",
    "fresh_root",
    "kill_epmd",
    "mqtt_answers",
    "nats_answers",
    "nats_connect",
    "node_safe",
    "port_taken",
    "rabbitmq_answers",
    "start_broker",
]

T = TypeVar("T")

BROKER_START_TIMEOUT = 30.0
SYSTEM_EPMD_PORT = 4369  # the machine's own epmd: never started, asked or stopped by the lab
_PORT_TAKEN = ("eaddrinuse", "Address already in use", "address already in use")


@dataclass(frozen=True)
class BrokerInstance(Instance):
    """A lab broker: where it listens, how to log in, and what :meth:`stop` cleans up.

    An :class:`~perisai.lab.instances.Instance` (``port`` is the protocol port:
    AMQP, MQTT or NATS client), plus RabbitMQ's management port and private epmd port.
    ``user``/``password`` are the harness's own login (``guest``/``guest`` on an exposed
    RabbitMQ; None on an exposed Mosquitto or NATS, which need none).
    """

    PROCESSES: ClassVar[Mapping[str, Process]] = {
        "rabbitmq": Process("beam.smp"),
        "mqtt": Process("mosquitto"),
        "nats": Process("nats-server"),
    }

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
                return rabbitmq_answers(self, timeout)
            if self.service == "mqtt":
                return mqtt_answers(self.host, self.port, self.user, self.password, timeout)
            return asyncio.run(nats_answers(self, timeout))
        except (OSError, httpx.HTTPError, nats.errors.Error, TimeoutError):
            return False

    def _stopped(self) -> None:
        """A RabbitMQ node's private epmd outlives the node: stop it too."""
        if self.epmd_port is not None:
            kill_epmd(self.epmd_port)


def rabbitmq_answers(instance: BrokerInstance, timeout: float) -> bool:
    auth = (instance.user or "", instance.password or "")
    try:
        response = httpx.get(
            f"{instance.management_url}/api/overview", auth=auth, timeout=timeout, trust_env=False
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def mqtt_answers(
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


async def nats_connect(instance: BrokerInstance, timeout: float) -> NATSClient:
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


async def nats_answers(instance: BrokerInstance, timeout: float) -> bool:
    client = await nats_connect(instance, timeout)
    await client.close()
    return True


def fresh_root(base_dir: Path, name: str) -> Path:
    root = Path(base_dir).absolute() / name
    if root.exists() and any(root.iterdir()):
        raise LabError(f"{root} already holds files: choose another name or directory")
    return make_root(base_dir, name)


def start_broker(root: Path, attempt: Callable[[], T]) -> T:
    """Retry a start whose free port was taken in between, on an emptied ``root``; on failure
    remove ``root``."""
    return start_with_retries(root, attempt, port_taken, before_retry=lambda: reset_dir(root))


def port_taken(text: str) -> bool:
    return any(marker in text for marker in _PORT_TAKEN)


def node_safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)[:40] or "node"


def kill_epmd(port: int) -> None:
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
