"""The guard on a real Redis Cluster (three masters, a replica each, Debian's redis-server on
loopback): exact limits under 200 concurrent clients, and a failover, one master killed and
its replica promoted, that fails closed or open as configured and never over-admits after."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from perisai.guard import Guard, GuardConfig, Verdict, keys, open_backend
from perisai.guard.backends.redis import RedisBackend
from perisai.lab.redis_cluster import RedisClusterLab, start_redis_cluster

pytestmark = pytest.mark.servers

CLIENTS = 200
# only the per-recipient limit: every other limit and pumping out of the way, so the count
# admitted is exactly what that one limit allows
ONE_LIMIT: dict[str, object] = {
    "limits": {
        "recipient": [{"limit": 3, "window": 3600}],
        "ip": [],
        "ip_prefix": [],
        "ip_prefix48": [],
        "number_prefix": [],
        "device": [],
        "account": [],
    },
    "pumping": {"enabled": False},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterLab]:
    lab = start_redis_cluster(tmp_path_factory.mktemp("cluster"), node_timeout_ms=1000)
    try:
        yield lab
    finally:
        lab.stop()


def _guard(url: str, fail: str = "closed", tag: str = "perisai") -> Guard:
    config = GuardConfig.from_mapping({**ONE_LIMIT, "fail": fail})
    backend = open_backend(url, tag=tag)
    return Guard(config, backend)


def test_limits_are_exact_under_200_concurrent_clients(cluster: RedisClusterLab) -> None:
    """200 threads, each its own client (its own connections), race for 20 numbers spread
    over the three masters, limit 3 each: exactly 60 sends admitted, 3 per number."""
    numbers = [f"+6012{n * 47 % 1000:03d}{n * 37 % 10000:04d}" for n in range(20)]
    guards = [_guard(cluster.url, tag="race") for _ in range(CLIENTS)]
    admitted: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS, timeout=60)

    def client(i: int) -> None:
        guard = guards[i]
        barrier.wait()
        for step in range(5):
            to = numbers[(i + step) % len(numbers)]
            decision = guard.check("send_otp", to, f"198.51.{i // 250}.{i % 250}")
            with lock:
                (admitted if decision.allowed else refused)[decision.reason] += 1
                if decision.allowed:
                    admitted[to] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for guard in guards:
        guard.backend.close()
    assert refused["backend-down"] == 0
    assert admitted["ok"] == 3 * len(numbers)
    assert all(admitted[to] == 3 for to in numbers)
    assert refused["recipient-rate"] == CLIENTS * 5 - 3 * len(numbers)
    slots = {key_slot(keys.recipient("s", n).encode()) for n in numbers}
    assert len(slots) > 3  # the numbers live in several slots, so on several masters


def _master_of(cluster: RedisClusterLab, key: str) -> int:
    live = next(n for n in cluster.nodes if n.port not in cluster.down)
    client = RedisCluster(host="127.0.0.1", port=live.port)
    try:
        return int(client.get_node_from_key(key).port)  # type: ignore[no-untyped-call]
    finally:
        client.close()


@pytest.mark.parametrize(("fail", "outage"), [("closed", Verdict.DENY), ("open", Verdict.ALLOW)])
def test_failover_fails_as_configured_and_never_over_admits(
    cluster: RedisClusterLab, tmp_path: Path, fail: str, outage: Verdict
) -> None:
    """Two of three sends taken; the number's master killed: every decision on it fails
    ``fail``; once its replica is promoted, one more send is admitted and no other, from a
    client that lived through the failover and from a new one."""
    cluster.wait_until("paired")
    to = "+60123456789" if fail == "closed" else "+60198765432"
    tag = f"failover-{fail}"
    guard = _guard(cluster.url, fail, tag=tag)
    assert [guard.check("send_otp", to, "198.51.100.7").allowed for _ in range(2)] == [True] * 2
    time.sleep(0.2)  # replication is asynchronous: let the replica hold both sends
    master = _master_of(cluster, f"{tag}:" + keys.recipient("s", to) + ":0")
    cluster.kill(master)
    during = guard.check("send_otp", to, "198.51.100.7")
    assert (during.verdict, during.reason) == (outage, "backend-down")
    cluster.wait_until("healthy", 30)  # the replica took the slots over
    deadline = time.monotonic() + 30
    while guard.check("send_otp", to, "198.51.100.7").reason == "backend-down":
        assert time.monotonic() < deadline, "the guard never found the promoted replica"
        time.sleep(0.2)
    # that check was the third send, admitted on the promoted replica: now nothing more
    later = [guard.check("send_otp", to, "198.51.100.7") for _ in range(3)]
    assert [d.reason for d in later] == ["recipient-rate"] * 3
    fresh = _guard(cluster.url, fail, tag=tag)
    assert fresh.check("send_otp", to, "198.51.100.7").reason == "recipient-rate"
    cluster.restart(master)  # it comes back as a replica of its successor
    cluster.wait_until("paired", 30)
    guard.backend.close()
    fresh.backend.close()


def test_replicas_option_refuses_an_admission_no_replica_holds(
    cluster: RedisClusterLab,
) -> None:
    """``?replicas=1``: an admission counts once a replica holds it; with a master's only
    replica stopped, decisions on that master fail closed instead of admitting what a later
    failover could forget."""
    cluster.wait_until("paired")
    url = cluster.url + "?replicas=1"
    guard = _guard(url, "closed", tag="durable")
    to = "+60122223333"
    assert guard.check("send_otp", to, "198.51.100.7").allowed
    master = _master_of(cluster, "durable:" + keys.recipient("s", to) + ":0")
    (replica,) = cluster.masters()[master]
    cluster.kill(replica)
    refused = guard.check("send_otp", to, "198.51.100.7")
    assert (refused.verdict, refused.reason) == (Verdict.DENY, "backend-down")
    cluster.restart(replica)
    cluster.wait_until("paired", 30)
    deadline = time.monotonic() + 30
    decision = guard.check("send_otp", to, "198.51.100.7")
    while decision.reason == "backend-down":
        assert time.monotonic() < deadline, "the replica never caught up"
        time.sleep(0.2)
        decision = guard.check("send_otp", to, "198.51.100.7")
    # the refused attempt's event stayed on the master (taken, then not acknowledged, so
    # counted against the number rather than forgotten): one more send, and no other
    later = [decision, *(guard.check("send_otp", to, "198.51.100.7") for _ in range(2))]
    assert [d.reason for d in later] == ["ok", "recipient-rate", "recipient-rate"]
    assert isinstance(guard.backend, RedisBackend)
    guard.backend.close()
