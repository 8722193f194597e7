"""The pumping rules' promises to real users, held over generated traffic (hypothesis).

The argument is in :mod:`perisai.guard.pumping`'s docstring; each test holds one step of it:
a refusal changes no state; an attack on other countries from other networks changes no
verdict for a country's users; a realistic day (the traffic model of
``benchmarks/traffic.py``, cold start, default config) gets through, whatever the model's
parameters within their documented ranges; and evidence against a country expires.

Examples are derandomized: a run is repeatable, never flaky.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

from benchmarks.traffic import (
    HIGH_COST,
    Request,
    SimClock,
    TrafficModel,
    drive,
    legit_requests,
    merged,
    mobile_numbers,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from perisai.guard import Guard, GuardConfig, Verdict, load_config
from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.numbers import inspect_number

START = 1_796_601_600.0  # a UTC midnight
PROPS = settings(
    derandomize=True,
    database=None,  # no replay of examples saved by another version of the code
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DAYS = settings(PROPS, max_examples=12, phases=[Phase.explicit, Phase.generate])  # a day each
MY = mobile_numbers("MY", 60, random.Random("props-my"))
ELSEWHERE = {c: mobile_numbers(c, 30, random.Random(f"props-{c}")) for c in HIGH_COST[:3]}
SMALL = GuardConfig.from_mapping(  # low floors, so generated traffic reaches them often
    {"pumping": {"country_floor": 3, "unproven_country_floor": 1, "prefix_floor": 2}}
)


def users(numbers: list[str], ips: str) -> st.SearchStrategy[list[Request]]:
    """Users of ``numbers`` from addresses ``ips``.{i}: arrival gaps, whether and when each
    verifies, all generated."""

    @st.composite
    def build(draw: st.DrawFn) -> list[Request]:
        count = draw(st.integers(1, len(numbers)))
        requests: list[Request] = []
        at = 0.0
        for i in range(count):
            at += draw(st.floats(0, 900))
            ip = f"{ips}.{draw(st.integers(1, 6))}"
            requests.append(Request(at, len(requests), "send", numbers[i], ip, "legit", i))
            if draw(st.booleans()):
                delay = draw(st.floats(1, 300))
                requests.append(
                    Request(at + delay, len(requests), "verify", numbers[i], ip, "legit", i)
                )
        return sorted(requests)

    return build()


def attack(ips: str) -> st.SearchStrategy[list[Request]]:
    """Sends to other countries from other networks; some verified, as a faker would."""

    @st.composite
    def build(draw: st.DrawFn) -> list[Request]:
        requests: list[Request] = []
        at = 0.0
        for i in range(draw(st.integers(0, 60))):
            at += draw(st.floats(0, 120))
            country = draw(st.sampled_from(sorted(ELSEWHERE)))
            to = ELSEWHERE[country][draw(st.integers(0, 29))]
            ip = f"{ips}.{draw(st.integers(1, 250))}"
            seq = 1_000_000 + len(requests)
            requests.append(Request(at, seq, "send", to, ip, "attack", i))
            if draw(st.integers(0, 3)) == 0:
                requests.append(Request(at + 5, seq + 1, "verify", to, ip, "attack", i))
        return requests

    return build()


def verdicts_for(config: GuardConfig, requests: list[Request], who: str) -> list[str]:
    """Every verdict ``who``'s sends got, in order, from a fresh guard."""
    clock = SimClock(START)
    g = Guard(config, MemoryBackend(clock=clock), clock=clock)
    seen: list[str] = []
    got: set[tuple[str, int]] = set()
    for request in requests:
        clock.now = START + request.at
        if request.kind == "verify":
            if (request.who, request.user) in got:
                g.record("verified", request.to, ip=request.ip)
            continue
        decision = g.check("send_otp", request.to, request.ip)
        if request.who == who:
            seen.append(f"{decision.verdict.value}:{decision.reason}")
        if decision.allowed:
            got.add((request.who, request.user))
            g.record("sent", request.to, ip=request.ip)
    return seen


def user_conversion(requests: list[Request]) -> dict[str, float]:
    """Per country, the share of users who verified at all, as the draw came out."""
    users: dict[tuple[str, int], bool] = {}
    for request in requests:
        info = inspect_number(request.to)
        key = (info.country if info else "?", request.user)
        users[key] = users.get(key, False) or request.kind == "verify"
    totals: dict[str, list[int]] = {}
    for (country, _), verified in users.items():
        total = totals.setdefault(country, [0, 0])
        total[0] += 1
        total[1] += verified
    return {country: verified / count for country, (count, verified) in totals.items()}


def snapshot(backend: MemoryBackend) -> object:
    return copy.deepcopy((backend._nums, backend._texts, backend._windows))


@PROPS
@given(legit=users(MY, "198.18.7"), other=attack("203.0.113"))
def test_refusals_change_no_state(legit: list[Request], other: list[Request]) -> None:
    """Step 1: only sent and verified events move counters; a refusal is not evidence."""
    clock = SimClock(START)
    backend = MemoryBackend(clock=clock)
    g = Guard(SMALL, backend, clock=clock)
    refused = 0
    for request in merged(legit, other):
        clock.now = START + request.at
        if request.kind == "verify":
            g.record("verified", request.to, ip=request.ip)
            continue
        before = snapshot(backend)
        decision = g.check("send_otp", request.to, request.ip)
        if decision.allowed:
            g.record("sent", request.to, ip=request.ip)
        else:
            refused += 1
            assert snapshot(backend) == before, decision
    assert refused >= 0


@PROPS
@given(legit=users(MY, "198.18.7"), other=attack("203.0.113"))
def test_an_attack_elsewhere_changes_no_verdict_here(
    legit: list[Request], other: list[Request]
) -> None:
    """Step 2, isolation: sends to other countries from other networks, however many and
    however verified, leave every verdict for this country's users as it was."""
    alone = verdicts_for(SMALL, legit, "legit")
    beside = verdicts_for(SMALL, list(merged(legit, other)), "legit")
    assert beside == alone


@DAYS
@given(
    seed=st.integers(0, 2**32 - 1),
    users_a_day=st.integers(1000, 5000),
    never_verify=st.floats(0.10, 0.20),
    delay_median=st.floats(10, 40),
    delay_sigma=st.floats(0.6, 1.2),
    resend_share=st.floats(0.2, 0.8),
    flash_at=st.floats(3600, 23.8 * 3600),
    cgnat_share=st.floats(0.0, 0.8),
)
def test_a_realistic_day_is_let_through_from_cold(
    seed: int,
    users_a_day: int,
    never_verify: float,
    delay_median: float,
    delay_sigma: float,
    resend_share: float,
    flash_at: float,
    cgnat_share: float,
) -> None:
    """Step 3: a cold-started guard with the default config, and a day drawn from the
    traffic model with its parameters anywhere in their documented ranges (the flash crowd
    any time after the guard's first hour: a launch-day advert is what ``expected_countries``
    is for): nobody who solves a challenge is refused; of the countries with 20 sends or more
    whose users verified at 70% or more, none has most of its sends challenged, and together
    at most 1% or 10 sends are (the benchmark's fixed day: under 0.1%). Apps of 1,000 to
    5,000 users a day: a smaller one's night is a handful of users."""
    model = TrafficModel(
        users=users_a_day,
        never_verify=never_verify,
        delay_median=delay_median,
        delay_sigma=delay_sigma,
        resend_share=resend_share,
        flash_at=flash_at,
        cgnat_share=cgnat_share,
        ipv6_share=min(0.3, 1 - cgnat_share),
    )
    requests = legit_requests(model, random.Random(seed))
    clock = SimClock(START)
    g = Guard(GuardConfig(), MemoryBackend(clock=clock), clock=clock)
    outcome = drive(g, clock, requests, START)["legit"]
    # nobody is refused outright: every challenged person got a code after solving it
    assert outcome.through == outcome.sends
    # A small country's draw can come out far from the model's rate (hypothesis finds such
    # seeds): 13 of 26 users silent is a population a faker could be. The promise is for
    # countries whose users did verify as the model says, at 70% or more.
    verifying = {
        country
        for country, rate in user_conversion(requests).items()
        if rate >= 0.70 and outcome.countries.get(country, [0])[0] >= 20
    }
    sends = sum(outcome.countries[c][0] for c in verifying)
    hindered = sum(outcome.countries[c][1] for c in verifying)
    # a small country's first users may all be silent, and each silent user who asked twice
    # counts twice: a few challenges are the floor's price, whatever the day's size. The
    # worst of 150 draws over these ranges came to 0.94% (never-verify near 20% with most
    # silent users asking twice); the benchmark's day, 0.06%.
    assert hindered <= max(10, 0.01 * sends), outcome.countries
    for country in verifying:
        sent, challenged = outcome.countries[country]
        assert challenged * 2 < sent, (country, outcome.countries)


@PROPS
@given(other=attack("203.0.113"))
def test_evidence_expires(other: list[Request]) -> None:
    """Step 4: whatever an attack left, two days and two in-flight periods later a country's
    next user is let through."""
    clock = SimClock(START)
    g = Guard(SMALL, MemoryBackend(clock=clock), clock=clock)
    drive(g, clock, other, START)
    clock.now += 2 * 86400 + 2 * SMALL.pumping.in_flight
    for country, numbers in ELSEWHERE.items():
        decision = g.check("send_otp", numbers[-1], "198.51.100.1")
        assert decision.verdict is Verdict.ALLOW, (country, decision)


def test_cold_start_day_on_the_default_config() -> None:
    """The issue's check: a short cold-start legitimate day (3,000 users of the benchmark's
    model, flash crowd and carrier-grade NAT included) on the default config: at most 0.1%
    of sends refused or challenged."""
    requests = legit_requests(TrafficModel(users=3000), random.Random(11))
    clock = SimClock(START)
    g = Guard(GuardConfig(), MemoryBackend(clock=clock), clock=clock)
    outcome = drive(g, clock, requests, START)["legit"]
    assert outcome.sends > 3000
    assert outcome.hindered <= 0.001 * outcome.sends, outcome.reasons


def test_the_documented_day_one_config_lets_the_day_through() -> None:
    """``docs/guard-day-one.yaml``, as the README tells a team to start: it loads, and the
    same cold-start day gets through it too."""
    config = load_config(Path(__file__).resolve().parent.parent / "docs" / "guard-day-one.yaml")
    assert config.pumping.expected_countries["MY"] > 0
    requests = legit_requests(TrafficModel(users=3000), random.Random(11))
    clock = SimClock(START)
    g = Guard(config, MemoryBackend(clock=clock), clock=clock)
    outcome = drive(g, clock, requests, START)["legit"]
    assert outcome.hindered <= 0.001 * outcome.sends, outcome.reasons
