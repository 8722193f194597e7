"""What the lab's HTTP stores (etcd, ClickHouse, InfluxDB) share: their instance record, the
harness's own client and login check, and the size of what they are seeded with.

Each server runs from Debian's package (``etcd-server`` 3.4, ``clickhouse-server`` 18.16,
``influxdb`` 1.6) in the foreground, our child in its own session (the supervisor's
:func:`~perisai.lab.supervisor.spawn` mode), with its own data directory under
``base_dir/name`` and every port it opens picked free on 127.0.0.1.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import httpx

from perisai.lab.errors import LabError
from perisai.lab.instances import Instance
from perisai.lab.supervisor import Process

__all__ = [
    "HTTP_STORE_LOG_RECORDS",
    "HTTP_STORE_USERS",
    "HTTP_TIMEOUT",
    "PORT_TAKEN",
    "SEED_BATCH",
    "HttpStoreInstance",
    "answers",
    "b64",
    "etcd_token",
    "port_taken",
]

HTTP_STORE_LOG_RECORDS = 200  # chat-gateway log records per store
HTTP_STORE_USERS = 50
HTTP_TIMEOUT = 10.0
SEED_BATCH = 100
PORT_TAKEN = "address already in use"


def port_taken(log: str) -> bool:
    """Whether a server's log says a port it was given is taken."""
    return PORT_TAKEN in log.lower()


@dataclass(frozen=True)
class HttpStoreInstance(Instance):
    """A running lab etcd / ClickHouse / InfluxDB: where it listens, how to log in, its files.

    ``port`` is the HTTP API port; ``native_port`` is ClickHouse's native-protocol port (None
    for the others). ``user``/``password`` are None for an exposed server. ``access_log`` is
    InfluxDB's HTTP access log (None for the others; etcd and ClickHouse log to ``log_file``
    and ``system.query_log``). ``database`` is the seeded database (or etcd key prefix).
    """

    # What /proc/<pid>/comm says for each server (the kernel cuts names at 15 characters).
    PROCESSES: ClassVar[Mapping[str, Process]] = {
        "etcd": Process("etcd"),
        "clickhouse": Process("clickhouse"),
        "influxdb": Process("influxd"),
    }

    native_port: int | None = None
    access_log: Path | None = None

    @property
    def url(self) -> str:
        """The HTTP API's base URL (no credentials: they go in headers, never in URLs)."""
        return f"http://{self.host}:{self.port}"

    def client(self, timeout: float = HTTP_TIMEOUT) -> httpx.Client:
        """A client for this server: no proxies from the environment, the lab's credentials."""
        headers: dict[str, str] = {}
        auth: httpx.BasicAuth | None = None
        if self.password is not None and self.user is not None:
            if self.service == "clickhouse":
                headers = {"X-ClickHouse-User": self.user, "X-ClickHouse-Key": self.password}
            elif self.service == "influxdb":
                auth = httpx.BasicAuth(self.user, self.password)
        if self.service == "etcd" and self.password is not None and self.user is not None:
            with httpx.Client(base_url=self.url, timeout=timeout, trust_env=False) as login:
                headers = {"Authorization": etcd_token(login, self.user, self.password)}
        return httpx.Client(
            base_url=self.url, timeout=timeout, trust_env=False, headers=headers, auth=auth
        )

    def answering(self, timeout: float = 2.0) -> bool:
        """Whether the server accepts a request with the lab's own credentials right now."""
        try:
            with self.client(timeout) as client:
                return answers(client, self.service)
        except (httpx.HTTPError, LabError, ValueError):
            return False


def answers(client: httpx.Client, service: str) -> bool:
    if service == "etcd":
        response = client.post("/v3/kv/range", json={"key": b64("/"), "count_only": True})
        return response.status_code == 200
    if service == "clickhouse":
        response = client.post("/", content=b"SELECT 1")
        return response.status_code == 200 and response.text.strip() == "1"
    response = client.get("/query", params={"q": "SHOW DATABASES"})
    return response.status_code == 200 and "error" not in response.text[:200]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def etcd_token(client: httpx.Client, user: str, password: str) -> str:
    response = client.post("/v3/auth/authenticate", json={"name": user, "password": password})
    token = response.json().get("token") if response.status_code == 200 else None
    if not isinstance(token, str):
        raise LabError(f"etcd refused the lab's own login: {response.text[:200]}")
    return token
