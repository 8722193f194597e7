"""A real standalone ZooKeeper on a free loopback port: exposed or secured, and its seeder.

ZooKeeper (Debian package ``zookeeper``) runs from ``zookeeper.jar`` with its own ``dataDir``,
``clientPort`` on 127.0.0.1 and the admin HTTP server disabled, in the foreground: our child in
its own session (the supervisor's :func:`~perisai.lab.supervisor.spawn` mode). Its transaction
log (``dataDir/version-2/log.*``) records every change the server accepted, so tests read it as
a write log. The exposed twin leaves its znodes open to ``world:anyone`` and answers the
``srvr`` and ``mntr`` four-letter words; the secured twin guards every seeded znode with a
``digest`` ACL, so anonymous reads fail with NoAuth, and answers ``srvr`` only (the default).
"""

from __future__ import annotations

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

from perisai.lab.binaries import BinarySearch
from perisai.lab.errors import LabError, MissingBinary
from perisai.lab.instances import Instance, twin_password
from perisai.lab.seed import RANSOM_NOTE, SEED, make_people
from perisai.lab.spec import ServerSpec
from perisai.lab.supervisor import (
    HOST,
    START_TIMEOUT,
    Process,
    free_port,
    make_root,
    spawn,
    start_with_retries,
)

__all__ = [
    "SPEC",
    "ZOOKEEPER_APP_ROOT",
    "ZOOKEEPER_PACKAGE",
    "ZOOKEEPER_RANSOM_ZNODE",
    "ZOOKEEPER_USERS",
    "ZooKeeperInstance",
    "find_zookeeper",
    "seed_zookeeper",
    "start_zookeeper",
    "zookeeper_transactions",
]

ZOOKEEPER_PACKAGE = "zookeeper"
LAB_USER = "perisai"  # the one user of a secured twin (its digest ACL identity)
ZOOKEEPER_APP_ROOT = "/chat"
ZOOKEEPER_USERS = 12
ZOOKEEPER_RANSOM_ZNODE = "/README_TO_RECOVER_YOUR_DATA"

_JAVA_DIR = Path("/usr/share/java")
_IO_TIMEOUT = 5.0


@dataclass(frozen=True)
class ZooKeeperJars:
    """The java launcher and the class path of Debian's ZooKeeper server."""

    java: Path
    classpath: str


@dataclass(frozen=True)
class ZooKeeperInstance(Instance):
    """An :class:`Instance` of ZooKeeper (a JVM: its process is ``java``)."""

    PROCESSES: ClassVar[Mapping[str, Process]] = {"zookeeper": Process("java")}

    def answering(self, timeout: float = 2.0) -> bool:
        try:
            answer = _four_letter(self.host, self.port, b"srvr", timeout)
        except OSError:
            return False
        return answer.startswith(b"Zookeeper version")


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


def start_zookeeper(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    extra_config: Sequence[str] = (),
    search: BinarySearch | None = None,
    timeout: float = START_TIMEOUT,
) -> ZooKeeperInstance:
    """Start a standalone ZooKeeper under ``base_dir/name`` on a free 127.0.0.1 port.

    The secured twin's ``password`` (random if None) is the ``digest`` secret of the user
    ``perisai`` that :func:`seed_zookeeper` puts in every seeded znode's ACL. ``extra_config``
    lines are appended to zoo.cfg as they are (e.g. ``enforce.auth.enabled=true``).
    """
    password = twin_password(exposed, password, "an exposed ZooKeeper has no password")
    jars = find_zookeeper(search)
    root = make_root(base_dir, name)
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
) -> ZooKeeperInstance:
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
    launch = spawn(name, argv, log_file, ZooKeeperInstance.PROCESSES["zookeeper"])

    def ready() -> bool:
        answer = _four_letter(HOST, port, b"srvr", 1.0)
        return answer.startswith(b"Zookeeper version") and b"Mode: standalone" in answer

    pid = launch.await_ready(ready, timeout, f"{HOST}:{port}", not_yet=(OSError,))
    return ZooKeeperInstance(
        name=name,
        service="zookeeper",
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


SPEC = ServerSpec(
    service="zookeeper",
    find=find_zookeeper,
    start=start_zookeeper,
    seed=seed_zookeeper,
)
