"""Session-wide real servers from the lab machinery, each started once and stopped at the end.

Every server binds 127.0.0.1 on a free port; none touches the machine's own Redis/PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import TypeVar, cast, overload

import psycopg
import pytest
from psycopg import sql

from perisai.lab import (
    CORE_SERVICES,
    BinarySearch,
    Instance,
    Lab,
    LabError,
    LabInstance,
    seed_postgres,
    seed_redis,
    start_postgres,
    start_redis,
)
from perisai.lab.catalog import spec_for, twin

T = TypeVar("T")

STORE_DATABASE = "perisai_store"


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Instance]]:
    """The core lab (exposed and secured Redis and PostgreSQL, seeded, and the config-only
    Redis), by instance name; each other service's tests start their own servers."""
    the_lab = Lab(tmp_path_factory.mktemp("lab") / "state", services=CORE_SERVICES)
    instances = the_lab.up()
    try:
        yield {instance.name: cast(Instance, instance) for instance in instances}
    finally:
        the_lab.down()


class LabServers:
    """``lab_server(service, exposed)``: the catalog's twin of ``service`` (``redis-exposed``,
    ``mysql-secured``…), started on first use and seeded exactly as the catalog seeds it, then
    shared by every test of the session. ``kind`` narrows the instance's type (checked)."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.started: dict[str, LabInstance] = {}

    @overload
    def __call__(self, service: str, exposed: bool) -> LabInstance: ...
    @overload
    def __call__(self, service: str, exposed: bool, kind: type[T]) -> T: ...
    def __call__(self, service: str, exposed: bool, kind: type[object] = object) -> object:
        server = twin(spec_for(service), exposed)
        if server.name not in self.started:
            instance = server.start(
                server.name, self.base_dir, exposed=exposed, search=BinarySearch()
            )
            try:
                server.seed(instance, **server.seed_args)
            except BaseException:
                instance.stop()
                raise
            self.started[server.name] = instance
        instance = self.started[server.name]
        assert isinstance(instance, kind), (server.name, type(instance))
        return instance

    def stop_all(self) -> None:
        for instance in self.started.values():
            with suppress(LabError):
                instance.stop()


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServers]:
    """Start (once per session) and seed a catalog twin: ``lab_server("mysql", exposed=True)``;
    every twin started is stopped when the session ends."""
    servers = LabServers(tmp_path_factory.mktemp("lab-twins"))
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture(scope="session")
def lab_servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the extra single servers below keep their files."""
    return tmp_path_factory.mktemp("lab-servers")


@pytest.fixture(scope="session")
def redis_default_password(lab_servers_dir: Path) -> Iterator[Instance]:
    """A seeded Redis whose password is redis.conf's example default, ``foobared``."""
    instance = start_redis(
        "redis-default-password", lab_servers_dir, exposed=False, password="foobared"
    )
    try:
        seed_redis(instance)
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def postgres_default_password(lab_servers_dir: Path) -> Iterator[Instance]:
    """A seeded PostgreSQL whose ``postgres`` superuser has the common default password."""
    instance = start_postgres(
        "postgres-default-password", lab_servers_dir, exposed=False, password="postgres"
    )
    try:
        seed_postgres(instance)
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def postgres_store_url(lab_servers_dir: Path) -> Iterator[str]:
    """A ``postgresql://`` URL to a fresh, empty database on its own exposed PostgreSQL
    (not the lab's, so a findings store never shows up in scans of the lab)."""
    instance = start_postgres("postgres-store", lab_servers_dir, exposed=True)
    try:
        with psycopg.connect(instance.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(STORE_DATABASE)))
        yield instance.url_for(STORE_DATABASE)
    finally:
        instance.stop()
