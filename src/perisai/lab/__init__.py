"""A deliberately exposed local lab: every data store perisai probes, on loopback.

``Lab(state_dir).up()`` starts the servers of :data:`perisai.lab.catalog.CATALOG` (Debian's
packages, npm's pouchdb-server for CouchDB) on free 127.0.0.1 ports: an exposed and a secured
(random password) twin of each, seeded with synthetic data shaped like a messaging app's
logging database; a few exposed twins carry the marks of a visit (ransom notes, a cron job
planted through Redis) and one exposed Redis holds no personal data at all. ``services``
narrows the lab (the tests' own lab is just Redis and PostgreSQL).
``state_dir/lab.json`` (0600: it holds the passwords) records them for ``status()`` and
``down()``. Nothing here ever touches the machine's own servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from perisai.lab.binaries import (
    BinarySearch,
    PostgresBinaries,
    find_postgres,
    find_redis_server,
    install_packages,
    missing_packages,
)
from perisai.lab.catalog import CATALOG, CORE_SERVICES, SERVICES, LabServer, scan_ports, servers_for
from perisai.lab.errors import LabError, MissingBinaries, MissingBinary, ServerStartError
from perisai.lab.instances import Instance, LabInstance, instance_record, load_instance
from perisai.lab.seed import seed_postgres, seed_redis
from perisai.lab.servers.couchdb import MissingNpmPackage, install_pouchdb_server
from perisai.lab.servers.postgres import postgres_os_user, start_postgres
from perisai.lab.servers.redis import start_redis
from perisai.lab.supervisor import pid_running

__all__ = [
    "CATALOG",
    "CORE_SERVICES",
    "SERVICES",
    "STATE_FILE",
    "BinarySearch",
    "Instance",
    "Lab",
    "LabError",
    "LabInstance",
    "LabServer",
    "MissingBinary",
    "PostgresBinaries",
    "ServerStartError",
    "find_postgres",
    "find_redis_server",
    "install_packages",
    "missing_packages",
    "pid_running",
    "scan_ports",
    "seed_postgres",
    "seed_redis",
    "start_postgres",
    "start_redis",
]

STATE_FILE = "lab.json"
START_WORKERS = 6  # servers started at once (initdb, the JVM and Erlang are slow, not busy)
_STATE_VERSION = 2


class Lab:
    """The lab kept in ``state_dir``: ``up()``, ``status()``, ``down()``.

    ``search`` says where the server binaries are (tests point it at an empty directory to
    simulate a machine without them); ``services`` picks services of the catalog (None: all).
    Construction has no side effects beyond checking the service names.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        search: BinarySearch | None = None,
        services: Sequence[str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()  # servers chdir; relative paths would break
        self.search = search or BinarySearch()
        try:
            self.servers = servers_for(None if services is None else tuple(services))
        except ValueError as error:
            raise LabError(str(error)) from None

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(server.name for server in self.servers)

    def is_up(self) -> bool:
        """Whether this state dir records a lab (its servers may have died since)."""
        return self.state_file.exists()

    def up(self, install: bool = False) -> list[LabInstance]:
        """Start, seed and record the servers; on any failure stop those already started.

        Raises :class:`LabError` if a lab is already up here or the state dir holds other
        files, :class:`MissingBinary` if server packages are missing (``install=True`` installs
        them with apt-get when root, and pouchdb-server with npm), :class:`ServerStartError`
        if a server does not come up.
        """
        if self.is_up():
            raise LabError(f"a lab is already up in {self.state_dir}: run `perisai lab down` first")
        if self.state_dir.exists() and any(self.state_dir.iterdir()):
            raise LabError(
                f"{self.state_dir} is not empty and holds no lab: choose a new or empty directory"
            )
        missing = self._missing()
        if missing and install:
            install_packages(sorted({m.package for m in missing if not _npm(m)}))
            if any(_npm(m) for m in missing):
                install_pouchdb_server()
            missing = self._missing()
        if missing:
            raise _all_missing(missing)
        if os.geteuid() == 0 and any(s.service == "postgres" for s in self.servers):
            postgres_os_user()

        created = not self.state_dir.exists()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        started: dict[str, LabInstance] = {}
        lock = threading.Lock()

        def bring_up(server: LabServer) -> None:
            try:
                instance = server.start(
                    server.name, self.state_dir, exposed=server.exposed, search=self.search
                )
            except ServerStartError:
                # Once more: with 25 servers starting on 2 cores, a slow first start (initdb,
                # Erlang, the JVM) is more often load than a broken server. Starters remove
                # what a failed attempt left.
                instance = server.start(
                    server.name, self.state_dir, exposed=server.exposed, search=self.search
                )
            with lock:
                started[server.name] = instance
                # Recorded at once, so `down` can clean up even after a crash mid-way.
                self._save([started[n] for n in self.names if n in started])
            server.seed(instance, **server.seed_args)

        workers = min(START_WORKERS, len(self.servers))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="perisai-lab")
        try:
            futures = [pool.submit(bring_up, server) for server in self.servers]
            for future in futures:
                future.result()
            pool.shutdown()
        except BaseException:
            # Let the starts in flight finish (bounded by their timeouts), then stop them all.
            pool.shutdown(wait=True, cancel_futures=True)
            for instance in started.values():
                with contextlib.suppress(Exception):
                    instance.stop()
            if created:
                shutil.rmtree(self.state_dir, ignore_errors=True)
            else:  # the directory was there before: remove only what this call put in it
                self.state_file.unlink(missing_ok=True)
                for name in self.names:
                    shutil.rmtree(self.state_dir / name, ignore_errors=True)
            raise
        return [started[name] for name in self.names]

    def instances(self) -> list[LabInstance]:
        """The servers this state dir records (empty when no lab is up)."""
        if not self.is_up():
            return []
        try:
            document = json.loads(self.state_file.read_text(encoding="utf-8"))
            return [load_instance(item) for item in document["instances"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise LabError(f"{self.state_file} is unreadable ({error}): remove it") from error

    def status(self) -> list[tuple[LabInstance, bool]]:
        """Each recorded server and whether it answers a login now (empty: no lab is up)."""
        return [(instance, instance.answering()) for instance in self.instances()]

    def down(self) -> list[LabInstance]:
        """Stop every server and remove the state dir; returns the servers it stopped.

        With no lab up this is a no-op that returns an empty list (not an error), so a
        ``down`` after a ``down`` or a failed ``up`` is safe.
        """
        if not self.is_up():
            return []
        instances = self.instances()
        failures: list[str] = []
        for instance in instances:
            try:
                instance.stop()
            except LabError as error:
                failures.append(str(error))
        if failures:
            raise LabError("; ".join(failures))
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return instances

    def _missing(self) -> list[MissingBinary]:
        """What the chosen servers need and this machine lacks, each reported once."""
        missing: dict[str, MissingBinary] = {}
        for server in self.servers:
            try:
                server.find(self.search)
            except MissingBinary as error:
                missing.setdefault(error.package, error)
        return list(missing.values())

    def _save(self, instances: list[LabInstance]) -> None:
        """Write lab.json atomically, created 0600 since it holds the secured twins' passwords."""
        document = {
            "version": _STATE_VERSION,
            "instances": [instance_record(instance) for instance in instances],
        }
        partial = self.state_dir / f".{STATE_FILE}.tmp"
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
        partial.replace(self.state_file)


def _npm(missing: MissingBinary) -> bool:
    return isinstance(missing, MissingNpmPackage)


def _all_missing(missing: list[MissingBinary]) -> MissingBinary:
    """One error naming everything missing, so a user installs it all in one go."""
    if len(missing) == 1:
        return missing[0]
    debian = sorted({m.package for m in missing if not _npm(m)})
    return MissingBinaries(missing, debian, [str(m) for m in missing if _npm(m)])
