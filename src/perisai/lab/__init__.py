"""A deliberately exposed local lab: real Redis and PostgreSQL servers on loopback.

``Lab(state_dir).up()`` starts four servers from Debian's packages on free 127.0.0.1 ports: an
exposed (no password) and a secured (random password) twin of each, all seeded with synthetic
data shaped like a messaging app's logging database, and one ransom note in the exposed
PostgreSQL. ``state_dir/lab.json`` (0600: it holds the passwords) records them for ``status()``
and ``down()``. Nothing here ever touches the machine's own Redis or PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable
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
from perisai.lab.errors import LabError, MissingBinary, ServerStartError
from perisai.lab.instances import START_TIMEOUT, Instance, pid_running
from perisai.lab.postgres_server import postgres_os_user, start_postgres
from perisai.lab.redis_server import start_redis
from perisai.lab.seed import seed_postgres, seed_redis

__all__ = [
    "INSTANCE_NAMES",
    "STATE_FILE",
    "BinarySearch",
    "Instance",
    "Lab",
    "LabError",
    "MissingBinary",
    "PostgresBinaries",
    "ServerStartError",
    "find_postgres",
    "find_redis_server",
    "install_packages",
    "missing_packages",
    "pid_running",
    "seed_postgres",
    "seed_redis",
    "start_postgres",
    "start_redis",
]

Starter = Callable[[str], Instance]
Seeder = Callable[[Instance], object]

STATE_FILE = "lab.json"
INSTANCE_NAMES = ("redis-exposed", "redis-secured", "postgres-exposed", "postgres-secured")
_STATE_VERSION = 1


class Lab:
    """The lab kept in ``state_dir``: ``up()``, ``status()``, ``down()``.

    ``search`` says where the server binaries are (tests point it at an empty directory to
    simulate a machine without them). Construction has no side effects.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        search: BinarySearch | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()  # servers chdir; relative paths would break
        self.search = search or BinarySearch()
        self.start_timeout = start_timeout

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def is_up(self) -> bool:
        """Whether this state dir records a lab (its servers may have died since)."""
        return self.state_file.exists()

    def up(self, install: bool = False) -> list[Instance]:
        """Start, seed and record the four servers; on any failure stop those already started.

        Raises :class:`LabError` if a lab is already up here or the state dir holds other
        files, :class:`MissingBinary` if a server package is missing (``install=True`` installs
        it with apt-get when root), :class:`ServerStartError` if a server does not come up.
        """
        if self.is_up():
            raise LabError(f"a lab is already up in {self.state_dir}: run `perisai lab down` first")
        if self.state_dir.exists() and any(self.state_dir.iterdir()):
            raise LabError(
                f"{self.state_dir} is not empty and holds no lab: choose a new or empty directory"
            )
        if install:
            install_packages(missing_packages(self.search))
        find_redis_server(self.search)  # fail before starting anything
        find_postgres(self.search)
        if os.geteuid() == 0:
            postgres_os_user()

        created = not self.state_dir.exists()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        plan: list[tuple[str, Starter, Seeder]] = [
            ("redis-exposed", self._redis(exposed=True), _seed_with_payload),
            ("redis-secured", self._redis(exposed=False), seed_redis),
            ("postgres-exposed", self._postgres(exposed=True), _seed_with_note),
            ("postgres-secured", self._postgres(exposed=False), seed_postgres),
        ]
        started: dict[str, Instance] = {}
        lock = threading.Lock()

        def bring_up(name: str, start: Starter, seed: Seeder) -> None:
            instance = start(name)
            with lock:
                started[name] = instance
                # Recorded at once, so `down` can clean up even after a crash mid-way.
                self._save([started[n] for n in INSTANCE_NAMES if n in started])
            seed(instance)

        # In parallel: initdb dominates, and the four servers are independent.
        pool = ThreadPoolExecutor(max_workers=len(plan), thread_name_prefix="perisai-lab")
        try:
            futures = [pool.submit(bring_up, *step) for step in plan]
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
                for name in INSTANCE_NAMES:
                    shutil.rmtree(self.state_dir / name, ignore_errors=True)
            raise
        return [started[name] for name in INSTANCE_NAMES]

    def instances(self) -> list[Instance]:
        """The servers this state dir records (empty when no lab is up)."""
        if not self.is_up():
            return []
        try:
            document = json.loads(self.state_file.read_text(encoding="utf-8"))
            return [Instance.from_json(item) for item in document["instances"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise LabError(f"{self.state_file} is unreadable ({error}): remove it") from error

    def status(self) -> list[tuple[Instance, bool]]:
        """Each recorded server and whether it answers a login now (empty: no lab is up)."""
        return [(instance, instance.answering()) for instance in self.instances()]

    def down(self) -> list[Instance]:
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

    def _redis(self, *, exposed: bool) -> Starter:
        def start(name: str) -> Instance:
            return start_redis(
                name,
                self.state_dir,
                exposed=exposed,
                search=self.search,
                timeout=self.start_timeout,
            )

        return start

    def _postgres(self, *, exposed: bool) -> Starter:
        def start(name: str) -> Instance:
            return start_postgres(
                name,
                self.state_dir,
                exposed=exposed,
                search=self.search,
                timeout=self.start_timeout,
            )

        return start

    def _save(self, instances: list[Instance]) -> None:
        """Write lab.json atomically, created 0600 since it holds the secured twins' passwords."""
        document = {"version": _STATE_VERSION, "instances": [i.to_json() for i in instances]}
        partial = self.state_dir / f".{STATE_FILE}.tmp"
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
        partial.replace(self.state_file)


def _seed_with_payload(instance: Instance) -> None:
    """The exposed Redis is the one a Redis-to-shell bot has visited."""
    seed_redis(instance, planted_payload=True)


def _seed_with_note(instance: Instance) -> None:
    """The exposed PostgreSQL is the one store in the lab an extortion bot has visited."""
    seed_postgres(instance, ransom_note=True)
