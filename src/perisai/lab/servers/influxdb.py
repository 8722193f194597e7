"""A real InfluxDB 1.x on free loopback ports: exposed or secured, and its seeder.

Secured: ``auth-enabled`` with an ``admin`` user holding all privileges, created before any
data goes in. InfluxDB keeps its query log and an HTTP access log
(:attr:`~perisai.lab.servers.http_store.HttpStoreInstance.access_log`): the record the
read-only tests read.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import httpx

from perisai.lab.binaries import BinarySearch, find_binary
from perisai.lab.errors import LabError, ServerStartError
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
    HTTP_TIMEOUT,
    SEED_BATCH,
    HttpStoreInstance,
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

__all__ = ["INFLUXDB_PACKAGE", "SPEC", "find_influxd", "seed_influxdb", "start_influxdb"]

INFLUXDB_PACKAGE = "influxdb"


def find_influxd(search: BinarySearch | None = None) -> Path:
    """The ``influxd`` executable, or :class:`MissingBinary` naming its package."""
    return find_binary("influxd", INFLUXDB_PACKAGE, search)


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
    password = twin_password(exposed, password, "an exposed InfluxDB has no password")
    binary = find_influxd(search)
    root = make_root(base_dir, name)
    return start_with_retries(
        root,
        lambda: _start_influxdb_once(name, root, binary, exposed, user, password, timeout),
        port_taken,
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
    launch = spawn(
        name,
        [binary, "run", "-config", config],
        log_file,
        HttpStoreInstance.PROCESSES["influxdb"],
    )
    url = f"http://{HOST}:{http_port}"

    def ready() -> bool:
        with httpx.Client(base_url=url, timeout=1.0, trust_env=False) as client:
            return client.get("/ping").status_code == 204

    pid = launch.await_ready(
        ready, timeout, url, port_taken=port_taken, not_yet=(httpx.HTTPError, ValueError)
    )
    if password is not None:
        # With auth on and no user yet, InfluxDB 1.x accepts exactly this one statement.
        statement = (
            f"CREATE USER {_influx_ident(user)} WITH PASSWORD {_influx_string(password)} "
            "WITH ALL PRIVILEGES"
        )
        with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT, trust_env=False) as client:
            response = client.post("/query", data={"q": statement})
        if response.status_code != 200 or '"error"' in response.text:
            launch.abort()
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
        for start in range(0, len(lines), SEED_BATCH):
            response = client.post(
                "/write",
                params={"db": CHATLOG_DATABASE, "precision": "s"},
                content="\n".join(lines[start : start + SEED_BATCH]).encode(),
            )
            if response.status_code != 204:
                raise LabError(f"InfluxDB write: HTTP {response.status_code} {response.text[:200]}")
    return len(lines)


SPEC = ServerSpec(service="influxdb", find=find_influxd, start=start_influxdb, seed=seed_influxdb)
