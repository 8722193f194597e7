"""Start a real ``redis-server`` on a free loopback port: exposed (no password) or secured.

All settings go into a 0600 config file rather than the command line, so a password never shows
up in ``ps``. Persistence is off (``save ""``, no AOF): the lab's data is disposable.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import redis

from perisai.lab.binaries import BinarySearch, find_redis_server
from perisai.lab.errors import ServerStartError
from perisai.lab.instances import (
    HOST,
    START_TIMEOUT,
    Instance,
    connect_redis,
    free_port,
    log_tail,
    pid_running,
    read_pid,
    start_with_retries,
    stop_process,
    wait_for,
)

__all__ = ["random_password", "start_redis"]

_PORT_TAKEN = "Address already in use"


def random_password() -> str:
    """A 24-character URL-safe token: nothing a default-credential list will ever hold."""
    return secrets.token_urlsafe(18)


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
) -> Instance:
    """Start ``redis-server`` under ``base_dir/name`` and wait until it answers PING.

    Secured servers (``exposed=False``) get ``password`` or, if None, a random one.
    """
    if exposed and password is not None:
        raise ValueError("an exposed Redis has no password")
    binary = find_redis_server(search)
    if not exposed and password is None:
        password = random_password()
    root = base_dir / name
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return start_with_retries(  # on failure root goes: the error already carries the log's tail
        root,
        lambda: _start_once(name, root, binary, exposed, password, timeout),
        lambda log: _PORT_TAKEN in log,
    )


def _start_once(
    name: str, root: Path, binary: Path, exposed: bool, password: str | None, timeout: float
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
    conf.touch(mode=0o600)
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")

    started = subprocess.run(
        [str(binary), str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    if started.returncode != 0:
        raise ServerStartError(
            name, f"redis-server exited with {started.returncode}", started.stderr.strip()
        )

    client = connect_redis(HOST, port, password, timeout=1.0)

    def ready() -> bool:
        if _PORT_TAKEN in log_tail(log_file, 5):
            raise ServerStartError(name, f"port {port} is taken", log_tail(log_file))
        try:
            return bool(client.ping()) and pid_file.exists()
        except (redis.RedisError, OSError):
            return False

    try:
        if not wait_for(ready, timeout, interval=0.02):
            raise ServerStartError(
                name, f"no answer on {HOST}:{port} after {timeout:.0f} s", log_tail(log_file)
            )
    except ServerStartError:
        _kill_from_pid_file(pid_file)
        raise
    finally:
        client.close()
    pid = int(pid_file.read_text(encoding="ascii").strip())
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


def _kill_from_pid_file(pid_file: Path) -> None:
    """Stop a server that came up half-way, so a failed start leaves nothing running."""
    pid = read_pid(pid_file)
    if pid is not None and pid_running(pid):
        stop_process(pid, "redis")
