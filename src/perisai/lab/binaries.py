"""Find the Debian server binaries the lab runs, and install their packages on request.

The lab never uses the machine's running services: it starts its own servers from the same
binaries. Where to look is a parameter (:class:`BinarySearch`) so tests can point it at an empty
directory instead of uninstalling anything.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from perisai.lab.errors import LabError, MissingBinary

__all__ = [
    "DEFAULT_POSTGRES_ROOT",
    "POSTGRES_PACKAGE",
    "REDIS_PACKAGE",
    "BinarySearch",
    "PostgresBinaries",
    "find_postgres",
    "find_redis_server",
    "find_runuser",
    "install_packages",
    "missing_packages",
]

REDIS_PACKAGE = "redis-server"
POSTGRES_PACKAGE = "postgresql"
DEFAULT_POSTGRES_ROOT = Path("/usr/lib/postgresql")
# Debian puts redis-server in /usr/bin and runuser in /usr/sbin; root's PATH may lack either.
_SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

APT_UPDATE_TIMEOUT = 300.0
APT_INSTALL_TIMEOUT = 900.0


@dataclass(frozen=True)
class BinarySearch:
    """Where to look: ``path`` is a PATH-style list for redis-server (None: $PATH and the
    system directories); ``postgres_root`` holds Debian's ``<version>/bin`` directories."""

    path: str | None = None
    postgres_root: Path = DEFAULT_POSTGRES_ROOT

    def search_path(self) -> str:
        """The PATH string searched for plain executables."""
        if self.path is not None:
            return self.path
        return os.pathsep.join([os.environ.get("PATH", ""), *_SYSTEM_DIRS])


@dataclass(frozen=True)
class PostgresBinaries:
    """One PostgreSQL major version's server programs."""

    version: str
    bin_dir: Path

    @property
    def initdb(self) -> Path:
        return self.bin_dir / "initdb"

    @property
    def pg_ctl(self) -> Path:
        return self.bin_dir / "pg_ctl"

    @property
    def postgres(self) -> Path:
        return self.bin_dir / "postgres"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split("."))


def find_binary(name: str, package: str, search: BinarySearch | None = None) -> Path:
    """The executable ``name`` on the search path, or :class:`MissingBinary` naming ``package``
    (the Debian package that installs it)."""
    found = shutil.which(name, path=(search or BinarySearch()).search_path())
    if found is None:
        raise MissingBinary(name, package)
    return Path(found)


def find_redis_server(search: BinarySearch | None = None) -> Path:
    """The ``redis-server`` executable, or :class:`MissingBinary` naming its package."""
    return find_binary("redis-server", REDIS_PACKAGE, search)


def find_postgres(search: BinarySearch | None = None) -> PostgresBinaries:
    """The highest installed PostgreSQL version that has initdb, pg_ctl and postgres."""
    root = (search or BinarySearch()).postgres_root
    candidates: list[PostgresBinaries] = []
    if root.is_dir():
        for entry in root.iterdir():
            if not all(part.isdigit() for part in entry.name.split(".")):
                continue
            binaries = PostgresBinaries(version=entry.name, bin_dir=entry / "bin")
            if all(
                _is_executable(p) for p in (binaries.initdb, binaries.pg_ctl, binaries.postgres)
            ):
                candidates.append(binaries)
    if not candidates:
        raise MissingBinary(
            f"PostgreSQL server (initdb, pg_ctl, postgres under {root})", "postgresql"
        )
    return max(candidates, key=lambda b: _version_key(b.version))


def find_runuser(search: BinarySearch | None = None) -> Path:
    """``runuser`` (util-linux), with which root starts PostgreSQL as the postgres user."""
    return find_binary("runuser", "util-linux", search)


def missing_packages(search: BinarySearch | None = None) -> list[str]:
    """The Debian packages the lab needs that are not installed (empty when all are)."""
    missing: list[str] = []
    try:
        find_redis_server(search)
    except MissingBinary:
        missing.append(REDIS_PACKAGE)
    try:
        find_postgres(search)
    except MissingBinary:
        missing.append(POSTGRES_PACKAGE)
    if os.geteuid() == 0 and POSTGRES_PACKAGE not in missing and not _has_postgres_user():
        missing.append(POSTGRES_PACKAGE)  # the package creates the user root runs servers as
    return missing


def _has_postgres_user() -> bool:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


def install_packages(packages: Sequence[str]) -> None:
    """``apt-get update`` once, then install ``packages``; root only, so others get told how."""
    if not packages:
        return
    names = " ".join(packages)
    if os.geteuid() != 0:
        raise LabError(
            f"installing {names} needs root: run `sudo apt-get install -y {names}` "
            "or `sudo perisai lab up --install`"
        )
    apt_get = shutil.which("apt-get", path=BinarySearch().search_path())
    if apt_get is None:
        raise LabError(f"apt-get not found: install {names} with your system's package manager")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    steps = (
        ([apt_get, "update", "-qq"], APT_UPDATE_TIMEOUT),
        (
            [apt_get, "install", "-y", "-qq", "--no-install-recommends", *packages],
            APT_INSTALL_TIMEOUT,
        ),
    )
    for argv, timeout in steps:
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, env=env, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise LabError(f"`{' '.join(argv)}` took more than {timeout:.0f} s") from error
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise LabError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {tail}")
