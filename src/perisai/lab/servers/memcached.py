"""A real memcached on a free loopback port: exposed or secured, and its seeder.

memcached (Debian package ``memcached``) runs with ``-vv``, so its log is a command log: every
command a client sends shows up as ``<fd command args``. The secured twin requires ASCII
authentication (``-Y authfile``, memcached ≥ 1.5.15): every command before the login answers
``CLIENT_ERROR unauthenticated``. memcached daemonizes itself (``--daemon``) and writes its pid
file: the supervisor's :func:`~perisai.lab.supervisor.daemonize` mode.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from perisai.lab.binaries import BinarySearch, find_binary
from perisai.lab.errors import LabError, MissingBinary
from perisai.lab.instances import Instance, twin_password
from perisai.lab.seed import RANSOM_NOTE, SEED, log_record, make_messages, make_people
from perisai.lab.spec import ServerSpec
from perisai.lab.supervisor import (
    HOST,
    START_TIMEOUT,
    Process,
    daemonize,
    free_port,
    make_root,
    start_with_retries,
)

__all__ = [
    "LAB_USER",
    "MEMCACHED_LOG_RECORDS",
    "MEMCACHED_PACKAGE",
    "MEMCACHED_RANSOM_KEY",
    "MEMCACHED_USERS",
    "SPEC",
    "MemcachedInstance",
    "find_memcached",
    "memcached_command",
    "seed_memcached",
    "start_memcached",
]

MEMCACHED_PACKAGE = "memcached"
LAB_USER = "perisai"  # the one user of a secured twin (its authfile line)
MEMCACHED_LOG_RECORDS = 60
MEMCACHED_USERS = 30
MEMCACHED_RANSOM_KEY = "README"

_SYSTEM_DIRS = ("/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin")
_IO_TIMEOUT = 5.0
_PORT_TAKEN = "Address already in use"


@dataclass(frozen=True)
class MemcachedInstance(Instance):
    """An :class:`Instance` of memcached; :attr:`Instance.database` records its mode
    (``"open"``, ``"ascii-auth"`` or ``"sasl"``: memcached has no databases)."""

    PROCESSES: ClassVar[Mapping[str, Process]] = {"memcached": Process("memcached")}

    def answering(self, timeout: float = 2.0) -> bool:
        try:
            if _binary_version(self.host, self.port, timeout):
                return True  # SASL and binary-only twins answer nothing else before a login
            if self.database == "sasl":
                return False
            return memcached_command(self, b"version", timeout=timeout).startswith(b"VERSION ")
        except OSError:
            return False


def find_memcached(search: BinarySearch | None = None) -> Path:
    """The ``memcached`` executable, or :class:`MissingBinary` naming its package."""
    search = search or BinarySearch()
    path = search.path if search.path is not None else os.pathsep.join(_SYSTEM_DIRS)
    found = shutil.which("memcached", path=path)
    if found is None:
        raise MissingBinary("memcached", MEMCACHED_PACKAGE)
    return Path(found)


def start_memcached(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    sasl: bool = False,
    extra_args: Sequence[str] = (),
    search: BinarySearch | None = None,
    timeout: float = START_TIMEOUT,
) -> MemcachedInstance:
    """Start ``memcached`` under ``base_dir/name`` on a free 127.0.0.1 port.

    Exposed: anyone may read and write. Secured: ASCII authentication with an authfile holding
    the user ``perisai`` and ``password`` (random if None), or with ``sasl=True`` SASL PLAIN
    over the binary protocol only (``-S``; a sasldb made with ``saslpasswd2`` from the Debian
    package sasl2-bin). ``-vv`` turns the log into a command log. :attr:`Instance.database`
    records the mode: ``"open"``, ``"ascii-auth"`` or ``"sasl"`` (memcached has no databases);
    :func:`seed_memcached` and :func:`memcached_command` speak the text protocol, so they do
    not work on a SASL twin. ``extra_args`` go to memcached as they are (e.g. ``["-X"]`` to
    disable the dump commands, ``["-o", "no_lru_crawler"]``).
    """
    if exposed and sasl:
        raise ValueError("an exposed memcached has no password")
    password = twin_password(exposed, password, "an exposed memcached has no password")
    binary = find_memcached(search)
    saslpasswd2 = find_binary("saslpasswd2", "sasl2-bin", search) if sasl else None
    root = make_root(base_dir, name)
    command = [str(binary), *extra_args]
    return start_with_retries(
        root,
        lambda: _start_memcached_once(name, root, command, exposed, password, saslpasswd2, timeout),
        lambda log: _PORT_TAKEN in log,
    )


def _start_memcached_once(
    name: str,
    root: Path,
    command: list[str],
    exposed: bool,
    password: str | None,
    saslpasswd2: Path | None,
    timeout: float,
) -> MemcachedInstance:
    port = free_port()
    log_file = root / "memcached.log"
    pid_file = root / "memcached.pid"
    log_file.unlink(missing_ok=True)
    pid_file.unlink(missing_ok=True)
    argv = [
        *command,
        "--listen",
        HOST,
        "--port",
        str(port),
        "--udp-port",
        "0",
        "--memory-limit",
        "64",
        "--conn-limit",
        "256",
        "--threads",
        "2",
        "--daemon",
        "--pidfile",
        str(pid_file),
        "-vv",  # log every command: the tests read the log to prove a probe wrote nothing
    ]
    if os.geteuid() == 0:
        argv += ["--user", "root"]  # memcached refuses root without it; files stay root's 0600
    env = dict(os.environ)
    mode = "open"
    if password is not None and saslpasswd2 is not None:
        env["SASL_CONF_PATH"] = str(_sasl_config(root, saslpasswd2, password, timeout))
        argv += ["--enable-sasl"]
        mode = "sasl"
    elif password is not None:
        auth_file = root / "memcached.auth"
        auth_file.touch(mode=0o600)
        auth_file.write_text(f"{LAB_USER}:{password}\n", encoding="utf-8")
        argv += ["--auth-file", str(auth_file)]
        mode = "ascii-auth"
    launch = daemonize(
        name,
        argv,
        log_file,
        MemcachedInstance.PROCESSES["memcached"],
        pid_file=pid_file,
        env=env,
        timeout=timeout,
    )
    instance = MemcachedInstance(
        name=name,
        service="memcached",
        host=HOST,
        port=port,
        exposed=exposed,
        user=None if exposed else LAB_USER,
        password=password,
        pid=0,
        root=root,
        log_file=log_file,
        database=mode,
    )
    pid = launch.await_ready(
        lambda: pid_file.exists() and instance.answering(timeout=1.0),
        timeout,
        f"{HOST}:{port}",
        port_taken=lambda log: _PORT_TAKEN in log,
        log_lines=5,
        interval=0.05,
    )
    return dataclasses.replace(instance, pid=pid)


def _sasl_config(root: Path, saslpasswd2: Path, password: str, timeout: float) -> Path:
    """A Cyrus SASL config dir for memcached: PLAIN against a private sasldb."""
    sasl_dir = root / "sasl"
    sasl_dir.mkdir(mode=0o700, exist_ok=True)
    sasldb = sasl_dir / "memcached.sasldb"
    (sasl_dir / "memcached.conf").write_text(
        f"mech_list: plain\nsasldb_path: {sasldb}\n", encoding="utf-8"
    )
    done = subprocess.run(
        [str(saslpasswd2), "-p", "-c", "-a", "memcached", "-f", str(sasldb), LAB_USER],
        input=password,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise LabError(f"saslpasswd2 failed: {done.stderr.strip()[-200:]}")
    return sasl_dir


def memcached_command(
    instance: Instance, command: bytes, payload: bytes | None = None, timeout: float = _IO_TIMEOUT
) -> bytes:
    """Send one text-protocol command (logging in first on a secured twin) and return the
    answer up to its terminator (``END``, ``STORED``, ``VERSION …``, an error line)."""
    with socket.create_connection((instance.host, instance.port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        if instance.database == "sasl":
            raise LabError("a SASL memcached speaks the binary protocol only")
        if instance.password is not None and instance.user is not None:
            secret = f"{instance.user} {instance.password}".encode()
            sock.sendall(b"set auth 0 0 %d\r\n%s\r\n" % (len(secret), secret))
            login = _read_until(sock, (b"\r\n",))
            if not login.startswith(b"STORED"):
                raise LabError(f"memcached refused the lab's own login: {login!r}")
        request = command + b"\r\n"
        if payload is not None:
            request += payload + b"\r\n"
        sock.sendall(request)
        return _read_until(sock, _MEMCACHED_TERMINATORS)


_MEMCACHED_TERMINATORS = (
    b"END\r\n",
    b"STORED\r\n",
    b"NOT_STORED\r\n",
    b"DELETED\r\n",
    b"NOT_FOUND\r\n",
    b"OK\r\n",
    b"ERROR\r\n",
)


def _read_until(sock: socket.socket, endings: tuple[bytes, ...]) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
        first = data.split(b"\r\n", 1)[0]
        if first.startswith((b"VERSION ", b"CLIENT_ERROR", b"SERVER_ERROR")):
            return data
        if data.endswith(endings):
            return data


def _binary_version(host: str, port: int, timeout: float) -> bool:
    """Whether a binary-protocol VERSION request gets a binary answer (SASL twins)."""
    request = bytes([0x80, 0x0B]) + bytes(22)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(request)
        try:
            return sock.recv(24)[:2] == bytes([0x81, 0x0B])
        except TimeoutError:
            return False  # `-B ascii` waits for a line


def seed_memcached(instance: Instance, *, ransom_note: bool = False, seed: int = SEED) -> int:
    """Cache entries a messaging app keeps in memcached: log records, user profiles, pending
    OTP texts and a config blob (plus a ransom note under ``README`` if asked); returns how
    many keys were written. Nothing expires."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(MEMCACHED_USERS, rng)
    messages = make_messages(people, MEMCACHED_LOG_RECORDS, rng)
    entries: list[tuple[str, str]] = []
    for n, message in enumerate(messages, start=1):
        entries.append((f"log:msg:{n}", json.dumps(log_record(message, rng))))
    for n, person in enumerate(people, start=1):
        profile = {
            "name": person.name,
            "phone": person.e164,
            "email": person.email,
            "device_id": person.device_id,
        }
        entries.append((f"user:{n}", json.dumps(profile)))
    for person in people[:10]:
        text = f"Your verification code is {rng.randrange(10**6):06d}. It expires in 5 minutes."
        entries.append((f"otp:{person.msisdn}", json.dumps({"to": person.e164, "text": text})))
    entries.append(("config:features", json.dumps({"typing_indicator": True, "max_upload_mb": 64})))
    if ransom_note:
        entries.append((MEMCACHED_RANSOM_KEY, RANSOM_NOTE))
    if instance.database == "sasl":
        raise LabError("seed_memcached speaks the text protocol; a SASL memcached has none")
    with socket.create_connection((instance.host, instance.port), timeout=_IO_TIMEOUT) as sock:
        sock.settimeout(_IO_TIMEOUT)
        if instance.password is not None and instance.user is not None:
            secret = f"{instance.user} {instance.password}".encode()
            sock.sendall(b"set auth 0 0 %d\r\n%s\r\n" % (len(secret), secret))
            if not _read_until(sock, (b"\r\n",)).startswith(b"STORED"):
                raise LabError("memcached refused the lab's own login")
        for key, value in entries:
            body = value.encode()
            sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(body), body))
            answer = _read_until(sock, (b"\r\n",))
            if answer != b"STORED\r\n":
                raise LabError(f"memcached did not store {key!r}: {answer!r}")
    return len(entries)


SPEC = ServerSpec(
    service="memcached",
    find=find_memcached,
    start=start_memcached,
    seed=seed_memcached,
)
