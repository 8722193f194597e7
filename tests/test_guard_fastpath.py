"""The guard's fast decision path gives the same decisions as the straightforward one.

The engine builds the pumping counters' keys once per (day, conversion bucket, country) and
reads them with the number prefix's and the IP's in one ``get_many``; the memory backend reads
and admits with inlined loops. ``FullPathGuard`` below is the engine as it was before those
shortcuts (every key built per decision) on a ``FullPathMemory`` backend (one ``_num`` call per
counter, attribute access per limit). Both are driven in lockstep through a mixed day that
crosses many buckets and midnight: legitimate users in several countries who mostly verify,
returning verified users, OTP bombing of one victim, pumping to adjacent numbers, pumping
spread over high-cost countries from rotating IPs, and one IP that sends to many countries.
Every decision (verdict, reason, retry_after) and every counter must match.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType

from perisai.guard import Decision, Guard, GuardConfig, Verdict
from perisai.guard import engine as guard_engine
from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.backends.sqlite import SQLiteBackend
from perisai.guard.engine import DAY
from perisai.guard.interface import Admission, Backend, Limit, slide
from perisai.guard.numbers import NumberInfo, inspect_number

LEGIT = ("MY", "GB", "US", "IN", "ID", "TH")
HIGH_COST = ("UZ", "KG", "TJ", "AZ")


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FullPathMemory(MemoryBackend):
    """The memory backend's reads and admissions without the inlined loops."""

    def get_many(self, keys: Sequence[str]) -> list[float]:
        now = time.time()
        with self._lock:
            return [self._num(key, now) or 0.0 for key in keys]

    def acquire(self, limits: Sequence[Limit], now: float) -> Admission:
        with self._lock:
            updates: list[tuple[str, list[float]]] = []
            for limit in limits:
                stamps = self._windows.get(limit.key)
                if not stamps and limit.limit > 0:
                    updates.append((limit.key, [now]))
                    continue
                allowed, kept, retry = slide(stamps or [], now, limit.limit, limit.window)
                if not allowed:
                    return Admission(False, retry, limit.name)
                updates.append((limit.key, kept))
            for key, kept in updates:
                self._windows[key] = kept
            return Admission(True)


class FullPathGuard(Guard):
    """The pumping rules reading all 22 counters with keys built for every decision."""

    def _pumping(self, info: NumberInfo, prefix: str, ip: str, now: float) -> Decision | None:
        policy = self.config.pumping
        if not policy.enabled:
            return None
        day = int(now // DAY)
        bucket = int(now // policy.conversion_bucket)
        assert prefix == info.prefix(policy.prefix_drop_digits)
        c = info.country
        values = self.backend.get_many(
            [
                f"p:cs:{day}:{c}",
                f"p:cv:{day}:{c}",
                f"p:cv:{day - 1}:{c}",
                f"p:ps:{day}:{prefix}",
                f"p:pv:{day}:{prefix}",
                f"p:ic:{day}:{ip}",
                f"p:icm:{day}:{ip}:{c}",
                f"p:cp:{day}:{c}",
                f"p:pp:{day}:{prefix}",
                f"p:cs:{day - 1}:{c}",
                f"p:hs:{bucket}:{c}",
                f"p:hs:{bucket - 1}:{c}",
                f"p:hv:{bucket}:{c}",
                f"p:hv:{bucket - 1}:{c}",
                f"p:hp:{bucket}:{c}",
                f"p:hp:{bucket - 1}:{c}",
                f"p:xs:{bucket}",
                f"p:xs:{bucket - 1}",
                f"p:xv:{bucket}",
                f"p:xv:{bucket - 1}",
                f"p:xp:{bucket}",
                f"p:xp:{bucket - 1}",
            ]
        )
        c_sent, c_ver, c_ver_before, p_sent, p_ver, ip_countries, ip_this = values[:7]
        c_pressure, p_pressure, c_sent_before = values[7:10]
        if not ip_this and ip_countries >= policy.max_countries_per_ip:
            return Decision(Verdict.DENY, "pumping-ip-countries")
        budget = self.config.numbers.country_budgets.get(c)
        if budget is not None and c_sent >= budget:
            return Decision(Verdict.DENY, "country-budget")
        unverified = c_sent - c_ver + c_pressure
        allowance = max(policy.country_floor, policy.country_fraction * (c_ver + c_ver_before))
        if unverified >= allowance * policy.deny_factor:
            return Decision(Verdict.DENY, "pumping-country")
        if unverified >= allowance:
            self.backend.add(f"p:cp:{day}:{c}", 1, 2 * DAY)
            return Decision(Verdict.CHALLENGE, "pumping-country")
        p_unverified = p_sent - p_ver + p_pressure
        if p_unverified >= policy.prefix_floor and p_ver < policy.min_conversion * p_sent:
            if p_unverified >= policy.prefix_floor * policy.deny_factor:
                return Decision(Verdict.DENY, "pumping-prefix")
            self.backend.add(f"p:pp:{day}:{prefix}", 1, 2 * DAY)
            return Decision(Verdict.CHALLENGE, "pumping-prefix")
        if c_ver + c_ver_before >= policy.baseline_min_verified:
            h = values[10:16]
            sent, verified, pressure = h[0] + h[1], h[2] + h[3], h[4] + h[5]
            baseline = policy.default_conversion
            if c_sent_before >= policy.baseline_min_sends:
                baseline = min(1.0, c_ver_before / c_sent_before)
            return self._collapse(
                sent,
                verified,
                pressure,
                baseline,
                policy.country_min_unverified,
                f"p:hp:{bucket}:{c}",
                "pumping-conversion",
            )
        x = values[16:22]
        return self._collapse(
            max(0.0, x[0] + x[1]),
            max(0.0, x[2] + x[3]),
            x[4] + x[5],
            policy.default_conversion,
            policy.pool_min_unverified,
            f"p:xp:{bucket}",
            "pumping-conversion-pool",
        )


def mobiles(region: str, count: int, rng: random.Random, tail: int = 7) -> list[str]:
    """``count`` distinct valid mobile numbers of ``region``, varying the last ``tail`` digits
    of its example number (a small ``tail`` keeps them in few number prefixes)."""
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    assert example is not None
    base = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    found: dict[str, None] = {}
    for _ in range(count * 200):
        candidate = base[:-tail] + "".join(rng.choice("0123456789") for _ in range(tail))
        info = inspect_number(candidate)
        if info is not None and info.number_type in ("mobile", "fixed_line_or_mobile"):
            found[info.e164] = None
        if len(found) == count:
            return list(found)
    raise AssertionError(f"not {count} numbers for {region}")


Step = tuple[str, str, str, bool]  # (kind, to, ip, verifies when sent)


def mixed_day(seed: int) -> list[Step]:
    """About 3,000 requests of every kind, mostly shuffled."""
    rng = random.Random(seed)
    steps: list[Step] = []
    ipn = iter(range(1, 1_000_000))

    def fresh_ip() -> str:
        i = next(ipn)
        return f"10.{i // 200 % 256}.{i % 200}.{1 + i // 51200}"

    for region in LEGIT:
        for to in mobiles(region, 250, rng):
            steps.append(("legit", to, fresh_ip(), rng.random() < 0.85))
    returning = rng.sample([step[1] for step in steps if step[3]], 150)
    steps += [("returning", to, fresh_ip(), True) for to in returning]
    victim = mobiles("GB", 1, rng)[0]
    steps += [("bombing", victim, fresh_ip(), False) for _ in range(200)]
    steps += [("adjacent", to, fresh_ip(), False) for to in mobiles("PH", 300, rng, tail=4)]
    for region in HIGH_COST:
        steps += [("spread", to, fresh_ip(), False) for to in mobiles(region, 150, rng)]
    head, tail = steps[: 6 * 250], steps[6 * 250 :]
    rng.shuffle(tail)  # users first (the baselines), then everything interleaved with attacks
    rest = head[1000:] + tail
    rng.shuffle(rest)
    # once the users' countries have baselines: one IP sending to six countries; and at the
    # end, a burst of unverified sends to a country with a baseline of its own
    hopper = "203.0.113.9"
    hops = [mobiles(region, 1, rng)[0] for region in ("FR", "DE", "ES", "IT", "NL", "BR")]
    burst = [("burst", to, fresh_ip(), False) for to in mobiles("MY", 120, rng)]
    hopping = [("ip-countries", to, hopper, False) for to in hops]
    return head[:1000] + hopping + rest + burst


@pytest.fixture(params=["memory", "sqlite"])
def fast_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: Backend = (
        MemoryBackend() if request.param == "memory" else SQLiteBackend(tmp_path / "guard.db")
    )
    try:
        yield made
    finally:
        made.close()


@pytest.mark.parametrize("key_cache_size", [4096, 2])
@pytest.mark.parametrize("bucket", [3600, 300])
def test_fast_path_decides_like_the_full_path(
    fast_backend: Backend,
    key_cache_size: int,
    bucket: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guard_engine, "_KEY_CACHE_SIZE", key_cache_size)
    config = GuardConfig.from_mapping({"pumping": {"conversion_bucket": bucket}})
    start = 20_000 * DAY - 5400.0  # 90 minutes before midnight: days and buckets turn
    clock = FakeClock(start)
    fast = Guard(config, fast_backend, clock=clock)
    full_backend = FullPathMemory()
    full = FullPathGuard(config, full_backend, clock=clock)
    rng = random.Random(bucket)
    reasons: Counter[str] = Counter()
    for i, (kind, to, ip, verifies) in enumerate(mixed_day(seed=11)):
        clock.now += rng.uniform(0.0, 7.0)  # about 2.7 hours in all
        decision = fast.check("send_otp", to, ip)
        assert full.check("send_otp", to, ip) == decision, (i, kind, to)
        reasons[decision.reason] += 1
        if decision.allowed:
            for guard in (fast, full):
                guard.record("sent", to, ip=ip)
                if verifies:
                    guard.record("verified", to, ip=ip)
    assert clock.now > 20_000 * DAY + 1800  # the run crossed midnight
    # every rule the shortcuts touch spoke at least once
    for reason in (
        "ok",
        "recipient-rate",
        "pumping-prefix",
        "pumping-conversion-pool",
        "pumping-ip-countries",
        "pumping-conversion",
    ):
        assert reasons[reason] > 0, reasons
    assert reasons["ok"] > 1000, reasons
    # and every pumping and spend counter came out the same
    keys = sorted(key for key in full_backend._nums if key.startswith(("p:", "sp:")))
    assert fast_backend.get_many(keys) == full_backend.get_many(keys)
