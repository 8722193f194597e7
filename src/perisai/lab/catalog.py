"""What the lab runs: every service perisai probes that installs here, as exposed and secured
twins, built from the services' declared specs (``lab/servers/<service>.py``).

The exposed twins carry what a visited store carries: the exposed PostgreSQL, MariaDB and
CouchDB hold extortion notes, the exposed Redis a cron job planted through it. One more
exposed Redis holds only configuration and counters: no personal data, so perisai must rate
it ``high``, not ``critical``. Beside the stores, a vulnerable registration/helpdesk API and
its fixed twin, for ``perisai audit-api``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from perisai.lab.api_server import ApiInstance
from perisai.lab.binaries import BinarySearch
from perisai.lab.instances import LabInstance
from perisai.lab.seed import seed_redis_config
from perisai.lab.servers import (
    api,
    clickhouse,
    couchdb,
    etcd,
    influxdb,
    memcached,
    mqtt,
    mysql,
    nats,
    postgres,
    rabbitmq,
    redis,
    zookeeper,
)
from perisai.lab.spec import ServerSpec

__all__ = [
    "API_SERVICE",
    "CATALOG",
    "CORE_SERVICES",
    "SERVICES",
    "SPECS",
    "LabServer",
    "scan_ports",
    "servers_for",
    "spec_for",
    "twin",
]

CORE_SERVICES = ("redis", "postgres")  # the foundation's lab: quick to start, always there
API_SERVICE = api.API_SERVICE
# The lab's services in catalog order (the config-only Redis follows PostgreSQL, see below).
SPECS: tuple[ServerSpec, ...] = (
    redis.SPEC,
    postgres.SPEC,
    mysql.SPEC,
    couchdb.SPEC,
    rabbitmq.SPEC,
    mqtt.SPEC,
    nats.SPEC,
    memcached.SPEC,
    zookeeper.SPEC,
    etcd.SPEC,
    clickhouse.SPEC,
    influxdb.SPEC,
    api.SPEC,
)


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


def twin(spec: ServerSpec, exposed: bool) -> LabServer:
    """The catalog's exposed or secured twin of ``spec``'s service."""
    return LabServer(
        spec.name(exposed),
        spec.service,
        exposed,
        spec.start,
        spec.seed,
        spec.find,
        spec.seed_args(exposed),
        personal_data=spec.personal_data,
        compromised=exposed and spec.compromised,
        kind=spec.kind,
    )


def spec_for(service: str) -> ServerSpec:
    """The declared spec of a lab service; ValueError for a service the lab does not have."""
    for spec in SPECS:
        if spec.service == service:
            return spec
    raise ValueError(f"no lab service {service}")


_CONFIG_ONLY = LabServer(
    "redis-config-only",
    "redis",
    True,
    redis.SPEC.start,
    seed_redis_config,
    redis.SPEC.find,
    personal_data=False,
)
_TWINS = tuple(twin(spec, exposed) for spec in SPECS for exposed in (True, False))
CATALOG: tuple[LabServer, ...] = (*_TWINS[:4], _CONFIG_ONLY, *_TWINS[4:])
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
    if isinstance(instance, ApiInstance):
        # an HTTP API, audited with `perisai audit-api`, not a data store to scan (its
        # instance's service is "http-api", the catalog's "api": the class says it either way)
        return ()
    ports = [instance.port]
    for extra in ("management_port", "native_port"):
        port = getattr(instance, extra, None)
        if isinstance(port, int):
            ports.append(port)
    return tuple(ports)
