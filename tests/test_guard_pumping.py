"""SMS-pumping detection from conversion rates (verified ÷ sent), on the memory, SQLite and
Redis backends (a real redis-server started here by the lab machinery on a free loopback port).

A burst of sends that never verify is challenged, then denied, within its first 50 sends,
whether it goes to one country without verified traffic, is spread over several, or hits a
country whose own conversion collapses; a country whose users verify is not touched.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import phonenumbers
import pytest
import redis
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
    """A fresh address in a fresh /24 per send: no per-IP or per-network limit applies."""
    return f"10.{i // 200 % 256}.{i % 200}.{1 + i // 51200}"


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


def burst(g: Guard, targets: list[str], start: int = 0) -> list[Verdict]:
    """Send to each target once, never verifying; the verdicts in order."""
    verdicts = []
    for i, to in enumerate(targets, start):
        decision = g.check("send_otp", to, ip(i))
        verdicts.append(decision.verdict)
        if decision.allowed:
            g.record("sent", to, ip=ip(i))
    return verdicts


def legit(g: Guard, targets: list[str], start: int = 0, every: int = 7) -> list[Verdict]:
    """Users who verify, but for one in ``every`` (about 85% when 7)."""
    verdicts = []
    for i, to in enumerate(targets, start):
        decision = g.check("send_otp", to, ip(i))
        verdicts.append(decision.verdict)
        if decision.allowed:
            g.record("sent", to, ip=ip(i))
            if i % every:
                g.record("verified", to, ip=ip(i))
    return verdicts


def challenged_then_denied(verdicts: list[Verdict]) -> tuple[int, int]:
    """(first challenge, first denial), 1-based; asserts the challenge comes first."""
    first_challenge = verdicts.index(Verdict.CHALLENGE) + 1
    first_deny = verdicts.index(Verdict.DENY) + 1
    assert first_challenge < first_deny
    assert Verdict.ALLOW not in verdicts[first_challenge - 1 :]  # stopped for good
    return first_challenge, first_deny


def test_zero_conversion_burst_to_one_country(backend: Backend) -> None:
    g = Guard(GuardConfig(), backend)
    verdicts = burst(g, numbers("UZ", 50))
    challenge, deny = challenged_then_denied(verdicts)
    assert (challenge, deny) == (7, 13)  # pool_min_unverified 6, deny_factor 2
    assert g.check("send_otp", numbers("UZ", 1, seed=2)[0], ip(99)).reason == (
        "pumping-conversion-pool"
    )


def test_burst_spread_over_countries_adds_up(backend: Backend) -> None:
    g = Guard(GuardConfig(), backend)
    spread = [n for group in zip(*(numbers(c, 12) for c in HIGH_COST), strict=True) for n in group]
    verdicts = burst(g, spread)
    challenge, deny = challenged_then_denied(verdicts)
    assert challenge <= 50 and deny <= 50
    assert verdicts.count(Verdict.ALLOW) == 6  # six between all four countries, not per country


def test_verified_heavy_country_is_not_challenged(backend: Backend) -> None:
    g = Guard(GuardConfig(), backend)
    verdicts = legit(g, numbers("MY", 300))
    assert verdicts == [Verdict.ALLOW] * 300
    # and it keeps its own baseline while a burst to a country without one is stopped
    stopped = burst(g, numbers("UZ", 20), start=300)
    assert Verdict.DENY in stopped
    assert legit(g, numbers("MY", 50, seed=3), start=400) == [Verdict.ALLOW] * 50


def test_collapse_in_a_country_with_its_own_baseline(backend: Backend) -> None:
    g = Guard(GuardConfig(), backend)
    assert legit(g, numbers("MY", 40)) == [Verdict.ALLOW] * 40
    verdicts = burst(g, numbers("MY", 80, seed=5), start=100)
    challenge, deny = challenged_then_denied(verdicts)
    # the burst must outweigh the window's own verified sends (34 here): conversion under
    # collapse_ratio x default_conversion = 0.4 takes 46 unverified sends on top of them
    assert (challenge, deny) == (47, 48)
    assert g.check("send_otp", numbers("MY", 1, seed=6)[0], ip(999)).reason == (
        "pumping-conversion"
    )
    # numbers that verified before and trusted IPs pass
    known = numbers("MY", 40)[1]  # verified (legit() skips every 7th, from 0)
    # (it sent a minute ago, so only its own per-recipient limit speaks)
    assert g.check("send_otp", known, ip(998)).reason == "recipient-rate"


def test_trusted_ips_pass_a_collapsed_pool(backend: Backend) -> None:
    g = Guard(GuardConfig.from_mapping({"pumping": {"trusted_ips": ["192.0.2.0/24"]}}), backend)
    assert Verdict.DENY in burst(g, numbers("UZ", 20))
    fresh = numbers("UZ", 1, seed=9)[0]
    assert not g.check("send_otp", fresh, ip(500)).allowed
    assert g.check("send_otp", fresh, "192.0.2.7").allowed


def test_every_threshold_comes_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text(
        "pumping:\n"
        "  conversion_bucket: 600\n"
        "  country_min_unverified: 10\n"
        "  pool_min_unverified: 3\n"
        "  collapse_ratio: 0.25\n"
        "  default_conversion: 0.9\n"
        "  baseline_min_verified: 2\n"
        "  baseline_min_sends: 20\n"
        "  deny_factor: 3\n",
        encoding="utf-8",
    )
    config = load_config(path)
    pumping = config.pumping
    assert (pumping.conversion_bucket, pumping.pool_min_unverified) == (600, 3)
    assert (pumping.country_min_unverified, pumping.collapse_ratio) == (10, 0.25)
    assert (pumping.default_conversion, pumping.baseline_min_verified) == (0.9, 2)
    assert pumping.baseline_min_sends == 20
    challenge, deny = challenged_then_denied(burst(Guard(config), numbers("UZ", 20)))
    assert (challenge, deny) == (4, 10)  # 3 through, denied at 3 x 3 unverified
    path.write_text("pumping:\n  collapse_ratio: 0\n", encoding="utf-8")
    with pytest.raises(GuardConfigError, match=r"pumping\.collapse_ratio"):
        load_config(path)


def test_add_many_is_one_step_per_counter(backend: Backend) -> None:
    assert backend.add_many([]) == []
    assert backend.add_many([("a", 1, 60), ("b", 2.5, 60), ("a", 1, 60)]) == [1, 2.5, 2]
    assert backend.get_many(["a", "b", "c"]) == [2, 2.5, 0]
