"""ZooKeeper probe against real ZooKeeper servers (Debian's package), plus hostile fakes.

Real servers: an exposed one (world-readable znodes with personal data and a ransom note,
``srvr`` and ``mntr`` whitelisted), a secured one (every seeded znode behind a ``digest`` ACL),
and one that enforces authentication for every session (``enforce.auth.enabled``). The
read-only proof reads the server's own transaction log: a probe may add nothing but its
session's createSession/closeSession, and no znode's version, mzxid or pzxid may move. The
hostile servers answer ``srvr`` like ZooKeeper, then announce a 1 GB reply or drip.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient

from perisai.findings import Auth, Finding, Severity
from perisai.lab.instances import Instance
from perisai.lab.seed import RANSOM_BTC_ADDRESS
from perisai.lab.servers.memcached import MemcachedInstance
from perisai.lab.servers.zookeeper import (
    ZOOKEEPER_APP_ROOT,
    ZOOKEEPER_RANSOM_ZNODE,
    ZooKeeperInstance,
    seed_zookeeper,
    start_zookeeper,
    zookeeper_transactions,
)
from perisai.probes import ProbeResult, ProbeSkipped, ScanConfig
from perisai.probes.interface import Probe
from perisai.probes.memcached import MemcachedProbe
from perisai.probes.postgres import PostgresProbe
from perisai.probes.redis import RedisProbe
from perisai.probes.zookeeper import ZooKeeperProbe
from perisai.scanner import Scanner
from perisai.targets import parse_targets
from tests.conftest import LabServers
from tests.fakes import fake_server, http_400
from tests.hostile import Handler, silent

SAFETY_NET = 120.0  # a hung probe fails the test instead of hanging the suite
SRVR = (
    b"Zookeeper version: 3.8.4-9316c2a7a97e1666d8f4593f34dd6fc36ecc436c, built on 2024-02-12\n"
    b"Latency min/avg/max: 0/0.0/0\nReceived: 1\nSent: 0\nConnections: 1\nOutstanding: 0\n"
    b"Zxid: 0x0\nMode: standalone\nNode count: 5\n"
)


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, lab_server: LabServers
) -> Iterator[dict[str, Instance]]:
    base = tmp_path_factory.mktemp("zookeeper")
    twins: dict[str, Instance] = {
        "secured": lab_server("zookeeper", False, ZooKeeperInstance),
        "memcached": lab_server("memcached", True, MemcachedInstance),
    }
    started: dict[str, Instance] = {}
    try:
        started["exposed"] = start_zookeeper("zk-exposed", base, exposed=True)
        seed_zookeeper(started["exposed"], ransom_note=True)
        started["enforced"] = start_zookeeper(
            "zk-enforced",
            base,
            exposed=False,
            extra_config=["enforce.auth.enabled=true", "enforce.auth.schemes=digest"],
        )
        yield {**started, **twins}
    finally:
        for instance in started.values():
            instance.stop()


def _probes(config: ScanConfig) -> list[Probe]:
    """The reviewed probes of other protocols (they fingerprint the port first, as in a real
    scan of a non-default port), then this one."""
    return [RedisProbe(config), PostgresProbe(config), ZooKeeperProbe(config)]


async def _scan(
    port: int, config: ScanConfig | None = None, *, only_zookeeper: bool = False
) -> list[Finding]:
    config = config or ScanConfig(timeout=2.0)
    probes = [ZooKeeperProbe(config)] if only_zookeeper else _probes(config)
    report = await asyncio.wait_for(
        Scanner(config, probes=probes).scan(parse_targets([f"127.0.0.1:{port}"])), SAFETY_NET
    )
    return report.findings


def _znode_stats(instance: Instance) -> dict[str, tuple[int, ...]]:
    """version, cversion, aversion, mzxid and pzxid of every znode, read with the lab's own
    credentials (so the secured twin's znodes are visible too)."""
    auth = [] if instance.password is None else [("digest", f"perisai:{instance.password}")]
    client = KazooClient(hosts=f"{instance.host}:{instance.port}", auth_data=auth)
    client.start(timeout=10)
    stats: dict[str, tuple[int, ...]] = {}
    try:
        pending = ["/"]
        while pending:
            path = pending.pop()
            if path.startswith("/zookeeper"):
                continue
            stat = client.exists(path)
            stats[path] = (stat.version, stat.cversion, stat.aversion, stat.mzxid, stat.pzxid)
            for name in client.get_children(path):
                pending.append(f"/{name}" if path == "/" else f"{path}/{name}")
    finally:
        client.stop()
        client.close()
    return stats


@pytest.mark.servers
async def test_exposed_zookeeper_is_critical_with_personal_data_and_a_note(
    servers: dict[str, Instance],
) -> None:
    findings = await _scan(servers["exposed"].port)
    [main] = [f for f in findings if f.rule == "zookeeper.unauthenticated"]
    assert main.target.service == "zookeeper"  # recognised on a random port by its answer
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL
    assert main.data.entities["PHONE"] >= 1 and main.data.entities["EMAIL"] >= 1
    expected = len(_znode_stats(servers["exposed"])) + 2  # + /zookeeper and its children
    assert main.data.records_estimated is not None and main.data.records_estimated >= expected
    assert any("srvr and mntr answered" in e.text for e in main.evidence)
    assert any(e.text.startswith("read-only requests only") for e in main.evidence)
    [note] = [f for f in findings if f.rule == "compromise.ransom-note"]
    assert note.object == ZOOKEEPER_RANSOM_ZNODE
    assert any(e.text == f"payment address: {RANSOM_BTC_ADDRESS}" for e in note.evidence)


@pytest.mark.servers
async def test_acl_secured_zookeeper_is_info_never_open(servers: dict[str, Instance]) -> None:
    findings = await _scan(servers["secured"].port)
    assert [f.rule for f in findings] == ["zookeeper.auth-required"]
    assert findings[0].severity is Severity.INFO
    assert findings[0].auth is Auth.REQUIRED
    assert "NoAuth" in findings[0].evidence[0].text


@pytest.mark.servers
async def test_enforced_auth_zookeeper_is_info_never_open(servers: dict[str, Instance]) -> None:
    findings = await _scan(servers["enforced"].port)
    assert [f.rule for f in findings] == ["zookeeper.auth-required"]
    assert "requires authentication" in findings[0].evidence[0].text


@pytest.mark.servers
@pytest.mark.parametrize("name", ["exposed", "secured"])
def test_probe_writes_nothing(servers: dict[str, Instance], name: str) -> None:
    """ZooKeeper's transaction log holds every change it accepted: a probe may add only its
    session's createSession/closeSession; no znode's version, mzxid or pzxid may move."""
    instance = servers[name]
    stats_before = _znode_stats(instance)
    logged_before = len(zookeeper_transactions(instance))
    findings = asyncio.run(_scan(instance.port, only_zookeeper=True))
    assert findings and findings[0].rule.startswith("zookeeper.")
    assert _znode_stats(instance) == stats_before
    added = zookeeper_transactions(instance)[logged_before:]
    kinds = {re.sub(r"^.* zxid 0x[0-9a-f]+ (\w+).*$", r"\1", line) for line in added}
    assert kinds <= {"createSession", "closeSession"}, added
    assert f"{ZOOKEEPER_APP_ROOT}/sessions" in stats_before


@pytest.mark.servers
async def test_other_protocols_are_not_taken_for_zookeeper(
    servers: dict[str, Instance],
) -> None:
    probe = ZooKeeperProbe(ScanConfig(timeout=1.0))
    assert await probe.fingerprint("127.0.0.1", servers["memcached"].port) is None
    async with fake_server(http_400) as port:
        assert await probe.fingerprint("127.0.0.1", port) is None
    async with fake_server(silent) as port:
        assert await probe.fingerprint("127.0.0.1", port) is None
    ports = [servers["memcached"].port, servers["exposed"].port]
    config = ScanConfig(timeout=2.0)
    probes = [*_probes(config), MemcachedProbe(config)]
    report = await Scanner(config, probes=probes).scan(parse_targets(["127.0.0.1"]), ports)
    services = {f.target.port: f.target.service for f in report.findings}
    assert services == {ports[0]: "memcached", ports[1]: "zookeeper"}


# --- hostile servers ---------------------------------------------------------------------------


def _zookeeper_like(session: Handler, srvr: bool = True) -> Handler:
    """A fake that answers four-letter words like ZooKeeper (``srvr`` only if ``srvr``: a
    build that does not whitelist it); binary sessions go to ``session``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readexactly(4)
        if first == b"srvr" and srvr:
            writer.write(SRVR)
        elif first.isalpha():
            writer.write(first + b" is not executed because it is not in the whitelist.\n")
        else:
            (length,) = struct.unpack("!i", first)
            await reader.readexactly(length)  # the ConnectRequest
            await session(reader, writer)
        await writer.drain()

    return handler


async def _drip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, at_once: int = 0
) -> None:
    """Send ``data[:at_once]`` at once, the rest a byte every 0.3 s; then wait for a hang-up."""
    writer.write(data[:at_once])
    for byte in data[at_once:]:
        if writer.is_closing():
            return
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.3)
    while await reader.read(1024):
        pass


async def _examine(port: int, config: ScanConfig) -> ProbeResult | ProbeSkipped:
    probe = ZooKeeperProbe(config)
    fingerprint = await probe.fingerprint("127.0.0.1", port)
    assert fingerprint is not None and fingerprint.service == "zookeeper"
    return await asyncio.wait_for(probe.probe("127.0.0.1", port, fingerprint), SAFETY_NET)


async def test_srvr_not_whitelisted_is_still_zookeeper() -> None:
    async with fake_server(_zookeeper_like(silent, srvr=False)) as port:
        fingerprint = await ZooKeeperProbe(ScanConfig(timeout=1.0)).fingerprint("127.0.0.1", port)
    assert fingerprint is not None and fingerprint.detail == "srvr not whitelisted"


async def test_a_reply_announcing_1_gb_ends_bounded() -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _drip(reader, writer, struct.pack("!i", 1 << 30) + b"\x00" * 64, at_once=4)

    async with fake_server(_zookeeper_like(huge)) as port:
        outcome = await _examine(port, ScanConfig(timeout=1.0, probe_deadline=20.0))
    assert isinstance(outcome, ProbeSkipped)
    assert "1073741824 bytes" in outcome.reason
    assert outcome.findings == ()  # nothing proven: no session was ever opened


async def test_a_dripping_session_ends_bounded() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A well-formed ConnectResponse frame (37 bytes), one byte every 0.3 s.
        body = struct.pack("!iiqi", 0, 4000, 1, 16) + b"\x00" * 16 + b"\x00"
        await _drip(reader, writer, struct.pack("!i", len(body)) + body)

    async with fake_server(_zookeeper_like(slow)) as port:
        outcome = await _examine(port, ScanConfig(timeout=1.0, probe_deadline=5.0))
    assert isinstance(outcome, ProbeSkipped)
    assert "dripping" in outcome.reason


async def test_scanner_reports_a_skipped_probe_as_incomplete() -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _drip(reader, writer, struct.pack("!i", 1 << 30) + b"\x00" * 64, at_once=4)

    async with fake_server(_zookeeper_like(huge)) as port:
        findings = await _scan(port, ScanConfig(timeout=1.0, probe_deadline=20.0))
    [incomplete] = [f for f in findings if f.rule == "scan.incomplete"]
    assert incomplete.target.service == "zookeeper"
    assert any("1073741824" in e.text for e in incomplete.evidence)
