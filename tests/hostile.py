"""Servers that do not play along, for the scanner's safety tests.

Each speaks just enough of a protocol to be taken for the real thing and then misbehaves:
announces a gigabyte, streams without end, drips a byte a second. They run in a thread of
their own with their own event loop, so a scan in another process (measured for its memory)
faces them exactly as it would face a hostile host. Every stream stops after STREAM_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

GIGABYTE = 1 << 30
STREAM_SECONDS = 60.0  # no server here talks longer than this, whatever the client does
CHUNK = b"a" * 65536


async def _stream_endlessly(writer: asyncio.StreamWriter, chunk: bytes = CHUNK) -> None:
    """Write ``chunk`` as fast as the client reads, until it hangs up or time runs out."""
    loop = asyncio.get_running_loop()
    stop = loop.time() + STREAM_SECONDS
    with contextlib.suppress(ConnectionError, OSError):
        while loop.time() < stop:
            writer.write(chunk)
            await writer.drain()


async def _read_resp_command(reader: asyncio.StreamReader) -> list[bytes]:
    """One RESP command (array of bulk strings, or an inline command)."""
    line = await reader.readline()
    if not line:
        raise ConnectionError("client left")
    if not line.startswith(b"*"):
        return line.split()
    parts = []
    for _ in range(int(line[1:])):
        size = int((await reader.readline())[1:])
        parts.append((await reader.readexactly(size + 2))[:-2])
    return parts


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads, never answers, until the client hangs up (then closes its side too)."""
    try:
        while await reader.read(1024):
            pass
    finally:
        writer.close()


async def redis_gigabyte_value(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An open 'Redis' with one key whose value is announced as 1 GB and then streamed."""
    info = b"# Server\r\nredis_version:7.0.15\r\n# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"
    try:
        while True:
            command = [part.upper() for part in (await _read_resp_command(reader))[:1]]
            name = command[0] if command else b""
            if name == b"PING":
                writer.write(b"+PONG\r\n")
            elif name == b"INFO":
                writer.write(b"$%d\r\n%s\r\n" % (len(info), info))
            elif name == b"SCAN":
                writer.write(b"*2\r\n$1\r\n0\r\n*1\r\n$6\r\nbigkey\r\n")
            elif name == b"TYPE":
                writer.write(b"+string\r\n")
            elif name in (b"GETRANGE", b"GET"):
                writer.write(b"$%d\r\n" % GIGABYTE)
                await _stream_endlessly(writer)
                return
            else:
                writer.write(b"+OK\r\n")
            await writer.drain()
    except (ConnectionError, ValueError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def redis_dripping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers the first PING at once (so it is taken for Redis), then drips a byte a second."""
    try:
        await _read_resp_command(reader)
        writer.write(b"+PONG\r\n")
        await writer.drain()
        while True:
            await _read_resp_command(reader)
            for byte in b"$100000\r\n" + b"x" * 100_000:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.0)
    except (ConnectionError, ValueError, asyncio.IncompleteReadError, OSError):
        return
    finally:
        writer.close()


async def http_endless_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP server whose every answer is a JSON body that never ends."""
    with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b'{"name":"' + b"a" * 65000
        await _stream_endlessly(writer, b"%x\r\n%s\r\n" % (len(chunk), chunk))
    writer.close()


async def mongo_huge_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers any MongoDB message with a header announcing a 1 GB reply, then streams."""
    with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
        header = await reader.readexactly(16)
        length, request_id = struct.unpack("<ii", header[:8])
        await reader.readexactly(max(0, min(length, 1 << 20) - 16))
        writer.write(struct.pack("<iiii", GIGABYTE - 1, 1, request_id, 2013))  # OP_MSG
        await _stream_endlessly(writer)
    writer.close()


@contextlib.contextmanager
def serving(handler: Handler) -> Iterator[int]:
    """Run ``handler`` as a TCP server on a free 127.0.0.1 port, in a thread; yields the port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        holder["server"] = server
        holder["port"] = server.sockets[0].getsockname()[1]
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    ready.wait(10)
    try:
        port = holder["port"]
        assert isinstance(port, int)
        yield port
    finally:

        async def stop() -> None:
            server = holder["server"]
            assert isinstance(server, asyncio.Server)
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
