"""A real Redis Cluster on loopback, from Debian's ``redis-server``: for the guard's tests and
benchmark on a cluster, and for watching a failover happen.

``masters`` masters with ``replicas`` replicas each, every node its own ``redis-server`` in
cluster mode on a free loopback port; ``redis-cli --cluster create`` assigns the slots and
pairs the replicas, as an operator would. :meth:`RedisClusterLab.kill` kills a node the hard
way (SIGKILL: no goodbye to its peers), and its replica takes over once the others have
missed it for ``node_timeout_ms``; :meth:`RedisClusterLab.restart` brings it back, as a
replica of the node that took its place.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from perisai.lab.errors import ServerStartError
from perisai.lab.instances import Instance, connect_redis
from perisai.lab.servers.redis import restart_redis, start_redis
from perisai.lab.supervisor import HOST, free_port, pid_running, wait_for

__all__ = ["RedisClusterLab", "start_redis_cluster"]

_CREATE_TIMEOUT = 60.0


@dataclass
class RedisClusterLab:
    nodes: list[Instance]
    node_timeout_ms: int
    down: set[int] = field(default_factory=set)  # ports of the nodes killed

    @property
    def url(self) -> str:
        """The guard's state URL: every node, so the client finds the cluster from any."""
        return "redis+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self.nodes)

    def node(self, port: int) -> Instance:
        return next(node for node in self.nodes if node.port == port)

    def _client(self) -> redis.Redis:
        live = next(node for node in self.nodes if node.port not in self.down)
        return connect_redis(HOST, live.port, None, timeout=2.0)

    def masters(self) -> dict[int, list[int]]:
        """Each serving master's port and its live replicas' ports, as the cluster sees it."""
        client = self._client()
        try:
            # redis-py parses CLUSTER NODES: {"host:port": {"node_id", "flags", "master_id", …}}
            table: dict[str, Any] = client.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]
        finally:
            client.close()
        ports = {
            row["node_id"]: int(address.rpartition(":")[2])
            for address, row in table.items()
            if address.rpartition(":")[2].isdigit()
        }
        masters: dict[int, list[int]] = {}
        replicas: list[tuple[int, str]] = []
        for row in table.values():
            flags = set(row["flags"].split(","))
            port = ports.get(row["node_id"])
            if port is None or "fail" in flags or "fail?" in flags:
                continue
            if "master" in flags and row.get("slots"):
                masters.setdefault(port, [])
            elif "slave" in flags:
                replicas.append((port, row["master_id"]))
        for port, master_id in replicas:
            master = ports.get(master_id)
            if master in masters:
                masters[master].append(port)
        return masters

    def healthy(self) -> bool:
        """Every slot served (``cluster_state:ok`` on every live node)."""
        for node in self.nodes:
            if node.port in self.down:
                continue
            client = connect_redis(HOST, node.port, None, timeout=1.0)
            try:
                info = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
            except (redis.RedisError, OSError):
                return False
            finally:
                client.close()
            if info.get("cluster_state") != "ok":  # redis-py parses it into a dict
                return False
        return True

    def wait_until(self, check: str, timeout: float = 30.0) -> None:
        """Wait for ``healthy`` or ``paired`` (every master has a live replica)."""
        predicate = {"healthy": self.healthy, "paired": self._paired}[check]
        if not wait_for(lambda: _quietly(predicate), timeout, interval=0.1):
            raise TimeoutError(f"the Redis Cluster is not {check} after {timeout:.0f} s")

    def _paired(self) -> bool:
        masters = self.masters()
        if not masters or not all(masters.values()) or not self.healthy():
            return False
        return all(self._replicas_online(port) for port in masters)

    @staticmethod
    def _replicas_online(port: int) -> bool:
        """Whether every replica of the master on ``port`` is linked and synced (a restarted
        one first loads the master's data)."""
        client = connect_redis(HOST, port, None, timeout=1.0)
        try:
            info = client.info("replication")
        finally:
            client.close()
        count = int(info.get("connected_slaves", 0))
        links = [info.get(f"slave{i}", {}) for i in range(count)]
        return count > 0 and all(
            isinstance(link, dict) and link.get("state") == "online" for link in links
        )

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port``: a crash, as its peers see it."""
        node = self.node(port)
        os.kill(node.pid, signal.SIGKILL)
        wait_for(lambda: not pid_running(node.pid), 5.0)
        self.down.add(port)

    def restart(self, port: int) -> None:
        """Start a killed node again; it rejoins as a replica of its successor."""
        node = restart_redis(self.node(port))
        self.nodes = [node if n.port == port else n for n in self.nodes]
        self.down.discard(port)

    def stop(self) -> None:
        """Stop every node (a killed one is only cleaned up) and remove their files."""
        for node in self.nodes:
            node.stop()


def start_redis_cluster(
    base_dir: Path,
    *,
    masters: int = 3,
    replicas: int = 1,
    node_timeout_ms: int = 1000,
    name: str = "redis-cluster",
) -> RedisClusterLab:
    """Start the nodes, create the cluster and wait until every slot is served and every
    master has its replicas. Raises :class:`ServerStartError` when it cannot."""
    extra = (
        "cluster-enabled yes",
        "cluster-config-file nodes.conf",
        f"cluster-node-timeout {node_timeout_ms}",
        "cluster-require-full-coverage no",  # a dead shard does not take the others down
    )
    nodes: list[Instance] = []
    lab = RedisClusterLab(nodes, node_timeout_ms)
    try:
        for index in range(masters * (1 + replicas)):
            # the bus port is the client port + 10000 unless set: free ports run to 65535
            bus = f"cluster-port {free_port()}"
            nodes.append(
                start_redis(f"{name}-{index}", base_dir, exposed=True, extra=(*extra, bus))
            )
        create = [
            "redis-cli",
            "--cluster",
            "create",
            *(f"{HOST}:{node.port}" for node in nodes),
            "--cluster-replicas",
            str(replicas),
            "--cluster-yes",
        ]
        done = subprocess.run(
            create, capture_output=True, text=True, timeout=_CREATE_TIMEOUT, check=False
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            raise ServerStartError(name, "redis-cli --cluster create failed", "\n".join(tail))
        lab.wait_until("paired", _CREATE_TIMEOUT)
    except BaseException:
        lab.stop()
        raise
    return dataclasses.replace(lab, nodes=list(nodes))


def _quietly(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except (redis.RedisError, OSError, StopIteration):
        return False
