"""Guard decisions over real HTTP: ``perisai guard serve`` under ``wrk``, one client and 200.

    .venv/bin/python -m benchmarks.guard_http [--seconds 15] [--no-redis] [--write]

Starts ``perisai guard serve`` (one uvicorn process, as the README runs it) on a free
127.0.0.1 port with SQLite state in a temporary directory, then with Redis state (a
throwaway ``redis-server`` from ``perisai.lab.start_redis``), and drives
``POST /v1/decisions`` with ``wrk`` (Debian's package; ``apt-get install wrk``): each request
a ``send_otp`` decision for a random valid-format Malaysian mobile number from a random
benchmarking address (RFC 2544), bearer token included. ``wrk`` runs one thread on the
machine's other core, with 1 and then 200 open connections, each sending its next request as
soon as the last is answered (closed loop: the server's ceiling, where 200 requests always
wait in line). Then 200 clients each sending at their own pace (open loop: Poisson arrivals,
together at half and at three quarters of the ceiling just measured, as 200 app servers
would), timed from when each request was due, so a stall counts against every request
it delays. All percentiles are per request, at the client, loopback TCP included.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from benchmarks.guard import write_section  # noqa: E402
from perisai.lab.instances import free_port  # noqa: E402

# wrk's Lua: a fresh number and address per request; the token comes from the environment
SCRIPT = """
local token = os.getenv("PERISAI_GUARD_TOKEN")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
math.randomseed(os.time())
request = function()
  local number = string.format("+6012%07d", math.random(0, 9999999))
  local ip = string.format("198.%d.%d.%d", math.random(18, 19), math.random(0, 255),
                           math.random(1, 254))
  local body = '{"action":"send_otp","to":"' .. number .. '","ip":"' .. ip .. '"}'
  return wrk.format(nil, nil, nil, body)
end
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass
class Run:
    state: str
    connections: int
    rate: float  # requests per second
    p50: float  # milliseconds
    p99: float
    errors: int  # non-2xx answers and socket errors


def serve(state: str, token: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "perisai",
        "guard",
        "serve",
        "--state",
        state,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PERISAI_GUARD_TOKEN": token}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"guard serve exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("guard serve did not answer /healthz in 30 s")


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if found is None:
        raise SystemExit(f"cannot read wrk's latency {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def drive(
    wrk: str, base: str, script: Path, token: str, connections: int, seconds: int
) -> tuple[float, float, float, int]:
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        f"{base}/v1/decisions",
    ]
    result = subprocess.run(
        command,
        env={**os.environ, "PERISAI_GUARD_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    out = result.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*"):
        found = re.search(pattern, out)
        if found is not None:
            errors += sum(int(n) for n in re.findall(r"\d+", found.group(0)))
    return rate, p50, p99, errors


_LENGTH = re.compile(rb"(?i)content-length: *(\d+)")


async def _open_loop(
    port: int, token: str, clients: int, rate: float, seconds: int
) -> tuple[list[float], int]:
    """``clients`` keep-alive connections, each sending on its own Poisson schedule (``rate``
    requests/s in all); latencies in ms from each request's due time."""
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        due = loop.time() + rng.expovariate(rate / clients)
        try:
            while due < end:
                await asyncio.sleep(max(0.0, due - loop.time()))
                number = f"+6012{rng.randrange(10**7):07d}"
                ip = f"198.{rng.randint(18, 19)}.{rng.randrange(256)}.{rng.randint(1, 254)}"
                body = f'{{"action":"send_otp","to":"{number}","ip":"{ip}"}}'.encode()
                head = (
                    "POST /v1/decisions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: application/json\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                try:
                    writer.write(head.encode() + body)
                    answer = await reader.readuntil(b"\r\n\r\n")
                    length = _LENGTH.search(answer)
                    await reader.readexactly(int(length.group(1)) if length else 0)
                except (ConnectionError, asyncio.IncompleteReadError):
                    errors += 1  # the server closed the connection: count it, reconnect
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                else:
                    latencies.append((loop.time() - due) * 1000)
                    errors += not answer.startswith(b"HTTP/1.1 200")
                due += rng.expovariate(rate / clients)
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, errors


def open_loop(label: str, port: int, token: str, rate: float, seconds: int) -> Run:
    latencies, errors = asyncio.run(_open_loop(port, token, 200, rate, seconds))
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return Run(label, 200, len(latencies) / seconds, p50, p99, errors)


def measure(state: str, label: str, wrk: str, script: Path, seconds: int, token: str) -> list[Run]:
    process, base = serve(state, token)
    port = int(base.rsplit(":", 1)[1])
    try:
        drive(wrk, base, script, token, 10, 2)  # warm up: imports, caches, connections
        runs = []
        for connections in (1, 200):
            rate, p50, p99, errors = drive(wrk, base, script, token, connections, seconds)
            runs.append(Run(f"{label}, closed loop", connections, rate, p50, p99, errors))
        ceiling = runs[-1].rate
        for share in (0.5, 0.75):
            name = f"{label}, open loop at {share:.0%} of that"
            runs.append(open_loop(name, port, token, share * ceiling, seconds))
        return runs
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="per run (≤ 120)")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis rows")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("benchmarks.guard_http needs wrk: apt-get install wrk")
    seconds = max(1, min(args.seconds, 120))
    token = secrets.token_urlsafe(24)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="perisai-bench-") as tmp:
        script = Path(tmp) / "decisions.lua"
        script.write_text(SCRIPT, encoding="utf-8")
        state = f"sqlite:///{Path(tmp) / 'guard.db'}"
        runs += measure(state, "sqlite", wrk, script, seconds, token)
        if not args.no_redis:
            from perisai.lab import start_redis

            server = start_redis("bench-http-redis", Path(tmp), exposed=True)
            try:
                runs += measure(server.url_for(0), "redis", wrk, script, seconds, token)
            finally:
                server.stop()
    flags = " --no-redis" if args.no_redis else ""
    lines = [
        f"`.venv/bin/python -m benchmarks.guard_http --seconds {seconds}{flags}` on "
        f"{platform.machine()} ({os.cpu_count()} cores), Python {platform.python_version()}, "
        f"{date.today()}: `perisai guard serve` (one uvicorn process) under `wrk -t1` "
        "(closed loop) and 200 paced clients (open loop), "
        f"{seconds} s per row, `POST /v1/decisions` for a fresh number and address each.",
        "",
        "| state, load | clients | decisions/s | p50 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        lines.append(
            f"| {run.state} | {run.connections} | {run.rate:,.0f} | {run.p50:.2f} | "
            f"{run.p99:.2f} | {run.errors} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section("http", text)


if __name__ == "__main__":
    main()
