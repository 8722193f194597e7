"""Start npm's ``pouchdb-server`` (CouchDB's HTTP API) on a free loopback port, and seed it.

Debian ships no CouchDB; PouchDB Server speaks the same REST API (``/_session``, ``/_all_dbs``,
``_all_docs``, ``_security``…) and installs from the npm registry into a cache directory
(:func:`npm_prefix`, ``$PERISAI_NPM_PREFIX`` or ``~/.cache/perisai/npm``) with
:func:`install_pouchdb_server`, i.e.
``npm install --prefix ~/.cache/perisai/npm --no-audit --no-fund pouchdb-server@4.2.0``.

- Exposed: no admin configured, the "admin party": anonymous requests hold the ``_admin`` role.
- Secured: an ``admin`` server admin with a password (random unless given). Like CouchDB 2,
  PouchDB Server lets anonymous users read a database that has no ``_security`` members, so
  :func:`seed_couchdb` gives every database it creates members (``_admin`` only) on a secured
  server: anonymous reads are then refused with 401.

Settings live in a 0600 ``config.json`` (the server replaces the plaintext admin password with
a PBKDF2 hash at start), never on the command line. The server writes one access-log line per
request to :attr:`Instance.log_file` (``… 127.0.0.1 - - GET /chatlog 200``), which the tests read
to prove a probe sent only GET requests. The server runs in the foreground, our child in its own
session (the supervisor's :func:`~perisai.lab.supervisor.spawn` mode).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from perisai.lab.binaries import BinarySearch
from perisai.lab.errors import LabError, MissingBinary
from perisai.lab.instances import PROBE_TIMEOUT, Instance, twin_password, userinfo
from perisai.lab.seed import (
    CHATLOG_DATABASE,
    RANSOM_NOTE,
    RANSOM_TABLE,
    SEED,
    make_messages,
    make_people,
    timestamp,
)
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
    "ADMIN_USER",
    "COUCH_MESSAGES",
    "COUCH_USERS",
    "POUCHDB_PACKAGE",
    "POUCHDB_VERSION",
    "RANSOM_DATABASE",
    "SERVICE",
    "SPEC",
    "USERS_DATABASE",
    "CouchDBInstance",
    "MissingNpmPackage",
    "find_pouchdb_server",
    "install_pouchdb_server",
    "npm_prefix",
    "seed_couchdb",
    "start_couchdb",
]

SERVICE = "couchdb"
POUCHDB_PACKAGE = "pouchdb-server"
POUCHDB_VERSION = "4.2.0"
ADMIN_USER = "admin"
USERS_DATABASE = "users"
RANSOM_DATABASE = RANSOM_TABLE.lower()  # CouchDB database names are lower case
COUCH_MESSAGES = 150
COUCH_USERS = 40
NPM_INSTALL_TIMEOUT = 900.0
_PORT_TAKEN = "eaddrinuse"


class MissingNpmPackage(MissingBinary):
    """An npm-installed server is missing; the message says the exact npm command."""

    def __init__(self, binary: str, package: str, prefix: Path) -> None:
        self.binary = binary
        self.package = package
        LabError.__init__(
            self,
            f"{binary} not found: install it with `npm install --prefix {prefix} --no-audit "
            f"--no-fund {package}@{POUCHDB_VERSION}` (or set PERISAI_NPM_PREFIX to where it is)",
        )


def npm_prefix() -> Path:
    """Where npm-installed lab servers live: ``$PERISAI_NPM_PREFIX``, else the user's cache."""
    configured = os.environ.get("PERISAI_NPM_PREFIX")
    if configured:
        return Path(configured).expanduser().absolute()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "perisai" / "npm"


def find_pouchdb_server(
    search: BinarySearch | None = None, prefix: Path | None = None
) -> tuple[Path, Path]:
    """``node`` and the ``pouchdb-server`` script (from ``prefix``, else from PATH)."""
    path = (search or BinarySearch()).search_path()
    node = shutil.which("node", path=path) or shutil.which("nodejs", path=path)
    if node is None:
        raise MissingBinary("node", "nodejs")
    where = prefix or npm_prefix()
    script = where / "node_modules" / ".bin" / POUCHDB_PACKAGE
    if not script.exists():
        found = shutil.which(POUCHDB_PACKAGE, path=path)
        if found is None:
            raise MissingNpmPackage(POUCHDB_PACKAGE, POUCHDB_PACKAGE, where)
        script = Path(found)
    return Path(node), script.resolve()


def install_pouchdb_server(prefix: Path | None = None) -> Path:
    """``npm install`` pouchdb-server into ``prefix`` (default :func:`npm_prefix`); the prefix."""
    where = prefix or npm_prefix()
    npm = shutil.which("npm", path=BinarySearch().search_path())
    if npm is None:
        raise MissingBinary("npm", "npm")
    where.mkdir(parents=True, exist_ok=True)
    argv = [
        npm,
        "install",
        "--prefix",
        str(where),
        "--no-audit",
        "--no-fund",
        f"{POUCHDB_PACKAGE}@{POUCHDB_VERSION}",
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=NPM_INSTALL_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise LabError(f"`{' '.join(argv)}` took more than {NPM_INSTALL_TIMEOUT:.0f} s") from error
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise LabError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {tail}")
    return where


class CouchDBInstance(Instance):
    """A lab PouchDB Server: the lab's :class:`Instance`, reached over HTTP."""

    # A node script: its comm is "node", its command line names the server.
    PROCESSES: ClassVar = {SERVICE: Process(POUCHDB_PACKAGE, in_cmdline=True)}

    def url_for(self, database: str | int) -> str:
        at = userinfo(self.user, self.password)
        return f"http://{at}{self.host}:{self.port}/{quote(str(database), safe='')}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` without credentials."""
        return f"http://{self.host}:{self.port}"

    def client(self, timeout: float = 10.0) -> httpx.Client:
        """A client for the lab's own use (seeding, checks), logged in when secured."""
        auth = None
        if self.password is not None:
            auth = httpx.BasicAuth(self.user or ADMIN_USER, self.password)
        return httpx.Client(base_url=self.base_url, auth=auth, timeout=timeout, trust_env=False)

    def answering(self, timeout: float = PROBE_TIMEOUT) -> bool:
        try:
            with self.client(timeout) as client:
                return client.get("/_session").status_code == 200
        except httpx.HTTPError:
            return False


def start_couchdb(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    search: BinarySearch | None = None,
    prefix: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> CouchDBInstance:
    """Start pouchdb-server under ``base_dir/name`` and wait until it answers.

    Exposed servers run an admin party; secured ones (``exposed=False``) have the server admin
    ``admin`` with ``password`` or, if None, a random one.
    """
    password = twin_password(exposed, password, "an exposed CouchDB has no password")
    node, script = find_pouchdb_server(search, prefix)
    root = make_root(base_dir, name)
    return start_with_retries(
        root,
        lambda: _start_once(name, root, node, script, exposed, password, timeout),
        lambda log: _PORT_TAKEN in log.lower(),
    )


def _start_once(
    name: str,
    root: Path,
    node: Path,
    script: Path,
    exposed: bool,
    password: str | None,
    timeout: float,
) -> CouchDBInstance:
    port = free_port()
    data = root / "data"
    data.mkdir(exist_ok=True)
    log_file = root / "access.log"
    server_out = root / "server.out"
    config_file = root / "config.json"
    for stale in (log_file, server_out, config_file):
        stale.unlink(missing_ok=True)
    config: dict[str, Any] = {"log": {"file": str(log_file), "level": "info"}}
    if password is not None:
        config["admins"] = {ADMIN_USER: password}
    config_file.touch(mode=0o600)
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    argv = [
        str(node),
        str(script),
        "--port",
        str(port),
        "--host",
        HOST,
        "--dir",
        str(data),
        "--config",
        str(config_file),
        "--no-stdout-logs",
        "--no-color",
    ]
    launch = spawn(
        name,
        argv,
        server_out,
        CouchDBInstance.PROCESSES[SERVICE],
        cwd=root,
    )
    instance = CouchDBInstance(
        name=name,
        service=SERVICE,
        host=HOST,
        port=port,
        exposed=exposed,
        user=None if exposed else ADMIN_USER,
        password=password,
        pid=0,
        root=root,
        log_file=log_file,
        database="",
    )
    pid = launch.await_ready(
        lambda: instance.answering(timeout=1.0), timeout, f"{HOST}:{port}", interval=0.1
    )
    return dataclasses.replace(instance, pid=pid)


def seed_couchdb(instance: Instance, *, ransom_note: bool = False, seed: int = SEED) -> int:
    """Create ``chatlog`` (chat-gateway log documents) and ``users`` (profiles), optionally the
    ransom-note database, and lock each to admins on a secured server; the documents written."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(COUCH_USERS, rng)
    messages = make_messages(people, COUCH_MESSAGES, rng)
    databases: dict[str, list[dict[str, Any]]] = {
        CHATLOG_DATABASE: [
            {
                "_id": f"msg:{n:05d}",
                "ts": timestamp(m),
                "event": "message.delivered",
                "msisdn": m.sender.msisdn,
                "to": m.recipient.e164,
                "msg": m.body,
                "location": {"lat": m.lat, "lon": m.lon},
                "device_id": m.sender.device_id,
            }
            for n, m in enumerate(messages, start=1)
        ],
        USERS_DATABASE: [
            {
                "_id": f"user:{n:04d}",
                "name": p.name,
                "phone": p.national if p.region == "MY" and n % 3 == 0 else p.e164,
                "email": p.email,
                "country": p.region,
            }
            for n, p in enumerate(people, start=1)
        ],
    }
    if ransom_note:
        databases[RANSOM_DATABASE] = [{"_id": "README", "note": RANSOM_NOTE}]
    written = 0
    secured = instance.password is not None
    auth = (
        httpx.BasicAuth(instance.user or ADMIN_USER, instance.password or "") if secured else None
    )
    base = f"http://{instance.host}:{instance.port}"
    with httpx.Client(base_url=base, auth=auth, timeout=30.0, trust_env=False) as client:
        for name, docs in databases.items():
            path = "/" + quote(name, safe="")
            _check(client.put(path), f"create database {name}")
            _check(client.post(f"{path}/_bulk_docs", json={"docs": docs}), f"seed {name}")
            written += len(docs)
            if secured:
                security = {
                    "admins": {"names": [], "roles": []},
                    "members": {"names": [], "roles": ["_admin"]},
                }
                _check(client.put(f"{path}/_security", json=security), f"lock {name}")
    return written


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code >= 300:
        raise LabError(f"{what}: HTTP {response.status_code} {response.text[:200]}")


SPEC = ServerSpec(
    service=SERVICE,
    find=find_pouchdb_server,
    start=start_couchdb,
    seed=seed_couchdb,
    exposed_seed={"ransom_note": True},
)
