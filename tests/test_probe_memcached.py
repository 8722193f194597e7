"""memcached probe against real memcached servers (Debian's package), plus hostile fakes.

Real servers: an exposed one seeded with personal data and a ransom note, one secured with
ASCII authentication (``-Y authfile``) and one with SASL (binary protocol only). They run with
``-vv``, so their log lists every command a client sent: the read-only test reads it. The
hostile servers are small asyncio fakes that announce a 1 GB value, drip bytes, or never end.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from perisai.findings import Auth, Finding, Severity
from perisai.lab.instances import Instance
from perisai.lab.seed import RANSOM_BTC_ADDRESS
from perisai.lab.servers.memcached import (
    MEMCACHED_RANSOM_KEY,
    MemcachedInstance,
    memcached_command,
    seed_memcached,
    start_memcached,
)
from perisai.lab.servers.redis import start_redis
from perisai.probes import ProbeResult, ProbeSkipped, ScanConfig
from perisai.probes.interface import Probe
from perisai.probes.memcached import MemcachedProbe
from perisai.probes.postgres import PostgresProbe
from perisai.probes.redis import RedisProbe
from perisai.scanner import Scanner
from perisai.targets import parse_targets
from tests.conftest import LabServers
from tests.fakes import fake_server, http_400
from tests.hostile import Handler, silent

# Commands a probe may send; anything else in the server's command log fails the test.
READ_ONLY_VERBS = {"version", "stats", "lru_crawler", "get"}
# Counters that move when a client writes, touches, deletes or flushes.
WRITE_COUNTERS = (
    "cmd_set",
    "cmd_touch",
    "cmd_flush",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cas_hits",
    "cas_misses",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "curr_items",
    "total_items",
)
SAFETY_NET = 120.0  # a hung probe fails the test instead of hanging the suite


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, lab_server: LabServers
) -> Iterator[dict[str, Instance]]:
    base = tmp_path_factory.mktemp("memcached")
    started: dict[str, Instance] = {}
    try:
        started["exposed"] = start_memcached("mc-exposed", base, exposed=True)
        seed_memcached(started["exposed"], ransom_note=True)
        started["sasl"] = start_memcached("mc-sasl", base, exposed=False, sasl=True)
        started["no-crawler"] = start_memcached(
            "mc-no-crawler", base, exposed=True, extra_args=["-o", "no_lru_crawler"]
        )
        seed_memcached(started["no-crawler"])
        started["binary"] = start_memcached(
            "mc-binary", base, exposed=True, extra_args=["--protocol", "binary"]
        )
        started["no-dump"] = start_memcached("mc-no-dump", base, exposed=True, extra_args=["-X"])
        seed_memcached(started["no-dump"])
        started["redis"] = start_redis("redis-beside-memcached", base, exposed=True)
        yield {**started, "secured": lab_server("memcached", False, MemcachedInstance)}
    finally:
        for instance in started.values():
            instance.stop()


def _probes(config: ScanConfig) -> list[Probe]:
    """The reviewed probes of other protocols (they fingerprint the port first, as in a real
    scan of a non-default port), then this one."""
    return [RedisProbe(config), PostgresProbe(config), MemcachedProbe(config)]


async def _scan(
    port: int, config: ScanConfig | None = None, *, only_memcached: bool = False
) -> list[Finding]:
    config = config or ScanConfig(timeout=2.0)
    probes = [MemcachedProbe(config)] if only_memcached else _probes(config)
    report = await asyncio.wait_for(
        Scanner(config, probes=probes).scan(parse_targets([f"127.0.0.1:{port}"])), SAFETY_NET
    )
    return report.findings


def _stats(instance: Instance) -> dict[str, str]:
    answer = memcached_command(instance, b"stats").decode()
    return dict(re.findall(r"^STAT (\S+) (.*?)\r$", answer, flags=re.MULTILINE))


def _logged_commands(log: Path, offset: int) -> list[str]:
    """Commands clients sent since ``offset``, from memcached's own ``-vv`` log."""
    text = log.read_bytes()[offset:].decode("utf-8", "replace")
    commands = []
    for line in text.splitlines():
        match = re.match(r"^<\d+ (.+)$", line)
        if not match:
            continue
        command = match.group(1)
        if command.startswith(("new ", "connection closed", "server listening")):
            continue
        commands.append(command)
    return commands


@pytest.mark.servers
async def test_exposed_memcached_is_critical_with_personal_data_and_a_note(
    servers: dict[str, Instance],
) -> None:
    exposed = servers["exposed"]
    findings = await _scan(exposed.port)
    [main] = [f for f in findings if f.rule == "memcached.unauthenticated"]
    assert main.target.service == "memcached"  # recognised on a random port by its answer
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL
    assert main.data.entities["PHONE"] >= 1 and main.data.entities["EMAIL"] >= 1
    assert main.data.records_estimated == int(_stats(exposed)["curr_items"])
    assert any("lru_crawler metadump" in e.text for e in main.evidence)
    assert any(e.text.startswith("read-only commands only") for e in main.evidence)
    [note] = [f for f in findings if f.rule == "compromise.ransom-note"]
    assert note.severity is Severity.CRITICAL
    assert note.object == MEMCACHED_RANSOM_KEY
    assert any(e.text == f"payment address: {RANSOM_BTC_ADDRESS}" for e in note.evidence)
    assert any("Bitcoin" in e.text for e in note.evidence)


@pytest.mark.servers
async def test_ascii_auth_memcached_is_info_never_open(servers: dict[str, Instance]) -> None:
    findings = await _scan(servers["secured"].port)
    assert [f.rule for f in findings] == ["memcached.auth-required"]
    assert findings[0].severity is Severity.INFO
    assert findings[0].auth is Auth.REQUIRED
    assert not findings[0].data.has_personal_data
    assert "CLIENT_ERROR unauthenticated" in findings[0].evidence[0].text


@pytest.mark.servers
async def test_sasl_memcached_is_info_never_open(servers: dict[str, Instance]) -> None:
    findings = await _scan(servers["sasl"].port)
    assert [f.rule for f in findings] == ["memcached.auth-required"]
    assert findings[0].auth is Auth.REQUIRED
    assert "SASL" in findings[0].evidence[0].text


@pytest.mark.servers
async def test_binary_only_memcached_without_sasl_is_open(servers: dict[str, Instance]) -> None:
    findings = await _scan(servers["binary"].port)
    [main] = findings
    assert main.rule == "memcached.unauthenticated"
    assert main.auth is Auth.NONE and main.severity is Severity.HIGH
    assert "binary-protocol memcached answered VERSION and STAT without SASL" in (
        main.evidence[0].text
    )


@pytest.mark.servers
async def test_cachedump_is_the_fallback_when_the_crawler_is_off(
    servers: dict[str, Instance],
) -> None:
    findings = await _scan(servers["no-crawler"].port)
    [main] = [f for f in findings if f.rule == "memcached.unauthenticated"]
    assert main.severity is Severity.CRITICAL
    assert main.data.entities["PHONE"] >= 1
    how = next(e.text for e in main.evidence if e.text.startswith("keys listed"))
    assert "stats cachedump" in how and "lru crawler disabled" in how


@pytest.mark.servers
async def test_dumping_disabled_is_still_unauthenticated(servers: dict[str, Instance]) -> None:
    """``-X`` refuses both listings: the server is as open, only nothing can be sampled."""
    findings = await _scan(servers["no-dump"].port)
    [main] = [f for f in findings if f.rule == "memcached.unauthenticated"]
    assert main.severity is Severity.HIGH
    assert main.data.records_sampled == 0
    assert main.data.records_estimated == int(_stats(servers["no-dump"])["curr_items"])
    assert any("keys not listable" in e.text and "not allowed" in e.text for e in main.evidence)


@pytest.mark.servers
def test_probe_sends_only_read_commands(servers: dict[str, Instance]) -> None:
    """memcached's ``-vv`` log sees every command; its write counters must not move.

    Only this probe runs (fingerprint, then probe): the other probes' fingerprints (Redis's
    PING…) are theirs to prove harmless."""
    exposed = servers["exposed"]
    before = _stats(exposed)
    offset = exposed.log_file.stat().st_size
    findings = asyncio.run(_scan(exposed.port, only_memcached=True))
    assert any(f.rule == "memcached.unauthenticated" for f in findings)
    commands = _logged_commands(exposed.log_file, offset)
    verbs = {command.split(" ", 1)[0] for command in commands}
    assert {"version", "stats", "get"} <= verbs
    assert verbs - READ_ONLY_VERBS == set(), commands
    assert any(c.startswith("lru_crawler metadump") for c in commands)
    after = _stats(exposed)
    assert {k: before[k] for k in WRITE_COUNTERS} == {k: after[k] for k in WRITE_COUNTERS}


@pytest.mark.servers
async def test_other_protocols_are_not_taken_for_memcached(
    servers: dict[str, Instance],
) -> None:
    probe = MemcachedProbe(ScanConfig(timeout=1.0))
    assert await probe.fingerprint("127.0.0.1", servers["redis"].port) is None
    async with fake_server(http_400) as port:
        assert await probe.fingerprint("127.0.0.1", port) is None
    async with fake_server(silent) as port:
        assert await probe.fingerprint("127.0.0.1", port) is None
    # And the other probes leave memcached to this one.
    ports = [servers["redis"].port, servers["exposed"].port]
    config = ScanConfig(timeout=2.0)
    report = await Scanner(config, probes=_probes(config)).scan(parse_targets(["127.0.0.1"]), ports)
    services = {f.target.port: f.target.service for f in report.findings}
    assert services == {ports[0]: "redis", ports[1]: "memcached"}


# --- hostile servers ---------------------------------------------------------------------------


def _memcached_like(
    on_get: Callable[[asyncio.StreamWriter], Awaitable[None]],
    item_size_max: int = 1024 * 1024,
    stats_tail: Callable[[asyncio.StreamWriter], Awaitable[None]] | None = None,
) -> Handler:
    """A fake that answers like memcached until ``get``, where ``on_get`` takes over."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line = (await reader.readuntil(b"\n")).strip()
            if line == b"version":
                writer.write(b"VERSION 1.6.99\r\n")
            elif line == b"stats":
                writer.write(b"STAT version 1.6.99\r\nSTAT curr_items 1\r\nSTAT bytes 10\r\n")
                if stats_tail is not None:
                    await stats_tail(writer)
                writer.write(b"END\r\n")
            elif line == b"stats settings":
                writer.write(b"STAT item_size_max %d\r\nEND\r\n" % item_size_max)
            elif line == b"lru_crawler metadump all":
                writer.write(b"key=user%3A1 exp=-1 la=1 cas=1 fetch=no cls=1 size=90\nEND\r\n")
            elif line.startswith(b"get "):
                await on_get(writer)
                return
            else:
                writer.write(b"ERROR\r\n")
            await writer.drain()

    return handler


async def _drip_forever(writer: asyncio.StreamWriter) -> None:
    while not writer.is_closing():
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.05)


async def _examine(port: int, config: ScanConfig) -> ProbeResult | ProbeSkipped:
    probe = MemcachedProbe(config)
    fingerprint = await probe.fingerprint("127.0.0.1", port)
    assert fingerprint is not None and fingerprint.service == "memcached"
    return await asyncio.wait_for(probe.probe("127.0.0.1", port, fingerprint), SAFETY_NET)


async def test_a_value_line_claiming_1_gb_ends_bounded() -> None:
    async def huge(writer: asyncio.StreamWriter) -> None:
        writer.write(b"VALUE user:1 0 1073741824\r\n")
        await _drip_forever(writer)

    async with fake_server(_memcached_like(huge)) as port:
        outcome = await _examine(port, ScanConfig(timeout=1.0))
    assert isinstance(outcome, ProbeSkipped)
    assert "1073741824 bytes" in outcome.reason and "item_size_max" in outcome.reason
    # What was proven before it stopped is kept: the server answered without auth.
    assert [f.rule for f in outcome.findings] == ["memcached.unauthenticated"]


async def test_a_huge_value_within_item_size_max_is_cut_not_drained() -> None:
    sent = 0

    async def flood(writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        writer.write(b"VALUE user:1 0 1073741824\r\n")
        chunk = b'{"phone": "+60123087538"} ' * 2500
        while sent < 1 << 30:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)

    async with fake_server(_memcached_like(flood, item_size_max=1 << 31)) as port:
        outcome = await _examine(port, ScanConfig(timeout=1.0))
    assert isinstance(outcome, ProbeResult)
    [main] = outcome.findings
    assert main.data.entities.get("PHONE", 0) >= 1
    assert sent < 256 * 1024 * 1024  # the probe hung up after its prefix: no gigabyte sent


async def test_a_dripping_value_ends_bounded() -> None:
    async def drip(writer: asyncio.StreamWriter) -> None:
        writer.write(b"VALUE user:1 0 1000\r\n")
        await _drip_forever(writer)

    async with fake_server(_memcached_like(drip)) as port:
        outcome = await _examine(port, ScanConfig(timeout=1.0))
    assert isinstance(outcome, ProbeSkipped)
    assert "dripping" in outcome.reason


async def test_endless_stats_end_at_the_deadline() -> None:
    async def endless(writer: asyncio.StreamWriter) -> None:
        n = 0
        while not writer.is_closing():
            n += 1
            writer.write(b"STAT filler_%d 0\r\n" % n)
            await writer.drain()
            await asyncio.sleep(0.2)

    async def never(writer: asyncio.StreamWriter) -> None:
        raise AssertionError("the probe must not get this far")

    handler = _memcached_like(never, stats_tail=endless)
    async with fake_server(handler) as port:
        outcome = await _examine(port, ScanConfig(timeout=1.0, probe_deadline=3.0))
    assert isinstance(outcome, ProbeSkipped)
    assert "deadline" in outcome.reason
    assert outcome.findings == ()  # nothing proven: stats never completed


async def test_scanner_reports_a_skipped_probe_as_incomplete() -> None:
    async def huge(writer: asyncio.StreamWriter) -> None:
        writer.write(b"VALUE user:1 0 1073741824\r\n")
        await _drip_forever(writer)

    async with fake_server(_memcached_like(huge)) as port:
        findings = await _scan(port, ScanConfig(timeout=1.0))
    [incomplete] = [f for f in findings if f.rule == "scan.incomplete"]
    assert incomplete.target.service == "memcached"
    assert any("item_size_max" in e.text for e in incomplete.evidence)
