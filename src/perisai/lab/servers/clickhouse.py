"""A real ClickHouse server with HTTP and native ports on loopback: exposed or secured, and
its seeder.

The ``default`` user has an empty password when exposed, else a password stored as SHA-256 in
users.xml; ``log_queries`` fills ``system.query_log``: the record the read-only tests read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
from pathlib import Path

import httpx

from perisai.lab.binaries import BinarySearch, find_binary
from perisai.lab.errors import LabError
from perisai.lab.instances import twin_password
from perisai.lab.seed import (
    CHATLOG_DATABASE,
    RANSOM_NOTE,
    RANSOM_TABLE,
    SEED,
    make_messages,
    make_people,
)
from perisai.lab.servers.http_store import (
    HTTP_STORE_LOG_RECORDS,
    HTTP_STORE_USERS,
    SEED_BATCH,
    HttpStoreInstance,
    answers,
    port_taken,
)
from perisai.lab.spec import ServerSpec
from perisai.lab.supervisor import (
    HOST,
    START_TIMEOUT,
    free_port,
    make_root,
    spawn,
    start_with_retries,
)

__all__ = [
    "CLICKHOUSE_PACKAGE",
    "SPEC",
    "find_clickhouse_server",
    "seed_clickhouse",
    "start_clickhouse",
]

CLICKHOUSE_PACKAGE = "clickhouse-server"


def find_clickhouse_server(search: BinarySearch | None = None) -> Path:
    """The ``clickhouse-server`` executable, or :class:`MissingBinary` naming its package."""
    return find_binary("clickhouse-server", CLICKHOUSE_PACKAGE, search)


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
    password = twin_password(exposed, password, "an exposed ClickHouse has no password")
    binary = find_clickhouse_server(search)
    root = make_root(base_dir, name)
    return start_with_retries(
        root,
        lambda: _start_clickhouse_once(name, root, binary, exposed, password, log_queries, timeout),
        port_taken,
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
    launch = spawn(
        name,
        [binary, f"--config-file={config}"],
        console,
        HttpStoreInstance.PROCESSES["clickhouse"],
        logs=[err_log],
    )
    url = f"http://{HOST}:{http_port}"
    instance = HttpStoreInstance(
        name=name,
        service="clickhouse",
        host=HOST,
        port=http_port,
        exposed=exposed,
        user="default",
        password=password,
        pid=0,
        root=root,
        log_file=log_file,
        database=CHATLOG_DATABASE,
        native_port=tcp_port,
    )

    def ready() -> bool:
        with instance.client(1.0) as client:
            return answers(client, "clickhouse")

    pid = launch.await_ready(
        ready,
        timeout,
        url,
        port_taken=port_taken,
        log_lines=20,
        not_yet=(httpx.HTTPError, LabError, ValueError),
    )
    return dataclasses.replace(instance, pid=pid)


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
    for start in range(0, len(rows), SEED_BATCH):
        body = "\n".join(json.dumps(r) for r in rows[start : start + SEED_BATCH]).encode()
        _clickhouse(client, f"INSERT INTO {table} FORMAT JSONEachRow", body)


SPEC = ServerSpec(
    service="clickhouse",
    find=find_clickhouse_server,
    start=start_clickhouse,
    seed=seed_clickhouse,
)
