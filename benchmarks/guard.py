"""Guard decision throughput on one core, in process, against the ``limits`` library's
moving-window limiter on the same backends as the reference.

    .venv/bin/python -m benchmarks.guard [--decisions 20000] [--no-redis] [--write]

Backends: memory, SQLite (a temporary file) and Redis: a throwaway ``redis-server`` started by
``perisai.lab.start_redis`` on a free loopback port (never the machine's own Redis), stopped
at the end. ``limits`` has no SQLite storage, so its rows are memory and Redis.

Each decision is ``Guard.check("send_otp", …)`` for a fresh valid number and a fresh IP:
number intelligence, pumping counters and seven sliding-window limits, all-or-nothing. The
reference does one ``limits`` moving-window hit per decision (a single limit), so it is the
cost floor of one limiter, not a like-for-like guard. Rates are decisions per second of
wall time and per second of this process's CPU time (the two differ when the machine is busy).
Prints a Markdown table; ``--write`` also puts it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, RedisStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from perisai.guard import Guard, GuardConfig, open_backend
from perisai.guard.clientip import canonical_ip, ip_prefix
from perisai.guard.interface import Backend
from perisai.guard.numbers import inspect_number

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- benchmark:guard:begin -->", "<!-- benchmark:guard:end -->"

LOOSE: dict[str, object] = {}  # the defaults: every decision runs the full policy
Rate = tuple[float, float]  # (per wall second, per CPU second)


def write_section(name: str, text: str) -> None:
    """Put ``text`` into docs/benchmarks.md between this benchmark's own markers, inside the
    Guard section's markers (created at the end of the file when missing)."""
    inner_begin, inner_end = f"<!-- guard:{name}:begin -->", f"<!-- guard:{name}:end -->"
    doc = DOCS.read_text(encoding="utf-8")
    if BEGIN not in doc:
        doc = doc.rstrip("\n") + f"\n\n## Guard\n\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    body, tail = rest.split(END, 1)
    block = f"{inner_begin}\n\n{text.strip()}\n\n{inner_end}"
    if inner_begin in body:
        before, after = body.split(inner_begin, 1)
        body = before + block + after.split(inner_end, 1)[1]
    else:
        body = body.rstrip("\n") + f"\n\n{block}\n\n"
    DOCS.write_text(head + BEGIN + body + END + tail, encoding="utf-8")


def _timed(run: Callable[[], None], count: int) -> Rate:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, count / max(cpu, 1e-9)


def number(i: int) -> str:
    """The ``i``-th of ten million Malaysian mobiles, spread over their prefixes (7919 is prime
    to 10^7): consecutive numbers would share a prefix, and its rate would refuse most."""
    return f"+6012{i * 7919 % 10_000_000:07d}"


def numbers(count: int) -> list[str]:
    return [number(i) for i in range(count)]


def time_guard(backend: Backend, count: int) -> Rate:
    inspect_number.cache_clear()  # every run starts cold: each number is parsed once
    ip_prefix.cache_clear()
    canonical_ip.cache_clear()
    guard = Guard(GuardConfig.from_mapping(LOOSE), backend)
    targets = numbers(count)
    # one IP per decision, each in its own /24: every decision is admitted and written
    ips = [f"{11 + i % 64}.{(i // 64) % 256}.{(i // 16384) % 256}.7" for i in range(count)]

    def run() -> None:
        for i, to in enumerate(targets):
            guard.check("send_otp", to, ips[i])

    return _timed(run, count)


def _decide_in_process(url: str, count: int, offset: int, start: Any, done: Any) -> None:
    """One guard process of :func:`time_processes`: waits for the start, decides, reports."""
    backend = open_backend(url)
    guard = Guard(GuardConfig.from_mapping(LOOSE), backend)
    targets = [number(offset + i) for i in range(count)]
    ips = [
        f"{11 + (offset + i) % 64}.{(offset + i) // 64 % 256}.{offset // 100_000}.7"
        for i in range(count)
    ]
    start.wait()
    began = time.perf_counter()
    for i, to in enumerate(targets):
        guard.check("send_otp", to, ips[i])
    done.put(time.perf_counter() - began)
    backend.close()


def time_processes(url: str, processes: int, count: int) -> float:
    """Decisions per second of ``processes`` guard processes together, ``count`` each, on one
    shared state (their own numbers and addresses, so every decision is admitted and written)."""
    context = multiprocessing.get_context("spawn")
    start, done = context.Event(), context.Queue()
    workers = [
        context.Process(target=_decide_in_process, args=(url, count, n * 1_000_000, start, done))
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    time.sleep(2.0)  # every process imported and connected
    start.set()
    elapsed: list[float] = [float(done.get(timeout=600)) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return processes * count / max(elapsed)


def time_limits(hit: Callable[[str], bool], count: int) -> Rate:
    targets = numbers(count)

    def run() -> None:
        for to in targets:
            hit(to)

    return _timed(run, count)


def cluster_rows(
    tmp: Path, count: int, item: RateLimitItemPerMinute
) -> list[tuple[str, str, Rate]]:
    """The guard on one Redis with 2 processes, and on a Redis Cluster with 1 and 2, beside
    ``limits``' moving window on the same cluster."""
    from perisai.lab import start_redis
    from perisai.lab.redis_cluster import start_redis_cluster

    rows: list[tuple[str, str, Rate]] = []
    name = "perisai guard (full policy)"
    server = start_redis("bench-redis-procs", tmp, exposed=True)
    try:
        for processes in (1, 2):
            rate = time_processes(server.url_for(2), processes, count)
            rows.append((f"{name}, {processes} processes", "redis", (rate, 0.0)))
    finally:
        server.stop()
    cluster = start_redis_cluster(tmp / "cluster")
    try:
        backend = open_backend(cluster.url, tag="single")
        rows.append((name, "redis cluster", time_guard(backend, count)))
        backend.close()
        for processes in (1, 2):
            rate = time_processes(cluster.url, processes, count)
            rows.append((f"{name}, {processes} processes", "redis cluster", (rate, 0.0)))
        remote = MovingWindowRateLimiter(storage_from_string(cluster.url))
        rows.append(
            (
                "limits moving window (1 limit)",
                "redis cluster",
                time_limits(lambda key: remote.hit(item, key), count),
            )
        )
    finally:
        cluster.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis rows")
    parser.add_argument(
        "--no-cluster", action="store_true", help="skip the Redis Cluster and multi-process rows"
    )
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    count = max(1, min(args.decisions, 1_000_000))
    item = RateLimitItemPerMinute(5)
    rows: list[tuple[str, str, Rate]] = []
    guard_name, limits_name = "perisai guard (full policy)", "limits moving window (1 limit)"
    rows.append((guard_name, "memory", time_guard(open_backend("memory://"), count)))
    memory = MovingWindowRateLimiter(MemoryStorage())
    rows.append((limits_name, "memory", time_limits(lambda key: memory.hit(item, key), count)))
    with tempfile.TemporaryDirectory(prefix="perisai-bench-") as tmp:
        sqlite = open_backend(f"sqlite:///{Path(tmp) / 'guard.db'}")
        rows.append((guard_name, "sqlite", time_guard(sqlite, count)))
        sqlite.close()
        if not args.no_redis:
            from perisai.lab import start_redis

            server = start_redis("bench-redis", Path(tmp), exposed=True)
            try:
                url = server.url_for(0)
                remote_backend = open_backend(url)
                rows.append((guard_name, "redis", time_guard(remote_backend, count)))
                remote_backend.close()
                remote = MovingWindowRateLimiter(RedisStorage(server.url_for(1)))
                rows.append(
                    (limits_name, "redis", time_limits(lambda key: remote.hit(item, key), count))
                )
            finally:
                server.stop()
            if not args.no_cluster:
                rows += cluster_rows(Path(tmp), count, item)
    flags = " --no-redis" if args.no_redis else ""
    flags += " --no-cluster" if args.no_cluster else ""
    lines = [
        f"`.venv/bin/python -m benchmarks.guard --decisions {count}{flags}` on "
        f"{platform.machine()}, Python {platform.python_version()}, one core, {date.today()}. "
        "Each guard decision is a `send_otp` check for a never-seen number from a never-seen "
        "address (number parsed cold, pumping counters read, seven sliding-window limits "
        "admitted all-or-nothing); `limits` does one moving-window hit. `limits` has no "
        "SQLite storage. Redis: a throwaway `redis-server` on loopback; Redis Cluster: three "
        "masters with a replica each (`perisai.lab.redis_cluster`), six `redis-server`s on "
        "loopback. *N processes*: N guard processes deciding at once on one state, each its "
        "own numbers; the rate is their sum (the CPU column is then not measured). Everything "
        "(guards, servers) shares this machine's cores.",
        "",
        "| limiter | backend | decisions/s (wall) | decisions/s (CPU time) |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, backend, (wall, cpu) in rows:
        cpu_text = f"{cpu:,.0f}" if cpu else "-"
        lines.append(f"| {name} | {backend} | {wall:,.0f} | {cpu_text} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section("throughput", text)


if __name__ == "__main__":
    main()
