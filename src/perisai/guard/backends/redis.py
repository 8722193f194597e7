"""Redis state for many app instances, on one Redis or on a Redis Cluster.

A decision is one Lua script (:data:`_GATE`): it reads the counters and flags the decision
needs and admits its sliding-window limits all-or-nothing, atomically, in one round trip.
On a Redis Cluster a script may only touch one hash slot, so the gate is cut by slot: one
script per slot, the scripts of one node pipelined together, the nodes asked one after the
other. Each slot's script admits or refuses its own limits atomically; when one refuses,
the limits the others took are given back (a second round trip, only on refusal). So no
limit ever admits past its count; a concurrent request may, for that instant, be refused by
a slot that is then given back (never the other way round).

A key's ``{…}`` part picks its slot (:mod:`perisai.guard.keys`); on one Redis every key gets
the tag ``{perisai}`` too, which a cluster never sees (the first ``{…}`` of a key counts).

``replicas``: an admission counts only once that many replicas hold it (``WAIT`` after the
scripts, on the same connection). Without it a failover can forget the admissions of the
last instant before the crash (replication is asynchronous), and a limit may then admit
that many more; with it a write that did not reach a replica in time is a backend error,
so the fail mode decides, never an over-admission.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import Connection
from redis.crc import key_slot
from redis.exceptions import NoScriptError, ResponseError

from perisai.guard.interface import (
    Admission,
    Backend,
    BackendError,
    Gate,
    Limit,
    Passage,
    Ticket,
)

__all__ = ["RedisBackend"]

# ARGV: now, member, the key prefix, the spec: "#counters #texts #limits #unflagged has-flag"
# then each limit's "count window", and the keys, one per line: counters, texts, limits,
# unflagged limits, then the flag when the spec says so. Every argument costs the client more
# than splitting costs Lua, so a decision is five arguments, not fifty. KEYS holds one of the
# keys on a cluster, to route the script (the others share its slot: Redis checks).
# Returns {flagged, counters, texts, admitted, retry after, index of the refusing limit}.
_GATE = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local prefix = ARGV[3]
local spec, keys = {}, {}
for word in string.gmatch(ARGV[4], '%S+') do spec[#spec + 1] = tonumber(word) end
for key in string.gmatch(ARGV[5], '[^\\n]+') do keys[#keys + 1] = prefix .. key end
local ncount, ntext, nlimit, nunflagged = spec[1], spec[2], spec[3], spec[4]
local counters, texts = {}, {}
if ncount > 0 then counters = redis.call('MGET', unpack(keys, 1, ncount)) end
if ntext > 0 then texts = redis.call('MGET', unpack(keys, ncount + 1, ncount + ntext)) end
local flagged = 0
local n = nlimit + nunflagged
if spec[5] == 1 then
  flagged = redis.call('EXISTS', keys[#keys])
  if flagged == 1 then n = nlimit end
end
local first = ncount + ntext
for i = 1, n do
  local key = keys[first + i]
  local limit = spec[4 + 2 * i]
  local window = spec[5 + 2 * i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    return {flagged, counters, texts, 0, tostring(tonumber(oldest[2]) + window - now), i}
  end
end
for i = 1, n do
  local key = keys[first + i]
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(spec[5 + 2 * i] * 1000))
end
return {flagged, counters, texts, 1, '0', 0}
"""

# ARGV: member, prefix, keys one per line
_RELEASE = """
for key in string.gmatch(ARGV[3], '[^\\n]+') do redis.call('ZREM', ARGV[2] .. key, ARGV[1]) end
return 0
"""

_ADD = """
local value = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""

_REFRESH_AFTER = 0.5  # seconds between re-reads of the cluster's slot map after an error


class _Script:
    """A Lua script run by its SHA, loaded on a node the first time the node lacks it (a
    restart, a promoted replica, SCRIPT FLUSH)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class _Call(NamedTuple):
    """One command for one slot: a script's keys and arguments, or a plain command."""

    script: _Script | None
    keys: tuple[str, ...]
    args: tuple[Any, ...]


class _Part(NamedTuple):
    """The share of a gate that lives in one slot; indexes point into the whole gate."""

    counters: list[int]
    texts: list[int]
    limits: list[int]  # into gate.limits + gate.unflagged
    has_flag: bool


class RedisBackend(Backend):
    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        *,
        tag: str = "perisai",
        replicas: int = 0,
        wait_ms: int = 100,
    ) -> None:
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        # one Redis: every key in one slot, as before; a cluster: each key's own {…} tag
        self._prefix = f"{tag}:" if self._cluster else "{" + tag + "}:"
        self._replicas = replicas
        self._wait_ms = wait_ms
        self._gate = _Script(_GATE)
        self._release = _Script(_RELEASE)
        self._add = _Script(_ADD)
        self._stale = False  # an error suggested the slot map changed
        self._refreshed = 0.0  # when it was last re-read
        self._lock = threading.Lock()
        self._held = threading.local()
        self._limit_specs: dict[tuple[int, float], str] = {}
        self._slots: dict[str, int] = {}
        self._all_held: list[tuple[redis.Redis, Connection]] = []

    @classmethod
    def from_url(cls, url: str, *, tag: str = "perisai") -> RedisBackend:
        """``redis://…`` (one Redis) or ``redis+cluster://HOST:PORT[,HOST:PORT…]`` (a Redis
        Cluster, found from any of its nodes); ``?replicas=N`` on either (see the module)."""
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        try:
            replicas = int(query.pop("replicas", ["0"])[0])
        except ValueError:
            raise ValueError("replicas must be a whole number") from None
        if replicas < 0:
            raise ValueError("replicas must be 0 or more")
        timeouts: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        if parts.scheme in ("redis+cluster", "rediss+cluster"):
            nodes = [_node(address) for address in parts.netloc.rpartition("@")[2].split(",")]
            client: redis.Redis | RedisCluster = RedisCluster(
                startup_nodes=nodes,
                username=parts.username or None,
                password=parts.password or None,
                ssl=parts.scheme == "rediss+cluster",
                require_full_coverage=False,
                **timeouts,
            )
        else:
            rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
            plain = parts._replace(query=rest).geturl()
            client = redis.Redis.from_url(plain, retry_on_timeout=False, **timeouts)
        return cls(client, tag=tag, replicas=replicas)

    def _key(self, key: str) -> str:
        return self._prefix + key

    # ------------------------------------------------------------------ the decision path
    def gate(self, gate: Gate, now: float) -> Passage:
        limits = [*gate.limits, *gate.unflagged]
        member = secrets.token_hex(8)
        if not self._cluster:
            return self._gate_whole(gate, limits, now, member)
        parts = self._parts(gate)
        calls = [self._gate_call(gate, limits, part, now, member) for part in parts]
        replies = self._run(calls, "gate")
        counters = [0.0] * len(gate.counters)
        texts: list[str | None] = [None] * len(gate.texts)
        flagged = False
        refused: tuple[int, float] | None = None  # (index into limits, retry after)
        taken: list[str] = []
        for part, reply in zip(parts, replies, strict=True):
            was_flagged, got_counters, got_texts, admitted, retry, index = reply
            for position, value in zip(part.counters, got_counters, strict=True):
                counters[position] = 0.0 if value is None else float(value)
            for position, value in zip(part.texts, got_texts, strict=True):
                texts[position] = _decoded(value)
            if part.has_flag:
                flagged = bool(was_flagged)
            if int(admitted):
                skipped = set(range(len(gate.limits), len(limits))) if was_flagged else set()
                taken += [limits[i].key for i in part.limits if i not in skipped]
            else:
                where = part.limits[int(index) - 1]
                if refused is None or where < refused[0]:
                    refused = (where, float(retry))
        ticket = Ticket(tuple(taken), now, member)
        if refused is None:
            return Passage(counters, texts, flagged, Admission(True), ticket)
        self.release(ticket)  # all-or-nothing across slots: give back what others took
        admission = Admission(False, refused[1], limits[refused[0]].name)
        return Passage(counters, texts, flagged, admission, Ticket((), now, member))

    def _gate_whole(self, gate: Gate, limits: Sequence[Limit], now: float, member: str) -> Passage:
        """One Redis: the gate is one script, on this thread's connection."""
        call = self._gate_call(gate, limits, _whole(gate), now, member)
        try:
            (reply,) = self._round_trip(self._client, [call], writes=True)  # type: ignore[arg-type]
            if isinstance(reply, Exception):
                raise reply
        except (redis.RedisError, OSError) as exc:
            raise BackendError(f"redis gate: {_first_line(exc)}") from None
        was_flagged, got_counters, got_texts, admitted, retry, index = reply
        counters = [0.0 if value is None else float(value) for value in got_counters]
        texts = [None if value is None else value.decode() for value in got_texts]
        if int(admitted):
            taken = limits if not was_flagged else limits[: len(gate.limits)]
            ticket = Ticket(tuple(limit.key for limit in taken), now, member)
            return Passage(counters, texts, bool(was_flagged), Admission(True), ticket)
        admission = Admission(False, float(retry), limits[int(index) - 1].name)
        return Passage(counters, texts, bool(was_flagged), admission, Ticket((), now, member))

    def _gate_call(
        self, gate: Gate, limits: Sequence[Limit], part: _Part, now: float, member: str
    ) -> _Call:
        plain = [i for i in part.limits if i < len(gate.limits)]
        unflagged = [i for i in part.limits if i >= len(gate.limits)]
        keys = [
            *(gate.counters[i] for i in part.counters),
            *(gate.texts[i] for i in part.texts),
            *(limits[i].key for i in part.limits),
        ]
        if part.has_flag:
            assert gate.flag is not None
            keys.append(gate.flag)
        spec = [
            f"{len(part.counters)} {len(part.texts)} {len(plain)} {len(unflagged)} "
            f"{1 if part.has_flag else 0}"
        ]
        specs = self._limit_specs
        for i in part.limits:  # plain ones first: indexes grow, and unflagged come last
            limit = limits[i]
            text = specs.get((limit.limit, limit.window))
            if text is None:
                if len(specs) > 1024:  # limits come from the configuration: a handful
                    specs.clear()
                text = specs[limit.limit, limit.window] = f"{limit.limit} {limit.window!r}"
            spec.append(text)
        return _Call(
            self._gate,
            self._route(keys[0]),
            (repr(now), member, self._prefix, " ".join(spec), _lines(keys)),
        )

    def _slot(self, key: str, *, prefixed: bool = False) -> int:
        """The cluster slot of one of our keys (``prefixed``: the prefix is on it already),
        remembered by hash tag: a decision's fifty keys share a handful of tags."""
        start = key.find("{")
        end = key.find("}", start + 1) if start >= 0 else -1
        tag = key[start + 1 : end] if end > start + 1 else (key if prefixed else self._key(key))
        slot = self._slots.get(tag)
        if slot is None:
            if len(self._slots) > 100_000:
                self._slots.clear()
            slot = self._slots[tag] = key_slot(tag.encode())
        return slot

    def _route(self, key: str) -> tuple[str, ...]:
        """The key a cluster routes a script by (all of a script's keys share its slot)."""
        return (self._prefix + key,) if self._cluster else ()

    def _parts(self, gate: Gate) -> list[_Part]:
        """The gate cut by hash slot; the flag and the limits it governs must share one."""
        slot_of = self._slot
        parts: dict[int, _Part] = defaultdict(lambda: _Part([], [], [], False))
        for i, key in enumerate(gate.counters):
            parts[slot_of(key)].counters.append(i)
        for i, key in enumerate(gate.texts):
            parts[slot_of(key)].texts.append(i)
        for i, limit in enumerate([*gate.limits, *gate.unflagged]):
            parts[slot_of(limit.key)].limits.append(i)
        if gate.flag is not None:
            home = slot_of(gate.flag)
            stray = [u.key for u in gate.unflagged if slot_of(u.key) != home]
            if stray:
                raise ValueError(f"{stray[0]!r} is not in the slot of its flag {gate.flag!r}")
            part = parts[home]
            parts[home] = part._replace(has_flag=True)
        return list(parts.values())

    def release(self, ticket: Ticket) -> None:
        if not ticket.keys:
            return
        groups = [list(ticket.keys)]
        if self._cluster:
            slot_of = self._slot
            by_slot: dict[int, list[str]] = defaultdict(list)
            for key in ticket.keys:
                by_slot[slot_of(key)].append(key)
            groups = list(by_slot.values())
        calls = [
            _Call(
                self._release, self._route(group[0]), (ticket.member, self._prefix, _lines(group))
            )
            for group in groups
        ]
        self._run(calls, "release")

    # ------------------------------------------------------------------ counters and values
    def acquire(self, limits: Sequence[Limit], now: float) -> Admission:
        return self.gate(Gate(limits=limits), now).admission

    def add(self, key: str, amount: float, ttl: float) -> float:
        return self.add_many([(key, amount, ttl)])[0]

    def add_many(self, items: Sequence[tuple[str, float, float]]) -> list[float]:
        """One script per counter (each atomic), pipelined per node."""
        calls = [
            _Call(self._add, (self._key(key),), (amount, max(1, int(ttl * 1000))))
            for key, amount, ttl in items
        ]
        return [float(value) for value in self._run(calls, "add")]

    def get_many(self, keys: Sequence[str]) -> list[float]:
        if not keys:
            return []
        if self._cluster:
            calls = [_Call(None, (self._key(key),), ("GET",)) for key in keys]
            values = self._run(calls, "get", writes=False)
        else:
            values = self._call("mget", self._client.mget, [self._key(key) for key in keys])
        return [0.0 if value is None else float(value) for value in values]

    def put(self, key: str, value: str, ttl: float) -> None:
        self._call("set", self._client.set, self._key(key), value, px=max(1, int(ttl * 1000)))

    def get(self, key: str) -> str | None:
        return _decoded(self._call("get", self._client.get, self._key(key)))

    def delete(self, key: str) -> None:
        self._call("del", self._client.delete, self._key(key))

    def ping(self) -> None:
        self._call("ping", self._client.ping)

    def close(self) -> None:
        with self._lock:
            held, self._all_held = self._all_held, []
        for node, connection in held:
            node.connection_pool.release(connection)
        self._client.close()

    # ------------------------------------------------------------------ running commands
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (redis.RedisError, OSError) as exc:
            self._suspect()
            raise BackendError(f"redis {what}: {exc}") from None

    def _suspect(self) -> None:
        """An error may mean a failover: re-read the slot map before a coming call."""
        self._stale = True

    def _refresh(self, *, force: bool = False) -> None:
        """Re-read a cluster's slot map after an error, at most every ``_REFRESH_AFTER`` s
        unless ``force`` (a redirection says it changed)."""
        if not self._cluster or not (self._stale or force):
            return
        with self._lock:
            now = time.monotonic()
            if not force and (not self._stale or now - self._refreshed < _REFRESH_AFTER):
                return
            self._stale, self._refreshed = False, now
        try:
            self._client.nodes_manager.initialize()  # type: ignore[union-attr]
        except (redis.RedisError, OSError) as exc:
            self._suspect()
            raise BackendError(f"redis cluster: cannot read the slot map: {exc}") from None

    def _run(self, calls: Sequence[_Call], what: str, *, writes: bool = True) -> list[Any]:
        """Run ``calls``, their results in order: one round trip per node, WAIT for
        ``replicas`` after writes, a script loaded where a node lacks it, a call a cluster
        redirected (MOVED: it did not run) run again once the slot map is re-read. Any
        failure is a :class:`BackendError`."""
        if not calls:
            return []
        self._refresh()
        results: list[Any] = [None] * len(calls)
        try:
            for attempt in (1, 2):
                pending = [
                    i for i, result in enumerate(results) if result is None or _moved(result)
                ]
                if not pending:
                    break
                if attempt == 2:
                    self._refresh(force=True)
                for node, positions in self._by_node([calls[i] for i in pending], pending).items():
                    replies = self._round_trip(node, [calls[i] for i in positions], writes)
                    for position, reply in zip(positions, replies, strict=True):
                        results[position] = reply
            for result in results:
                if isinstance(result, Exception):
                    raise result
        except (redis.RedisError, OSError) as exc:
            self._suspect()
            raise BackendError(f"redis {what}: {_first_line(exc)}") from None
        return results

    def _by_node(
        self, calls: Sequence[_Call], positions: list[int]
    ) -> dict[redis.Redis, list[int]]:
        if not self._cluster:
            return {self._client: positions}  # type: ignore[dict-item]
        cluster: RedisCluster = self._client  # type: ignore[assignment]
        by_node: dict[redis.Redis, list[int]] = defaultdict(list)
        for position, call in zip(positions, calls, strict=True):
            node = cluster.nodes_manager.get_node_from_slot(self._slot(call.keys[0], prefixed=True))
            by_node[cluster.get_redis_connection(node)].append(position)
        return by_node

    def _connection(self, node: redis.Redis) -> Any:  # a redis-py Connection: untyped
        """This thread's own connection to ``node``, kept open: taking one from the pool and
        giving it back each time cost a third of a decision."""
        held: dict[int, Any] | None = getattr(self._held, "connections", None)
        if held is None:
            held = self._held.connections = {}
        connection = held.get(id(node))
        if connection is None:
            connection = node.connection_pool.get_connection()
            held[id(node)] = connection
            with self._lock:
                self._all_held.append((node, connection))
        return connection

    def _round_trip(self, node: redis.Redis, calls: list[_Call], writes: bool) -> list[Any]:
        """Send ``calls`` (and WAIT) at once on this thread's connection, read every reply;
        a reply that is an error stays in the list. A connection that fails is dropped, and a
        send on a stale one (the server restarted) is tried once more on a new one."""
        wait = writes and self._replicas > 0
        commands = [_command(call) for call in calls]
        if wait:
            commands.append(("WAIT", self._replicas, self._wait_ms))
        connection = self._connection(node)
        try:
            try:
                connection.send_packed_command(connection.pack_commands(commands), False)
            except (redis.ConnectionError, OSError):
                connection.disconnect()
                connection.send_packed_command(connection.pack_commands(commands), False)
            replies = [_reply(connection) for _ in commands]
        except BaseException:
            connection.disconnect()
            raise
        missing = [i for i, reply in enumerate(replies[: len(calls)]) if _no_script(reply)]
        for i in missing:  # that script did not run: load it, then run it
            script = calls[i].script
            assert script is not None
            connection.send_command("SCRIPT", "LOAD", script.source)
            _reply(connection)
            connection.send_packed_command(connection.pack_commands([commands[i]]), False)
            replies[i] = _reply(connection)
        if wait:
            acked = replies.pop()
            if missing:  # the reloaded scripts ran after that WAIT
                connection.send_command("WAIT", self._replicas, self._wait_ms)
                acked = _reply(connection)
            if isinstance(acked, Exception):
                raise acked
            if int(acked) < self._replicas:
                raise redis.RedisError(
                    f"{acked} of {self._replicas} replicas acknowledged within {self._wait_ms} ms"
                )
        return replies


def _command(call: _Call) -> tuple[Any, ...]:
    if call.script is None:
        return (*call.args, *call.keys)
    return ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)


def _reply(connection: Any) -> Any:
    """The next reply, an error reply returned rather than raised (the rest must be read)."""
    try:
        return connection.read_response()
    except ResponseError as error:
        return error


def _moved(result: Any) -> bool:
    return isinstance(result, ResponseError) and str(result).startswith(("MOVED", "ASK"))


def _lines(keys: Sequence[str]) -> str:
    """Keys one per line; a line break inside one (a device id, say) is written ``\\n``."""
    text = "\n".join(keys)
    if text.count("\n") != len(keys) - 1:
        text = "\n".join(key.replace("\n", "\\n") for key in keys)
    return text


def _whole(gate: Gate) -> _Part:
    """One Redis: the whole gate is one script."""
    return _Part(
        list(range(len(gate.counters))),
        list(range(len(gate.texts))),
        list(range(len(gate.limits) + len(gate.unflagged))),
        gate.flag is not None,
    )


def _no_script(reply: Any) -> bool:
    return isinstance(reply, NoScriptError) or (
        isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT")
    )


def _decoded(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _node(address: str) -> ClusterNode:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"cluster node {address!r} is not HOST:PORT")
    return ClusterNode(host.strip("[]"), int(port))  # type: ignore[no-untyped-call]
