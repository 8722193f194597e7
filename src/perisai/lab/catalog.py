"""What the lab runs: every service perisai probes that installs here, as exposed and secured
twins, each with its starter, its seeder and the binaries it needs.

The exposed twins carry what a visited store carries: the exposed PostgreSQL, MariaDB and
CouchDB hold extortion notes, the exposed Redis a cron job planted through it. One more
exposed Redis holds only configuration and counters: no personal data, so perisai must rate
it ``high``, not ``critical``. Beside the stores, a vulnerable registration/helpdesk API and
its fixed twin, for ``perisai audit-api``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perisai.lab.api_server import ApiInstance, start_api_server
from perisai.lab.binaries import BinarySearch, find_postgres, find_redis_server
from perisai.lab.broker_servers import (
    find_mosquitto,
    find_nats,
    find_rabbitmq,
    seed_mosquitto,
    seed_nats,
    seed_rabbitmq,
    start_mosquitto,
    start_nats,
    start_rabbitmq,
)
from perisai.lab.couchdb_server import find_pouchdb_server, seed_couchdb, start_couchdb
from perisai.lab.http_stores import (
    find_clickhouse_server,
    find_etcd,
    find_influxd,
    seed_clickhouse,
    seed_etcd,
    seed_influxdb,
    start_clickhouse,
    start_etcd,
    start_influxdb,
)
from perisai.lab.instances import LabInstance, free_port
from perisai.lab.mariadb_server import find_mariadb, seed_mariadb, start_mariadb
from perisai.lab.misc_servers import (
    find_memcached,
    find_zookeeper,
    seed_memcached,
    seed_zookeeper,
    start_memcached,
    start_zookeeper,
)
from perisai.lab.postgres_server import start_postgres
from perisai.lab.redis_server import start_redis
from perisai.lab.seed import seed_postgres, seed_redis, seed_redis_config

CORE_SERVICES = ("redis", "postgres")  # the foundation's lab: quick to start, always there


@dataclass(frozen=True)
class LabServer:
    """One server of the lab: its name, what it runs, and how to start and fill it."""

    name: str
    service: str  # the probe's service name, as a scan reports it
    exposed: bool
    start: Callable[..., Any]  # start(name, base_dir, *, exposed, search, …) -> instance
    seed: Callable[..., object]  # seed(instance, **seed_args)
    find: Callable[[BinarySearch], object]  # raises MissingBinary when not installed
    seed_args: Mapping[str, object] = field(default_factory=dict)
    personal_data: bool = True  # what a scan must find in it, when exposed
    compromised: bool = False  # holds a ransom note or a planted payload
    kind: str = "store"  # "store": a scan's target; "api": an audit-api target


def _twins(
    service: str,
    start: Callable[..., Any],
    seed: Callable[..., object],
    find: Callable[[BinarySearch], object],
    **exposed_seed: object,
) -> tuple[LabServer, LabServer]:
    compromised = bool(exposed_seed)
    exposed = LabServer(
        f"{service}-exposed",
        service,
        True,
        start,
        seed,
        find,
        exposed_seed,
        compromised=compromised,
    )
    return exposed, LabServer(f"{service}-secured", service, False, start, seed, find)


CATALOG: tuple[LabServer, ...] = (
    *_twins("redis", start_redis, seed_redis, find_redis_server, planted_payload=True),
    *_twins("postgres", start_postgres, seed_postgres, find_postgres, ransom_note=True),
    LabServer(
        "redis-config-only",
        "redis",
        True,
        start_redis,
        seed_redis_config,
        find_redis_server,
        personal_data=False,
    ),
    *_twins("mysql", start_mariadb, seed_mariadb, find_mariadb, ransom_note=True),
    *_twins("couchdb", start_couchdb, seed_couchdb, find_pouchdb_server, ransom_note=True),
    *_twins("rabbitmq", start_rabbitmq, seed_rabbitmq, find_rabbitmq),
    *_twins("mqtt", start_mosquitto, seed_mosquitto, find_mosquitto),
    *_twins("nats", start_nats, seed_nats, find_nats),
    *_twins("memcached", start_memcached, seed_memcached, find_memcached),
    *_twins("zookeeper", start_zookeeper, seed_zookeeper, find_zookeeper),
    *_twins("etcd", start_etcd, seed_etcd, find_etcd),
    *_twins("clickhouse", start_clickhouse, seed_clickhouse, find_clickhouse_server),
    *_twins("influxdb", start_influxdb, seed_influxdb, find_influxd),
)
API_SERVICE = "api"


def _start_api(name: str, base_dir: Path, *, exposed: bool, search: BinarySearch) -> ApiInstance:
    """An API twin whose helpdesk mail relays to a free loopback port: the address to give
    ``perisai audit-api --smtp-sink``, which listens there while it audits."""
    return start_api_server(
        base_dir, exposed=exposed, smtp_relay=f"127.0.0.1:{free_port()}", name=name
    )


def _nothing_to_seed(instance: object) -> None:
    """The API twins keep their state in memory; nothing to seed."""


def _always_there(search: BinarySearch) -> None:
    """The API twins run on this Python (Starlette, uvicorn): nothing to install."""


CATALOG += tuple(
    LabServer(
        name=f"api-{'vulnerable' if exposed else 'fixed'}",
        service=API_SERVICE,
        exposed=exposed,
        start=_start_api,
        seed=_nothing_to_seed,
        find=_always_there,
        personal_data=False,
        kind="api",
    )
    for exposed in (True, False)
)
SERVICES = tuple(dict.fromkeys(server.service for server in CATALOG))


def servers_for(services: tuple[str, ...] | None) -> tuple[LabServer, ...]:
    """The catalog's servers for ``services`` (None: all), in catalog order.

    Raises ValueError naming the services the lab does not have.
    """
    if services is None:
        return CATALOG
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        raise ValueError(f"no lab service {', '.join(unknown)}: choose from {', '.join(SERVICES)}")
    return tuple(server for server in CATALOG if server.service in services)


def scan_ports(instance: LabInstance) -> tuple[int, ...]:
    """Every port of a lab instance a scan should look at (RabbitMQ's management API and
    ClickHouse's native port besides the main one)."""
    if instance.service == API_SERVICE:
        return ()  # an HTTP API, audited with `perisai audit-api`, not a data store to scan
    ports = [instance.port]
    for extra in ("management_port", "native_port"):
        port = getattr(instance, extra, None)
        if isinstance(port, int):
            ports.append(port)
    return tuple(ports)
