"""The scan flow against servers that do not play along: silent, closed, speaking garbage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from perisai.probes import ScanConfig
from perisai.scanner import Scanner
from perisai.targets import parse_targets

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)  # accepts, never answers
    writer.close()


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\x00\xff garbage \x07 banner\r\n")
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()


async def _serve(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    async for port in _serve(_silent):
        yield port


@pytest.fixture
async def garbage_port() -> AsyncIterator[int]:
    async for port in _serve(_garbage):
        yield port


async def test_silent_server_ends_within_deadline_and_says_so(silent_port: int) -> None:
    config = ScanConfig(timeout=0.5, probe_deadline=10)
    began = time.monotonic()
    report = await Scanner(config).scan(parse_targets([f"127.0.0.1:{silent_port}"]))
    elapsed = time.monotonic() - began
    # all fingerprints at once (2 x timeout), then one banner read: bounded by the config
    assert elapsed < config.probe_deadline
    [finding] = report.findings
    assert finding.rule == "service.unidentified"
    assert finding.severity.value == "info"
    assert "no banner" in finding.evidence[0].text


async def test_garbage_is_reported_as_unknown_with_its_banner(garbage_port: int) -> None:
    report = await Scanner(ScanConfig(timeout=0.5)).scan(
        parse_targets([f"127.0.0.1:{garbage_port}"])
    )
    [finding] = report.findings
    assert finding.target.service == "unknown"
    assert "garbage" in finding.evidence[0].text
    assert "\x00" not in finding.evidence[0].text  # unprintable bytes are escaped


async def test_closed_port_gives_no_finding() -> None:
    server = await asyncio.start_server(_silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    report = await Scanner(ScanConfig(timeout=0.5)).scan(parse_targets([f"127.0.0.1:{port}"]))
    assert report.findings == []
    assert report.notes == ["1 address:port pairs checked, 0 open"]
