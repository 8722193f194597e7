"""A day of OTP traffic, with and without attacks, through the guard's HTTP API.

    .venv/bin/python -m benchmarks.pumping_sim [--users 10000] [--seed 7] [--config FILE]
        [--scenarios legit,bombing,adjacent,spread,drip,faking,mixed] [--write]

Each scenario starts a guard with **empty state** (a cold start) on SQLite in a temporary
directory and replays one simulated day, from midnight, through ``POST /v1/decisions``
(``send_otp``) and ``POST /v1/events`` (``sent`` after an allowed send, ``verified`` when
the user typed the code) of the real Starlette app, bearer token included. Time is
simulated: the guard, its SQLite state and the model share one clock that jumps from request
to request, so codes expire, in-flight periods end and days roll over as they would in a
real day, and the day replays in about a minute. The traffic model is in
``benchmarks/traffic.py`` (delays, non-verifiers, resends, expiry, day/night, a flash crowd,
carrier-grade NAT); every scenario replays the same legitimate users, and each attack runs
alone beside them, then all together (``mixed``). Nothing leaves the process: the addresses
in requests are documentation and benchmarking ranges.

Measured per scenario: legitimate sends refused (denied) or challenged; each attack's sends
let through, the send at which it was first refused, and the SMS cost let through. Speed
(decisions/s, HTTP p99 over real sockets at 1 and 200 clients) is ``benchmarks/guard.py``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

import httpx  # noqa: E402

from benchmarks.guard import write_section  # noqa: E402
from benchmarks.traffic import (  # noqa: E402
    ATTACKS,
    HIGH_COST,
    Request,
    SimClock,
    TrafficModel,
    attack_requests,
    legit_requests,
    merged,
)
from perisai.guard import Guard, GuardConfig, load_config  # noqa: E402
from perisai.guard.api import create_app  # noqa: E402
from perisai.guard.backends.sqlite import SQLiteBackend  # noqa: E402
from perisai.guard.numbers import inspect_number  # noqa: E402

# Assumed outbound SMS prices in USD per message. No price sheet can be fetched here: these are
# rounded, order-of-magnitude figures in the range of public CPaaS list prices (Twilio's
# per-country SMS pricing pages, 2024) and are NOT authoritative; pass --prices FILE (JSON,
# {"MY": 0.07, …}) with your provider's sheet for real figures. High-cost pumping targets are
# priced high on purpose: that is why attackers pick them.
PRICES: dict[str, float] = {
    "MY": 0.07,
    "SG": 0.05,
    "ID": 0.40,
    "IN": 0.08,
    "US": 0.01,
    "GB": 0.04,
    "PH": 0.20,
    "AU": 0.05,
    "TH": 0.03,
    "AZ": 0.30,
    "UZ": 0.30,
    "KG": 0.30,
    "TJ": 0.35,
    "BY": 0.20,
    "KZ": 0.25,
}
DEFAULT_PRICE = 0.10
MIDNIGHT = 1_796_601_600.0  # 2026-12-07 00:00 UTC: the guard's day boundaries are UTC
TOKEN = secrets.token_urlsafe(24)  # the simulated app's bearer token
ATTACK_START = {  # seconds after midnight
    "bombing": 9 * 3600.0,
    "adjacent": 11 * 3600.0,
    "spread": 15 * 3600.0,
    "drip": 0.5 * 3600.0,
    "faking": 13 * 3600.0,
}
TITLES = {
    "bombing": "OTP bombing, one victim, rotating IPs",
    "adjacent": "pumping, adjacent numbers (one block)",
    "spread": f"pumping spread over {len(HIGH_COST)} high-cost countries",
    "drip": "slow drip, 3 an hour for a day",
    "faking": "pumping that verifies 30% to fake conversion",
}
SCENARIOS = ("legit", *ATTACKS, "mixed")


@dataclass
class Tally:
    """One population's outcome: every send attempt in order (True: let through)."""

    outcomes: list[bool] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    challenged: int = 0
    hindered: int = 0  # refused or challenged (a challenged person may still get through)
    cost_through: float = 0.0
    cost_avoided: float = 0.0

    @property
    def through(self) -> int:
        return sum(self.outcomes)

    @property
    def refused(self) -> int:
        return len(self.outcomes) - self.through

    def first_refused(self) -> int | None:
        return next((i + 1 for i, ok in enumerate(self.outcomes) if not ok), None)


def price(prices: dict[str, float], number: str) -> float:
    info = inspect_number(number)
    return prices.get(info.country if info else "", DEFAULT_PRICE)


def replay(
    requests: Iterable[Request], config: GuardConfig, db: Path, prices: dict[str, float]
) -> tuple[dict[str, Tally], int]:
    """Feed ``requests`` to a fresh guard through its HTTP API; tallies per population."""
    return asyncio.run(_replay(requests, config, db, prices))


async def _replay(
    requests: Iterable[Request], config: GuardConfig, db: Path, prices: dict[str, float]
) -> tuple[dict[str, Tally], int]:
    clock = SimClock(MIDNIGHT)
    backend = SQLiteBackend(db, clock=clock)
    app = create_app(config, guard=Guard(config, backend, clock=clock), tokens=[TOKEN])
    tallies: dict[str, Tally] = {}
    got_code: set[tuple[str, int, str]] = set()
    calls = 0
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://guard.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )

    async def post(path: str, body: dict[str, object]) -> dict[str, object]:
        nonlocal calls
        calls += 1
        response = await client.post(path, json=body)
        if response.status_code >= 400:
            raise SystemExit(f"{path} answered {response.status_code}: {response.text}")
        data: dict[str, object] = response.json() if response.content else {}
        return data

    try:
        for request in requests:
            clock.now = MIDNIGHT + request.at
            who = (request.who, request.user, request.to)
            if request.kind == "verify":
                if who in got_code:
                    await post(
                        "/v1/events", {"type": "verified", "to": request.to, "ip": request.ip}
                    )
                continue
            body: dict[str, object] = {"action": "send_otp", "to": request.to, "ip": request.ip}
            decided = await post("/v1/decisions", body)
            tally = tallies.setdefault(request.who, Tally())
            tally.hindered += decided["decision"] != "allow"
            if decided["decision"] == "challenge":
                tally.challenged += 1
                tally.reasons[str(decided["reason"])] += 1
                if request.who == "legit":  # a person solves the CAPTCHA; bots do not
                    decided = await post("/v1/decisions", {**body, "challenge_passed": True})
            elif decided["decision"] != "allow":
                tally.reasons[str(decided["reason"])] += 1
            allowed = decided["decision"] == "allow"
            tally.outcomes.append(allowed)
            cost = price(prices, request.to)
            if allowed:
                got_code.add(who)
                tally.cost_through += cost
                await post("/v1/events", {"type": "sent", "to": request.to, "ip": request.ip})
            else:
                tally.cost_avoided += cost
    finally:
        await client.aclose()
        backend.close()
    return tallies, calls


def scenario_requests(name: str, model: TrafficModel, seed: int) -> list[Request]:
    legit = legit_requests(model, random.Random(seed))
    attacks = ATTACKS if name == "mixed" else () if name == "legit" else (name,)
    streams = [legit]
    for i, attack in enumerate(attacks):
        rng = random.Random(f"{seed}-{attack}")
        streams.append(attack_requests(attack, rng, ATTACK_START[attack], 10_000_000 * (i + 1)))
    return list(merged(*streams))


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "—"


def table(results: dict[str, dict[str, Tally]]) -> list[str]:
    lines = [
        "| scenario | legitimate sends | refused or challenged | attack | attack sends | "
        "let through | first refused at | SMS cost let through / avoided |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for scenario, tallies in results.items():
        legit = tallies.get("legit", Tally())
        attacks = [name for name in tallies if name != "legit"] or ["—"]
        for i, name in enumerate(attacks):
            head = (
                f"| {scenario} | {len(legit.outcomes):,} | {legit.hindered} "
                f"({pct(legit.hindered, len(legit.outcomes))}; {legit.refused} denied) "
                if i == 0
                else "| | | "
            )
            if name == "—":
                lines.append(head + "| — | — | — | — | — |")
                continue
            log = tallies[name]
            first = log.first_refused()
            lines.append(
                head + f"| {TITLES[name]} | {len(log.outcomes):,} | {log.through} "
                f"({pct(log.through, len(log.outcomes))}) | "
                f"{first if first is not None else 'never'} | "
                f"${log.cost_through:,.2f} / ${log.cost_avoided:,.2f} |"
            )
    return lines


def report(
    results: dict[str, dict[str, Tally]],
    calls: int,
    wall: float,
    args: argparse.Namespace,
) -> str:
    conf = f" --config {args.config}" if args.config else ""
    lines = [
        f"`.venv/bin/python -m benchmarks.pumping_sim --users {args.users} --seed {args.seed}"
        f"{conf}` on {platform.machine()}, Python {platform.python_version()}, {date.today()}: "
        f"{len(results)} scenarios, each a cold-started guard on SQLite replaying one "
        f"simulated day through the HTTP API; {calls:,} API calls in {wall:.0f} s.",
        "",
        *table(results),
        "",
    ]
    for scenario, tallies in results.items():
        legit = tallies.get("legit")
        if legit is not None and legit.reasons:
            why = ", ".join(f"{r} {n}" for r, n in legit.reasons.most_common())
            lines.append(f"- {scenario}: legitimate sends challenged or refused by {why}")
    prices = ", ".join(f"{c} ${p:.2f}" for c, p in sorted(PRICES.items()))
    lines.append(
        f"- assumed SMS prices (USD per message; rounded, order-of-magnitude list prices, "
        f"not a provider's sheet): {prices}; others ${DEFAULT_PRICE:.2f}"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000, help="users a day (≤ 50000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", type=Path, default=None, help="guard policy YAML")
    parser.add_argument("--prices", type=Path, default=None, help="JSON {country: USD}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    args.users = max(100, min(args.users, 50_000))
    prices = dict(PRICES)
    if args.prices is not None:
        prices.update(json.loads(args.prices.read_text(encoding="utf-8")))
    config = load_config(args.config)
    model = TrafficModel(users=args.users)
    results: dict[str, dict[str, Tally]] = {}
    calls = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="perisai-sim-") as tmp:
        for name in scenarios:
            tallies, made = replay(
                scenario_requests(name, model, args.seed), config, Path(tmp) / f"{name}.db", prices
            )
            results[name] = tallies
            calls += made
            print(f"{name}: {made:,} calls, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    text = report(results, calls, time.perf_counter() - started, args)
    print(text)
    if args.write:
        write_section(f"pumping-{args.config.stem}" if args.config else "pumping", text)


if __name__ == "__main__":
    main()
