"""Start real memcached and ZooKeeper servers on free loopback ports: exposed or secured.

memcached (Debian package ``memcached``) runs as a daemon with ``-vv``, so its log is a command
log: every command a client sends shows up as ``<fd command args``. The secured twin requires
ASCII authentication (``-Y authfile``, memcached ≥ 1.5.15): every command before the login
answers ``CLIENT_ERROR unauthenticated``.

ZooKeeper (Debian package ``zookeeper``) runs standalone from ``zookeeper.jar`` with its own
``dataDir``, ``clientPort`` on 127.0.0.1 and the admin HTTP server disabled. Its transaction
log (``dataDir/version-2/log.*``) records every change the server accepted, so tests read it
as a write log. The exposed twin leaves its znodes open to ``world:anyone`` and answers the
``srvr`` and ``mntr`` four-letter words; the secured twin guards every seeded znode with a
``digest`` ACL, so anonymous reads fail with NoAuth, and answers ``srvr`` only (the default).

Neither server is ever the machine's own: each gets its own directory, port and process.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from perisai.lab.binaries import BinarySearch, find_binary
from perisai.lab.errors import LabError, MissingBinary, ServerStartError
from perisai.lab.instances import (
    HOST,
    START_TIMEOUT,
    STOP_TIMEOUT,
    Instance,
    Service,
    free_port,
    is_process,
    log_tail,
    pid_running,
    read_pid,
    start_with_retries,
    stop_pid,
    wait_for,
)
from perisai.lab.redis_server import random_password
from perisai.lab.seed import (
    RANSOM_NOTE,
    SEED,
    _log_record,
    make_messages,
    make_people,
)

__all__ = [
    "MEMCACHED_LOG_RECORDS",
    "MEMCACHED_PACKAGE",
    "MEMCACHED_RANSOM_KEY",
    "MEMCACHED_USERS",
    "ZOOKEEPER_APP_ROOT",
    "ZOOKEEPER_PACKAGE",
    "ZOOKEEPER_RANSOM_ZNODE",
    "ZOOKEEPER_USERS",
    "MiscInstance",
    "find_memcached",
    "find_zookeeper",
    "memcached_command",
    "seed_memcached",
    "seed_zookeeper",
    "start_memcached",
    "start_zookeeper",
    "zookeeper_transactions",
]

MEMCACHED_PACKAGE = "memcached"
ZOOKEEPER_PACKAGE = "zookeeper"
LAB_USER = "perisai"  # the one user of a secured twin (authfile line / digest ACL identity)

MEMCACHED_LOG_RECORDS = 60
MEMCACHED_USERS = 30
MEMCACHED_RANSOM_KEY = "README"
ZOOKEEPER_APP_ROOT = "/chat"
ZOOKEEPER_USERS = 12
ZOOKEEPER_RANSOM_ZNODE = "/README_TO_RECOVER_YOUR_DATA"

_SYSTEM_DIRS = ("/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin")
_JAVA_DIR = Path("/usr/share/java")
_IO_TIMEOUT = 5.0
_MEMCACHED_PORT_TAKEN = "Address already in use"


@dataclass(frozen=True)
class ZooKeeperJars:
    """The java launcher and the class path of Debian's ZooKeeper server."""

    java: Path
    classpath: str


@dataclass(frozen=True)
class MiscInstance(Instance):
    """An :class:`Instance` of memcached or ZooKeeper; stops and checks its own process.

    (:mod:`perisai.lab.instances` knows how to stop Redis and PostgreSQL only; these servers
    have their own process names and stop signals.)
    """

    def running(self) -> bool:
        return is_process(self.pid, _process_name(self.service))

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        _stop(self.pid, _process_name(self.service), timeout)
        shutil.rmtree(self.root, ignore_errors=True)

    def answering(self, timeout: float = 2.0) -> bool:
        kind: str = self.service  # "memcached" or "zookeeper" (see the class docstring)
        try:
            if kind == "memcached" and _binary_version(self.host, self.port, timeout):
                return True  # SASL and binary-only twins answer nothing else before a login
            if kind == "memcached" and self.database == "sasl":
                return False
            if kind == "memcached":
                answer = memcached_command(self, b"version", timeout=timeout)
                return answer.startswith(b"VERSION ")
            return _four_letter(self.host, self.port, b"srvr", timeout).startswith(
                b"Zookeeper version"
            )
        except OSError:
            return False


def _process_name(service: str) -> str:
    return "memcached" if service == "memcached" else "java"


# --- finding the binaries ---------------------------------------------------------------------


def find_memcached(search: BinarySearch | None = None) -> Path:
    """The ``memcached`` executable, or :class:`MissingBinary` naming its package."""
    search = search or BinarySearch()
    path = search.path if search.path is not None else os.pathsep.join(_SYSTEM_DIRS)
    found = shutil.which("memcached", path=path)
    if found is None:
        raise MissingBinary("memcached", MEMCACHED_PACKAGE)
    return Path(found)


def find_zookeeper(search: BinarySearch | None = None, java_dir: Path = _JAVA_DIR) -> ZooKeeperJars:
    """``java`` and the class path of Debian's ``zookeeper.jar`` (its manifest names its
    dependencies); slf4j-simple joins it when present, so the server's log says something."""
    search = search or BinarySearch()
    java = shutil.which("java", path=search.search_path())
    jar = java_dir / "zookeeper.jar"
    if java is None or not jar.is_file():
        raise MissingBinary("java and /usr/share/java/zookeeper.jar", ZOOKEEPER_PACKAGE)
    parts = [str(jar)]
    simple = java_dir / "slf4j-simple.jar"
    if simple.is_file():
        parts.append(str(simple))
    return ZooKeeperJars(java=Path(java), classpath=os.pathsep.join(parts))


# --- memcached --------------------------------------------------------------------------------


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
) -> MiscInstance:
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
    if exposed and (password is not None or sasl):
        raise ValueError("an exposed memcached has no password")
    binary = find_memcached(search)
    saslpasswd2 = find_binary("saslpasswd2", "sasl2-bin", search) if sasl else None
    if not exposed and password is None:
        password = random_password()
    root = base_dir / name
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    command = [str(binary), *extra_args]
    return start_with_retries(
        root,
        lambda: _start_memcached_once(name, root, command, exposed, password, saslpasswd2, timeout),
        lambda log: _MEMCACHED_PORT_TAKEN in log,
    )


def _start_memcached_once(
    name: str,
    root: Path,
    command: list[str],
    exposed: bool,
    password: str | None,
    saslpasswd2: Path | None,
    timeout: float,
) -> MiscInstance:
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
    with open(log_file, "ab") as log:
        started = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            timeout=timeout,
            check=False,
        )
    if started.returncode != 0:
        raise ServerStartError(
            name, f"memcached exited with {started.returncode}", log_tail(log_file)
        )
    probe = MiscInstance(
        name=name,
        service=cast(Service, "memcached"),
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

    def ready() -> bool:
        if _MEMCACHED_PORT_TAKEN in log_tail(log_file, 5):
            raise ServerStartError(name, f"port {port} is taken", log_tail(log_file))
        return pid_file.exists() and probe.answering(timeout=1.0)

    if not wait_for(ready, timeout, interval=0.05):
        _kill_pid_file(pid_file, "memcached")
        raise ServerStartError(
            name, f"no answer on {HOST}:{port} after {timeout:.0f} s", log_tail(log_file)
        )
    pid = int(pid_file.read_text(encoding="ascii").strip())
    return MiscInstance(
        name=name,
        service=cast(Service, "memcached"),
        host=HOST,
        port=port,
        exposed=exposed,
        user=probe.user,
        password=password,
        pid=pid,
        root=root,
        log_file=log_file,
        database=mode,
    )


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
        entries.append((f"log:msg:{n}", json.dumps(_log_record(message, rng))))
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


# --- ZooKeeper --------------------------------------------------------------------------------


def start_zookeeper(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    extra_config: Sequence[str] = (),
    search: BinarySearch | None = None,
    timeout: float = START_TIMEOUT,
) -> MiscInstance:
    """Start a standalone ZooKeeper under ``base_dir/name`` on a free 127.0.0.1 port.

    The secured twin's ``password`` (random if None) is the ``digest`` secret of the user
    ``perisai`` that :func:`seed_zookeeper` puts in every seeded znode's ACL. ``extra_config``
    lines are appended to zoo.cfg as they are (e.g. ``enforce.auth.enabled=true``).
    """
    if exposed and password is not None:
        raise ValueError("an exposed ZooKeeper has no password")
    jars = find_zookeeper(search)
    if not exposed and password is None:
        password = random_password()
    root = base_dir / name
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return start_with_retries(
        root,
        lambda: _start_zookeeper_once(
            name, root, jars, exposed, password, [*extra_config], timeout
        ),
        lambda _: True,  # the JVM logs a taken port in many ways: any failure is retried
    )


def _start_zookeeper_once(
    name: str,
    root: Path,
    jars: ZooKeeperJars,
    exposed: bool,
    password: str | None,
    extra_config: list[str],
    timeout: float,
) -> MiscInstance:
    port = free_port()
    data_dir = root / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(mode=0o700)
    log_file = root / "zookeeper.log"
    log_file.unlink(missing_ok=True)
    conf = root / "zoo.cfg"
    lines = [
        "tickTime=500",
        f"dataDir={data_dir}",
        f"clientPort={port}",
        f"clientPortAddress={HOST}",
        "admin.enableServer=false",
        "maxClientCnxns=100",
        "autopurge.purgeInterval=0",
        # srvr is ZooKeeper's default whitelist; the exposed twin also answers mntr.
        "4lw.commands.whitelist=" + ("srvr,mntr" if exposed else "srvr"),
        *extra_config,
    ]
    conf.touch(mode=0o600)
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = [
        str(jars.java),
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-Djava.net.preferIPv4Stack=true",
        "-Dzookeeper.admin.enableServer=false",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
        "-cp",
        jars.classpath,
        "org.apache.zookeeper.server.ZooKeeperServerMain",
        str(conf),
    ]
    pid = os.posix_spawn(
        str(jars.java),
        argv,
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,  # its own session: a Ctrl-C aimed at the tests does not reach it first
    )

    def ready() -> bool:
        if not pid_running(pid):
            raise ServerStartError(name, "the java process exited", log_tail(log_file))
        try:
            answer = _four_letter(HOST, port, b"srvr", 1.0)
        except OSError:
            return False
        return answer.startswith(b"Zookeeper version") and b"Mode: standalone" in answer

    try:
        if not wait_for(ready, timeout, interval=0.1):
            raise ServerStartError(
                name, f"no answer on {HOST}:{port} after {timeout:.0f} s", log_tail(log_file)
            )
    except ServerStartError:
        _stop(pid, "java", STOP_TIMEOUT)
        raise
    return MiscInstance(
        name=name,
        service=cast(Service, "zookeeper"),
        host=HOST,
        port=port,
        exposed=exposed,
        user=None if exposed else LAB_USER,
        password=password,
        pid=pid,
        root=root,
        log_file=log_file,
        database="/",
    )


def seed_zookeeper(instance: Instance, *, ransom_note: bool = False, seed: int = SEED) -> int:
    """znodes a chat service keeps in ZooKeeper: per-user session records with phone numbers,
    e-mail addresses and device ids, gateway config, and (if asked) a ransom note at
    ``/README_TO_RECOVER_YOUR_DATA``. On a secured twin every seeded znode carries a digest
    ACL for ``perisai`` only. Returns how many znodes were created."""
    from kazoo.client import KazooClient
    from kazoo.security import OPEN_ACL_UNSAFE, make_digest_acl

    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(ZOOKEEPER_USERS, rng)
    secured = instance.password is not None and instance.user is not None
    auth = [("digest", f"{instance.user}:{instance.password}")] if secured else []
    acl = [make_digest_acl(instance.user, instance.password, all=True)] if secured else None
    nodes: list[tuple[str, bytes]] = [
        (ZOOKEEPER_APP_ROOT, b"chat-gateway cluster state"),
        (f"{ZOOKEEPER_APP_ROOT}/config", json.dumps({"region": "ap-southeast-1"}).encode()),
        (f"{ZOOKEEPER_APP_ROOT}/sessions", b""),
    ]
    for person in people:
        record = {
            "msisdn": person.msisdn,
            "email": person.email,
            "device_id": person.device_id,
            "display": person.national,
        }
        nodes.append(
            (f"{ZOOKEEPER_APP_ROOT}/sessions/{person.device_id}", json.dumps(record).encode())
        )
    if ransom_note:
        nodes.append((ZOOKEEPER_RANSOM_ZNODE, RANSOM_NOTE.encode()))
    client = KazooClient(
        hosts=f"{instance.host}:{instance.port}", auth_data=auth, timeout=_IO_TIMEOUT
    )
    client.start(timeout=_IO_TIMEOUT)
    try:
        for path, value in nodes:
            client.create(path, value, acl=acl if acl is not None else OPEN_ACL_UNSAFE)
    finally:
        client.stop()
        client.close()
    return len(nodes)


def zookeeper_transactions(instance: Instance, timeout: float = 60.0) -> list[str]:
    """Every transaction in the server's transaction logs, one line each, oldest first, as
    ZooKeeper's own TxnLogToolkit prints them (``… zxid 0x5 create /chat,…``)."""
    jars = find_zookeeper()
    logs = sorted(
        (instance.root / "data" / "version-2").glob("log.*"),
        key=lambda p: int(p.name.split(".", 1)[1], 16),
    )
    lines: list[str] = []
    for log in logs:
        done = subprocess.run(
            [
                str(jars.java),
                "-cp",
                jars.classpath,
                "org.apache.zookeeper.server.persistence.TxnLogToolkit",
                "--dump",
                str(log),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise LabError(f"TxnLogToolkit failed on {log}: {done.stderr.strip()[-300:]}")
        lines.extend(line for line in done.stdout.splitlines() if " zxid 0x" in line)
    return lines


def _four_letter(host: str, port: int, word: bytes, timeout: float) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(word)
        data = b""
        while len(data) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


# --- processes --------------------------------------------------------------------------------


def _stop(pid: int, name: str, timeout: float) -> None:
    """SIGTERM, wait (bounded), SIGKILL; reap the process if it is our child."""
    stop_pid(pid, lambda p: is_process(p, name), f"{name} server", timeout)


def _kill_pid_file(pid_file: Path, name: str) -> None:
    wait_for(pid_file.exists, 2.0)
    pid = read_pid(pid_file)
    if pid is not None:
        _stop(pid, name, STOP_TIMEOUT)
