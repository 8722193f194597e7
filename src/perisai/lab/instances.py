"""A running lab server (:class:`Instance`) and the process plumbing the servers share.

Servers daemonize, so the lab keeps only their pid: stopping signals that pid (after checking it
is still the server, not a recycled pid) and waits, bounded, before escalating. Daemons are
reparented to PID 1, which in a container may never reap them, so a zombie counts as stopped;
a server the lab started as its own child is reaped while it waits.

Every server module builds on these: :func:`make_root` for its directory,
:func:`start_with_retries` around its start (a free port can be taken before the server binds
it), :func:`read_pid`, :func:`is_process` and :func:`stop_pid` for its process,
:func:`clean_env` for the environment its tools run in, :func:`userinfo` for its URLs.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, get_args
from urllib.parse import quote

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from perisai.lab.errors import LabError, ServerStartError

__all__ = [
    "HOST",
    "PORT_ATTEMPTS",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "Instance",
    "LabInstance",
    "Service",
    "clean_env",
    "connect_redis",
    "free_port",
    "free_ports",
    "instance_record",
    "is_process",
    "load_instance",
    "log_tail",
    "make_root",
    "pid_running",
    "read_pid",
    "reap",
    "start_with_retries",
    "stop_pid",
    "stop_process",
    "userinfo",
    "wait_for",
]

T = TypeVar("T")

HOST = "127.0.0.1"  # the lab binds loopback only, never a routable address
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
PROBE_TIMEOUT = 2.0
PORT_ATTEMPTS = 3  # another process may grab the free port between our pick and the bind

Service = Literal["redis", "postgres"]
# The first signal asks for the quickest clean stop: Redis exits on SIGTERM (nothing to save,
# persistence is off); for the postmaster SIGINT is pg_ctl's "fast" mode.
_STOP_SIGNAL: dict[Service, signal.Signals] = {
    "redis": signal.SIGTERM,
    "postgres": signal.SIGINT,
}
_PROCESS_NAME: dict[Service, str] = {"redis": "redis", "postgres": "postgres"}


@dataclass(frozen=True)
class Instance:
    """A lab server: where it listens, how to log in, and the files :meth:`stop` removes.

    ``password`` is None for an exposed server. ``root`` holds the server's data and log; for a
    PostgreSQL started by root it is a private temporary directory owned by the postgres user.
    ``database`` is the default database (``"0"`` for Redis, ``"postgres"`` for PostgreSQL).
    """

    name: str
    service: Service
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

    def running(self) -> bool:
        """Whether the server process is still alive (answering or not)."""
        return _is_server_process(self.pid, self.service)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server (clean first, then SIGKILL) and remove its files."""
        stop_process(self.pid, self.service, timeout)
        shutil.rmtree(self.root, ignore_errors=True)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for the lab's state file)."""
        data = asdict(self)
        data["root"] = str(self.root)
        data["log_file"] = str(self.log_file)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Instance:
        """The inverse of :meth:`to_json`; ValueError on anything malformed."""
        try:
            service = data["service"]
            if service not in get_args(Service):
                raise ValueError(f"unknown service {service!r}")
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
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed instance record: {error}") from error


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


def free_port() -> int:
    """A TCP port free on loopback right now (the kernel picks it; a race stays possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` different ports free on loopback right now (see :func:`free_port`)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log, for error messages (empty if unreadable)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _proc_state(pid: int) -> str | None:
    """The process state letter from /proc (None when there is no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # "pid (comm) S …": comm may hold spaces or parentheses, the state follows the last ')'.
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] or None


def pid_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not: it has already exited)."""
    if pid <= 0:
        return False
    state = _proc_state(pid)
    if state is not None:
        return state not in ("Z", "X")
    if Path("/proc/self").exists():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_server_process(pid: int, service: Service) -> bool:
    return is_process(pid, _PROCESS_NAME[service])


def stop_process(pid: int, service: Service, timeout: float = STOP_TIMEOUT) -> None:
    """Signal a lab server to stop and wait, bounded; SIGKILL if it ignores the clean stop."""
    stop_pid(
        pid,
        lambda p: _is_server_process(p, service),
        f"{service} server",
        timeout,
        first=_STOP_SIGNAL[service],
    )


def userinfo(user: str | None, password: str | None) -> str:
    """``user:password@`` for a URL, each part percent-encoded; ``""`` when there is neither."""
    auth = quote(user, safe="") if user else ""
    if password is not None:
        auth += ":" + quote(password, safe="")
    return f"{auth}@" if auth else ""


def is_process(pid: int, name: str) -> bool:
    """Live, and still the kind of server we started: its /proc name holds ``name`` (guards
    against a recycled pid). With no /proc to check the name against, the pid is trusted."""
    if not pid_running(pid):
        return False
    try:
        comm = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # no /proc to check the name against: trust the pid we recorded
    return name in comm


def reap(pid: int) -> None:
    """Collect the exit status of a server that is our own child, so it does not linger as a
    zombie (nothing happens for any other process)."""
    if pid > 0:
        with suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _gone(pid: int) -> bool:
    reap(pid)
    return not pid_running(pid)


def stop_pid(
    pid: int,
    is_ours: Callable[[int], bool],
    what: str,
    timeout: float = STOP_TIMEOUT,
    *,
    first: signal.Signals = signal.SIGTERM,
) -> None:
    """Stop the server at ``pid`` if ``is_ours(pid)``: ``first`` (its clean stop), then SIGKILL,
    each wait bounded; :class:`LabError` naming ``what`` if it outlives both."""
    if not is_ours(pid):
        reap(pid)
        return
    for sig, wait in ((first, timeout), (signal.SIGKILL, 5.0)):
        with suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait_for(lambda: _gone(pid), wait):
            return
    raise LabError(f"{what} (pid {pid}) did not stop")


def read_pid(pid_file: Path) -> int | None:
    """The pid a server wrote to ``pid_file``; None while there is none (or not yet a number)."""
    try:
        return int(pid_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def clean_env(*prefixes: str) -> dict[str, str]:
    """Our environment minus the variables starting with ``prefixes``, which would steer a
    server or its tools at the system's own files (``PG``, ``MYSQL``, ``ERL_``…)."""
    return {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}


def make_root(base_dir: Path, name: str) -> Path:
    """``base_dir/name`` as an absolute path, created if need be, readable by us only."""
    root = Path(base_dir).absolute() / name
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)
    return root


def start_with_retries(
    root: Path,
    attempt: Callable[[], T],
    port_taken: Callable[[str], bool],
    *,
    prepare: Callable[[], None] | None = None,
    before_retry: Callable[[], None] | None = None,
) -> T:
    """``prepare()`` once, then ``attempt()`` up to :data:`PORT_ATTEMPTS` times while it fails
    with a :class:`ServerStartError` whose log tail ``port_taken`` says shows a port taken in
    between (``before_retry()`` cleans up before the next); on any failure ``root`` goes."""
    try:
        if prepare is not None:
            prepare()
        for number in range(1, PORT_ATTEMPTS + 1):
            try:
                return attempt()
            except ServerStartError as error:
                if number == PORT_ATTEMPTS or not port_taken(error.log_tail):
                    raise
                if before_retry is not None:
                    before_retry()
        raise AssertionError("unreachable")  # pragma: no cover
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
