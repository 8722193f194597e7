"""Real etcd, ClickHouse and InfluxDB servers on free loopback ports, and their seeders.

Each server runs from Debian's package (``etcd-server`` 3.4, ``clickhouse-server`` 18.16,
``influxdb`` 1.6) in the foreground, as a child of the caller, with its own data directory under
``base_dir/name`` and every port it opens picked free on 127.0.0.1. Exposed servers let anyone
in; secured ones require a password set before any data goes in:

- etcd: v3 auth enabled, with a ``root`` user (the only way etcd 3.4 enables auth);
- ClickHouse: the ``default`` user gets a password (stored as SHA-256 in users.xml);
- InfluxDB: ``auth-enabled`` with an ``admin`` user holding all privileges.

Every server also keeps the record the read-only tests read: etcd counts every gRPC call by
method on ``/metrics`` (``grpc_server_started_total``), ClickHouse runs with ``log_queries``
(``system.query_log``), InfluxDB keeps its query log and an HTTP access log
(:attr:`HttpStoreInstance.access_log`).
The seeders write the same kind of synthetic messaging-app data as :mod:`perisai.lab.seed`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import httpx

from perisai.lab.binaries import BinarySearch, find_binary
from perisai.lab.errors import LabError, MissingBinary, ServerStartError
from perisai.lab.instances import (
    HOST,
    START_TIMEOUT,
    STOP_TIMEOUT,
    free_port,
    is_process,
    log_tail,
    make_root,
    pid_running,
    reap,
    start_with_retries,
    stop_pid,
    wait_for,
)
from perisai.lab.redis_server import random_password
from perisai.lab.seed import (
    CHATLOG_DATABASE,
    RANSOM_NOTE,
    RANSOM_TABLE,
    SEED,
    ChatMessage,
    Person,
    make_messages,
    make_people,
)

__all__ = [
    "CLICKHOUSE_PACKAGE",
    "ETCD_PACKAGE",
    "ETCD_RANSOM_KEY",
    "HTTP_STORE_LOG_RECORDS",
    "HTTP_STORE_USERS",
    "INFLUXDB_PACKAGE",
    "HttpService",
    "HttpStoreInstance",
    "find_clickhouse_server",
    "find_etcd",
    "find_influxd",
    "missing_http_store_packages",
    "seed_clickhouse",
    "seed_etcd",
    "seed_influxdb",
    "start_clickhouse",
    "start_etcd",
    "start_influxdb",
]

ETCD_PACKAGE = "etcd-server"
CLICKHOUSE_PACKAGE = "clickhouse-server"
INFLUXDB_PACKAGE = "influxdb"

HTTP_STORE_LOG_RECORDS = 200  # chat-gateway log records per store
HTTP_STORE_USERS = 50
ETCD_RANSOM_KEY = f"/{RANSOM_TABLE}"

HttpService = Literal["etcd", "clickhouse", "influxdb"]
# What /proc/<pid>/comm says for each server (the kernel cuts names at 15 characters).
_PROCESS_NAME: dict[HttpService, str] = {
    "etcd": "etcd",
    "clickhouse": "clickhouse",
    "influxdb": "influxd",
}
_PORT_TAKEN = "address already in use"
_HTTP_TIMEOUT = 10.0
_SEED_BATCH = 100


@dataclass(frozen=True)
class HttpStoreInstance:
    """A running lab etcd / ClickHouse / InfluxDB: where it listens, how to log in, its files.

    ``port`` is the HTTP API port; ``native_port`` is ClickHouse's native-protocol port (None
    for the others). ``user``/``password`` are None for an exposed server. ``access_log`` is
    InfluxDB's HTTP access log (None for the others; etcd and ClickHouse log to ``log_file``
    and ``system.query_log``). ``database`` is the seeded database (or etcd key prefix).
    """

    name: str
    service: HttpService
    host: str
    port: int
    exposed: bool
    user: str | None
    password: str | None
    pid: int
    root: Path
    log_file: Path
    database: str
    native_port: int | None = None
    access_log: Path | None = None

    @property
    def url(self) -> str:
        """The HTTP API's base URL (no credentials: they go in headers, never in URLs)."""
        return f"http://{self.host}:{self.port}"

    def client(self, timeout: float = _HTTP_TIMEOUT) -> httpx.Client:
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
                headers = {"Authorization": _etcd_token(login, self.user, self.password)}
        return httpx.Client(
            base_url=self.url, timeout=timeout, trust_env=False, headers=headers, auth=auth
        )

    def answering(self, timeout: float = 2.0) -> bool:
        """Whether the server accepts a request with the lab's own credentials right now."""
        try:
            with self.client(timeout) as client:
                return _answers(client, self.service)
        except (httpx.HTTPError, LabError, ValueError):
            return False

    def running(self) -> bool:
        """Whether the server process is still alive (answering or not)."""
        return _is_server_process(self.pid, self.service)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its files."""
        _stop_process(self.pid, self.service, timeout)
        shutil.rmtree(self.root, ignore_errors=True)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for a lab state file)."""
        data = asdict(self)
        data["root"] = str(self.root)
        data["log_file"] = str(self.log_file)
        data["access_log"] = None if self.access_log is None else str(self.access_log)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HttpStoreInstance:
        """The inverse of :meth:`to_json`; ValueError on anything malformed."""
        try:
            service = data["service"]
            if service not in get_args(HttpService):
                raise ValueError(f"unknown service {service!r}")
            native, access = data.get("native_port"), data.get("access_log")
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
                database=str(data["database"]),
                native_port=None if native is None else int(native),
                access_log=None if access is None else Path(access),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed instance record: {error}") from error


# --- binaries -----------------------------------------------------------------------------


def find_etcd(search: BinarySearch | None = None) -> Path:
    """The ``etcd`` server executable, or :class:`MissingBinary` naming its package."""
    return find_binary("etcd", ETCD_PACKAGE, search)


def find_clickhouse_server(search: BinarySearch | None = None) -> Path:
    """The ``clickhouse-server`` executable, or :class:`MissingBinary` naming its package."""
    return find_binary("clickhouse-server", CLICKHOUSE_PACKAGE, search)


def find_influxd(search: BinarySearch | None = None) -> Path:
    """The ``influxd`` executable, or :class:`MissingBinary` naming its package."""
    return find_binary("influxd", INFLUXDB_PACKAGE, search)


def missing_http_store_packages(search: BinarySearch | None = None) -> list[str]:
    """The Debian packages of these three servers that are not installed."""
    missing: list[str] = []
    for find, package in (
        (find_etcd, ETCD_PACKAGE),
        (find_clickhouse_server, CLICKHOUSE_PACKAGE),
        (find_influxd, INFLUXDB_PACKAGE),
    ):
        try:
            find(search)
        except MissingBinary:
            missing.append(package)
    return missing


# --- processes ------------------------------------------------------------------------------


def _is_server_process(pid: int, service: HttpService) -> bool:
    return is_process(pid, _PROCESS_NAME[service])


def _stop_process(pid: int, service: HttpService, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL; the server is our child (see :func:`_launch`), so it is reaped."""
    stop_pid(pid, lambda p: _is_server_process(p, service), f"{service} server", timeout)


def _launch(argv: list[str], root: Path, log_file: Path) -> int:
    """Start a foreground server with its output in ``log_file``; its pid.

    ``posix_spawn`` rather than ``Popen``: no Popen object is left behind to warn about a child
    still running; :func:`_stop_process` reaps it.
    """
    return os.posix_spawn(
        argv[0],
        argv,
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,  # its own session: a Ctrl-C aimed at the caller does not reach it first
    )


def _start_with_retries(root: Path, attempt: Callable[[], HttpStoreInstance]) -> HttpStoreInstance:
    """Retry a start whose free port was taken in between; on failure remove ``root``."""
    return start_with_retries(root, attempt, lambda log: _PORT_TAKEN in log.lower())


def _await_ready(
    name: str,
    pid: int,
    service: HttpService,
    log_file: Path,
    ready: Callable[[], bool],
    timeout: float,
    where: str,
) -> None:
    """Wait until ``ready()``; stop the server and raise with its log if it never is."""

    def check() -> bool:
        if not pid_running(pid):
            raise ServerStartError(name, "the server exited", log_tail(log_file))
        try:
            return ready()
        except (httpx.HTTPError, ValueError, LabError):
            return False

    try:
        if not wait_for(check, timeout, interval=0.1):
            raise ServerStartError(
                name, f"no answer on {where} after {timeout:.0f} s", log_tail(log_file)
            )
    except ServerStartError:
        with suppress(LabError):
            _stop_process(pid, service)
        reap(pid)
        raise


def _answers(client: httpx.Client, service: HttpService) -> bool:
    if service == "etcd":
        response = client.post("/v3/kv/range", json={"key": _b64("/"), "count_only": True})
        return response.status_code == 200
    if service == "clickhouse":
        response = client.post("/", content=b"SELECT 1")
        return response.status_code == 200 and response.text.strip() == "1"
    response = client.get("/query", params={"q": "SHOW DATABASES"})
    return response.status_code == 200 and "error" not in response.text[:200]


# --- etcd -----------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _etcd_token(client: httpx.Client, user: str, password: str) -> str:
    response = client.post("/v3/auth/authenticate", json={"name": user, "password": password})
    token = response.json().get("token") if response.status_code == 200 else None
    if not isinstance(token, str):
        raise LabError(f"etcd refused the lab's own login: {response.text[:200]}")
    return token


def start_etcd(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    enable_v2: bool = False,
    search: BinarySearch | None = None,
    timeout: float = START_TIMEOUT,
) -> HttpStoreInstance:
    """Start a one-member etcd cluster under ``base_dir/name`` and wait until it answers.

    Secured servers (``exposed=False``) get a ``root`` user with ``password`` (a random one if
    None) and v3 auth enabled before this returns. ``enable_v2`` also serves the v2 API
    (off by default in etcd 3.4), whose keys v3 auth does not protect.
    """
    if exposed and password is not None:
        raise ValueError("an exposed etcd has no password")
    binary = find_etcd(search)
    if not exposed and password is None:
        password = random_password()
    root = make_root(base_dir, name)
    return _start_with_retries(
        root,
        lambda: _start_etcd_once(name, root, binary, exposed, password, enable_v2, timeout),
    )


def _start_etcd_once(
    name: str,
    root: Path,
    binary: Path,
    exposed: bool,
    password: str | None,
    enable_v2: bool,
    timeout: float,
) -> HttpStoreInstance:
    client_port, peer_port = free_port(), free_port()
    data = root / "data"
    shutil.rmtree(data, ignore_errors=True)
    log_file = root / "etcd.log"
    log_file.unlink(missing_ok=True)
    client_url, peer_url = f"http://{HOST}:{client_port}", f"http://{HOST}:{peer_port}"
    argv = [
        str(binary),
        "--name=perisai-lab",
        f"--data-dir={data}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=perisai-lab={peer_url}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={name}",
        "--logger=zap",
        "--log-outputs=stderr",
        f"--enable-v2={'true' if enable_v2 else 'false'}",
        "--snapshot-count=10000",
    ]
    pid = _launch(argv, root, log_file)

    def ready() -> bool:
        if _PORT_TAKEN in log_tail(log_file, 10).lower():
            raise ServerStartError(name, f"port {client_port} is taken", log_tail(log_file))
        with httpx.Client(base_url=client_url, timeout=1.0, trust_env=False) as client:
            return _answers(client, "etcd")

    _await_ready(name, pid, "etcd", log_file, ready, timeout, client_url)
    if password is not None:
        try:
            _enable_etcd_auth(client_url, password)
        except (httpx.HTTPError, LabError, ValueError) as error:
            with suppress(LabError):
                _stop_process(pid, "etcd")
            raise ServerStartError(
                name, f"could not enable auth: {error}", log_tail(log_file)
            ) from error
    return HttpStoreInstance(
        name=name,
        service="etcd",
        host=HOST,
        port=client_port,
        exposed=exposed,
        user=None if password is None else "root",
        password=password,
        pid=pid,
        root=root,
        log_file=log_file,
        database="/",
    )


def _enable_etcd_auth(url: str, password: str) -> None:
    """etcd 3.4's recipe: a root user holding the root role, then ``auth enable``."""
    with httpx.Client(base_url=url, timeout=_HTTP_TIMEOUT, trust_env=False) as client:
        for path, body in (
            ("/v3/auth/user/add", {"name": "root", "password": password}),
            ("/v3/auth/role/add", {"name": "root"}),
            ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
            ("/v3/auth/enable", {}),
        ):
            response = client.post(path, json=body)
            if response.status_code != 200:
                raise LabError(f"{path}: HTTP {response.status_code} {response.text[:200]}")


def seed_etcd(
    instance: HttpStoreInstance, *, ransom_note: bool = False, v2: bool = False, seed: int = SEED
) -> int:
    """Write chat-gateway log records, user profiles and a config key (and, with
    ``ransom_note``, the extortion note at :data:`ETCD_RANSOM_KEY`) through the v3 API;
    with ``v2`` also a few keys through the v2 API. Returns the number of v3 keys written."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(HTTP_STORE_USERS, rng)
    messages = make_messages(people, HTTP_STORE_LOG_RECORDS, rng)
    entries: list[tuple[str, str]] = []
    for n, message in enumerate(messages, start=1):
        entries.append((f"/chat/log/msg/{n:05d}", json.dumps(_log_record(message, rng))))
    for n, person in enumerate(people, start=1):
        entries.append((f"/users/{n:04d}", json.dumps(_profile(person))))
    entries.append(
        ("/config/features", json.dumps({"typing_indicator": True, "max_upload_mb": 64}))
    )
    if ransom_note:
        entries.append((ETCD_RANSOM_KEY, RANSOM_NOTE))
    with instance.client() as client:
        for key, value in entries:
            response = client.post("/v3/kv/put", json={"key": _b64(key), "value": _b64(value)})
            if response.status_code != 200:
                raise LabError(f"etcd put {key}: HTTP {response.status_code}")
        if v2:
            for n, person in enumerate(people[:10], start=1):
                response = client.put(
                    f"/v2/keys/sessions/{n:03d}", data={"value": json.dumps(_profile(person))}
                )
                if response.status_code not in (200, 201):
                    raise LabError(f"etcd v2 put: HTTP {response.status_code}")
    return len(entries)


# --- ClickHouse -----------------------------------------------------------------------------

_CLICKHOUSE_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>{root}/clickhouse-server.log</log>
        <errorlog>{root}/clickhouse-server.err.log</errorlog>
        <size>50M</size>
        <count>1</count>
    </logger>
    <listen_host>{host}</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>50</max_concurrent_queries>
    <mlock_executable>false</mlock_executable>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <flush_interval_milliseconds>500</flush_interval_milliseconds>
    </query_log>
</yandex>
"""

_CLICKHOUSE_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>1000000000</max_memory_usage>
            <log_queries>{log_queries}</log_queries>
        </default>
    </profiles>
    <users>
        <default>
            {password}
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


def start_clickhouse(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    log_queries: bool = True,
    search: BinarySearch | None = None,
    timeout: float = START_TIMEOUT,
) -> HttpStoreInstance:
    """Start ``clickhouse-server`` under ``base_dir/name`` with HTTP and native ports.

    The ``default`` user has an empty password when exposed, else ``password`` (random if
    None), kept in users.xml as its SHA-256 only. ``log_queries`` fills ``system.query_log``.
    """
    if exposed and password is not None:
        raise ValueError("an exposed ClickHouse has no password")
    binary = find_clickhouse_server(search)
    if not exposed and password is None:
        password = random_password()
    root = make_root(base_dir, name)
    return _start_with_retries(
        root,
        lambda: _start_clickhouse_once(name, root, binary, exposed, password, log_queries, timeout),
    )


def _start_clickhouse_once(
    name: str,
    root: Path,
    binary: Path,
    exposed: bool,
    password: str | None,
    log_queries: bool,
    timeout: float,
) -> HttpStoreInstance:
    http_port, tcp_port = free_port(), free_port()
    for sub in ("data", "tmp", "user_files", "format_schemas"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(mode=0o700)
    log_file = root / "clickhouse-server.log"
    err_log = root / "clickhouse-server.err.log"
    for stale in (log_file, err_log):
        stale.unlink(missing_ok=True)
    secret = (
        "<password></password>"
        if password is None
        else "<password_sha256_hex>"
        + hashlib.sha256(password.encode()).hexdigest()
        + "</password_sha256_hex>"
    )
    users = root / "users.xml"
    users.touch(mode=0o600)
    users.write_text(
        _CLICKHOUSE_USERS.format(password=secret, log_queries=int(log_queries)), encoding="utf-8"
    )
    config = root / "config.xml"
    config.write_text(
        _CLICKHOUSE_CONFIG.format(root=root, host=HOST, http_port=http_port, tcp_port=tcp_port),
        encoding="utf-8",
    )
    console = root / "console.log"
    pid = _launch([str(binary), f"--config-file={config}"], root, console)
    url = f"http://{HOST}:{http_port}"
    instance = HttpStoreInstance(
        name=name,
        service="clickhouse",
        host=HOST,
        port=http_port,
        exposed=exposed,
        user="default",
        password=password,
        pid=pid,
        root=root,
        log_file=log_file,
        database=CHATLOG_DATABASE,
        native_port=tcp_port,
    )

    def ready() -> bool:
        errors = log_tail(err_log, 20) + log_tail(console, 20)
        if _PORT_TAKEN in errors.lower():
            raise ServerStartError(name, f"port {http_port} or {tcp_port} is taken", errors)
        with instance.client(1.0) as client:
            return _answers(client, "clickhouse")

    _await_ready(name, pid, "clickhouse", err_log, ready, timeout, url)
    return instance


def _clickhouse(client: httpx.Client, query: str, body: bytes = b"") -> str:
    payload = query.encode() + (b"\n" + body if body else b"")
    response = client.post("/", content=payload)
    if response.status_code != 200:
        raise LabError(f"ClickHouse: {query[:60]}: {response.text.strip()[:200]}")
    return response.text


def seed_clickhouse(
    instance: HttpStoreInstance, *, ransom_note: bool = False, seed: int = SEED
) -> None:
    """Create ``chatlog`` with ``messages`` and ``users`` (MergeTree), ``app_config``
    (TinyLog: no row count in system tables) and, with ``ransom_note``, the note table."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(HTTP_STORE_USERS, rng)
    messages = make_messages(people, HTTP_STORE_LOG_RECORDS, rng)
    db = CHATLOG_DATABASE
    with instance.client() as client:
        _clickhouse(client, f"CREATE DATABASE {db}")
        _clickhouse(
            client,
            f"CREATE TABLE {db}.messages (id UInt32, sent_at DateTime, sender String, "
            "recipient String, body String, lat Float64, lon Float64, device_id String, "
            "app String) ENGINE = MergeTree ORDER BY id",
        )
        _clickhouse(
            client,
            f"CREATE TABLE {db}.users (id UInt32, name String, phone String, email String, "
            "device_id String, country String) ENGINE = MergeTree ORDER BY id",
        )
        _clickhouse(
            client, f"CREATE TABLE {db}.app_config (key String, value String) ENGINE = TinyLog"
        )
        rows = [
            {
                "id": n,
                "sent_at": m.sent_at.strftime("%Y-%m-%d %H:%M:%S"),
                "sender": m.sender.msisdn,
                "recipient": m.recipient.e164,
                "body": m.body,
                "lat": m.lat,
                "lon": m.lon,
                "device_id": m.sender.device_id,
                "app": "android/5.13.0",
            }
            for n, m in enumerate(messages, start=1)
        ]
        _insert_json_rows(client, f"{db}.messages", rows)
        _insert_json_rows(
            client,
            f"{db}.users",
            [
                {
                    "id": n,
                    "name": p.name,
                    "phone": p.national if p.region == "MY" and n % 4 == 0 else p.e164,
                    "email": p.email,
                    "device_id": p.device_id,
                    "country": p.region,
                }
                for n, p in enumerate(people, start=1)
            ],
        )
        _insert_json_rows(
            client,
            f"{db}.app_config",
            [{"key": k, "value": v} for k, v in (("max_upload_mb", "64"), ("log_level", "info"))],
        )
        if ransom_note:
            _clickhouse(client, f"CREATE TABLE {db}.{RANSOM_TABLE} (note String) ENGINE = TinyLog")
            _insert_json_rows(client, f"{db}.{RANSOM_TABLE}", [{"note": RANSOM_NOTE}])


def _insert_json_rows(client: httpx.Client, table: str, rows: list[dict[str, object]]) -> None:
    for start in range(0, len(rows), _SEED_BATCH):
        body = "\n".join(json.dumps(r) for r in rows[start : start + _SEED_BATCH]).encode()
        _clickhouse(client, f"INSERT INTO {table} FORMAT JSONEachRow", body)


# --- InfluxDB -------------------------------------------------------------------------------

_INFLUXDB_CONFIG = """reporting-enabled = false
bind-address = "{host}:{rpc_port}"

[meta]
  dir = "{root}/meta"

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  wal-fsync-delay = "0s"
  query-log-enabled = true

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{host}:{http_port}"
  auth-enabled = {auth}
  log-enabled = true
  access-log-path = "{root}/access.log"
  pprof-enabled = false

[continuous_queries]
  enabled = false

[logging]
  level = "info"
  suppress-logo = true
"""


def start_influxdb(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    user: str = "admin",
    search: BinarySearch | None = None,
    timeout: float = START_TIMEOUT,
) -> HttpStoreInstance:
    """Start ``influxd`` (1.x) under ``base_dir/name``; secured ones have ``auth-enabled``
    and an admin ``user`` with ``password`` (random if None), created before any data."""
    if exposed and password is not None:
        raise ValueError("an exposed InfluxDB has no password")
    binary = find_influxd(search)
    if not exposed and password is None:
        password = random_password()
    root = make_root(base_dir, name)
    return _start_with_retries(
        root,
        lambda: _start_influxdb_once(name, root, binary, exposed, user, password, timeout),
    )


def _start_influxdb_once(
    name: str,
    root: Path,
    binary: Path,
    exposed: bool,
    user: str,
    password: str | None,
    timeout: float,
) -> HttpStoreInstance:
    http_port, rpc_port = free_port(), free_port()
    for sub in ("meta", "data", "wal"):
        shutil.rmtree(root / sub, ignore_errors=True)
    log_file, access_log = root / "influxd.log", root / "access.log"
    for stale in (log_file, access_log):
        stale.unlink(missing_ok=True)
    config = root / "influxdb.conf"
    config.write_text(
        _INFLUXDB_CONFIG.format(
            host=HOST,
            rpc_port=rpc_port,
            http_port=http_port,
            root=root,
            auth="false" if password is None else "true",
        ),
        encoding="utf-8",
    )
    pid = _launch([str(binary), "run", "-config", str(config)], root, log_file)
    url = f"http://{HOST}:{http_port}"

    def ready() -> bool:
        if _PORT_TAKEN in log_tail(log_file, 10).lower():
            raise ServerStartError(
                name, f"port {http_port} or {rpc_port} is taken", log_tail(log_file)
            )
        with httpx.Client(base_url=url, timeout=1.0, trust_env=False) as client:
            return client.get("/ping").status_code == 204

    _await_ready(name, pid, "influxdb", log_file, ready, timeout, url)
    if password is not None:
        # With auth on and no user yet, InfluxDB 1.x accepts exactly this one statement.
        statement = (
            f"CREATE USER {_influx_ident(user)} WITH PASSWORD {_influx_string(password)} "
            "WITH ALL PRIVILEGES"
        )
        with httpx.Client(base_url=url, timeout=_HTTP_TIMEOUT, trust_env=False) as client:
            response = client.post("/query", data={"q": statement})
        if response.status_code != 200 or '"error"' in response.text:
            with suppress(LabError):
                _stop_process(pid, "influxdb")
            raise ServerStartError(name, f"could not create the admin user: {response.text[:200]}")
    return HttpStoreInstance(
        name=name,
        service="influxdb",
        host=HOST,
        port=http_port,
        exposed=exposed,
        user=None if password is None else user,
        password=password,
        pid=pid,
        root=root,
        log_file=log_file,
        database=CHATLOG_DATABASE,
        access_log=access_log,
    )


def _influx_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _influx_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _line_tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _line_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def seed_influxdb(
    instance: HttpStoreInstance, *, ransom_note: bool = False, seed: int = SEED
) -> int:
    """Create ``chatlog`` with ``messages`` (plaintext chat, MSISDNs, GPS) and ``users``
    points, and with ``ransom_note`` a measurement named like the note; returns points written."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(HTTP_STORE_USERS, rng)
    messages = make_messages(people, HTTP_STORE_LOG_RECORDS, rng)
    lines: list[str] = []
    for message in messages:
        lines.append(
            f"messages,region={_line_tag(message.sender.region)},app=android/5.13.0 "
            f"msisdn={_line_field(message.sender.msisdn)},to={_line_field(message.recipient.e164)},"
            f"body={_line_field(message.body)},lat={message.lat},lon={message.lon},"
            f"device_id={_line_field(message.sender.device_id)} "
            f"{int(message.sent_at.timestamp())}"
        )
    for n, person in enumerate(people, start=1):
        lines.append(
            f"users,country={_line_tag(person.region)} id={n}i,name={_line_field(person.name)},"
            f"phone={_line_field(person.e164)},email={_line_field(person.email)} "
            f"{1709251200 + n}"
        )
    if ransom_note:
        lines.append(f"{_line_tag(RANSOM_TABLE)} note={_line_field(RANSOM_NOTE)} 1709337600")
    with instance.client() as client:
        response = client.post(
            "/query", data={"q": f"CREATE DATABASE {_influx_ident(CHATLOG_DATABASE)}"}
        )
        if response.status_code != 200 or '"error"' in response.text:
            raise LabError(f"InfluxDB CREATE DATABASE: {response.text[:200]}")
        for start in range(0, len(lines), _SEED_BATCH):
            response = client.post(
                "/write",
                params={"db": CHATLOG_DATABASE, "precision": "s"},
                content="\n".join(lines[start : start + _SEED_BATCH]).encode(),
            )
            if response.status_code != 204:
                raise LabError(f"InfluxDB write: HTTP {response.status_code} {response.text[:200]}")
    return len(lines)


# --- shared record shapes -------------------------------------------------------------------


def _log_record(message: ChatMessage, rng: random.Random) -> dict[str, object]:
    """A chat gateway's per-message log line, as in :mod:`perisai.lab.seed`."""
    return {
        "ts": message.sent_at.isoformat().replace("+00:00", "Z"),
        "level": "INFO",
        "service": "chat-gateway",
        "event": "message.delivered",
        "msisdn": message.sender.msisdn,
        "to": message.recipient.e164,
        "msg": message.body,
        "lat": message.lat,
        "lon": message.lon,
        "device_id": message.sender.device_id,
        "latency_ms": rng.randrange(8, 900),
    }


def _profile(person: Person) -> dict[str, str]:
    return {
        "name": person.name,
        "phone": person.e164,
        "email": person.email,
        "device_id": person.device_id,
        "country": person.region,
    }
