"""The lab: real servers up and down, exposed twins open, secured twins closed, seed data there."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import stat
import time
from pathlib import Path
from typing import Any

import phonenumbers
import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from perisai.compromise import detect_ransom_note, is_note_name
from perisai.lab import (
    CORE_SERVICES,
    STATE_FILE,
    BinarySearch,
    Instance,
    Lab,
    LabError,
    MissingBinary,
    ServerStartError,
    find_postgres,
    install_packages,
    missing_packages,
    pid_running,
)
from perisai.lab.instances import instance_record, load_instance
from perisai.lab.seed import (
    CHATLOG_DATABASE,
    EMAIL_DOMAINS,
    POSTGRES_MESSAGES,
    POSTGRES_USERS,
    RANSOM_BTC_ADDRESS,
    RANSOM_TABLE,
    REDIS_DB2_KEYS,
    REDIS_LOG_RECORDS,
    REDIS_USERS,
    REGIONS,
    make_people,
)
from perisai.lab.servers.brokers import BrokerInstance
from perisai.lab.servers.couchdb import CouchDBInstance
from perisai.lab.servers.http_store import HttpStoreInstance
from perisai.lab.servers.memcached import MemcachedInstance
from perisai.lab.servers.mysql import MariaDBInstance
from perisai.lab.servers.redis import start_redis
from perisai.lab.servers.zookeeper import ZooKeeperInstance
from perisai.lab.supervisor import Process, daemonize, read_pid, spawn

MY_NATIONAL = re.compile(r"^01\d-\d{3,4} \d{4}$")  # 012-345 6789


def _text(value: object) -> str:
    """redis-py's return types cover async clients too; narrow a sync reply to str."""
    assert isinstance(value, str), value
    return value


def _redis(instance: Instance, password: str | None = None, db: int = 0) -> redis.Redis:
    """No retries: redis-py's default backoff would make each refused login take seconds."""
    return redis.Redis(
        host=instance.host,
        port=instance.port,
        password=password,
        db=db,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )


def _pg(instance: Instance, password: str | None = None, dbname: str = "postgres") -> Any:
    """A psycopg connection that can only use the password given (no env, no ~/.pgpass)."""
    return psycopg.connect(
        host=instance.host,
        port=instance.port,
        user="postgres",
        dbname=dbname,
        password=password or "",
        passfile="/dev/null",
        connect_timeout=5,
        autocommit=True,
    )


# --- the session lab -------------------------------------------------------------------------


@pytest.mark.servers
@pytest.mark.parametrize("name", ["redis-exposed", "postgres-exposed"])
def test_exposed_instance_answers_without_a_password(
    lab: dict[str, Instance], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    instance = lab[name]
    assert instance.exposed and instance.password is None and instance.host == "127.0.0.1"
    if instance.service == "redis":
        client = _redis(instance)
        assert client.ping()
        client.close()
    else:
        with _pg(instance) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


@pytest.mark.servers
@pytest.mark.parametrize("name", ["redis-secured", "postgres-secured"])
def test_secured_instance_refuses_without_its_password_and_accepts_it(
    lab: dict[str, Instance], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    instance = lab[name]
    assert not instance.exposed and instance.password and len(instance.password) == 24
    if instance.service == "redis":
        for wrong in (None, "foobared"):
            client = _redis(instance, wrong)
            with pytest.raises(redis.AuthenticationError):
                client.ping()
            client.close()
        client = _redis(instance, instance.password)
        assert client.ping()
        client.close()
    else:
        for wrong in (None, "postgres"):
            with pytest.raises(psycopg.OperationalError):
                _pg(instance, wrong).close()
        with _pg(instance, instance.password) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert instance.answering()


@pytest.mark.servers
@pytest.mark.parametrize("name", ["redis-exposed", "redis-secured"])
def test_redis_holds_the_seed_data(lab: dict[str, Instance], name: str) -> None:
    instance = lab[name]
    client = _redis(instance, instance.password)
    try:
        assert len(list(client.scan_iter("log:msg:*", count=500))) == REDIS_LOG_RECORDS
        assert len(list(client.scan_iter("user:*", count=500))) == REDIS_USERS
        kinds = {key: client.type(key) for key in ("queue:sms", "devices:online", "events")}
        kinds["presence:last_seen"] = client.type("presence:last_seen")
        assert kinds == {
            "queue:sms": "list",
            "devices:online": "set",
            "events": "stream",
            "presence:last_seen": "zset",
        }
        record = json.loads(_text(client.get("log:msg:1")))
        assert phonenumbers.is_valid_number(phonenumbers.parse("+" + record["msisdn"]))
        assert phonenumbers.is_valid_number(phonenumbers.parse(record["to"]))
        assert -90 <= record["lat"] <= 90 and -180 <= record["lon"] <= 180
        assert len(record["msg"].split()) >= 3
        displays = [
            json.loads(_text(client.get(key))).get("sender_display")
            for key in client.scan_iter("log:msg:*", count=500)
        ]
        national = [d for d in displays if d]
        assert national and all(MY_NATIONAL.match(d) for d in national)
        assert phonenumbers.is_valid_number(phonenumbers.parse(national[0], "MY"))
        email = _text(client.hget("user:1", "email"))
        assert email.rsplit("@", 1)[1] in EMAIL_DOMAINS
    finally:
        client.close()
    db2 = _redis(instance, instance.password, db=2)
    assert db2.dbsize() == REDIS_DB2_KEYS
    db2.close()


@pytest.mark.servers
@pytest.mark.parametrize("name", ["postgres-exposed", "postgres-secured"])
def test_postgres_holds_the_seed_data(lab: dict[str, Instance], name: str) -> None:
    instance = lab[name]
    with _pg(instance, instance.password, CHATLOG_DATABASE) as conn:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("messages", "users", "app_config")
        }
        assert counts["messages"] == POSTGRES_MESSAGES and counts["users"] == POSTGRES_USERS
        assert counts["app_config"] > 0
        [(reltuples,)] = conn.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'messages'"
        ).fetchall()
        assert reltuples == POSTGRES_MESSAGES  # ANALYZE ran: what the probe reads as a count
        sender, body, lat, lon = conn.execute(
            "SELECT sender, body, lat, lon FROM messages ORDER BY id LIMIT 1"
        ).fetchone()
        assert phonenumbers.is_valid_number(phonenumbers.parse("+" + sender))
        assert body and -90 <= lat <= 90 and -180 <= lon <= 180
        phones = [row[0] for row in conn.execute("SELECT phone FROM users")]
        assert any(MY_NATIONAL.match(p) for p in phones)
        assert any(p.startswith("+60") for p in phones)
        domains = {row[0] for row in conn.execute("SELECT split_part(email, '@', 2) FROM users")}
        assert domains <= set(EMAIL_DOMAINS)


@pytest.mark.servers
def test_exactly_one_ransom_note_in_the_lab(lab: dict[str, Instance]) -> None:
    """The note sits in the exposed PostgreSQL; no other key, table or text reads like one."""
    notes: list[str] = []
    for instance in lab.values():
        if instance.service == "redis":
            for db in (0, 2):
                client = _redis(instance, instance.password, db)
                for key in client.scan_iter(count=500):
                    assert not is_note_name(key), key
                    if client.type(key) == "string":
                        text = _text(client.get(key))
                        if detect_ransom_note(f"{instance.name}/{db}/{key}", text):
                            notes.append(f"{instance.name}/{db}/{key}")
                client.close()
            continue
        with _pg(instance, instance.password, CHATLOG_DATABASE) as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            ]
            for table in tables:
                rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
                for row in rows:
                    text = " ".join(str(cell) for cell in row)
                    if detect_ransom_note(table, text):
                        notes.append(f"{instance.name}/{table}")
    assert notes == [f"postgres-exposed/{RANSOM_TABLE}"]
    with _pg(lab["postgres-exposed"], None, CHATLOG_DATABASE) as conn:
        [(note,)] = conn.execute(f'SELECT note FROM "{RANSOM_TABLE}"').fetchall()
    assert RANSOM_BTC_ADDRESS in note and "@example.net" in note and "GDPR" in note


# --- a lab of its own: up, status, a second up, down ------------------------------------------


@pytest.mark.servers
def test_up_status_refuse_second_up_and_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    the_lab = Lab(state, services=CORE_SERVICES)
    instances = the_lab.up()
    try:
        assert [i.name for i in instances] == list(the_lab.names)
        assert the_lab.names == (
            "redis-exposed",
            "redis-secured",
            "postgres-exposed",
            "postgres-secured",
            "redis-config-only",
        )
        assert stat.S_IMODE((state / STATE_FILE).stat().st_mode) == 0o600
        assert Lab(state).instances() == instances  # the state file alone describes the lab
        assert [answering for _, answering in Lab(state).status()] == [True] * 5
        with pytest.raises(LabError, match="already up"):
            Lab(state).up()
        assert all(pid_running(i.pid) for i in instances)
    finally:
        stopped = Lab(state).down()
    assert stopped == instances
    for instance in instances:
        assert not pid_running(instance.pid)
        assert not instance.root.exists()
    assert not state.exists()
    assert Lab(state).down() == []  # nothing up: a no-op
    assert Lab(state).status() == []


@pytest.mark.servers
def test_a_failed_start_stops_the_servers_already_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin = tmp_path / "postgresql" / "99" / "bin"
    fake_bin.mkdir(parents=True)
    for program in ("initdb", "pg_ctl", "postgres"):
        script = fake_bin / program
        script.write_text("#!/bin/sh\necho 'initdb: simulated failure' >&2\nexit 1\n")
        script.chmod(0o755)
    started: list[Instance] = []

    def recording_start(*args: Any, **kwargs: Any) -> Instance:
        instance = start_redis(*args, **kwargs)
        started.append(instance)
        return instance

    state = tmp_path / "state"
    search = BinarySearch(postgres_root=tmp_path / "postgresql")
    lab = Lab(state, search=search, services=CORE_SERVICES)
    lab.servers = tuple(
        dataclasses.replace(s, start=recording_start) if s.service == "redis" else s
        for s in lab.servers
    )
    with pytest.raises(ServerStartError, match="initdb") as caught:
        lab.up()
    assert "last lines of its log" in str(caught.value)
    assert sorted(i.name for i in started) == [
        "redis-config-only",
        "redis-exposed",
        "redis-secured",
    ]
    assert not any(pid_running(i.pid) for i in started)
    assert not state.exists()


# --- no servers needed ------------------------------------------------------------------------


def test_a_missing_binary_names_its_debian_package(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    state = tmp_path / "state"
    nothing = BinarySearch(path=str(empty), postgres_root=empty)
    with pytest.raises(MissingBinary) as caught:
        Lab(state, search=nothing, services=["redis"]).up()
    assert str(caught.value).startswith("redis-server not found: install the Debian package")
    assert "'redis-server'" in str(caught.value) and "--install" in str(caught.value)
    with pytest.raises(MissingBinary) as every:
        Lab(state, search=nothing).up()  # the whole lab: one message for all that is missing
    assert "sudo apt-get install -y" in str(every.value)
    for package in ("redis-server", "postgresql", "mariadb-server", "rabbitmq-server", "nodejs"):
        assert package in str(every.value)
    with pytest.raises(MissingBinary, match="install the Debian package 'postgresql'"):
        find_postgres(nothing)
    assert missing_packages(nothing)[:2] == ["redis-server", "postgresql"]
    assert not state.exists()  # nothing was started, nothing was created


def test_installing_packages_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    install_packages([])  # nothing missing: nothing to run, root or not
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match=r"needs root.*apt-get install -y redis-server"):
        install_packages(["redis-server"])


def test_unknown_service_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="no lab service oracle: choose from redis, postgres"):
        Lab(tmp_path, services=["oracle"])


def test_up_refuses_a_directory_that_holds_other_files(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(LabError, match="not empty"):
        Lab(tmp_path).up()
    assert (tmp_path / "precious.txt").exists()


def test_instance_urls_and_state_round_trip(tmp_path: Path) -> None:
    secured = Instance(
        name="redis-secured",
        service="redis",
        host="127.0.0.1",
        port=6380,
        exposed=False,
        user=None,
        password="p@ss/word",
        pid=1,
        root=tmp_path,
        log_file=tmp_path / "redis.log",
        database="0",
    )
    assert secured.url == "redis://:p%40ss%2Fword@127.0.0.1:6380/0"
    exposed_pg = Instance(
        name="postgres-exposed",
        service="postgres",
        host="127.0.0.1",
        port=5433,
        exposed=True,
        user="postgres",
        password=None,
        pid=1,
        root=tmp_path,
        log_file=tmp_path / "postgres.log",
        database="postgres",
    )
    assert exposed_pg.url_for("chatlog") == "postgresql://postgres@127.0.0.1:5433/chatlog"
    for instance in (secured, exposed_pg):
        assert load_instance(json.loads(json.dumps(instance_record(instance)))) == instance


def test_seed_people_are_deterministic_valid_and_from_every_region() -> None:
    people = make_people(40, random.Random(7))
    assert people == make_people(40, random.Random(7))
    assert {p.region for p in people} == set(REGIONS)
    for person in people:
        number = phonenumbers.parse(person.e164)
        assert phonenumbers.is_valid_number(number)
        assert phonenumbers.region_code_for_number(number) == person.region
        assert person.msisdn == person.e164[1:]
        assert person.email.rsplit("@", 1)[1] in EMAIL_DOMAINS
    malaysian = [p for p in people if p.region == "MY"]
    assert malaysian and all(MY_NATIONAL.match(p.national) for p in malaysian)


# --- the process supervisor (no server binaries needed) -----------------------------------------


def _gone_for_good(pid: int) -> bool:
    """Not running and, when it was our child, reaped: no zombie left in /proc."""
    return not pid_running(pid) and not Path(f"/proc/{pid}").exists()


def test_a_spawned_server_runs_in_its_directory_and_is_reaped_when_stopped(
    tmp_path: Path,
) -> None:
    sleeper = Process("sleep")
    log = tmp_path / "server.log"
    launch = spawn("sleeper", ["/bin/sh", "-c", "pwd; exec sleep 60"], log, sleeper, cwd=tmp_path)
    pid = launch.await_ready(
        lambda: "sleep" in Path(f"/proc/{launch.pid}/comm").read_text(), 10, "-"
    )
    assert pid == launch.pid and sleeper.matches(pid)
    assert os.getsid(pid) == pid  # its own session: a Ctrl-C aimed at us does not reach it
    assert log.read_text().strip() == str(tmp_path)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    sleeper.stop(pid)
    assert _gone_for_good(pid)


def test_a_server_that_dies_at_start_fails_fast_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    launch = spawn("doomed", ["/bin/sh", "-c", "echo boom >&2; exit 3"], log, Process("sh"))
    started = time.monotonic()
    with pytest.raises(ServerStartError, match="doomed did not start: the server exited") as caught:
        launch.await_ready(lambda: False, 30, "127.0.0.1:1")
    assert time.monotonic() - started < 10
    assert caught.value.log_tail == "boom"
    assert launch.pid is not None and _gone_for_good(launch.pid)


def test_a_taken_port_stops_the_server_and_says_so(tmp_path: Path) -> None:
    script = "echo 'bind: Address already in use'; exec sleep 60"
    launch = spawn("taken", ["/bin/sh", "-c", script], tmp_path / "log", Process("sleep"))
    with pytest.raises(ServerStartError, match="is taken") as caught:
        launch.await_ready(
            lambda: False, 30, "127.0.0.1:1", port_taken=lambda log: "already in use" in log
        )
    assert "Address already in use" in caught.value.log_tail
    assert launch.pid is not None and _gone_for_good(launch.pid)


def test_a_daemonized_server_is_found_by_its_pid_file_and_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    sleeper = Process("sleep")
    launcher = ["/bin/sh", "-c", f"sleep 60 </dev/null >/dev/null 2>&1 & echo $! > '{pid_file}'"]
    launch = daemonize("daemon", launcher, tmp_path / "launcher.out", sleeper, pid_file=pid_file)
    pid = launch.await_ready(lambda: sleeper.matches(read_pid(pid_file) or 0), 10, "-")
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"PPid:\t{os.getpid()}\n" not in status  # not our child: the launcher let it go
    sleeper.stop(pid)
    assert not pid_running(pid)


def test_a_failing_launcher_is_a_start_error_with_its_output(tmp_path: Path) -> None:
    cleaned: list[bool] = []
    with pytest.raises(ServerStartError, match="sh exited with 2") as caught:
        daemonize(
            "broken",
            ["/bin/sh", "-c", "echo 'no config' >&2; exit 2"],
            tmp_path / "launcher.out",
            Process("sleep"),
            pid_file=tmp_path / "never.pid",
            cleanup=lambda: cleaned.append(True),
        )
    assert caught.value.log_tail == "no config"
    assert cleaned == [True]


def test_a_state_file_from_before_the_servers_package_still_loads(tmp_path: Path) -> None:
    """A lab brought up by the previous layout (perisai.lab.misc_servers, …) can still be
    stopped: its records name classes that moved to perisai.lab.servers."""
    common = {
        "host": "127.0.0.1",
        "port": 1,
        "exposed": True,
        "user": None,
        "password": None,
        "pid": 1,
        "root": str(tmp_path),
        "log_file": str(tmp_path / "log"),
        "database": "",
    }
    moved = {
        ("perisai.lab.misc_servers:MiscInstance", "memcached"): MemcachedInstance,
        ("perisai.lab.misc_servers:MiscInstance", "zookeeper"): ZooKeeperInstance,
        ("perisai.lab.broker_servers:BrokerInstance", "nats"): BrokerInstance,
        ("perisai.lab.http_stores:HttpStoreInstance", "etcd"): HttpStoreInstance,
        ("perisai.lab.mariadb_server:MariaDBInstance", "mysql"): MariaDBInstance,
        ("perisai.lab.couchdb_server:CouchDBInstance", "couchdb"): CouchDBInstance,
    }
    for (kind, service), cls in moved.items():
        instance = load_instance({**common, "kind": kind, "name": service, "service": service})
        assert type(instance) is cls and instance.service == service
        assert load_instance(instance_record(instance)) == instance
