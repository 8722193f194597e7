"""memcached: the text protocol's read commands, through a small bounded client.

Commands sent, and nothing else: ``version``, ``stats``, ``stats settings``, ``stats items``,
``lru_crawler metadump all`` (or, where that is refused, ``stats cachedump <slab> <n>``) and
``get <key>``, one key per request. Never a storage, ``touch``, ``gat``, ``incr``/``decr``,
``delete`` or ``flush_all`` command — and never the ASCII-auth login either, which is a ``set``.
Over the binary protocol only ``version`` and ``stat`` (to see whether SASL is required).

Why not a client library: aiomcache and emcache read a whole value whatever size the server
announces, and have neither ``stats cachedump`` nor ``lru_crawler metadump``; the text protocol
is a handful of line formats, so a client that bounds every step is shorter than the guards a
library would need. Bounds: a line is at most :data:`MAX_LINE_BYTES` (the stream's own limit),
each read waits ``ScanConfig.timeout`` at most, a probe reads at most :data:`MAX_PROBE_BYTES`,
and a value is read whole only up to ``ScanConfig.max_value_bytes``: past that the prefix is
kept and the connection dropped, so the rest is never transferred. A ``VALUE`` longer than the
server's own ``item_size_max`` breaks the protocol and ends the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from perisai.classify import redact_text
from perisai.compromise import RULE_RANSOM_NOTE, is_note_name
from perisai.findings import Auth, Evidence, Finding, Rule, Severity, Target
from perisai.probes.common import (
    auth_required_finding,
    human_bytes,
)
from perisai.probes.interface import Access, Fingerprint, Probe, ProbeResult, ProbeSkipped
from perisai.probes.sampling import Sampler

MAX_LINE_BYTES = 8192  # keys are ≤ 250 bytes; stats and metadump lines are short
MAX_PROBE_BYTES = 8 * 1024 * 1024  # everything one probe reads from one server
MAX_STATS_LINES = 4096  # `stats items` is ~30 lines per slab class, at most 64 classes
MAX_KEYS_LISTED = 1000  # metadump / cachedump lines read before the listing is dropped
MAX_NOTE_KEYS = 5  # note-like keys read on top of the sample
MAX_KEY_BYTES = 250  # memcached's own key limit
DEFAULT_ITEM_SIZE_MAX = 1024 * 1024  # memcached's default -I, when `stats settings` is refused
DEADLINE_SHARE = 0.8  # of ScanConfig.probe_deadline: stop (with a reason) before the scanner

_BINARY_VERSION = struct.pack("!BBHBBHIIQ", 0x80, 0x0B, 0, 0, 0, 0, 0, 0, 0)
_BINARY_STAT = struct.pack("!BBHBBHIIQ", 0x80, 0x10, 0, 0, 0, 0, 0, 0, 0)
_BINARY_HEADER = struct.Struct("!BBHBBHIIQ")
_BINARY_AUTH_ERROR = 0x20

_REMEDIATION = (
    "memcached has no access control by default: bind it to 127.0.0.1 or a private interface "
    "(`-l 127.0.0.1`), disable UDP (`-U 0`), block port 11211 from the internet, and where "
    "clients must reach it over a network require SASL (`-S`) or ASCII authentication "
    "(`-Y authfile`, memcached ≥ 1.5.15), ideally with TLS (`-Z`)."
)
_READ_COMMANDS = "version, stats, stats settings, stats items, lru_crawler metadump, get"


class _Violation(Exception):
    """The server broke the protocol or one of our bounds; the message says which, briefly."""


@dataclass
class _State:
    """What the probe has proven so far (kept when it has to stop half-way)."""

    target: Target
    sampler: Sampler | None = None  # once the server answered without authentication
    evidence: list[Evidence] = field(default_factory=list)
    items: int | None = None  # what `stats` counted
    received: int = 0
    commands: str = _READ_COMMANDS  # what the evidence says was sent


class _TextClient:
    """One text-protocol connection; every read bounded in bytes and seconds."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
        state: _State,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self._state = state

    @classmethod
    async def open(cls, host: str, port: int, timeout: float, state: _State) -> _TextClient:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=MAX_LINE_BYTES), timeout
            )
        except TimeoutError as error:
            raise _Violation(f"no connection to {host}:{port} within {timeout:.1f}s") from error
        return cls(reader, writer, timeout, state)

    async def send(self, command: str) -> None:
        self._writer.write(command.encode("utf-8") + b"\r\n")
        try:
            await asyncio.wait_for(self._writer.drain(), self._timeout)
        except TimeoutError as error:
            raise _Violation(f"`{_verb(command)}` could not be sent within the timeout") from error

    async def line(self, command: str) -> str:
        """The next line, without its CRLF (metadump ends lines with a bare LF)."""
        try:
            raw = await asyncio.wait_for(self._reader.readuntil(b"\n"), self._timeout)
        except TimeoutError as error:
            raise _Violation(
                f"no complete answer line to `{_verb(command)}` within {self._timeout:.1f}s "
                "(a stalled or dripping server)"
            ) from error
        except asyncio.LimitOverrunError as error:
            raise _Violation(
                f"an answer line to `{_verb(command)}` is longer than {MAX_LINE_BYTES} bytes"
            ) from error
        except asyncio.IncompleteReadError as error:
            raise _Violation(f"the server closed the connection during `{_verb(command)}`") from (
                error
            )
        self._count(len(raw))
        return raw.rstrip(b"\r\n").decode("utf-8", "replace")

    async def exactly(self, size: int, command: str) -> bytes:
        self._count(size)
        try:
            return await asyncio.wait_for(self._reader.readexactly(size), self._timeout)
        except TimeoutError as error:
            raise _Violation(
                f"a value from `{_verb(command)}` did not arrive within {self._timeout:.1f}s "
                "(a stalled or dripping server)"
            ) from error
        except asyncio.IncompleteReadError as error:
            raise _Violation(f"the server closed the connection during `{_verb(command)}`") from (
                error
            )

    def _count(self, size: int) -> None:
        self._state.received += size
        if self._state.received > MAX_PROBE_BYTES:
            raise _Violation(f"the server sent more than {MAX_PROBE_BYTES} bytes in all")

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)


class MemcachedProbe(Probe):
    """Finds memcached servers anyone can read, and what their cached values hold."""

    service = "memcached"
    default_ports = (11211,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "printf 'stats\\r\\nquit\\r\\n' | nc {host} {port}",
    )
    fix = (  # configuration lines that close it
        "# /etc/memcached.conf",
        "-l 127.0.0.1",
        "-U 0",
        "-S   # SASL authentication",
    )
    rules = (
        Rule(
            id="memcached.unauthenticated",
            name="MemcachedUnauthenticated",
            description="memcached answers without authentication; anyone who reaches the port "
            "can list and read every cached value (and overwrite or flush them).",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/306.html",
                "https://github.com/memcached/memcached/wiki/SASLHowto",
            ),
        ),
        Rule(
            id="memcached.auth-required",
            name="MemcachedAuthRequired",
            description="memcached is reachable and requires authentication (SASL or ASCII "
            "authentication).",
            remediation="Keep the credentials long and random; restrict who can reach the port.",
            default_severity=Severity.INFO,
        ),
        RULE_RANSOM_NOTE,
    )

    # --- fingerprint ----------------------------------------------------------------------------

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        wait = self.config.timeout * 0.9  # two tries must fit in the scanner's 2 x timeout
        try:
            answer = await _exchange(host, port, b"version\r\n", wait, 256)
        except TimeoutError:
            answer = b""
        if answer.startswith(b"VERSION ") and answer.endswith(b"\r\n"):
            version = answer[8:].strip().decode("ascii", "replace")[:40]
            return Fingerprint(
                self.service, f"open; version {version}", Access.OPEN, version, "ascii"
            )
        if answer.startswith(b"CLIENT_ERROR unauthenticated"):
            return Fingerprint(
                self.service,
                "auth required (ASCII authentication)",
                Access.AUTH_REQUIRED,
                interface="ascii",
            )
        if answer:
            return None
        # Binary-only servers (SASL mode) wait for a 24-byte header: ask in binary.
        try:
            answer = await _exchange(host, port, _BINARY_VERSION + _BINARY_STAT, wait, 512)
        except TimeoutError:
            return None  # silent to both: not memcached
        header = _binary_header(answer)
        if header is None or header[1] != 0x0B:
            return None
        rest = answer[_BINARY_HEADER.size + header[6] :]
        second = _binary_header(rest)
        if header[5] == _BINARY_AUTH_ERROR or (second and second[5] == _BINARY_AUTH_ERROR):
            return Fingerprint(
                self.service,
                "auth required (binary protocol, SASL)",
                Access.AUTH_REQUIRED,
                interface="binary",
            )
        return Fingerprint(self.service, "binary protocol, open", Access.OPEN, interface="binary")

    # --- probe ----------------------------------------------------------------------------------

    async def probe(
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        """The probe, bounded: a result, or :class:`ProbeSkipped` saying why it stopped (with
        whatever it had proven by then)."""
        state = _State(Target(host, port, self.service))
        budget = max(1.0, self.config.probe_deadline * DEADLINE_SHARE)
        try:
            async with asyncio.timeout(budget):
                return await self._probe(host, port, fingerprint, state)
        except TimeoutError:
            reason = f"memcached probe stopped at its {budget:.0f}s deadline"
            return ProbeSkipped(f"{reason} (a slow or dripping server)", self._partial(state))
        except _Violation as violation:
            return ProbeSkipped(f"memcached probe stopped: {violation}", self._partial(state))
        except OSError as error:
            reason = f"memcached connection failed: {type(error).__name__}: {error}"
            return ProbeSkipped(reason, self._partial(state))

    async def _probe(
        self, host: str, port: int, fingerprint: Fingerprint, state: _State
    ) -> ProbeResult:
        binary = fingerprint.interface == "binary"
        if binary and fingerprint.access is Access.AUTH_REQUIRED:
            return self._auth_required(
                state.target,
                "binary protocol: STAT answered status 0x20 (SASL authentication required)",
            )
        if binary:
            state.sampler = Sampler(self, state.target, Auth.NONE)
            state.commands = "binary VERSION and STAT"
            state.evidence.append(
                Evidence(
                    "binary-protocol memcached answered VERSION and STAT without SASL; keys not "
                    "listed (the binary protocol cannot list them)"
                )
            )
            return self._result(state)
        client = await _TextClient.open(host, port, self.config.timeout, state)
        try:
            stats = await _stats(client, "stats")
            if stats is None:
                return self._auth_required(
                    state.target,
                    "`stats` answered CLIENT_ERROR unauthenticated (ASCII authentication, -Y)",
                )
            sampler = state.sampler = Sampler(self, state.target, Auth.NONE)
            settings = await _stats(client, "stats settings") or {}
        finally:
            await client.close()
        items = _int(stats.get("curr_items"))
        state.items = items
        state.evidence.append(Evidence("`stats` answered without authentication"))
        state.evidence.append(
            Evidence(
                f"memcached {stats.get('version', '?')}: {items if items is not None else '?'} "
                f"items, {human_bytes(_int(stats.get('bytes')))} of "
                f"{human_bytes(_int(stats.get('limit_maxbytes')))} in use"
            )
        )
        item_size_max = _int(settings.get("item_size_max")) or DEFAULT_ITEM_SIZE_MAX
        keys, how = await self._list_keys(host, port, state)
        state.evidence.append(Evidence(how))
        records = await self._read_values(host, port, keys, item_size_max, state, sampler)
        sampler.sample("items", records, estimated=items)
        return self._result(state)

    def _result(self, state: _State) -> ProbeResult:
        return ProbeResult(self._partial(state))

    def _partial(self, state: _State) -> tuple[Finding, ...]:
        """The findings that what is proven so far supports (none before the auth check)."""
        sampler = state.sampler
        if sampler is None:
            return ()
        sampler.reads_heading = "read-only commands only"
        sampler.reads = [f"{state.commands} (values cut at {self.config.max_value_bytes} bytes)"]
        profile = sampler.total()
        if not sampler.containers:  # stopped before the values were read
            profile.counted(state.items)
        title = "memcached readable without authentication"
        return sampler.findings(
            state.evidence,
            (title, title),
            profile,
            containers=False,
            rule_id="memcached.unauthenticated",
        )

    def _auth_required(self, target: Target, detail: str) -> ProbeResult:
        return ProbeResult(
            (
                auth_required_finding(
                    self, target, "memcached requires authentication", Evidence(detail)
                ),
            )
        )

    async def _list_keys(self, host: str, port: int, state: _State) -> tuple[list[str], str]:
        """Keys to sample (note-like names first) and an evidence line saying how."""
        listed, refusal = await self._metadump(host, port, state)
        if listed is not None:
            keys = listed
            how = f"keys listed with `lru_crawler metadump all` ({len(keys)} read)"
        else:
            keys, cachedump_refusal = await self._cachedump(host, port, state)
            how = f"keys listed with `stats cachedump` ({len(keys)} read; metadump: {refusal})"
            if not keys and cachedump_refusal:
                how = f"keys not listable: metadump: {refusal}; cachedump: {cachedump_refusal}"
        notes = [k for k in keys if is_note_name(k)][:MAX_NOTE_KEYS]
        others = [k for k in keys if k not in notes][: self.config.sample]
        return notes + others, how

    async def _metadump(self, host: str, port: int, state: _State) -> tuple[list[str] | None, str]:
        """Keys from ``lru_crawler metadump all`` (it must be the only command on its
        connection); ``None`` and the refusal when the server does not allow it."""
        command = "lru_crawler metadump all"
        client = await _TextClient.open(host, port, self.config.timeout, state)
        keys: list[str] = []
        try:
            await client.send(command)
            while len(keys) < MAX_KEYS_LISTED:
                line = await client.line(command)
                if line == "END":
                    break
                if not line.startswith("key="):
                    return None, _refusal(line)
                key = _valid_key(unquote(line[4:].split(" ", 1)[0]))
                if key is not None:
                    keys.append(key)
        finally:
            await client.close()  # mid-listing on purpose: the rest is never transferred
        return keys, ""

    async def _cachedump(self, host: str, port: int, state: _State) -> tuple[list[str], str]:
        """Keys from ``stats cachedump`` of each populated slab class (bounded per class)."""
        client = await _TextClient.open(host, port, self.config.timeout, state)
        keys: list[str] = []
        try:
            items = await _stats(client, "stats items") or {}
            slabs = sorted(
                {
                    int(name.split(":")[1])
                    for name, value in items.items()
                    if name.startswith("items:")
                    and name.endswith(":number")
                    and name.split(":")[1].isdigit()
                    and (_int(value) or 0) > 0
                }
            )
            limit = self.config.sample + MAX_NOTE_KEYS
            for slab in slabs[:64]:
                command = f"stats cachedump {slab} {limit}"
                await client.send(command)
                for _ in range(limit + 1):
                    line = await client.line(command)
                    if line == "END":
                        break
                    if not line.startswith("ITEM "):
                        return keys, _refusal(line)
                    key = _valid_key(line[5:].split(" [", 1)[0])
                    if key is not None:
                        keys.append(key)
                else:
                    raise _Violation(f"`stats cachedump` sent more than the {limit} items asked")
                if len(keys) >= MAX_KEYS_LISTED:
                    break
        finally:
            await client.close()
        return keys, ""

    async def _read_values(
        self,
        host: str,
        port: int,
        keys: list[str],
        item_size_max: int,
        state: _State,
        sampler: Sampler,
    ) -> list[dict[str, Any]]:
        """``get`` each key on one connection; a value longer than the cap is cut, and its
        connection dropped rather than drained. Each value is shown to ``sampler`` for notes."""
        cap = self.config.max_value_bytes
        records: list[dict[str, Any]] = []
        client: _TextClient | None = None
        try:
            for key in keys:
                if client is None:
                    client = await _TextClient.open(host, port, self.config.timeout, state)
                command = f"get {key}"
                await client.send(command)
                header = await client.line(command)
                if header == "END":
                    continue  # expired or evicted since it was listed
                size = _value_size(header, key)
                if size is None:
                    raise _Violation(f"`get` answered {_refusal(header)!r}, not a VALUE line")
                if size > item_size_max:
                    raise _Violation(
                        f"a VALUE line announces {size} bytes for one key, more than the "
                        f"server's item_size_max ({item_size_max})"
                    )
                if size > cap:
                    value = await client.exactly(cap, command)
                    await client.close()  # the rest of the value is never read
                    client = None
                else:
                    value = await client.exactly(size + 2, command)
                    if not value.endswith(b"\r\n"):
                        raise _Violation("a value does not end where its VALUE line said")
                    value = value[:-2]
                    if await client.line(command) != "END":
                        raise _Violation("`get` of one key answered more than one value")
                text = value.decode("utf-8", "replace")
                records.append({"key": key, "value": text})
                sampler.spot_note(key, text)
        finally:
            if client is not None:
                await client.close()
        return records


async def _stats(client: _TextClient, command: str) -> dict[str, str] | None:
    """A ``stats`` family answer as a dict; ``None`` if authentication is required; an empty
    dict if the server does not know the subcommand."""
    await client.send(command)
    found: dict[str, str] = {}
    for _ in range(MAX_STATS_LINES):
        line = await client.line(command)
        if line == "END":
            return found
        if line.startswith("CLIENT_ERROR unauthenticated"):
            return None
        if line.startswith(("ERROR", "CLIENT_ERROR", "SERVER_ERROR")):
            return {}
        parts = line.split(" ", 2)
        if len(parts) != 3 or parts[0] != "STAT":
            raise _Violation(f"`{command}` answered a line that is not a STAT line")
        found[parts[1]] = parts[2]
    raise _Violation(f"`{command}` answered more than {MAX_STATS_LINES} lines")


async def _exchange(host: str, port: int, request: bytes, timeout: float, limit: int) -> bytes:
    """One request on a fresh connection; up to ``limit`` bytes of the first answer."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(request)
        await asyncio.wait_for(writer.drain(), timeout)
        return await asyncio.wait_for(reader.read(limit), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


def _binary_header(data: bytes) -> tuple[int, ...] | None:
    """A binary-protocol response header, if ``data`` starts with a plausible one."""
    if len(data) < _BINARY_HEADER.size:
        return None
    header = _BINARY_HEADER.unpack_from(data)
    magic, _, key_length, extras, _, _, body, *_ = header
    if magic != 0x81 or body > 1024 or key_length + extras > body:
        return None
    return (magic, header[1], key_length, extras, header[4], header[5], body)


def _value_size(header: str, key: str) -> int | None:
    """The byte count of ``VALUE <key> <flags> <bytes> [<cas>]`` for ``key``."""
    parts = header.split(" ")
    if len(parts) not in (4, 5) or parts[0] != "VALUE" or parts[1] != key:
        return None
    if not (parts[2].isdigit() and parts[3].isdigit()):
        return None
    return int(parts[3])


def _valid_key(key: str) -> str | None:
    """A key usable in a text-protocol ``get`` (no spaces or control characters)."""
    if not key or len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return None
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in key):
        return None
    return key


def _refusal(line: str) -> str:
    return redact_text(line.strip()[:120]) or "an empty answer"


def _verb(command: str) -> str:
    """A command as evidence may show it: the verb and subcommand, never a key."""
    words = command.split(" ")
    return " ".join(words[:2]) if words[0] in ("stats", "lru_crawler") else words[0]


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None
