"""Start a real MariaDB server on a free loopback port: exposed (root, no password) or secured.

``mariadb-install-db`` creates a private data directory and ``mariadbd`` serves it on TCP
127.0.0.1 and on a unix socket in the instance's own directory. Both run with
``--no-defaults``, so the machine's /etc/mysql configuration (port 3306, the system socket) is
never read and the machine's own MariaDB is never touched. Under root, mariadbd runs as the
``mysql`` OS user (``--user``) in a temporary directory that user owns: the caller's directory
(say, pytest's 0700 tmp dirs) may be unreachable for it.

mariadbd runs in the foreground, our child in its own session (the supervisor's
:func:`~perisai.lab.supervisor.spawn` mode).

mariadb-install-db creates the root accounts with an empty password; right after start, over
the unix socket, a secured server gives them ``password`` (or a random one) and ``start_mariadb``
returns only then. Anonymous accounts are dropped in both modes, so an exposed server holds
exactly one flaw (root without a password) and a secured one none.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

import pymysql

from perisai.lab.binaries import BinarySearch
from perisai.lab.errors import LabError, MissingBinary, ServerStartError
from perisai.lab.instances import (
    PROBE_TIMEOUT,
    Instance,
    twin_password,
    userinfo,
)
from perisai.lab.seed import (
    CHATLOG_DATABASE,
    RANSOM_BTC_ADDRESS,
    RANSOM_CONTACT,
    RANSOM_NOTE,
    SEED,
    chat_record,
    make_messages,
    make_people,
)
from perisai.lab.spec import ServerSpec
from perisai.lab.supervisor import (
    HOST,
    START_TIMEOUT,
    Process,
    clean_env,
    free_port,
    log_tail,
    read_pid,
    spawn,
    start_with_retries,
    wait_for,
)

__all__ = [
    "MARIADB_LOG_LINES",
    "MARIADB_MESSAGES",
    "MARIADB_PACKAGE",
    "MARIADB_RANSOM_DATABASE",
    "MARIADB_RANSOM_TABLE",
    "MARIADB_USERS",
    "OS_USER",
    "SERVICE",
    "SPEC",
    "SUPERUSER",
    "MariaDBBinaries",
    "MariaDBInstance",
    "find_mariadb",
    "general_log_path",
    "seed_mariadb",
    "socket_path",
    "start_mariadb",
]

MARIADB_PACKAGE = "mariadb-server"
SERVICE: str = "mysql"  # the probe's service name, which the lab's Instance records
OS_USER = "mysql"  # whom root runs mariadbd as (Debian's package creates this user)
SUPERUSER = "root"
PROCESS_NAME = "mariadbd"
INSTALL_TIMEOUT = 120.0
MARIADB_USERS = 80
MARIADB_MESSAGES = 500
MARIADB_LOG_LINES = 200
# The shape the 2020 MySQL extortion campaign left: a database PLEASE_READ_ME_<3 letters>
# holding a table WARNING with the note, a Bitcoin address and a contact e-mail.
MARIADB_RANSOM_DATABASE = "PLEASE_READ_ME_XMG"
MARIADB_RANSOM_TABLE = "WARNING"
_MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes, the last one a NUL
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_PORT_TAKEN = ("Address already in use", "Can't start server: Bind on TCP/IP port")
# Disposable data: small buffers and redo log, no binary log, no performance schema, so a few
# servers start fast on a small machine; names are never resolved (grants use 127.0.0.1).
_SERVER_SETTINGS = (
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=8M",
    "--innodb-flush-log-at-trx-commit=0",
    "--skip-log-bin",
    "--performance-schema=OFF",
    "--skip-name-resolve",
    "--max-connections=40",
)


@dataclasses.dataclass(frozen=True)
class MariaDBBinaries:
    """The server and the data-directory initialiser, from Debian's mariadb-server package."""

    mariadbd: Path
    install_db: Path


def find_mariadb(search: BinarySearch | None = None) -> MariaDBBinaries:
    """``mariadbd`` and ``mariadb-install-db``, or :class:`MissingBinary` naming the package."""
    path = (search or BinarySearch()).search_path()
    found: dict[str, Path] = {}
    for name in ("mariadbd", "mariadb-install-db"):
        hit = shutil.which(name, path=path)
        if hit is None:
            raise MissingBinary(name, MARIADB_PACKAGE)
        found[name] = Path(hit)
    return MariaDBBinaries(mariadbd=found["mariadbd"], install_db=found["mariadb-install-db"])


def socket_path(instance: Instance) -> Path:
    """The lab server's own unix socket (root can log in there without TCP)."""
    return instance.root / "run" / "mysqld.sock"


def general_log_path(instance: Instance) -> Path:
    """Where the server writes its general query log once ``general_log`` is switched on."""
    return instance.root / "general.log"


class MariaDBInstance(Instance):
    """A lab MariaDB: the lab's :class:`Instance`, logged into the MariaDB way."""

    PROCESSES: ClassVar = {SERVICE: Process(PROCESS_NAME)}

    def url_for(self, database: str | int) -> str:
        at = userinfo(self.user, self.password)
        return f"mysql://{at}{self.host}:{self.port}/{quote(str(database), safe='')}"

    def answering(self, timeout: float = PROBE_TIMEOUT) -> bool:
        try:
            conn = pymysql.connect(
                host=self.host,
                port=self.port,
                user=self.user or SUPERUSER,
                password=self.password or "",
                connect_timeout=timeout,
                read_timeout=timeout,
                write_timeout=timeout,
            )
        except (pymysql.err.MySQLError, OSError):
            return False
        conn.close()
        return True


def start_mariadb(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    search: BinarySearch | None = None,
    timeout: float = START_TIMEOUT,
) -> MariaDBInstance:
    """Initialise a data directory, start mariadbd and wait until root can log in over TCP.

    Exposed servers let ``root`` in from 127.0.0.1 with an empty password. Secured ones
    require ``password`` or, if None, a random one. The data lives in ``base_dir/name``, or
    under root in a temporary directory owned by the mysql user; either way
    :attr:`Instance.root` records it and ``stop()`` removes it.
    """
    password = twin_password(exposed, password, "an exposed MariaDB has no password")
    binaries = find_mariadb(search)
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        owner = mysql_os_user()
        root = Path(tempfile.mkdtemp(prefix=f"perisai-mariadb-{name}-"))
        os.chown(root, owner.pw_uid, owner.pw_gid)
    else:
        root = base_dir / name
        root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)

    def prepare() -> None:
        if len(str(root / "run" / "mysqld.sock")) > _MAX_SOCKET_PATH:
            raise LabError(f"{root} is too deep for a unix socket path: choose a shorter directory")
        (root / "run").mkdir(mode=0o700, exist_ok=True)
        if owner is not None:
            os.chown(root / "run", owner.pw_uid, owner.pw_gid)
        _install_db(name, root, binaries, owner, timeout)

    return start_with_retries(
        root,
        lambda: _start_once(name, root, binaries, owner, exposed, password, timeout),
        lambda log: any(marker in log for marker in _PORT_TAKEN),
        prepare=prepare,
    )


def mysql_os_user() -> pwd.struct_passwd:
    """The OS user root runs mariadbd as; :class:`LabError` naming the package if absent."""
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        raise LabError(
            f"no '{OS_USER}' OS user to run MariaDB as: install the Debian package "
            f"'{MARIADB_PACKAGE}', which creates it"
        ) from None


def _clean_env() -> dict[str, str]:
    """The environment minus MYSQL_* variables, which would steer the server tools elsewhere."""
    return clean_env("MYSQL", "MARIADB")


def _install_db(
    name: str,
    root: Path,
    binaries: MariaDBBinaries,
    owner: pwd.struct_passwd | None,
    timeout: float,
) -> None:
    argv = [
        str(binaries.install_db),
        "--no-defaults",  # must come first: never read /etc/mysql
        f"--datadir={root / 'data'}",
        "--auth-root-authentication-method=normal",  # root@… with an empty password, for now
        "--skip-test-db",
        "--skip-name-resolve",
        "--innodb-log-file-size=8M",
    ]
    if owner is not None:
        argv.append(f"--user={OS_USER}")
    output = root / "install-db.log"
    with output.open("ab") as sink:
        try:
            code = subprocess.run(
                argv,
                cwd=root,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=max(timeout, INSTALL_TIMEOUT),
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    if code != 0:
        reason = "mariadb-install-db timed out" if code == -1 else f"exited with {code}"
        raise ServerStartError(name, f"mariadb-install-db {reason}", log_tail(output))


def _start_once(
    name: str,
    root: Path,
    binaries: MariaDBBinaries,
    owner: pwd.struct_passwd | None,
    exposed: bool,
    password: str | None,
    timeout: float,
) -> MariaDBInstance:
    port = free_port()
    log_file = root / "error.log"
    pid_file = root / "run" / "mariadbd.pid"
    sock = root / "run" / "mysqld.sock"
    console = root / "mariadbd.out"
    for stale in (log_file, pid_file, console):
        stale.unlink(missing_ok=True)
    argv = [
        str(binaries.mariadbd),
        "--no-defaults",
        f"--datadir={root / 'data'}",
        f"--port={port}",
        f"--bind-address={HOST}",
        "--skip-networking=0",
        f"--socket={sock}",
        f"--pid-file={pid_file}",
        f"--log-error={log_file}",
        f"--general-log-file={root / 'general.log'}",
        "--log-output=FILE",
        *_SERVER_SETTINGS,
    ]
    if owner is not None:
        argv.append(f"--user={OS_USER}")
    launch = spawn(
        name,
        argv,
        console,
        MariaDBInstance.PROCESSES[SERVICE],
        env=_clean_env(),
        cwd=root,
        logs=[log_file],
    )

    def ready() -> bool:
        if "[ERROR] Aborting" in log_tail(log_file, 10):
            raise ServerStartError(name, "mariadbd exited at start", launch.tail())
        return sock.exists() and read_pid(pid_file) is not None

    pid = launch.await_ready(
        ready,
        timeout,
        str(sock),
        port_taken=lambda log: any(s in log for s in _PORT_TAKEN),
        interval=0.05,
    )
    try:
        _secure_accounts(name, sock, password, timeout, launch.tail)
    except BaseException:
        launch.abort()
        raise
    instance = MariaDBInstance(
        name=name,
        service=SERVICE,
        host=HOST,
        port=port,
        exposed=exposed,
        user=SUPERUSER,
        password=password,
        pid=pid,
        root=root,
        log_file=log_file,
        database="mysql",
    )
    launch.await_ready(lambda: instance.answering(timeout=2.0), timeout, f"{HOST}:{port}")
    return instance


def _secure_accounts(
    name: str, sock: Path, password: str | None, timeout: float, tail: Callable[[], str]
) -> None:
    """Over the unix socket: drop anonymous accounts and root@<hostname> (unused without name
    resolution), and give the loopback root accounts ``password``."""
    conn: pymysql.connections.Connection[pymysql.cursors.Cursor] | None = None

    def connected() -> bool:
        nonlocal conn
        try:
            conn = pymysql.connect(
                unix_socket=str(sock), user=SUPERUSER, password="", connect_timeout=2
            )
        except (pymysql.err.MySQLError, OSError):
            return False
        return True

    if not wait_for(connected, timeout, interval=0.1) or conn is None:
        raise ServerStartError(name, f"no root login on {sock} after {timeout:.0f} s", tail())
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT User, Host FROM mysql.user WHERE User IN ('', %s)", (SUPERUSER,))
            accounts = [(str(user), str(host)) for user, host in cursor.fetchall()]
            for user, host in accounts:
                if not user or host not in _LOOPBACK_HOSTS:
                    cursor.execute("DROP USER %s@%s", (user, host))
                elif password is not None:
                    cursor.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
    finally:
        conn.close()


_SCHEMA = (
    """CREATE TABLE users (
        id INT AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(100) NOT NULL,
        phone VARCHAR(32) NOT NULL,
        email VARCHAR(255) NOT NULL,
        device_id CHAR(36) NOT NULL,
        created_at DATETIME NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE messages (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        sender VARCHAR(20) NOT NULL,
        recipient VARCHAR(20) NOT NULL,
        body TEXT NOT NULL,
        lat DOUBLE,
        lon DOUBLE,
        sent_at DATETIME NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE gateway_log (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        line TEXT NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE app_config (
        k VARCHAR(64) PRIMARY KEY,
        v VARCHAR(255) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
)
_SEEDED_TABLES = ("users", "messages", "gateway_log", "app_config")
_APP_CONFIG = (
    ("max_upload_mb", "64"),
    ("typing_indicator", "true"),
    ("default_locale", "en_MY"),
    ("retention_days", "3650"),
)


def seed_mariadb(instance: Instance, *, ransom_note: bool = False, seed: int = SEED) -> None:
    """Create the ``chatlog`` database (users, messages, gateway_log, app_config) and, with
    ``ransom_note``, the extortion campaign's ``PLEASE_READ_ME_XMG.WARNING``; then ANALYZE
    TABLE so ``information_schema.TABLES.TABLE_ROWS`` holds real row counts."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(MARIADB_USERS, rng)
    messages = make_messages(people, MARIADB_MESSAGES, rng)
    conn = pymysql.connect(
        host=instance.host,
        port=instance.port,
        user=instance.user or SUPERUSER,
        password=instance.password or "",
        charset="utf8mb4",
        connect_timeout=5,
        autocommit=True,
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{CHATLOG_DATABASE}` CHARACTER SET utf8mb4")
            cursor.execute(f"USE `{CHATLOG_DATABASE}`")
            for statement in _SCHEMA:
                cursor.execute(statement)
            cursor.executemany(
                "INSERT INTO users (name, phone, email, device_id, created_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                [
                    (
                        person.name,
                        # Malaysian users typed their number the local way; the rest in E.164.
                        person.national if person.region == "MY" and n % 4 == 0 else person.e164,
                        person.email,
                        person.device_id,
                        (messages[0].sent_at - timedelta(days=rng.randrange(1, 700))).replace(
                            tzinfo=None
                        ),
                    )
                    for n, person in enumerate(people)
                ],
            )
            cursor.executemany(
                "INSERT INTO messages (sender, recipient, body, lat, lon, sent_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (
                        m.sender.msisdn,
                        m.recipient.msisdn,
                        m.body,
                        m.lat,
                        m.lon,
                        m.sent_at.replace(tzinfo=None),
                    )
                    for m in messages
                ],
            )
            cursor.executemany(
                "INSERT INTO gateway_log (line) VALUES (%s)",
                [(json.dumps(chat_record(m)),) for m in messages[:MARIADB_LOG_LINES]],
            )
            cursor.executemany("INSERT INTO app_config (k, v) VALUES (%s, %s)", _APP_CONFIG)
            tables = [f"`{CHATLOG_DATABASE}`.`{t}`" for t in _SEEDED_TABLES]
            if ransom_note:
                database, table = MARIADB_RANSOM_DATABASE, MARIADB_RANSOM_TABLE
                cursor.execute(f"CREATE DATABASE `{database}`")
                cursor.execute(
                    f"CREATE TABLE `{database}`.`{table}` (id INT PRIMARY KEY, warning TEXT, "
                    "Bitcoin_Address TEXT, Email TEXT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
                )
                cursor.execute(
                    f"INSERT INTO `{database}`.`{table}` VALUES (1, %s, %s, %s)",
                    (RANSOM_NOTE, RANSOM_BTC_ADDRESS, RANSOM_CONTACT),
                )
                tables.append(f"`{database}`.`{table}`")
            cursor.execute("ANALYZE TABLE " + ", ".join(tables))
            cursor.fetchall()
    finally:
        conn.close()


SPEC = ServerSpec(
    service=SERVICE,
    find=find_mariadb,
    start=start_mariadb,
    seed=seed_mariadb,
    exposed_seed={"ransom_note": True},
)
