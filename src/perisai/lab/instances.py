"""A running lab server (:class:`Instance`, the one record all servers keep) and the lab's
state-file records.

Every server's instance is an :class:`Instance` (a subclass where a service records more):
where it listens, how to log in, its pid and its root, with one ``running()`` and ``stop()``
(through :mod:`perisai.lab.supervisor`), keyed by the service's declared :class:`Process`.
:func:`instance_record` and :func:`load_instance` write and rebuild any of them for lab.json.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import quote

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from perisai.lab.supervisor import (
    HOST,
    START_TIMEOUT,
    STOP_TIMEOUT,
    Process,
    free_port,
    free_ports,
)

__all__ = [
    "HOST",
    "PROBE_TIMEOUT",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "Instance",
    "LabInstance",
    "connect_redis",
    "free_port",
    "free_ports",
    "instance_record",
    "load_instance",
    "random_password",
    "twin_password",
    "userinfo",
]

PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Instance:
    """A lab server: where it listens, how to log in, and the files :meth:`stop` removes.

    The one record every lab server keeps (services with more to record subclass it);
    ``running()`` and ``stop()`` check and signal its service's declared :class:`Process`
    (:attr:`PROCESSES`). ``password`` is None for an exposed server. ``root`` holds the
    server's data and log; for a PostgreSQL started by root it is a private temporary
    directory owned by the postgres user.
    ``database`` is the default database (``"0"`` for Redis, ``"postgres"`` for PostgreSQL).
    """

    # Redis exits on SIGTERM (nothing to save, persistence is off); for the postmaster SIGINT
    # is pg_ctl's "fast" mode.
    PROCESSES: ClassVar[Mapping[str, Process]] = {
        "redis": Process("redis"),
        "postgres": Process("postgres", signal.SIGINT),
    }

    name: str
    service: str
    host: str
    port: int
    exposed: bool
    user: str | None
    password: str | None
    pid: int
    root: Path
    log_file: Path
    database: str

    @property
    def url(self) -> str:
        """A client URL for the default database, credentials included."""
        return self.url_for(self.database)

    def url_for(self, database: str | int) -> str:
        """A client URL for ``database`` (a Redis db number or a PostgreSQL database name)."""
        scheme = "redis" if self.service == "redis" else "postgresql"
        at = userinfo(self.user, self.password)
        return f"{scheme}://{at}{self.host}:{self.port}/{quote(str(database), safe='')}"

    @property
    def process(self) -> Process:
        """How this server's process is recognised and stopped."""
        return self.PROCESSES[self.service]

    def running(self) -> bool:
        """Whether the server process is still alive (answering or not)."""
        return self.process.matches(self.pid)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server (clean first, then SIGKILL) and remove its files."""
        self.process.stop(self.pid, timeout)
        self._stopped()
        shutil.rmtree(self.root, ignore_errors=True)

    def _stopped(self) -> None:
        """What else a stopped server leaves to clean up (nothing, unless overridden)."""

    def answering(self, timeout: float = PROBE_TIMEOUT) -> bool:
        """Whether the server accepts a login with the lab's own credentials right now."""
        try:
            if self.service == "redis":
                client = connect_redis(self.host, self.port, self.password, timeout=timeout)
                try:
                    return bool(client.ping())
                finally:
                    client.close()
            with psycopg.connect(self.url, connect_timeout=max(2, round(timeout))):
                return True
        except (redis.RedisError, psycopg.Error, OSError):
            return False


class LabInstance(Protocol):
    """What the lab needs of a running server of any kind (Redis and PostgreSQL are
    :class:`Instance`; other services have dataclasses of their own with these members)."""

    @property
    def name(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def exposed(self) -> bool: ...
    @property
    def password(self) -> str | None: ...
    @property
    def pid(self) -> int: ...
    @property
    def root(self) -> Path: ...
    @property
    def url(self) -> str: ...

    def answering(self, timeout: float = ...) -> bool: ...
    def running(self) -> bool: ...
    def stop(self, timeout: float = ...) -> None: ...


def instance_record(instance: LabInstance) -> dict[str, Any]:
    """A JSON-ready record of any lab instance dataclass, with the class to rebuild it."""
    values: dict[str, Any] = dataclasses.asdict(instance)  # type: ignore[call-overload]
    record = {
        key: str(value) if isinstance(value, Path) else value for key, value in values.items()
    }
    record["kind"] = f"{type(instance).__module__}:{type(instance).__qualname__}"
    return record


def load_instance(record: Mapping[str, Any]) -> LabInstance:
    """The inverse of :func:`instance_record`; ValueError on anything malformed or foreign
    (only classes from ``perisai.lab`` are ever rebuilt from a state file)."""
    kind = str(record.get("kind", f"{__name__}:Instance"))
    kind = _MOVED.get(kind, {}).get(str(record.get("service")), kind)
    module_name, _, class_name = kind.partition(":")
    if module_name.split(".")[:2] != ["perisai", "lab"]:
        raise ValueError(f"not a lab instance class: {kind!r}")
    try:
        cls = getattr(import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"unknown lab instance class {kind!r}") from error
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"not a lab instance class: {kind!r}")
    try:
        values = {
            f.name: _field_value(f, record[f.name])
            for f in dataclasses.fields(cls)
            if f.init and (f.name in record or f.default is dataclasses.MISSING)
        }
        instance: LabInstance = cls(**values)  # type: ignore[assignment]
    except (KeyError, TypeError) as error:
        raise ValueError(f"malformed instance record: {error}") from error
    return instance


# Where the classes named by lab.json files written before lab/servers/ existed live now.
_MOVED: dict[str, dict[str, str]] = {
    old: {service: f"perisai.lab.servers.{new}" for service, new in by_service.items()}
    for old, by_service in {
        "perisai.lab.mariadb_server:MariaDBInstance": {"mysql": "mysql:MariaDBInstance"},
        "perisai.lab.couchdb_server:CouchDBInstance": {"couchdb": "couchdb:CouchDBInstance"},
        "perisai.lab.misc_servers:MiscInstance": {
            "memcached": "memcached:MemcachedInstance",
            "zookeeper": "zookeeper:ZooKeeperInstance",
        },
        "perisai.lab.broker_servers:BrokerInstance": {
            service: "brokers:BrokerInstance" for service in ("rabbitmq", "mqtt", "nats")
        },
        "perisai.lab.http_stores:HttpStoreInstance": {
            service: "http_store:HttpStoreInstance"
            for service in ("etcd", "clickhouse", "influxdb")
        },
    }.items()
}


def _field_value(spec: dataclasses.Field[Any], value: Any) -> Any:
    if value is not None and "Path" in str(spec.type):
        return Path(value)
    return value


def connect_redis(
    host: str, port: int, password: str | None = None, db: int = 0, timeout: float = 5.0
) -> redis.Redis:
    """A client that fails at once: redis-py's default retries with backoff would turn every
    refused login or not-yet-listening port into seconds of waiting."""
    return redis.Redis(
        host=host,
        port=port,
        password=password,
        db=db,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def random_password() -> str:
    """A 24-character URL-safe token: nothing a default-credential list will ever hold."""
    return secrets.token_urlsafe(18)


def twin_password(exposed: bool, password: str | None, refusal: str) -> str | None:
    """The password a twin's server gets: none when exposed (ValueError with ``refusal`` if
    one was given), else ``password`` or, if None, a random one."""
    if exposed:
        if password is not None:
            raise ValueError(refusal)
        return None
    return random_password() if password is None else password


def userinfo(user: str | None, password: str | None) -> str:
    """``user:password@`` for a URL, each part percent-encoded; ``""`` when there is neither."""
    auth = quote(user, safe="") if user else ""
    if password is not None:
        auth += ":" + quote(password, safe="")
    return f"{auth}@" if auth else ""
