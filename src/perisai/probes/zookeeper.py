"""ZooKeeper: four-letter words, then an anonymous kazoo session that only reads.

Sent, and nothing else: the four-letter words ``srvr`` and ``mntr`` (each on its own
connection; ZooKeeper ≥ 3.5 runs only whitelisted words — ``srvr`` by default — and answers
``<word> is not executed because it is not in the whitelist.`` for the others), then, in one
session without credentials, ``getChildren``, ``exists`` and ``getData``, with no watches. Never
``create``, ``setData``, ``delete``, ``setACL``, ``sync`` or ``multi``. The session itself is
the one trace a probe leaves: ZooKeeper logs its ``createSession``/``closeSession``.

Bounds: the tree is walked breadth-first from ``/`` to depth :data:`MAX_DEPTH`, at most
:data:`MAX_ZNODES` znodes and :data:`MAX_CHILDREN` children each (``/zookeeper``, the server's
own subtree, is skipped); data is read from at most ``ScanConfig.sample`` znodes (plus a few
note-like ones), only when ``exists`` says it is at most :data:`MAX_ZNODE_READ` bytes, and cut
at ``ScanConfig.max_value_bytes``. kazoo is a threaded client, so it runs in a worker thread
whose socket is guarded: a reply frame over :data:`MAX_FRAME_BYTES`, more than
:data:`MAX_SESSION_BYTES` in all, or any byte after the deadline breaks the connection — a
hostile server can neither make kazoo allocate a gigabyte nor keep it reading forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    KazooException,
    NoAuthError,
    NoNodeError,
    SessionClosedRequireSaslError,
)
from kazoo.handlers.threading import (
    KazooTimeoutError,
    SequentialThreadingHandler,
)
from kazoo.retry import KazooRetry

from perisai.classify import redact_text
from perisai.compromise import RULE_RANSOM_NOTE, is_note_name
from perisai.findings import Auth, Evidence, Finding, Rule, Severity, Target
from perisai.probes.common import (
    auth_required_finding,
)
from perisai.probes.interface import Access, Fingerprint, Probe, ProbeResult, ProbeSkipped
from perisai.probes.sampling import Sampler

MAX_DEPTH = 6
MAX_ZNODES = 200  # znodes visited (getChildren / exists) per probe
MAX_CHILDREN = 50  # children of one znode queued for the walk
MAX_NOTE_ZNODES = 5  # note-like znodes read on top of the sample
MAX_ZNODE_READ = 256 * 1024  # getData only of znodes at most this big (ZooKeeper's cap is 1 MB)
MAX_FRAME_BYTES = 4 * 1024 * 1024  # one reply frame (jute.maxbuffer is 1 MB by default)
MAX_SESSION_BYTES = 32 * 1024 * 1024  # everything one session may read
MAX_FOUR_LETTER_BYTES = 64 * 1024
DEADLINE_SHARE = 0.8  # of ScanConfig.probe_deadline: stop (with a reason) before the scanner
SYSTEM_SUBTREE = "/zookeeper"
_NOT_WHITELISTED = b"is not executed because it is not in the whitelist"
_NOT_SERVING = b"This ZooKeeper instance is not currently serving requests"

_REMEDIATION = (
    "Give every znode that holds application data an ACL that requires authentication "
    "(`digest`, `sasl` or `x509` scheme, never `world:anyone`), require it for every session "
    "(`enforce.auth.enabled=true` with `enforce.auth.schemes=sasl`, ZooKeeper ≥ 3.7), keep "
    "`4lw.commands.whitelist` short, and block port 2181 from the internet."
)


class _Violation(Exception):
    """The server broke the protocol or one of our bounds; the message says which, briefly."""


class _Guard:
    """Shared by the asyncio side and kazoo's thread: the byte budget, the deadline, a stop."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline  # time.monotonic()
        self.received = 0
        self.violation: str | None = None
        self.stopped = threading.Event()

    def check(self, wanted: int) -> None:
        if self.stopped.is_set():
            raise OSError("the probe has stopped")
        if time.monotonic() > self.deadline:
            self._fail("no complete answer before the probe's deadline (a slow or dripping server)")
        if wanted > MAX_FRAME_BYTES:
            self._fail(f"a reply announces {wanted} bytes, over the {MAX_FRAME_BYTES}-byte limit")

    def count(self, size: int) -> None:
        self.received += size
        if self.received > MAX_SESSION_BYTES:
            self._fail(f"the server sent more than {MAX_SESSION_BYTES} bytes in all")

    def _fail(self, reason: str) -> None:
        if self.violation is None:
            self.violation = reason
        raise OSError(reason)  # kazoo turns socket errors into ConnectionDropped


class _GuardedSocket:
    """A socket whose reads the guard bounds; everything else goes to the real socket.

    kazoo reads a frame's announced length in one ``recv(length)`` call, so the first call of a
    frame shows the length before any memory is allocated for it."""

    def __init__(self, sock: socket.socket, guard: _Guard) -> None:
        self._sock = sock
        self._guard = guard

    def recv(self, size: int, *flags: int) -> bytes:
        self._guard.check(size)
        data = self._sock.recv(min(size, 65536), *flags)
        self._guard.count(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _GuardedHandler(SequentialThreadingHandler):  # type: ignore[misc]
    """kazoo's threading handler, handing out guarded sockets."""

    def __init__(self, guard: _Guard) -> None:
        super().__init__()
        self._guard = guard

    def create_connection(self, *args: Any, **kwargs: Any) -> _GuardedSocket:
        return _GuardedSocket(super().create_connection(*args, **kwargs), self._guard)


@dataclass
class _Walk:
    """What the anonymous session saw."""

    session: bool = False
    refused: str | None = None  # why the session or the first read was refused
    visited: int = 0
    max_depth: int = 0
    truncated: bool = False
    user_znodes: int = 0  # outside /zookeeper, seen as children
    read: list[tuple[str, str]] = field(default_factory=list)  # (path, data cut at the cap)
    too_big: int = 0
    no_auth: list[str] = field(default_factory=list)


@dataclass
class _State:
    """What the probe has proven so far (kept when it has to stop half-way)."""

    target: Target
    sampler: Sampler | None = None  # once an anonymous session read a znode
    evidence: list[Evidence] = field(default_factory=list)


class ZooKeeperProbe(Probe):
    """Finds ZooKeeper ensembles whose znodes anyone can read, and what they hold."""

    service = "zookeeper"
    default_ports = (2181,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "echo srvr | nc {host} {port}",
        "zkCli.sh -server {host}:{port} ls /",
    )
    fix = (  # configuration lines that close it
        "# zoo.cfg",
        "clientPortAddress=127.0.0.1",
        "4lw.commands.whitelist=srvr",
        "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
    )
    rules = (
        Rule(
            id="zookeeper.unauthenticated",
            name="ZooKeeperUnauthenticated",
            description="ZooKeeper lets an anonymous session list and read znodes; anyone who "
            "reaches the port reads the configuration and data kept there (and, where ACLs "
            "are world-writable, changes it).",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/306.html",
                "https://zookeeper.apache.org/doc/current/zookeeperProgrammers.html#sc_ZooKeeperAccessControl",
            ),
        ),
        Rule(
            id="zookeeper.auth-required",
            name="ZooKeeperAuthRequired",
            description="ZooKeeper is reachable, and its znodes (or its sessions) require "
            "authentication.",
            remediation="Keep ACL credentials long and random; restrict who can reach the port.",
            default_severity=Severity.INFO,
        ),
        RULE_RANSOM_NOTE,
    )

    # --- fingerprint ----------------------------------------------------------------------------

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        answer = await _four_letter(host, port, b"srvr", self.config.timeout)
        if answer.startswith(b"Zookeeper version: "):
            srvr = _srvr(answer)
            detail = f"version {srvr.get('version', '?')}; {srvr.get('Mode', '?')}"
            return Fingerprint(self.service, detail, version=srvr.get("version", ""))
        if answer.startswith(b"srvr " + _NOT_WHITELISTED):
            return Fingerprint(self.service, "srvr not whitelisted", Access.REFUSED)
        if answer.startswith(_NOT_SERVING):
            return Fingerprint(self.service, "not serving requests")
        return None

    # --- probe ----------------------------------------------------------------------------------

    async def probe(
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        """The probe, bounded: a result, or :class:`ProbeSkipped` saying why it stopped (with
        whatever it had proven by then)."""
        state = _State(Target(host, port, self.service))
        budget = max(1.0, self.config.probe_deadline * DEADLINE_SHARE)
        guard = _Guard(time.monotonic() + budget)
        try:
            async with asyncio.timeout(budget):
                return await self._probe(host, port, state, guard)
        except TimeoutError:
            reason = guard.violation or (
                f"no complete answer within the probe's {budget:.0f}s deadline "
                "(a slow or dripping server)"
            )
            return ProbeSkipped(f"zookeeper probe stopped: {reason}", self._partial(state))
        except _Violation as violation:
            return ProbeSkipped(f"zookeeper probe stopped: {violation}", self._partial(state))
        except OSError as error:
            reason = f"zookeeper connection failed: {type(error).__name__}: {error}"
            return ProbeSkipped(reason, self._partial(state))
        finally:
            guard.stopped.set()  # a worker thread still reading gives up at its next byte

    async def _probe(self, host: str, port: int, state: _State, guard: _Guard) -> ProbeResult:
        timeout = self.config.timeout
        srvr = _srvr(await _four_letter(host, port, b"srvr", timeout))
        mntr_answer = await _four_letter(host, port, b"mntr", timeout)
        mntr = _mntr(mntr_answer)
        walk = await asyncio.to_thread(self._walk, host, port, guard)
        if guard.violation is not None:
            raise _Violation(guard.violation)
        if not walk.session or walk.refused is not None:
            return self._auth_required(state.target, walk.refused or "no session")
        if "/" in walk.no_auth:
            detail = "anonymous session accepted, but getChildren of / refused with NoAuth"
            return self._auth_required(state.target, detail)
        user_visible = walk.user_znodes > 0
        if user_visible and not walk.read and walk.no_auth and walk.too_big == 0:
            detail = (
                f"anonymous session accepted, but every znode tried ({len(walk.no_auth)}) "
                "refused getData/getChildren with NoAuth: ACLs require authentication"
            )
            return self._auth_required(state.target, detail)
        sampler = state.sampler = Sampler(self, state.target, Auth.NONE)
        count = _int(mntr.get("zk_znode_count")) or _int(srvr.get("Node count"))
        state.evidence.append(
            Evidence("anonymous session accepted: getChildren and getData answered without auth")
        )
        size = _int(mntr.get("zk_approximate_data_size"))
        mntr_note = (
            "mntr not whitelisted" if _NOT_WHITELISTED in mntr_answer else "srvr and mntr answered"
        )
        state.evidence.append(
            Evidence(
                f"ZooKeeper {srvr.get('version', '?')} ({srvr.get('Mode', '?')}): "
                f"{count if count is not None else '?'} znodes"
                + (f", ~{size} bytes of data" if size is not None else "")
                + f" ({mntr_note})"
            )
        )
        walked = (
            f"walked {walk.visited} znodes to depth {walk.max_depth}"
            f"{' (bounded: more not visited)' if walk.truncated else ''}: "
            f"{len(walk.read)} read, {len(walk.no_auth)} refused (NoAuth)"
        )
        if walk.too_big:
            walked += f", {walk.too_big} too big to read"
        state.evidence.append(Evidence(walked))
        records: list[dict[str, Any]] = []
        for path, text in walk.read:
            records.append({"path": path, "data": text})
            sampler.spot_note(path, text)
        sampler.sample("znodes", records, estimated=count)
        return ProbeResult(self._partial(state))

    def _walk(self, host: str, port: int, guard: _Guard) -> _Walk:
        """The anonymous session (in a worker thread): a bounded breadth-first walk."""
        walk = _Walk()
        wait = self.config.timeout
        client = KazooClient(
            hosts=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            timeout=max(4.0, wait * 2),  # the session timeout the server negotiates from
            connection_retry=KazooRetry(max_tries=0),
            command_retry=None,
            read_only=True,
            handler=_GuardedHandler(guard),
            logger=_kazoo_logger(),
        )
        try:
            connecting = max(wait, 1.0)
            client.start_async().wait(timeout=connecting)
            if not client.connected:
                if guard.violation is not None:
                    return walk
                if str(client.client_state) == "AUTH_FAILED":
                    walk.refused = "the server refused the anonymous session (AUTH_FAILED)"
                    return walk
                raise _Violation(f"no session within {connecting:.1f}s (a slow or dripping server)")
            walk.session = True
            self._visit(client, walk, guard)
        except (SessionClosedRequireSaslError, AuthFailedError) as error:
            walk.refused = f"the server requires authentication ({type(error).__name__})"
        except KazooException as error:
            if guard.violation is None:
                raise _Violation(f"the session failed: {type(error).__name__}") from error
        finally:
            guard.stopped.set()  # the connection thread stops at its next read, if still busy
            with contextlib.suppress(Exception):
                client.stop()
                client.close()
        return walk

    def _visit(self, client: Any, walk: _Walk, guard: _Guard) -> None:
        wait = self.config.timeout
        cap = self.config.max_value_bytes
        reads_left = self.config.sample
        notes_left = MAX_NOTE_ZNODES
        queue: deque[tuple[str, int]] = deque([("/", 0)])
        while queue:
            if walk.visited >= MAX_ZNODES or time.monotonic() > guard.deadline:
                walk.truncated = True
                return
            path, depth = queue.popleft()
            walk.visited += 1
            walk.max_depth = max(walk.max_depth, depth)
            try:
                children = _call(client.get_children_async(path), wait, "getChildren")
            except NoAuthError:
                walk.no_auth.append(path)
                continue
            except NoNodeError:
                continue  # gone since its parent was listed
            if path == "/" and not children:
                return
            children = sorted(children, key=lambda name: (not is_note_name(name), name))
            if len(children) > MAX_CHILDREN:
                walk.truncated = True
            for name in children[:MAX_CHILDREN]:
                child = f"/{name}" if path == "/" else f"{path}/{name}"
                if child == SYSTEM_SUBTREE:
                    continue
                walk.user_znodes += 1
                if depth + 1 <= MAX_DEPTH:
                    queue.append((child, depth + 1))
                else:
                    walk.truncated = True
            if path == "/":
                continue
            note_like = is_note_name(path.rsplit("/", 1)[-1])
            if not (reads_left > 0 or (note_like and notes_left > 0)):
                continue
            try:
                stat = _call(client.exists_async(path), wait, "exists")
                if stat is None:
                    continue
                if stat.dataLength > MAX_ZNODE_READ:
                    walk.too_big += 1
                    continue
                if stat.dataLength == 0:
                    continue
                data, _ = _call(client.get_async(path), wait, "getData")
            except NoAuthError:
                walk.no_auth.append(path)
                continue
            except NoNodeError:
                continue
            walk.read.append((path, bytes(data[:cap]).decode("utf-8", "replace")))
            if note_like and notes_left > 0:
                notes_left -= 1
            else:
                reads_left -= 1

    def _partial(self, state: _State) -> tuple[Finding, ...]:
        """The findings that what is proven so far supports (none before the auth check)."""
        sampler = state.sampler
        if sampler is None:
            return ()
        sampler.reads_heading = "read-only requests only"
        sampler.reads = [
            "srvr, mntr; getChildren, exists, getData without watches (values cut at "
            f"{self.config.max_value_bytes} bytes)"
        ]
        title = "ZooKeeper znodes readable without authentication"
        return sampler.findings(
            state.evidence, (title, title), containers=False, rule_id="zookeeper.unauthenticated"
        )

    def _auth_required(self, target: Target, detail: str) -> ProbeResult:
        return ProbeResult(
            (
                auth_required_finding(
                    self, target, "ZooKeeper requires authentication", Evidence(detail)
                ),
            )
        )


def _call(result: Any, wait: float, what: str) -> Any:
    """Wait (bounded) for one of kazoo's async results."""
    try:
        return result.get(timeout=wait)
    except KazooTimeoutError as error:
        raise _Violation(f"{what} got no answer within {wait:.1f}s") from error


async def _four_letter(host: str, port: int, word: bytes, timeout: float) -> bytes:
    """A four-letter word's whole answer (the server closes after it), bounded."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(word)
        await asyncio.wait_for(writer.drain(), timeout)

        async def read_all() -> bytes:
            data = b""
            while len(data) < MAX_FOUR_LETTER_BYTES:
                chunk = await reader.read(MAX_FOUR_LETTER_BYTES - len(data))
                if not chunk:
                    break
                data += chunk
            return data

        try:
            return await asyncio.wait_for(read_all(), timeout)
        except TimeoutError:
            return b""
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


def _srvr(answer: bytes) -> dict[str, str]:
    """``srvr``'s ``Name: value`` lines; ``version`` is the release without its build tag."""
    fields: dict[str, str] = {}
    for line in answer.decode("utf-8", "replace").splitlines()[:32]:
        name, _, value = line.partition(": ")
        if value:
            fields[name.strip()] = value.strip()[:120]
    if "Zookeeper version" in fields:
        fields["version"] = fields["Zookeeper version"].split("-", 1)[0].split(",", 1)[0]
    return fields


def _mntr(answer: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in answer.decode("utf-8", "replace").splitlines()[:512]:
        name, _, value = line.partition("\t")
        if name.startswith("zk_") and value:
            fields[name] = redact_text(value.strip()[:120])
    return fields


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _kazoo_logger() -> logging.Logger:
    """kazoo logs every dropped connection as a warning; a scan reports in findings instead."""
    logger = logging.getLogger("perisai.probes.zookeeper.kazoo")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return logger
