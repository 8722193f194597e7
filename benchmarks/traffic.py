"""A model of one app's OTP traffic, and of the attacks on it, as time-ordered events.

Used by ``benchmarks/pumping_sim.py`` and, in a short form, by the guard's tests. Nothing here
sends anything: it yields :class:`Request` objects that a driver feeds to the guard.

The legitimate model (every parameter is a field of :class:`TrafficModel`, with its source):

- **Volume and mix.** ``users`` sign-ups or logins a day, split by ``mix`` (a Malaysian
  consumer app: 70% MY, then SG, ID, IN, US, GB, PH, AU, TH).
- **Day and night.** Arrivals follow ``hourly`` weights: a trough at 03:00-05:00 of about a
  tenth of the evening peak, the shape of published mobile-traffic curves.
- **Verification delay.** Log-normal, median ``delay_median`` 20 s and ``delay_sigma`` 1.0
  (p90 about 72 s, p99 about 200 s: SMS delivery plus typing, with a long tail of slow
  deliveries and distracted users).
- **Never verify.** ``never_verify`` 15% of users never type a code back (the middle of the
  10-20% that hosted verification services report as normal non-conversion).
- **Resends.** A user still waiting after ``resend_after`` (uniform 30-90 s) asks again with
  probability ``resend_share``; a code typed after ``code_ttl`` has expired, so the user asks
  for a new one and types it ``10-30`` s later.
- **Flash crowd.** ``flash_factor`` (10) times the normal rate from ``flash_country`` for
  ``flash_minutes`` (10) at ``flash_at`` (20:30), as after a TV advert.
- **Addresses.** ``cgnat_share`` of each country's users sit behind ``cgnat_addresses``
  carrier-grade NAT IPv4 addresses (hundreds of users each a day); ``ipv6_share`` come from
  one mobile carrier /64 per country (thousands a day for the big country) with random
  interface ids; the rest have home addresses of their own. Documentation and benchmarking
  ranges only (RFC 2544, RFC 3849): the driver never connects to them.

The attacks: OTP bombing of one victim from rotating addresses; adjacent-number pumping in
one number block; pumping spread over high-cost countries from rotating addresses; a slow
drip (a few sends an hour for a day); and pumping that fakes conversion by verifying a share
of what it gets through.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import phonenumbers
from phonenumbers import PhoneNumberType

from perisai.guard.engine import Guard
from perisai.guard.interface import Verdict
from perisai.guard.numbers import inspect_number

__all__ = [
    "ATTACKS",
    "HIGH_COST",
    "Outcome",
    "Request",
    "SimClock",
    "TrafficModel",
    "attack_requests",
    "drive",
    "legit_requests",
    "merged",
    "mobile_numbers",
]

HOUR = 3600.0
DAY = 86400.0
HIGH_COST = ("UZ", "KG", "TJ", "AZ", "BY", "KZ")
ATTACKS = ("bombing", "adjacent", "spread", "drip", "faking")
# relative arrivals per hour of the day, 00:00 first
HOURLY = (
    0.30, 0.18, 0.12, 0.10, 0.10, 0.15, 0.35, 0.65, 0.90, 1.00, 1.00, 1.00,
    1.05, 1.00, 0.95, 0.95, 1.00, 1.05, 1.10, 1.20, 1.30, 1.25, 0.95, 0.60,
)  # fmt: skip


@dataclass(frozen=True)
class TrafficModel:
    """The legitimate traffic's parameters (see the module docstring)."""

    users: int = 10_000
    mix: dict[str, float] = field(
        default_factory=lambda: {
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
    )
    hourly: tuple[float, ...] = HOURLY
    delay_median: float = 20.0
    delay_sigma: float = 1.0
    never_verify: float = 0.15
    resend_share: float = 0.5
    resend_after: tuple[float, float] = (30.0, 90.0)
    code_ttl: float = 300.0
    flash_country: str = "MY"
    flash_factor: float = 10.0
    flash_at: float = 20.5 * HOUR
    flash_minutes: float = 10.0
    cgnat_share: float = 0.45
    cgnat_addresses: int = 12  # for the whole app: hundreds of users behind each
    ipv6_share: float = 0.30


@dataclass(order=True)
class Request:
    """One call the app makes to the guard at ``at`` seconds after the start.

    ``kind``: ``send`` (ask for a decision on an SMS, then record ``sent`` if allowed) or
    ``verify`` (record ``verified``: the app checked the code). ``who`` is ``legit`` or the
    attack's name; ``user`` ties a user's requests together (a verify is skipped when its
    send was refused); ``needs`` is the index of the send a verify depends on."""

    at: float
    seq: int
    kind: str = field(compare=False)
    to: str = field(compare=False)
    ip: str = field(compare=False)
    who: str = field(compare=False)
    user: int = field(compare=False, default=-1)


def mobile_numbers(region: str, count: int, rng: random.Random) -> list[str]:
    """``count`` distinct valid mobile numbers of ``region``, drawn over its whole mobile
    numbering space (all digits after the first of its example number's national number)."""
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    if example is None:
        raise ValueError(f"no example mobile number for {region}")
    national = str(example.national_number)
    head = f"+{example.country_code}{national[0]}"  # all the rest drawn: real spread
    found: dict[str, str] = {}
    tries = 0
    while len(found) < count and tries < count * 400:
        tries += 1
        candidate = head + "".join(rng.choice("0123456789") for _ in range(len(national) - 1))
        info = inspect_number(candidate)
        if info is not None and info.number_type in ("mobile", "fixed_line_or_mobile"):
            found.setdefault(info.e164, info.e164)
    if len(found) < count:
        raise ValueError(f"not {count} mobile numbers for {region}")
    return list(found)


def adjacent_numbers(region: str, count: int, rng: random.Random) -> list[str]:
    """``count`` valid numbers in one block (same number but the last digits)."""
    for start in mobile_numbers(region, 40, rng):
        block = [f"{start[:-3]}{i:03d}" for i in range(1000)]
        valid = [n for n in block if (info := inspect_number(n)) and info.number_type != "voip"]
        if len(valid) >= count:
            return valid[:count]
    raise ValueError(f"no block of {count} adjacent valid numbers in {region}")


def _arrival(model: TrafficModel, rng: random.Random, day: int) -> float:
    hour = rng.choices(range(24), weights=model.hourly)[0]
    return day * DAY + (hour + rng.random()) * HOUR


class _Addresses:
    """Client addresses per the model: CGNAT IPv4 pools, carrier /64s, home addresses."""

    def __init__(self, model: TrafficModel, rng: random.Random) -> None:
        self.model = model
        self.rng = rng
        self.homes = 0

    def pick(self, country: str) -> str:
        model, rng = self.model, self.rng
        roll = rng.random()
        if roll < model.cgnat_share:
            return f"198.18.255.{1 + rng.randrange(model.cgnat_addresses)}"
        if roll < model.cgnat_share + model.ipv6_share:
            carrier = sum(map(ord, country)) % 4096
            host = f"{rng.randrange(1, 1 << 16):x}::{rng.randrange(1, 1 << 16):x}"
            return f"2001:db8:{carrier:x}:1:{host}"
        self.homes += 1
        n = self.homes
        return f"198.{18 + (n >> 16) % 2}.{(n >> 8) % 255}.{1 + n % 250}"


def legit_requests(
    model: TrafficModel, rng: random.Random, days: int = 1, seq_start: int = 0
) -> list[Request]:
    """A day (or ``days``) of real users, from midnight of day 0 (the guard's cold start)."""
    requests: list[Request] = []
    addresses = _Addresses(model, rng)
    seq = seq_start
    user = 0

    def add(at: float, kind: str, to: str, ip: str) -> None:
        nonlocal seq
        seq += 1
        requests.append(Request(at, seq, kind, to, ip, "legit", user))

    for day in range(days):
        arrivals: list[tuple[float, str]] = []
        for country, share in model.mix.items():
            count = max(1, round(model.users * share))
            arrivals += [(_arrival(model, rng, day), country) for _ in range(count)]
        flash_count = round(
            model.users
            * model.mix.get(model.flash_country, 0.0)
            * model.flash_minutes
            / (24 * 60)
            * (model.flash_factor - 1)
            * model.hourly[int(model.flash_at // HOUR) % 24]
            / (sum(model.hourly) / 24)
        )
        for _ in range(flash_count):
            at = day * DAY + model.flash_at + rng.random() * model.flash_minutes * 60
            arrivals.append((at, model.flash_country))
        numbers = {
            country: iter(mobile_numbers(country, sum(1 for _, c in arrivals if c == country), rng))
            for country in sorted({c for _, c in arrivals})
        }
        for at, country in arrivals:
            user += 1
            to = next(numbers[country])
            ip = addresses.pick(country)
            add(at, "send", to, ip)
            delay = math.exp(math.log(model.delay_median) + model.delay_sigma * rng.gauss())
            verifies = rng.random() >= model.never_verify
            wait = rng.uniform(*model.resend_after)
            last_send = at
            if (not verifies or delay > wait) and rng.random() < model.resend_share:
                last_send = at + wait
                add(last_send, "send", to, ip)
            if not verifies:
                continue
            typed = at + delay
            if typed - last_send > model.code_ttl:  # expired: ask again, type it soon after
                last_send = typed
                add(last_send, "send", to, ip)
                typed = last_send + rng.uniform(10, 30)
            add(max(typed, last_send + 1.0), "verify", to, ip)
    requests.sort()
    return requests


def attack_requests(
    name: str, rng: random.Random, start: float, seq_start: int = 0
) -> list[Request]:
    """One attack's requests, from ``start`` seconds (see the module docstring)."""
    requests: list[Request] = []
    seq = seq_start

    def add(at: float, kind: str, to: str, ip: str, user: int = -1) -> None:
        nonlocal seq
        seq += 1
        requests.append(Request(at, seq, kind, to, ip, name, user))

    def rotating(i: int) -> str:  # a fresh address in a fresh /24 per send
        return f"203.{i % 256}.{(i // 256) % 256}.{1 + rng.randrange(250)}"

    if name == "bombing":  # one victim, a request every 10 s for two hours
        (victim,) = mobile_numbers("MY", 1, rng)
        for i in range(720):
            add(start + i * 10, "send", victim, rotating(i))
    elif name == "adjacent":  # one number block in a high-cost country, one every 5 s
        for i, to in enumerate(adjacent_numbers("UZ", 600, rng)):
            add(start + i * 5, "send", to, rotating(i))
    elif name == "spread":  # random numbers over six high-cost countries, one every 3 s
        spread = [n for c in HIGH_COST for n in mobile_numbers(c, 300, rng)]
        rng.shuffle(spread)
        for i, to in enumerate(spread):
            add(start + i * 3, "send", to, rotating(i))
    elif name == "drip":  # three sends an hour for a day, one high-cost country
        for i, to in enumerate(mobile_numbers("KG", 72, rng)):
            add(start + i * 1200, "send", to, rotating(i))
    elif name == "faking":  # three countries, verifies 30% of what gets through, 8 s later
        targets = [n for c in ("TJ", "AZ", "KZ") for n in mobile_numbers(c, 400, rng)]
        rng.shuffle(targets)
        for i, to in enumerate(targets):
            add(start + i * 4, "send", to, rotating(i), user=i)
            if rng.random() < 0.30:
                add(start + i * 4 + 8, "verify", to, rotating(i), user=i)
    else:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    return requests


def merged(*streams: list[Request]) -> Iterator[Request]:
    """Every request of every stream in time order."""
    yield from sorted(request for stream in streams for request in stream)


@dataclass
class Outcome:
    """What one population got: sends attempted, let through, and refused or challenged at
    the first ask (a person who then solves the challenge still counts here)."""

    sends: int = 0
    through: int = 0
    hindered: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    countries: dict[str, list[int]] = field(default_factory=dict)  # country: [sends, hindered]


def drive(
    guard: Guard, clock: SimClock, requests: Iterable[Request], start: float
) -> dict[str, Outcome]:
    """Feed ``requests`` to ``guard`` in process (``check``, then ``record``), moving
    ``clock``; legitimate users solve challenges, attackers do not."""
    outcomes: dict[str, Outcome] = {}
    got_code: set[tuple[str, int, str]] = set()
    for request in requests:
        clock.now = start + request.at
        who = (request.who, request.user, request.to)
        if request.kind == "verify":
            if who in got_code:
                guard.record("verified", request.to, ip=request.ip)
            continue
        outcome = outcomes.setdefault(request.who, Outcome())
        outcome.sends += 1
        info = inspect_number(request.to)
        country = outcome.countries.setdefault(info.country if info else "?", [0, 0])
        country[0] += 1
        decision = guard.check("send_otp", request.to, request.ip)
        if not decision.allowed:
            outcome.hindered += 1
            country[1] += 1
            outcome.reasons[decision.reason] = outcome.reasons.get(decision.reason, 0) + 1
            if decision.verdict is Verdict.CHALLENGE and request.who == "legit":
                decision = guard.check("send_otp", request.to, request.ip, challenge_passed=True)
        if decision.allowed:
            outcome.through += 1
            got_code.add(who)
            guard.record("sent", request.to, ip=request.ip)
    return outcomes


class SimClock:
    """A clock the driver moves: the guard and its backend read it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
