"""A real ``redis-server`` on a free loopback port: exposed (no password) or secured.

All settings go into a 0600 config file rather than the command line, so a password never shows
up in ``ps``. Persistence is off (``save ""``, no AOF): the lab's data is disposable. Redis
daemonizes itself (``daemonize yes``) and writes its pid file: the supervisor's
:func:`~perisai.lab.supervisor.daemonize` mode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import redis

from perisai.lab.binaries import BinarySearch, find_redis_server
from perisai.lab.instances import Instance, connect_redis, twin_password
from perisai.lab.seed import seed_redis
from perisai.lab.spec import ServerSpec
from perisai.lab.supervisor import (
    HOST,
    START_TIMEOUT,
    Launch,
    daemonize,
    free_port,
    make_root,
    start_with_retries,
)

__all__ = ["SPEC", "restart_redis", "start_redis"]

_PORT_TAKEN = "Address already in use"


def _conf_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def start_redis(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    search: BinarySearch | None = None,
    timeout: float = START_TIMEOUT,
    extra: Sequence[str] = (),
) -> Instance:
    """Start ``redis-server`` under ``base_dir/name`` and wait until it answers PING.

    Secured servers (``exposed=False``) get ``password`` or, if None, a random one. ``extra``:
    more configuration lines (cluster mode, say).
    """
    password = twin_password(exposed, password, "an exposed Redis has no password")
    binary = find_redis_server(search)
    root = make_root(base_dir, name)
    return start_with_retries(  # on failure root goes: the error already carries the log's tail
        root,
        lambda: _start_once(name, root, binary, exposed, password, timeout, extra),
        lambda log: _PORT_TAKEN in log,
    )


def restart_redis(instance: Instance, *, timeout: float = START_TIMEOUT) -> Instance:
    """Start a stopped server again from its own directory and configuration, on its port
    (a Redis Cluster node rejoins with the identity its ``nodes.conf`` keeps)."""
    root = instance.root
    launch = daemonize(
        instance.name,
        [find_redis_server(None), root / "redis.conf"],
        root / "redis.out",
        Instance.PROCESSES["redis"],
        pid_file=root / "redis.pid",
        logs=[instance.log_file],
        timeout=timeout,
    )
    pid = _await_ping(launch, root / "redis.pid", instance.port, instance.password, timeout)
    return dataclasses.replace(instance, pid=pid)


def _start_once(
    name: str,
    root: Path,
    binary: Path,
    exposed: bool,
    password: str | None,
    timeout: float,
    extra: Sequence[str],
) -> Instance:
    port = free_port()
    log_file = root / "redis.log"
    pid_file = root / "redis.pid"
    conf = root / "redis.conf"
    log_file.unlink(missing_ok=True)
    pid_file.unlink(missing_ok=True)
    lines = [
        f"bind {HOST}",
        f"port {port}",
        "protected-mode no",  # exposed on purpose: answer clients without AUTH
        'save ""',
        "appendonly no",
        "daemonize yes",
        f"pidfile {_conf_quote(str(pid_file))}",
        f"logfile {_conf_quote(str(log_file))}",
        f"dir {_conf_quote(str(root))}",
    ]
    if password is not None:
        lines.append(f"requirepass {_conf_quote(password)}")
    lines += extra
    conf.touch(mode=0o600)
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    process = Instance.PROCESSES["redis"]
    launch = daemonize(
        name,
        [binary, conf],
        root / "redis.out",
        process,
        pid_file=pid_file,
        logs=[log_file],
        timeout=timeout,
    )
    pid = _await_ping(launch, pid_file, port, password, timeout)
    return Instance(
        name=name,
        service="redis",
        host=HOST,
        port=port,
        exposed=exposed,
        user=None,
        password=password,
        pid=pid,
        root=root,
        log_file=log_file,
        database="0",
    )


def _await_ping(
    launch: Launch, pid_file: Path, port: int, password: str | None, timeout: float
) -> int:
    client = connect_redis(HOST, port, password, timeout=1.0)
    try:
        return launch.await_ready(
            lambda: bool(client.ping()) and pid_file.exists(),
            timeout,
            f"{HOST}:{port}",
            port_taken=lambda log: _PORT_TAKEN in log,
            log_lines=5,
            interval=0.02,
            not_yet=(redis.RedisError, OSError),
        )
    finally:
        client.close()


SPEC = ServerSpec(
    service="redis",
    find=find_redis_server,
    start=start_redis,
    seed=seed_redis,
    exposed_seed={"planted_payload": True},
)
