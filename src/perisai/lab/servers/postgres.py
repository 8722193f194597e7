"""A real PostgreSQL cluster on a free loopback port: exposed (trust) or secured (scram).

initdb and postgres refuse to run as root, so under root they run as the ``postgres`` OS user
(``runuser``), in a private temporary directory that user owns: the caller's directory (say,
pytest's 0700 tmp dirs) may be unreachable for it. The server listens on TCP 127.0.0.1 only,
with no unix socket, so it never clashes with the machine's own cluster. ``pg_ctl start -w``
launches the postmaster and returns once it runs (the supervisor's
:func:`~perisai.lab.supervisor.daemonize` mode; the postmaster writes ``postmaster.pid``).
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import subprocess
import tempfile
from pathlib import Path

from perisai.lab.binaries import BinarySearch, PostgresBinaries, find_postgres, find_runuser
from perisai.lab.errors import LabError, ServerStartError
from perisai.lab.instances import Instance, twin_password
from perisai.lab.seed import seed_postgres
from perisai.lab.spec import ServerSpec
from perisai.lab.supervisor import (
    HOST,
    START_TIMEOUT,
    clean_env,
    daemonize,
    free_port,
    log_tail,
    start_with_retries,
)

__all__ = ["OS_USER", "SPEC", "SUPERUSER", "postgres_os_user", "start_postgres"]

OS_USER = "postgres"  # whom root runs the server as (Debian's package creates this user)
SUPERUSER = "postgres"  # the cluster's superuser role, as Debian and most images name it
INITDB_TIMEOUT = 120.0
_PORT_TAKEN = ("Address already in use", "could not bind")
# Disposable data: no fsync, small memory, so four clusters start fast on a small machine.
_SERVER_SETTINGS = "-c fsync=off -c shared_buffers=16MB -c max_connections=40"


def start_postgres(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    search: BinarySearch | None = None,
    timeout: float = START_TIMEOUT,
) -> Instance:
    """initdb a cluster, start it, and wait until the superuser can log in.

    Exposed clusters trust every TCP login from 127.0.0.1 (any existing role, no password).
    Secured ones require scram-sha-256 with ``password`` or, if None, a random one.
    The data lives in ``base_dir/name``, or under root in a temporary directory owned by the
    postgres user; either way :attr:`Instance.root` records it and ``stop()`` removes it.
    """
    password = twin_password(exposed, password, "an exposed PostgreSQL has no password")
    binaries = find_postgres(search)
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    owner: pwd.struct_passwd | None = None
    if as_root:
        prefix = [str(find_runuser(search)), "-u", OS_USER, "--"]
        owner = postgres_os_user()
        root = Path(tempfile.mkdtemp(prefix=f"perisai-pg-{name}-"))
        os.chown(root, owner.pw_uid, owner.pw_gid)
    else:
        root = base_dir / name
        root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    return start_with_retries(
        root,
        lambda: _start_once(name, root, binaries, prefix, exposed, password, timeout),
        lambda log: any(marker in log for marker in _PORT_TAKEN),
        prepare=lambda: _initdb(name, root, binaries, prefix, owner, password, timeout),
    )


def postgres_os_user() -> pwd.struct_passwd:
    """The OS user root runs PostgreSQL as; :class:`LabError` naming the package if absent."""
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        raise LabError(
            f"no '{OS_USER}' OS user to run PostgreSQL as (it refuses to run as root): "
            "install the Debian package 'postgresql', which creates it"
        ) from None


def _initdb(
    name: str,
    root: Path,
    binaries: PostgresBinaries,
    prefix: list[str],
    owner: pwd.struct_passwd | None,
    password: str | None,
    timeout: float,
) -> None:
    argv = [
        *prefix,
        str(binaries.initdb),
        "-D",
        str(root / "data"),
        "-U",
        SUPERUSER,
        "-E",
        "UTF8",
        "--no-locale",
        "--no-sync",
    ]
    pwfile = root / "pwfile"
    if password is None:
        argv.append("--auth=trust")
    else:
        pwfile.touch(mode=0o600)
        pwfile.write_text(password + "\n", encoding="utf-8")
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        argv += ["--auth-host=scram-sha-256", "--auth-local=scram-sha-256", f"--pwfile={pwfile}"]
    output = root / "initdb.log"
    try:
        with output.open("ab") as sink:
            try:
                code = subprocess.run(
                    argv,
                    cwd=root,
                    env=clean_env("PG"),  # PG* variables would steer initdb elsewhere
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    timeout=max(timeout, INITDB_TIMEOUT),
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
    finally:
        pwfile.unlink(missing_ok=True)
    if code != 0:
        reason = "initdb timed out" if code == -1 else f"initdb exited with {code}"
        raise ServerStartError(name, reason, log_tail(output))


def _start_once(
    name: str,
    root: Path,
    binaries: PostgresBinaries,
    prefix: list[str],
    exposed: bool,
    password: str | None,
    timeout: float,
) -> Instance:
    port = free_port()
    data = root / "data"
    log_file = root / "postgres.log"
    options = (
        f"-p {port} -c listen_addresses={HOST} -c unix_socket_directories='' {_SERVER_SETTINGS}"
    )
    argv = [
        *prefix,
        str(binaries.pg_ctl),
        "start",
        "-w",
        "-t",
        str(max(1, round(timeout))),
        "-D",
        str(data),
        "-l",
        str(log_file),
        "-o",
        options,
    ]
    launch = daemonize(
        name,
        argv,
        root / "pg_ctl.log",
        Instance.PROCESSES["postgres"],
        pid_file=data / "postmaster.pid",  # its first line is the postmaster's pid
        env=clean_env("PG"),  # PG* variables would steer pg_ctl elsewhere
        cwd=root,
        logs=[log_file],
        timeout=timeout + 10,
    )
    instance = Instance(
        name=name,
        service="postgres",
        host=HOST,
        port=port,
        exposed=exposed,
        user=SUPERUSER,
        password=password,
        pid=0,
        root=root,
        log_file=log_file,
        database="postgres",
    )
    pid = launch.await_ready(
        lambda: launch.current_pid() is not None and instance.answering(timeout=2.0),
        timeout,
        f"{HOST}:{port}",
    )
    return dataclasses.replace(instance, pid=pid)


SPEC = ServerSpec(
    service="postgres",
    find=find_postgres,
    start=start_postgres,
    seed=seed_postgres,
    exposed_seed={"ransom_note": True},
)
