"""A compressed day of OTP traffic against ``perisai guard serve``, over HTTP on loopback.

    .venv/bin/python -m benchmarks.pumping_sim [--users 3000] [--seed 7] [--config FILE]
        [--only bombing,adjacent,spread,brute,relay] [--write]

Starts ``perisai guard serve`` as a real subprocess on a free 127.0.0.1 port, with SQLite
state and a file delivery sink in a temporary directory, and drives its public API in the
order a day's events would come (sorted by a simulated time of day, sent one at a time):

- legitimate users: a Malaysian app's country mix, one code each by SMS, about 85% type the
  code back (5% after one typo), the rest never do; IPv4 from 198.18.0.0/15 (RFC 2544's
  benchmarking range) and IPv6 from 2001:db8::/32 (RFC 3849), one address per user;
  a few users then ask for an e-mail to their own verified address (``send_email``);
- OTP bombing: one victim's number, from rotating addresses;
- SMS pumping to adjacent numbers of one prefix (sequential last digits);
- SMS pumping spread over high-cost countries, random numbers, a new address per send
  (198.19.0.0/16, so hundreds of different /24 networks);
- verify brute force: random codes against a victim's live code, with resends;
- mail relay: ``send_email`` decisions for strangers' and disposable addresses.

``--only`` keeps the legitimate users and just the named attacks, to see one attack without
the state the others left (the full run's attacks share per-day and per-hour counters).

Every request goes to 127.0.0.1 only; the addresses above travel as the request's ``ip``.
Time is compressed: the whole day runs in well under a minute of wall time, so per-recipient
windows (1 / 60 s, 5 / 10 min) hold every request of the run, while per-day counters see the
same totals as a real day. Prints Markdown; ``--write`` puts it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import phonenumbers
from phonenumbers import PhoneNumberType

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from benchmarks.guard import write_section  # noqa: E402
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
LEGIT_MIX: dict[str, float] = {  # a Malaysian consumer app's users
    "MY": 0.70,
    "SG": 0.07,
    "ID": 0.06,
    "IN": 0.04,
    "US": 0.03,
    "GB": 0.03,
    "PH": 0.03,
    "AU": 0.02,
    "TH": 0.02,
}
HIGH_COST = ("AZ", "UZ", "KG", "TJ", "BY", "KZ")
CODE = re.compile(r"code is (\d+)")
ALLOWED_VERDICTS = {201}  # a verification that went out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mobile_numbers(region: str, count: int, rng: random.Random) -> list[str]:
    """``count`` distinct valid mobile numbers of ``region`` (checked by phonenumbers)."""
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    if example is None:
        raise SystemExit(f"no example mobile number for {region}")
    base = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    found: set[str] = set()
    tries = 0
    while len(found) < count and tries < count * 200:
        tries += 1
        # keep the operator prefix, spread the rest: real users are not in one number block
        tail = "".join(rng.choice("0123456789") for _ in range(7))
        candidate = base[:-7] + tail
        info = inspect_number(candidate)
        if info is not None and info.number_type in ("mobile", "fixed_line_or_mobile"):
            found.add(info.e164)
    return sorted(found)


def adjacent_numbers(region: str, count: int, rng: random.Random) -> list[str]:
    """Sequential valid mobiles sharing everything but their last three digits."""
    for _ in range(200):
        (start,) = mobile_numbers(region, 1, rng)
        stem = start[:-3]
        block = [f"{stem}{i:03d}" for i in range(1000)]
        valid = [n for n in block if (info := inspect_number(n)) and info.number_type != "voip"]
        if len(valid) >= count:
            return valid[:count]
    raise SystemExit(f"no block of {count} adjacent valid numbers in {region}")


@dataclass(order=True)
class Step:
    at: float  # simulated seconds since midnight
    seq: int
    kind: str = field(compare=False)  # legit / bombing / adjacent / spread / brute / relay
    run: Callable[[Sim], None] = field(compare=False)


@dataclass
class AttackLog:
    outcomes: list[bool] = field(default_factory=list)  # True: the bogus send went out
    cost_through: float = 0.0
    cost_avoided: float = 0.0


class Sim:
    def __init__(self, base: str, sink: Path, prices: dict[str, float]) -> None:
        self.client = httpx.Client(base_url=base, timeout=10.0)
        self.sink = sink
        self._offset = 0
        self.codes: dict[str, str] = {}
        self.prices = prices
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.legit_sends = 0
        self.legit_refused: Counter[str] = Counter()
        self.legit_verified = 0
        self.legit_email = 0
        self.legit_email_refused = 0
        self.attacks: dict[str, AttackLog] = {}
        self.brute_hits = 0

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        started = time.perf_counter()
        response = self.client.post(path, json=body)
        self.latencies.append(time.perf_counter() - started)
        self.statuses[response.status_code] += 1
        if response.status_code >= 500:
            raise SystemExit(f"server error {response.status_code} on {path}: {response.text}")
        return response

    def code_for(self, to: str) -> str | None:
        with self.sink.open(encoding="utf-8") as lines:
            lines.seek(self._offset)
            for line in lines:
                message = json.loads(line)
                found = CODE.search(message["body"])
                if found:
                    self.codes[message["to"]] = found.group(1)
            self._offset = lines.tell()
        return self.codes.get(to)

    def price(self, number: str) -> float:
        info = inspect_number(number)
        return self.prices.get(info.country if info else "", DEFAULT_PRICE)

    def attack_send(self, name: str, to: str, ip: str) -> None:
        response = self.post("/v1/verifications", {"to": to, "channel": "sms", "ip": ip})
        log = self.attacks.setdefault(name, AttackLog())
        through = response.status_code in ALLOWED_VERDICTS
        log.outcomes.append(through)
        if through:
            log.cost_through += self.price(to)
        else:
            log.cost_avoided += self.price(to)


def attack(name: str, to: str, ip: str) -> Callable[[Sim], None]:
    def run(sim: Sim) -> None:
        sim.attack_send(name, to, ip)

    return run


def legit_user(
    to: str, ip: str, verifies: bool, typo: bool, account: str, email: str | None
) -> Callable[[Sim], None]:
    def run(sim: Sim) -> None:
        sim.legit_sends += 1
        body = {"to": to, "channel": "sms", "ip": ip, "account": account}
        response = sim.post("/v1/verifications", body)
        if response.status_code != 201:
            sim.legit_refused[response.json().get("reason", str(response.status_code))] += 1
            return
        if not verifies:
            return
        code = sim.code_for(to)
        if code is None:
            raise SystemExit(f"no code delivered to {to}")
        if typo:
            wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
            sim.post("/v1/verifications/check", {"to": to, "code": wrong, "ip": ip})
        checked = sim.post("/v1/verifications/check", {"to": to, "code": code, "ip": ip})
        if checked.status_code == 200:
            sim.legit_verified += 1
        if email is not None:  # the app verified this address earlier, then mails it
            sim.post("/v1/events", {"type": "verified", "to": email, "account": account})
            sim.legit_email += 1
            decided = sim.post(
                "/v1/decisions",
                {"action": "send_email", "to": email, "ip": ip, "account": account},
            ).json()
            if decided["decision"] != "allow":
                sim.legit_email_refused += 1

    return run


def relay(to: str, ip: str, account: str) -> Callable[[Sim], None]:
    def run(sim: Sim) -> None:
        decided = sim.post(
            "/v1/decisions", {"action": "send_email", "to": to, "ip": ip, "account": account}
        ).json()
        sim.attacks.setdefault("mail relay (send_email)", AttackLog()).outcomes.append(
            decided["decision"] == "allow"
        )

    return run


def brute(to: str, ip: str, resend: bool) -> Callable[[Sim], None]:
    def run(sim: Sim) -> None:
        if resend:
            sim.post("/v1/verifications", {"to": to, "channel": "sms", "ip": ip})
            return
        real = sim.code_for(to)
        guess = f"{random.randrange(10**6):06d}"
        if guess == real:  # never the real code: we count attempts evaluated, not luck
            guess = f"{(int(guess) + 1) % 10**6:06d}"
        response = sim.post("/v1/verifications/check", {"to": to, "code": guess, "ip": ip})
        log = sim.attacks.setdefault("verify brute force (guesses)", AttackLog())
        log.outcomes.append(response.status_code == 400)  # evaluated, not locked out
        if response.status_code == 200:
            sim.brute_hits += 1

    return run


def build_day(users: int, rng: random.Random) -> list[Step]:
    steps: list[Step] = []
    seq = 0

    def add(at: float, kind: str, run: Callable[[Sim], None]) -> None:
        nonlocal seq
        seq += 1
        steps.append(Step(at, seq, kind, run))

    per_country = {c: max(1, round(users * share)) for c, share in LEGIT_MIX.items()}
    for country, count in per_country.items():
        for i, to in enumerate(mobile_numbers(country, count, rng)):
            n = len(steps)
            if rng.random() < 0.6:
                ip = f"198.{18 + n % 2}.{(n // 2) % 256}.{1 + (n // 512) % 250}"
            else:
                ip = f"2001:db8:{n // 65536:x}:{n % 65536:x}::{rng.randrange(1, 65535):x}"
            # user activity peaks in the day: a triangle between 06:00 and 23:00
            at = rng.triangular(6 * 3600, 23 * 3600, 14 * 3600)
            verifies = rng.random() < 0.85
            typo = verifies and rng.random() < 0.05
            email = f"user{country.lower()}{i}@example.com" if rng.random() < 0.05 else None
            add(at, "legit", legit_user(to, ip, verifies, typo, f"acct-{country}-{i}", email))
    # OTP bombing: 300 sends to one victim from rotating documentation addresses
    (victim,) = mobile_numbers("MY", 1, rng)
    for i in range(300):
        ip = f"{('192.0.2', '198.51.100', '203.0.113')[i % 3]}.{1 + i % 250}"
        add(9 * 3600 + i * 2, "bombing", attack("OTP bombing", victim, ip))
    # adjacent-number pumping in one high-cost prefix
    for i, to in enumerate(adjacent_numbers("UZ", 300, rng)):
        ip = f"198.19.{i % 256}.{7 + i % 200}"
        add(
            11 * 3600 + i * 3,
            "adjacent",
            attack("pumping: adjacent numbers", to, ip),
        )
    # pumping spread over high-cost countries, random numbers, a new address per send
    spread = [n for c in HIGH_COST for n in mobile_numbers(c, 200, rng)]
    rng.shuffle(spread)
    for i, to in enumerate(spread):
        ip = f"198.19.{(i * 7) % 256}.{1 + (i * 13) % 250}"
        add(
            15 * 3600 + i * 2,
            "spread",
            attack("pumping: spread, rotating IPs", to, ip),
        )
    # verify brute force: one code requested, 100 guesses from rotating addresses, 3 resends
    (target,) = mobile_numbers("MY", 1, rng)
    for i in range(4):
        add(17 * 3600 + i * 400, "brute", brute(target, "203.0.113.99", resend=True))
        for j in range(25):
            ip = f"192.0.2.{1 + (i * 25 + j) % 250}"
            add(17 * 3600 + i * 400 + 1 + j, "brute", brute(target, ip, resend=False))
    # mail relay: a signed-up attacker account sends to strangers and disposable addresses
    for i in range(200):
        to = f"victim{i}@example.org" if i % 2 else f"spam{i}@mailinator.com"
        add(20 * 3600 + i * 5, "relay", relay(to, f"203.0.113.{1 + i % 250}", "acct-attacker"))
    steps.sort()
    return steps


def start_server(tmp: Path, config: Path | None) -> tuple[subprocess.Popen[bytes], str, Path]:
    sink = tmp / "sent.jsonl"
    sink.touch()
    policy: dict[str, Any] = {}
    if config is not None:
        import yaml

        policy = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    policy.setdefault("secret", "pumping-sim")
    policy["delivery"] = {
        "sms": {"type": "file", "path": str(sink)},
        "email": {"type": "file", "path": str(sink)},
    }
    conf = tmp / "guard.yaml"
    conf.write_text(json.dumps(policy), encoding="utf-8")  # JSON is YAML
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "perisai",
        "guard",
        "serve",
        "--config",
        str(conf),
        "--state",
        f"sqlite:///{tmp / 'guard.db'}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"guard serve exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return process, base, sink
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("guard serve did not answer /healthz in 20 s")


def stopped_after(outcomes: list[bool]) -> int:
    """Bogus sends let through up to the last one that got out (0: stopped at once)."""
    last = max((i for i, ok in enumerate(outcomes) if ok), default=-1)
    return sum(outcomes[: last + 1])


def report(
    sim: Sim, wall: float, users: int, seed: int, config: Path | None, only: str | None = None
) -> str:
    lines: list[str] = []
    conf = f" --config {config}" if config else ""
    conf += f" --only {only}" if only else ""
    lines.append(
        f"`.venv/bin/python -m benchmarks.pumping_sim --users {users} --seed {seed}{conf}` "
        f"on {platform.machine()}, Python {platform.python_version()}, {date.today()}: "
        f"`perisai guard serve` with SQLite state, {len(sim.latencies)} HTTP requests "
        f"sent one at a time in {wall:.1f} s.\n"
    )
    lines.append(
        "| traffic | requests | let through | first refused at | stopped after | "
        "SMS cost let through | SMS cost avoided |"
    )
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    total_attack = total_through = 0
    for name, log in sim.attacks.items():
        n, through = len(log.outcomes), sum(log.outcomes)
        total_attack += n
        total_through += through
        first = next((i + 1 for i, ok in enumerate(log.outcomes) if not ok), None)
        cost = "—" if name.startswith(("mail", "verify")) else f"${log.cost_through:,.2f}"
        avoided = "—" if name.startswith(("mail", "verify")) else f"${log.cost_avoided:,.2f}"
        lines.append(
            f"| {name} | {n} | {through} ({100 * through / max(1, n):.1f}%) | "
            f"{first if first is not None else 'never'} | {stopped_after(log.outcomes)} | "
            f"{cost} | {avoided} |"
        )
    refused = sum(sim.legit_refused.values())
    lines.append(
        f"| legitimate SMS sends | {sim.legit_sends} | {sim.legit_sends - refused} | "
        f"— | — | — | — |"
    )
    lines.append("")
    reasons = ", ".join(f"{r}: {n}" for r, n in sim.legit_refused.most_common()) or "none"
    ms = sorted(x * 1000 for x in sim.latencies)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    lines.append(
        f"- attack requests let through: {total_through} of {total_attack} "
        f"({100 * total_through / max(1, total_attack):.2f}%); brute-force guesses that "
        f"matched: {sim.brute_hits}"
    )
    lines.append(
        f"- legitimate SMS sends blocked or challenged: {refused} of {sim.legit_sends} "
        f"({100 * refused / max(1, sim.legit_sends):.2f}%; {reasons}); legitimate "
        f"send_email refused: {sim.legit_email_refused} of {sim.legit_email}; "
        f"users who verified: {sim.legit_verified}"
    )
    lines.append(
        f"- HTTP latency over loopback, one request at a time: p50 "
        f"{statistics.median(ms):.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms"
    )
    prices = ", ".join(f"{c} ${p:.2f}" for c, p in sorted(PRICES.items()))
    lines.append(
        f"- assumed SMS prices (USD per message; rounded, order-of-magnitude list prices, "
        f"not a provider's sheet): {prices}; others ${DEFAULT_PRICE:.2f}"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000, help="legitimate users (≤ 20000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", type=Path, default=None, help="guard policy YAML")
    parser.add_argument("--prices", type=Path, default=None, help="JSON {country: USD}")
    parser.add_argument("--only", default=None, help="attacks to run, e.g. spread,adjacent")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    kinds = {"bombing", "adjacent", "spread", "brute", "relay"}
    only = set(args.only.split(",")) if args.only else kinds
    if not only <= kinds:
        parser.error(f"--only takes {', '.join(sorted(kinds))}")
    users = max(10, min(args.users, 20_000))
    prices = dict(PRICES)
    if args.prices is not None:
        prices.update(json.loads(args.prices.read_text(encoding="utf-8")))
    rng = random.Random(args.seed)
    random.seed(args.seed)
    steps = [s for s in build_day(users, rng) if s.kind == "legit" or s.kind in only]
    with tempfile.TemporaryDirectory(prefix="perisai-sim-") as tmpdir:
        process, base, sink = start_server(Path(tmpdir), args.config)
        try:
            sim = Sim(base, sink, prices)
            started = time.perf_counter()
            deadline = started + 600  # bounded: ten minutes at most
            for step in steps:
                step.run(sim)
                if time.perf_counter() > deadline:
                    raise SystemExit("simulation ran past 600 s")
            wall = time.perf_counter() - started
            sim.client.close()
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
    text = report(sim, wall, users, args.seed, args.config, args.only)
    print(text)
    if args.write:
        write_section(f"pumping-{args.only.replace(',', '-')}" if args.only else "pumping", text)


if __name__ == "__main__":
    main()
