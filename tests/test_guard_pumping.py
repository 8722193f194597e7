"""SMS-pumping detection by verification credit, on the memory, SQLite and Redis backends (a
real redis-server started here by the lab machinery on a free loopback port), with a clock
the test moves.

A burst of sends that never verify is challenged, then denied, within its first 50 sends,
whether it goes to one prefix, one country, is spread over several or comes from one address;
sends whose codes can still be used never count as unverified; users who verify earn their
country, prefix, address and network the room they use, resends included.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import phonenumbers
import pytest
import redis
from benchmarks.traffic import SimClock as Clock
from phonenumbers import PhoneNumberType

from perisai.guard import Guard, GuardConfig, GuardConfigError, Verdict, load_config
from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.backends.redis import RedisBackend
from perisai.guard.backends.sqlite import SQLiteBackend
from perisai.guard.interface import Backend
from perisai.guard.numbers import inspect_number
from perisai.lab import Instance, start_redis

HIGH_COST = ("UZ", "KG", "TJ", "AZ")


def numbers(region: str, count: int, seed: int = 1) -> list[str]:
    """``count`` distinct valid mobile numbers of ``region``, in different number prefixes."""
    rng = random.Random(f"{region}-{seed}")
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    assert example is not None
    base = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    found: dict[str, str] = {}  # prefix -> number: one number per prefix
    for _ in range(count * 200):
        candidate = base[:-7] + "".join(rng.choice("0123456789") for _ in range(7))
        info = inspect_number(candidate)
        if info is not None and info.number_type in ("mobile", "fixed_line_or_mobile"):
            found.setdefault(info.prefix(3), info.e164)
        if len(found) == count:
            return list(found.values())
    raise AssertionError(f"not {count} numbers for {region}")


def ip(i: int) -> str:
    """A fresh address in a fresh /24 per send (RFC 2544's benchmarking range): no per-IP or
    per-network rule applies."""
    return f"198.{18 + i // 256 % 2}.{i % 256}.{1 + i // 512 % 254}"


@pytest.fixture(scope="module")
def pumping_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    instance = start_redis("guard-pumping-redis", tmp_path_factory.mktemp("gpu"), exposed=True)
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.servers)],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: Backend
    if request.param == "memory":
        made = MemoryBackend()
    elif request.param == "sqlite":
        made = SQLiteBackend(tmp_path / "guard.db")
    else:
        instance: Instance = request.getfixturevalue("pumping_redis")
        url = instance.url_for(4)
        redis.Redis.from_url(url).flushdb()
        made = RedisBackend.from_url(url)
    try:
        yield made
    finally:
        made.close()


def burst(
    g: Guard, targets: list[str], start: int = 0, same_ip: str | None = None
) -> list[Verdict]:
    """Send to each target once, never verifying; the verdicts in order."""
    verdicts = []
    for i, to in enumerate(targets, start):
        source = same_ip or ip(i)
        decision = g.check("send_otp", to, source)
        verdicts.append(decision.verdict)
        if decision.allowed:
            g.record("sent", to, ip=source)
    return verdicts


def legit(
    g: Guard, clock: Clock, targets: list[str], start: int = 0, every: int = 7, gap: float = 30
) -> list[Verdict]:
    """Users ``gap`` seconds apart who verify 20 s after their code, but for one in
    ``every`` (about 85% when 7)."""
    verdicts = []
    for i, to in enumerate(targets, start):
        decision = g.check("send_otp", to, ip(i))
        verdicts.append(decision.verdict)
        if decision.allowed:
            g.record("sent", to, ip=ip(i))
            if i % every:
                clock.now += 20
                g.record("verified", to, ip=ip(i))
                clock.now += gap - 20
                continue
        clock.now += gap
    return verdicts


def challenged_then_denied(verdicts: list[Verdict]) -> tuple[int, int]:
    """(first challenge, first denial), 1-based; asserts the challenge comes first."""
    first_challenge = verdicts.index(Verdict.CHALLENGE) + 1
    first_deny = verdicts.index(Verdict.DENY) + 1
    assert first_challenge < first_deny
    assert Verdict.ALLOW not in verdicts[first_challenge - 1 :]  # stopped for good
    return first_challenge, first_deny


def refused_from(verdicts: list[Verdict]) -> int:
    """The 1-based index of the first refusal; asserts nothing after it got through."""
    first = next(i for i, verdict in enumerate(verdicts) if verdict is not Verdict.ALLOW)
    assert Verdict.ALLOW not in verdicts[first:]
    return first + 1


def test_burst_to_one_country_is_stopped_by_its_floor(backend: Backend) -> None:
    clock = Clock()
    g = Guard(GuardConfig(), backend, clock=clock)
    verdicts = burst(g, numbers("UZ", 50))
    assert refused_from(verdicts) == 3  # unproven_country_floor 2 in flight
    assert g.check("send_otp", numbers("UZ", 1, seed=2)[0], ip(99)).reason == (
        "pumping-country-in-flight"
    )
    # once the codes expired unanswered they are unverified: still stopped, by that budget
    clock.now += 2 * GuardConfig().pumping.in_flight
    assert g.check("send_otp", numbers("UZ", 1, seed=2)[0], ip(99)).reason == ("pumping-country")
    # two days on, the evidence is gone and the country starts afresh
    clock.now += 2 * 86400
    assert g.check("send_otp", numbers("UZ", 1, seed=2)[0], ip(99)).allowed


def test_a_challenged_attacker_that_solves_challenges_is_denied(backend: Backend) -> None:
    g = Guard(GuardConfig(), backend, clock=Clock())
    targets = numbers("UZ", 30)
    reasons = []
    for i, to in enumerate(targets):  # sends whatever the verdict, as a captcha farm would
        reasons.append(g.check("send_otp", to, ip(i)).verdict)
        if reasons[-1] is not Verdict.DENY:
            g.record("sent", to, ip=ip(i))
    challenge, deny = challenged_then_denied(reasons)
    # unproven floor 2; denied at 12 in flight: deny_margin 10 past it (more than 2 x 2)
    assert (challenge, deny) == (3, 13)


def test_burst_spread_over_countries_stops_within_50(backend: Backend) -> None:
    g = Guard(GuardConfig(), backend, clock=Clock())
    spread = [n for group in zip(*(numbers(c, 20) for c in HIGH_COST), strict=True) for n in group]
    verdicts = burst(g, spread)
    # the unproven floor, per country: 2 each, all within the first 50
    assert verdicts.count(Verdict.ALLOW) == 2 * len(HIGH_COST)
    assert Verdict.ALLOW not in verdicts[3 * len(HIGH_COST) :]


PROVEN = GuardConfig.from_mapping({"pumping": {"unproven_country_floor": 5}})


def test_adjacent_numbers_stop_at_the_prefix_floor(backend: Backend) -> None:
    g = Guard(PROVEN, backend, clock=Clock())
    adjacent = [f"+6012345{i:04d}" for i in range(20)]
    verdicts = burst(g, adjacent)
    assert refused_from(verdicts) == 4  # prefix_floor 3
    assert g.check("send_otp", "+60123450099", ip(99)).reason == "pumping-prefix-in-flight"
    assert g.check("send_otp", "+60129990099", ip(99)).allowed  # another prefix


def test_one_address_sending_everywhere_is_stopped(backend: Backend) -> None:
    g = Guard(PROVEN, backend, clock=Clock())
    everywhere = [
        n
        for group in zip(*(numbers(c, 5) for c in ("MY", "SG", "ID", "PH")), strict=True)
        for n in group
    ]
    verdicts = burst(g, everywhere, same_ip="203.0.113.9")
    assert refused_from(verdicts) == 11  # ip_floor 10
    assert g.check("send_otp", everywhere[-1], "203.0.113.9").reason == "pumping-ip-in-flight"


def test_users_who_verify_are_never_refused(backend: Backend) -> None:
    clock = Clock()
    g = Guard(GuardConfig(), backend, clock=clock)
    assert legit(g, clock, numbers("MY", 300)) == [Verdict.ALLOW] * 300
    # and a burst to a country without traffic of its own is stopped meanwhile
    assert Verdict.ALLOW not in burst(g, numbers("UZ", 20), start=300)[5:]
    assert legit(g, clock, numbers("MY", 50, seed=3), start=400) == [Verdict.ALLOW] * 50


def test_a_code_in_flight_is_never_unverified(backend: Backend) -> None:
    """Ten users at once, each verifying four minutes later: in flight, not failed."""
    clock = Clock()
    config = GuardConfig.from_mapping(
        {"pumping": {"country_floor": 10, "unproven_country_floor": 10, "prefix_floor": 10}}
    )
    g = Guard(config, backend, clock=clock)
    users = numbers("SG", 10)
    for i, to in enumerate(users):
        assert g.check("send_otp", to, ip(i)).allowed
        g.record("sent", to, ip=ip(i))
    clock.now += 240
    for i, to in enumerate(users):
        g.record("verified", to, ip=ip(i))
    # long after the codes expired, every send is credited: nothing is held against SG
    clock.now += 3 * config.pumping.in_flight
    more = numbers("SG", 40, seed=4)
    assert burst(g, more)[:10] == [Verdict.ALLOW] * 10


def test_resends_are_credited_by_the_verification(backend: Backend) -> None:
    clock = Clock()
    config = GuardConfig.from_mapping(
        {
            "limits": {"recipient": []},
            "pumping": {"country_floor": 3, "unproven_country_floor": 3, "prefix_floor": 3},
        }
    )
    g = Guard(config, backend, clock=clock)
    to = numbers("TH", 1)[0]
    for _ in range(3):  # the code is slow to arrive; the user asks twice more
        assert g.check("send_otp", to, ip(1)).allowed
        g.record("sent", to, ip=ip(1))
        clock.now += 45
    assert g.check("send_otp", numbers("TH", 1, seed=2)[0], ip(2)).reason == (
        "pumping-country-in-flight"
    )
    g.record("verified", to, ip=ip(1))
    # three sends, three verified: room for the floor plus their credit (TH has no settled
    # sends yet, so it is unproven: in-flight credit at credit_ratio 1, not 2)
    assert burst(g, numbers("TH", 12, seed=3), start=10).count(Verdict.ALLOW) == 3 + 1 * 3


def test_a_verification_without_a_send_credits_nothing(backend: Backend) -> None:
    g = Guard(GuardConfig(), backend, clock=Clock())
    for i, to in enumerate(numbers("KG", 30, seed=7)):
        g.record("verified", to, ip=ip(i))  # no send was recorded: no credit to mint
    assert burst(g, numbers("KG", 20)).count(Verdict.ALLOW) == 2  # the unproven floor


def test_expected_countries_raise_the_floor(backend: Backend) -> None:
    config = GuardConfig.from_mapping({"pumping": {"expected_countries": {"my": 2000}}})
    assert config.pumping.expected_countries == {"MY": 2000}
    g = Guard(config, backend, clock=Clock())
    assert burst(g, numbers("MY", 60)).count(Verdict.ALLOW) == 10  # 0.5% of 2000
    assert burst(g, numbers("SG", 20)).count(Verdict.ALLOW) == 2  # not expected: unproven


def test_trusted_ips_and_verified_numbers_skip_pumping(backend: Backend) -> None:
    clock = Clock()
    config = GuardConfig.from_mapping({"pumping": {"trusted_ips": ["192.0.2.0/24"]}})
    g = Guard(config, backend, clock=clock)
    first = numbers("UZ", 1, seed=11)[0]
    g.record("sent", first, ip=ip(0))
    clock.now += 30
    g.record("verified", first, ip=ip(0))
    # one verified user, in flight: UZ is unproven (floor 2) and earns 1 x 1 more
    assert refused_from(burst(g, numbers("UZ", 20), start=1)) == 4
    fresh = numbers("UZ", 1, seed=9)[0]
    assert not g.check("send_otp", fresh, ip(500)).allowed
    assert g.check("send_otp", fresh, "192.0.2.7").allowed
    clock.now += 120
    assert g.check("send_otp", first, ip(501)).allowed


def test_country_budget_caps_sends_a_day(backend: Backend) -> None:
    config = GuardConfig.from_mapping({"numbers": {"country_budgets": {"SG": 2}}})
    g = Guard(config, backend, clock=Clock())
    verdicts = [g.check("send_otp", to, ip(i)) for i, to in enumerate(numbers("SG", 1))]
    assert verdicts[0].allowed
    for i, to in enumerate(numbers("SG", 2, seed=5)):
        g.record("sent", to, ip=ip(i))
    assert g.check("send_otp", numbers("SG", 1, seed=6)[0], ip(9)).reason == "country-budget"


def test_every_threshold_comes_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text(
        "pumping:\n"
        "  in_flight: 900\n"
        "  credit_ratio: 0.5\n"
        "  in_flight_ratio: 3\n"
        "  country_floor: 2\n"
        "  prefix_floor: 4\n"
        "  ip_floor: 6\n"
        "  network_floor: 8\n"
        "  expected_countries: {SG: 500}\n"
        "  expected_share: 0.1\n"
        "  deny_factor: 3\n"
        "  deny_margin: 1\n",
        encoding="utf-8",
    )
    config = load_config(path)
    pumping = config.pumping
    assert (pumping.in_flight, pumping.credit_ratio, pumping.in_flight_ratio) == (900, 0.5, 3)
    assert (pumping.country_floor, pumping.prefix_floor) == (2, 4)
    assert (pumping.ip_floor, pumping.network_floor) == (6, 8)
    assert (pumping.expected_countries, pumping.expected_share) == ({"SG": 500}, 0.1)
    g = Guard(config, clock=Clock())
    reasons = []
    for i, to in enumerate(numbers("UZ", 10)):  # a captcha farm: sends while challenged
        reasons.append(g.check("send_otp", to, ip(i)).verdict)
        if reasons[-1] is not Verdict.DENY:
            g.record("sent", to, ip=ip(i))
    assert challenged_then_denied(reasons) == (3, 7)  # floor 2, denied at 3 x 2
    assert burst(Guard(config, clock=Clock()), numbers("SG", 60)).count(Verdict.ALLOW) == 50


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pumping:\n  collapse_ratio: 0.5\n", r"collapse_ratio: removed"),
        ("pumping:\n  credit_ratio: 0\n", r"pumping\.credit_ratio"),
        ("pumping:\n  expected_countries: {Malaysia: 10}\n", r"ISO 3166"),
        ("verify:\n  ttl: 900\n", r"in_flight \(600 s\) must be at least verify\.ttl"),
    ],
)
def test_bad_pumping_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(GuardConfigError, match=message) as caught:
        load_config(path)
    assert "\n" not in str(caught.value)


def test_add_many_is_one_step_per_counter(backend: Backend) -> None:
    assert backend.add_many([]) == []
    assert backend.add_many([("a", 1, 60), ("b", 2.5, 60), ("a", 1, 60)]) == [1, 2.5, 2]
    assert backend.get_many(["a", "b", "c"]) == [2, 2.5, 0]
