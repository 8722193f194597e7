"""The lab's one process supervisor: how a server is launched, awaited, retried and stopped.

Two launch modes, and every server uses one of them:

- :func:`spawn`: the server runs in the foreground as our child, in a session of its own
  (``posix_spawn``, so no ``Popen`` object is left to warn about a child still running), stdin
  from /dev/null and its output appended to its log; we keep its pid and :func:`stop_pid`
  reaps it.
- :func:`daemonize`: a launcher runs to completion (a server that daemonizes itself, ``pg_ctl
  start``, ``setsid -f``) and the server writes its pid file.

Either way :meth:`Launch.await_ready` polls the server's readiness check, fails fast when the
process died or its log shows a port taken, and on any failure stops what was started and
raises :class:`ServerStartError` with the log's tail; :func:`start_with_retries` retries a start
whose free port was taken between the pick and the bind. Stopping signals the recorded pid
(after checking it is still the server, not a recycled pid) and waits, bounded, before
escalating. Daemons are reparented to PID 1, which in a container may never reap them, so a
zombie counts as stopped.

Every server keeps the same restrictions: loopback only (:data:`HOST`), free ports, passwords
in 0600 files (never on a command line), environments cleaned of variables that would steer a
server at the system's own files (:func:`clean_env`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from perisai.lab.errors import LabError, ServerStartError

__all__ = [
    "HOST",
    "PORT_ATTEMPTS",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "Launch",
    "Process",
    "clean_env",
    "daemonize",
    "free_port",
    "free_ports",
    "is_process",
    "log_tail",
    "make_root",
    "pid_running",
    "read_pid",
    "reap",
    "reset_dir",
    "spawn",
    "start_with_retries",
    "stop_pid",
    "wait_for",
]

T = TypeVar("T")

HOST = "127.0.0.1"  # the lab binds loopback only, never a routable address
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
LAUNCH_TIMEOUT = 30.0  # how long a daemonizing launcher may take to hand over
PORT_ATTEMPTS = 3  # another process may grab the free port between our pick and the bind


@dataclass(frozen=True)
class Process:
    """How to recognise a server's process and stop it cleanly.

    ``name`` is what /proc/<pid>/comm holds (the kernel cuts it at 15 characters), or with
    ``in_cmdline`` a mark in its command line (a node script's comm is just ``node``);
    ``stop_signal`` is its quickest clean stop (SIGINT is the postmaster's "fast" mode).
    """

    name: str
    stop_signal: signal.Signals = signal.SIGTERM
    in_cmdline: bool = False

    def matches(self, pid: int) -> bool:
        """Live, and still this kind of server (guards against a recycled pid)."""
        if not self.in_cmdline:
            return is_process(pid, self.name)
        if not pid_running(pid):
            return False
        try:
            return self.name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return True  # no /proc to check against: trust the pid we recorded

    def stop(self, pid: int, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server at ``pid`` if it is still ours: clean first, then SIGKILL."""
        stop_pid(pid, self.matches, f"{self.name} server", timeout, first=self.stop_signal)


@dataclass(frozen=True)
class Launch:
    """A server process on its way up: its pid (:func:`spawn`) or its pid file
    (:func:`daemonize`), and the logs whose tails explain a failure."""

    name: str
    process: Process
    logs: tuple[Path, ...]
    pid: int | None = None
    pid_file: Path | None = None
    cleanup: Callable[[], None] | None = field(default=None, compare=False)

    def current_pid(self) -> int | None:
        """The server's pid: the one spawned, or what its pid file says (None: not yet)."""
        if self.pid is not None:
            return self.pid
        return None if self.pid_file is None else read_pid(self.pid_file)

    def tail(self, lines: int = 20) -> str:
        """The first non-empty tail of the logs, for an error message."""
        return next((t for t in (log_tail(p, lines) for p in self.logs) if t), "")

    def recent(self, lines: int) -> str:
        """The last ``lines`` of every log together (where a taken port shows up)."""
        return "\n".join(log_tail(p, lines) for p in self.logs)

    def abort(self) -> None:
        """Stop what this launch started (a failed start leaves nothing running)."""
        if self.pid is not None:
            # Our own child, not yet reaped, so the pid cannot have been recycled: stop it even
            # while its name is still the launching shell's.
            with suppress(LabError):
                stop_pid(self.pid, pid_running, self.name, first=self.process.stop_signal)
        elif self.pid_file is not None:
            wait_for(self.pid_file.exists, 2.0)  # a daemon may not have written it yet
            pid = read_pid(self.pid_file)
            if pid is not None:
                with suppress(LabError):
                    self.process.stop(pid)
        if self.cleanup is not None:
            self.cleanup()

    def await_ready(
        self,
        ready: Callable[[], bool],
        timeout: float,
        where: str,
        *,
        port_taken: Callable[[str], bool] | None = None,
        log_lines: int = 10,
        interval: float = 0.1,
        not_yet: tuple[type[Exception], ...] = (),
    ) -> int:
        """Poll ``ready()`` until it holds; the server's pid.

        Fails fast when a spawned server exits or the logs show a port taken; ``ready``
        raising one of ``not_yet`` counts as not ready. On a failure or after ``timeout``
        seconds the server is stopped and :class:`ServerStartError` raised with its log.
        """

        def check() -> bool:
            recent = self.recent(log_lines)
            if port_taken is not None and port_taken(recent):
                raise ServerStartError(self.name, f"a port of {where} is taken", recent.strip())
            if self.pid is not None and not pid_running(self.pid):
                raise ServerStartError(self.name, "the server exited", self.tail())
            try:
                return ready()
            except ServerStartError:
                raise
            except not_yet:
                return False

        try:
            if not wait_for(check, timeout, interval):
                raise ServerStartError(
                    self.name, f"no answer on {where} after {timeout:.0f} s", self.tail()
                )
            pid = self.current_pid()
            if pid is None:
                raise ServerStartError(self.name, "no pid file", self.tail())
        except BaseException:
            self.abort()
            raise
        return pid


def spawn(
    name: str,
    argv: Sequence[str | Path],
    log_file: Path,
    process: Process,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    logs: Sequence[Path] = (),
) -> Launch:
    """Start a foreground server as our child in its own session (a Ctrl-C aimed at the caller
    does not reach it first), its output appended to ``log_file`` (created 0600).

    ``cwd``: ``posix_spawn`` cannot change directory, so ``/bin/sh`` does and then ``exec``s
    the server, which keeps the pid. ``logs`` are other logs worth showing on a failure.
    """
    command = [str(part) for part in argv]
    if cwd is not None:
        command = ["/bin/sh", "-c", 'cd -- "$0" && exec "$@"', str(cwd), *command]
    pid = os.posix_spawn(
        command[0],
        command,
        dict(os.environ) if env is None else env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    return Launch(name, process, (*logs, log_file), pid=pid)


def daemonize(
    name: str,
    argv: Sequence[str | Path],
    output: Path,
    process: Process,
    *,
    pid_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    logs: Sequence[Path] = (),
    timeout: float = LAUNCH_TIMEOUT,
    cleanup: Callable[[], None] | None = None,
) -> Launch:
    """Run a launcher that leaves the server running on its own (it daemonizes, or a tool
    starts it) and returns; the server writes ``pid_file``. The launcher's output goes to
    ``output`` (a file: a pipe could be held open by the daemon); a launcher that fails or
    hangs is :class:`ServerStartError` with the logs' tail. ``cleanup`` runs after a failed
    start is stopped (a helper process the server started, say)."""
    launch = Launch(name, process, (*logs, output), pid_file=pid_file, cleanup=cleanup)
    with output.open("ab") as sink:
        try:
            code = subprocess.run(
                [str(part) for part in argv],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    if code != 0:
        launch.abort()
        reason = "timed out" if code == -1 else f"exited with {code}"
        raise ServerStartError(name, f"{Path(str(argv[0])).name} {reason}", launch.tail())
    return launch


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
        return int(pid_file.read_text(encoding="ascii").strip().splitlines()[0])
    except (OSError, ValueError, IndexError):
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


def reset_dir(root: Path) -> None:
    """Empty ``root`` before another start attempt (a half-started server leaves data behind)."""
    for entry in root.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


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
