"""Guard decision throughput on one core, in process, against the ``limits`` library's
moving-window limiter on the same backend as the reference.

    .venv/bin/python -m benchmarks.guard [--decisions 20000] [--redis redis://127.0.0.1:PORT/0]

Each decision is ``Guard.check("send_otp", …)`` for a fresh valid number and a fresh IP:
number intelligence, pumping counters and six sliding-window limits, all-or-nothing. The
reference does one ``limits`` moving-window hit per decision (a single limit), so it is the
cost floor of one limiter, not a like-for-like guard. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from perisai.guard import Guard, GuardConfig, open_backend
from perisai.guard.clientip import ip_prefix
from perisai.guard.interface import Backend
from perisai.guard.numbers import inspect_number

LOOSE: dict[str, object] = {}  # the defaults: every decision runs the full policy


def numbers(count: int) -> list[str]:
    return [f"+6012{i:07d}" for i in range(count)]


def time_guard(backend: Backend, count: int) -> float:
    inspect_number.cache_clear()  # every run starts cold
    ip_prefix.cache_clear()
    guard = Guard(GuardConfig.from_mapping(LOOSE), backend)
    targets = numbers(count)
    # one IP per decision, each in its own /24: every decision is admitted and written
    ips = [f"{11 + i % 64}.{(i // 64) % 256}.{(i // 16384) % 256}.7" for i in range(count)]
    started = time.perf_counter()
    for i, to in enumerate(targets):
        guard.check("send_otp", to, ips[i])
    return count / (time.perf_counter() - started)


def time_limits(hit: Callable[[str], bool], count: int) -> float:
    targets = numbers(count)
    started = time.perf_counter()
    for to in targets:
        hit(to)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--redis", default=None, help="redis:// URL of a throwaway server")
    args = parser.parse_args()
    count = max(1, min(args.decisions, 1_000_000))
    item = RateLimitItemPerMinute(5)
    rows: list[tuple[str, str, float]] = []
    rows.append(("perisai guard", "memory", time_guard(open_backend("memory://"), count)))
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = open_backend(f"sqlite:///{Path(tmp) / 'guard.db'}")
        rows.append(("perisai guard", "sqlite", time_guard(sqlite, count)))
        sqlite.close()
    memory = MovingWindowRateLimiter(MemoryStorage())
    rows.append(
        (
            "limits moving window (1 limit)",
            "memory",
            time_limits(lambda key: memory.hit(item, key), count),
        )
    )
    if args.redis:
        rows.append(("perisai guard", "redis", time_guard(open_backend(args.redis), count)))
        remote = MovingWindowRateLimiter(RedisStorage(args.redis))
        rows.append(
            (
                "limits moving window (1 limit)",
                "redis",
                time_limits(lambda key: remote.hit(item, key), count),
            )
        )
    print(f"`.venv/bin/python -m benchmarks.guard --decisions {count}`\n")
    print("| limiter | backend | decisions/s |")
    print("| --- | --- | ---: |")
    for name, backend, rate in rows:
        print(f"| {name} | {backend} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
