"""Guard state backends: memory, SQLite (WAL, restart), Redis (a real redis-server started
here on a free loopback port) and a Redis Cluster (three real masters with a replica each):
atomic admission under concurrency, one-round-trip gates, fail modes, script reloads."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from perisai.guard import Guard, GuardConfig, Verdict, VerifyStatus, open_backend
from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.backends.redis import RedisBackend
from perisai.guard.backends.sqlite import SQLiteBackend
from perisai.guard.interface import Backend, BackendError, Gate, Limit
from perisai.lab import Instance, start_redis
from perisai.lab.instances import free_port
from perisai.lab.redis_cluster import RedisClusterLab, start_redis_cluster

MOBILE = "+60123456789"
IP = "198.51.100.7"

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def guard_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    instance = start_redis("guard-redis", tmp_path_factory.mktemp("guard"), exposed=True)
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def guard_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterLab]:
    lab = start_redis_cluster(tmp_path_factory.mktemp("guard-cluster"))
    try:
        yield lab
    finally:
        lab.stop()


BackendFactory = Callable[[], Backend]


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster"])
def make_backend(
    request: pytest.FixtureRequest, tmp_path: Path, guard_redis: Instance
) -> Iterator[BackendFactory]:
    """A factory of backends that all share one store (one dict, one file, one Redis db)."""
    made: list[Backend] = []
    shared = MemoryBackend()
    db = 1 + len(request.node.name) % 14  # keep tests apart inside one redis-server
    if request.param == "redis":
        redis.Redis.from_url(guard_redis.url_for(db)).flushdb()

    def factory() -> Backend:
        backend: Backend
        if request.param == "memory":
            backend = shared
        elif request.param == "sqlite":
            backend = SQLiteBackend(tmp_path / "guard.db")
        elif request.param == "redis":
            backend = RedisBackend.from_url(guard_redis.url_for(db))
        else:  # a cluster has one database: each test its own key prefix
            cluster = request.getfixturevalue("guard_cluster")
            backend = RedisBackend.from_url(cluster.url, tag=f"t-{request.node.name}")
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.close()


def test_primitives(make_backend: BackendFactory) -> None:
    backend = make_backend()
    backend.ping()
    assert backend.add("c", 1, 60) == 1
    assert backend.add("c", 2.5, 60) == 3.5
    assert backend.get_many(["c", "missing"]) == [3.5, 0.0]
    backend.put("v", "hello", 60)
    assert backend.get("v") == "hello"
    backend.delete("v")
    assert backend.get("v") is None
    backend.put("short", "x", 0.05)
    time.sleep(0.2)
    assert backend.get("short") is None


def test_acquire_is_all_or_nothing(make_backend: BackendFactory) -> None:
    backend = make_backend()
    now = time.time()
    a, b = Limit("a", 2, 60, "a-rate"), Limit("b", 1, 60, "b-rate")
    assert backend.acquire([a, b], now).allowed
    refused = backend.acquire([a, b], now + 1)
    assert (refused.allowed, refused.denied_by) == (False, "b-rate")
    assert refused.retry_after == pytest.approx(59, abs=0.01)
    assert backend.acquire([a], now + 2).allowed  # the refusal took nothing from "a"
    assert not backend.acquire([a], now + 3).allowed
    assert backend.acquire([a], now + 61).allowed  # the window slid


def test_concurrent_sends_never_over_admit(make_backend: BackendFactory) -> None:
    """32 threads, each with its own connection, race for a limit of 10."""
    limit = Limit("hot", 10, 600, "hot-rate")
    backends = [make_backend() for _ in range(8)]
    admitted: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(32, timeout=30)

    def worker(i: int) -> None:
        backend = backends[i % len(backends)]
        barrier.wait()
        for _ in range(4):
            result = backend.acquire([limit], time.time()).allowed
            with lock:
                admitted.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(admitted) == 128
    assert sum(admitted) == 10


def test_gate_reads_and_admits_at_once(make_backend: BackendFactory) -> None:
    """A gate reads counters, values and the flag, and takes its limits all-or-nothing; keys
    in several hash slots (a cluster's nodes) included."""
    backend = make_backend()
    now = time.time()
    backend.add_many([("{x}n", 2, 60), ("{y}m", 5, 60)])
    backend.put("{x}flag", "1", 60)
    backend.put("{z}text", "hello", 60)
    a, b = Limit("{x}a", 2, 60, "a-rate"), Limit("{y}b", 1, 60, "b-rate")
    gated = Gate(
        counters=["{x}n", "{y}m", "{z}none"],
        texts=["{z}text", "{z}absent"],
        limits=[a],
        flag="{x}flag",
        unflagged=[Limit("{x}p", 1, 60, "p-rate")],
    )
    passage = backend.gate(gated, now)
    assert passage.counters == [2.0, 5.0, 0.0]
    assert passage.texts == ["hello", None]
    assert passage.flagged and passage.admission.allowed
    assert set(passage.ticket.keys) == {"{x}a"}  # flagged: the prefix-like limit not taken
    unflagged = Gate(limits=[a, b], flag="{x}noflag", unflagged=[Limit("{x}p", 1, 60, "p-rate")])
    taken = backend.gate(unflagged, now + 1)
    assert not taken.flagged and taken.admission.allowed
    assert set(taken.ticket.keys) == {"{x}a", "{y}b", "{x}p"}
    refused = backend.gate(unflagged, now + 2)  # a full, b full, p full: nothing taken
    assert (refused.admission.allowed, refused.admission.denied_by) == (False, "a-rate")
    assert refused.ticket.keys == ()
    backend.release(taken.ticket)  # given back: a has one event left, b and p none
    again = backend.gate(unflagged, now + 3)
    assert again.admission.allowed
    assert not backend.acquire([a], now + 4).allowed


def test_a_refusal_in_one_slot_gives_back_the_others(make_backend: BackendFactory) -> None:
    """All-or-nothing across slots: ``b`` refuses, so what ``a`` and ``c`` took is returned."""
    backend = make_backend()
    now = time.time()
    a, b, c = (Limit(f"{{{k}}}k", n, 60, f"{k}-rate") for k, n in (("a", 5), ("b", 1), ("c", 5)))
    assert backend.acquire([b], now).allowed
    for step in range(1, 8):
        refused = backend.acquire([a, b, c], now + step)
        assert (refused.allowed, refused.denied_by) == (False, "b-rate")
    for step in range(5):  # a and c still hold all five of their events
        assert backend.acquire([a, c], now + 10 + step).allowed
    assert backend.acquire([a], now + 20).denied_by == "a-rate"


def test_guard_on_each_backend_verifies_and_limits(make_backend: BackendFactory) -> None:
    guard = Guard(GuardConfig(secret="s3cret"), make_backend())
    started = guard.start(MOBILE, "sms", IP)
    assert started.code is not None
    other = Guard(GuardConfig(secret="s3cret"), make_backend())  # a second app instance
    assert other.check("send_otp", MOBILE, IP).reason == "recipient-rate"
    assert other.verify(MOBILE, started.code, IP).status is VerifyStatus.APPROVED


def test_sqlite_is_wal_and_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    config = GuardConfig(secret="kept-across-restarts")
    first = Guard(config, open_backend(f"sqlite:///{path}"))
    started = first.start(MOBILE, "sms", IP)
    first.backend.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    second = Guard(config, open_backend(f"sqlite:///{path}"))
    assert second.check("send_otp", MOBILE, IP).reason == "recipient-rate"
    assert started.code is not None
    assert second.verify(MOBILE, started.code, IP).status is VerifyStatus.APPROVED
    second.backend.close()


def test_redis_recovers_from_script_flush(guard_redis: Instance) -> None:
    client = redis.Redis.from_url(guard_redis.url_for(15))
    client.flushdb()
    backend = RedisBackend(client, tag="t")
    now = time.time()
    assert backend.acquire([Limit("k", 2, 60, "k")], now).allowed
    client.script_flush()
    assert backend.acquire([Limit("k", 2, 60, "k")], now).allowed
    assert backend.add("n", 1, 60) == 1
    client.script_flush()
    assert backend.add("n", 1, 60) == 2
    assert not backend.acquire([Limit("k", 2, 60, "k")], now).allowed
    # every key carries one hash tag, so a script's keys share a Cluster slot
    keys = [k if isinstance(k, bytes) else k.encode() for k in client.keys("*")]
    assert keys and all(key.startswith(b"{t}:") for key in keys)
    backend.close()


@pytest.mark.parametrize(("fail", "verdict"), [("open", Verdict.ALLOW), ("closed", Verdict.DENY)])
def test_redis_down_fails_open_or_closed(fail: str, verdict: Verdict) -> None:
    backend = open_backend(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    guard = Guard(GuardConfig.from_mapping({"fail": fail}), backend)
    decision = guard.check("send_otp", MOBILE, IP)
    assert (decision.verdict, decision.reason) == (verdict, "backend-down")
    assert guard.verify(MOBILE, "123456", IP).status is VerifyStatus.LOCKED
    assert b"perisai_guard_backend_errors_total" in guard.metrics.render()


def test_sqlite_unwritable_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot open guard state"):
        open_backend(f"sqlite:///{tmp_path}/missing-dir/state.db")


def test_cluster_state_urls() -> None:
    with pytest.raises(BackendError, match="bad redis URL: replicas must be a whole number"):
        open_backend("redis+cluster://127.0.0.1:1?replicas=x")
    with pytest.raises(BackendError, match="bad redis URL: cluster node 'nohost' is not"):
        open_backend("redis+cluster://nohost")
    with pytest.raises(BackendError, match="redis cluster: Redis Cluster cannot be connected"):
        open_backend(f"redis+cluster://127.0.0.1:{free_port()}")  # nothing listens there


def test_unknown_state_url() -> None:
    with pytest.raises(BackendError, match="unknown guard state"):
        open_backend("mongodb://x")
