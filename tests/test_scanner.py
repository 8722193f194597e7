"""The scan flow against servers that do not play along: silent, closed, speaking garbage."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from perisai.lab.instances import free_port
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
    assert finding.evidence[0].text == "no banner, and no answer any probe recognised"


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


@pytest.fixture
def uvicorn_port() -> Iterator[int]:
    """A real web application server (uvicorn serving an empty Starlette app) on loopback: it
    answers every path with ``404 Not Found`` and ``server: uvicorn``."""
    import uvicorn
    from starlette.applications import Starlette

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(Starlette(), host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


async def test_a_web_server_is_described_by_what_it_answered(uvicorn_port: int) -> None:
    """Not "no probe's request was answered": it answered, as a web server, not a store."""
    report = await Scanner(ScanConfig(timeout=1.0)).scan(
        parse_targets([f"127.0.0.1:{uvicorn_port}"])
    )
    [finding] = report.findings
    assert finding.rule == "service.unidentified" and finding.severity.value == "info"
    said = finding.evidence[0].text
    assert said.startswith("answers HTTP (GET /: HTTP/1.1 404 Not Found; server: uvicorn)"), said
    assert "no banner" not in said
