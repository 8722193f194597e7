"""Guard policy details: monitor mode on every action, per-country budgets, the IPv6 /64 limit,
the number and address fast paths, and the pumping and spend-cap rules on SQLite and on Redis
(a real redis-server started here by the lab machinery on a free loopback port)."""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import phonenumbers
import pytest
import redis

from perisai.guard import Guard, GuardConfig, Verdict, VerifyStatus
from perisai.guard.backends.redis import RedisBackend
from perisai.guard.backends.sqlite import SQLiteBackend
from perisai.guard.clientip import ip_prefix
from perisai.guard.interface import Backend
from perisai.guard.numbers import inspect_number
from perisai.lab import Instance, start_redis

MOBILE = "+60123456789"
OTHER = "+60123456700"
UK_MOBILE = "+447400123456"
IP = "198.51.100.7"


def guard(config: dict[str, object], backend: Backend | None = None) -> Guard:
    return Guard(GuardConfig.from_mapping(config), backend)


# ------------------------------------------------------------------ monitor mode
def test_monitor_mode_allows_every_action_and_logs_the_verdict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    g = guard({"mode": "monitor", "limits": {"recipient": [{"limit": 1, "window": 600}]}})
    caplog.set_level(logging.INFO, logger="perisai.guard")
    # send_otp: over the recipient limit
    assert g.check("send_otp", MOBILE, IP).allowed
    second = g.check("send_otp", MOBILE, IP)
    assert (second.verdict, second.reason) == (Verdict.ALLOW, "monitor:recipient-rate")
    # send_otp: a challenge (VOIP / unknown type) is let through too
    g2 = guard({"mode": "monitor", "numbers": {"challenge_types": ["mobile"]}})
    assert g2.check("send_otp", MOBILE, IP).reason == "monitor:number-mobile"
    # send_email: relay to an address the account never verified, and a disposable domain
    relay = g.check("send_email", "stranger@example.org", IP, account="a1")
    assert (relay.verdict, relay.reason) == (Verdict.ALLOW, "monitor:email-unverified")
    assert g.check("send_email", "x@mailinator.com", IP).reason == "monitor:email-disposable"
    # verify_otp: a recipient locked out by failed attempts
    for _ in range(5):
        g.record("failed", MOBILE)
    locked = g.check("verify_otp", MOBILE, IP)
    assert (locked.verdict, locked.reason) == (Verdict.ALLOW, "monitor:verify-locked")
    would = [r.getMessage() for r in caplog.records if "guard monitor" in r.getMessage()]
    assert any("would deny send_otp: recipient-rate" in m for m in would)
    assert any("would challenge send_otp: number-mobile" in m for m in would)
    assert any("would deny send_email: email-unverified" in m for m in would)
    assert any("would deny verify_otp: verify-locked" in m for m in would)
    # the metrics count what was done (allow), under the would-be reason
    text = g.metrics.render()
    assert b'reason="monitor:recipient-rate",verdict="allow"' in text
    assert b'verdict="deny"' not in text


def test_monitor_mode_start_still_issues_a_code() -> None:
    g = guard({"mode": "monitor", "limits": {"recipient": [{"limit": 1, "window": 600}]}})
    assert g.start(MOBILE, "sms", IP).code is not None
    again = g.start(MOBILE, "sms", IP)  # enforce mode would refuse this resend
    assert again.code is not None
    assert again.decision.reason == "monitor:recipient-rate"
    assert g.verify(MOBILE, again.code, IP).status is VerifyStatus.APPROVED
    # an invalid number cannot get a code even in monitor mode: there is nothing to send to
    assert g.start("+6012345", "sms", IP).code is None


def test_enforce_mode_is_the_default() -> None:
    g = guard({"limits": {"recipient": [{"limit": 1, "window": 600}]}})
    assert g.check("send_otp", MOBILE, IP).allowed
    assert g.check("send_otp", MOBILE, IP).verdict is Verdict.DENY


# ------------------------------------------------------------------ per-country budget
def test_per_country_budget() -> None:
    g = guard({"numbers": {"country_budgets": {"MY": 2}}, "limits": {"number_prefix": []}})
    for i in range(2):
        number = f"+6012345{i:04d}"
        assert g.check("send_otp", number, f"203.0.113.{i}").allowed
        g.record("sent", number, ip=f"203.0.113.{i}")
    over = g.check("send_otp", "+60139999999", "203.0.113.50")
    assert (over.verdict, over.reason) == (Verdict.DENY, "country-budget")
    assert g.check("send_otp", UK_MOBILE, "203.0.113.51").allowed  # other countries: untouched
    # a number that verified before is vetted and passes the budget
    g.record("verified", "+60139999999")
    assert g.check("send_otp", "+60139999999", "203.0.113.52").allowed


# ------------------------------------------------------------------ IPv6 /64
def test_ipv6_slash_64_limit() -> None:
    g = guard(
        {
            "limits": {"ip": [], "ip_prefix": [{"limit": 2, "window": 600}]},
            "pumping": {"enabled": False},
        }
    )
    same_64 = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:fffe"]
    numbers = [f"+6012345{i:04d}" for i in range(5)]
    reasons = [g.check("send_otp", numbers[i], ip).reason for i, ip in enumerate(same_64)]
    assert reasons == ["ok", "ok", "ip-prefix-rate"]
    # the next /64 is another network; the compressed and expanded spellings are one
    assert g.check("send_otp", numbers[3], "2001:db8:1:3::1").allowed
    assert g.check("send_otp", numbers[4], "2001:0db8:0001:0002:0:0:0:9").reason == (
        "ip-prefix-rate"
    )
    assert ip_prefix("2001:0db8:0001:0002::9") == "2001:db8:1:2::/64"


@pytest.mark.parametrize(
    "text",
    [
        "198.51.100.7",
        "0.0.0.0",
        "255.255.255.255",
        "01.2.3.4",
        "1.2.3.04",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        " 1.2.3.4",
        "1.2.3.4\n",
        "١.2.3.4",
        "::ffff:1.2.3.4",
        "2001:db8::1",
        "not-an-ip",
        "",
    ],
)
def test_ip_prefix_fast_path_agrees_with_ipaddress(text: str) -> None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        expected = None
    else:
        bits = 24 if address.version == 4 else 64
        expected = str(ipaddress.ip_network(f"{address}/{bits}", strict=False))
    assert ip_prefix(text) == expected


def test_number_inspection_agrees_with_is_valid_number() -> None:
    """One type pass instead of two must not change which numbers are valid, or their type."""
    rng = random.Random(6)
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 11)))
        raw = f"+{rng.choice(codes)}{digits}"
        number = phonenumbers.parse(raw, None)
        info = inspect_number(raw)
        if not phonenumbers.is_valid_number(number):
            assert info is None, raw
            continue
        assert info is not None, raw
        assert info.e164 == phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        assert info.country == phonenumbers.region_code_for_number(number)


# ------------------------------------------------------------------ SQLite and Redis
@pytest.fixture(scope="module")
def policy_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    instance = start_redis("guard-policy-redis", tmp_path_factory.mktemp("gp"), exposed=True)
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: Backend
    if request.param == "sqlite":
        made = SQLiteBackend(tmp_path / "guard.db")
    else:
        instance: Instance = request.getfixturevalue("policy_redis")
        url = instance.url_for(3)
        redis.Redis.from_url(url).flushdb()
        made = RedisBackend.from_url(url)
    try:
        yield made
    finally:
        made.close()


@pytest.mark.servers
def test_pumping_prefix_on_backend(backend: Backend) -> None:
    g = guard(
        {
            "limits": {"number_prefix": [], "ip": [], "ip_prefix": []},
            "pumping": {
                "prefix_floor": 4,
                "deny_factor": 2,
                "deny_margin": 0,
                "unproven_country_floor": 100,
            },
        },
        backend,
    )
    verdicts = []
    for i in range(12):  # sends whatever the verdict, as a captcha farm would
        number = f"+6012345{i:04d}"
        decision = g.check("send_otp", number, f"203.0.113.{i}")
        verdicts.append(decision.verdict)
        if decision.verdict is not Verdict.DENY:
            g.record("sent", number, ip=f"203.0.113.{i}")
    assert verdicts[:4] == [Verdict.ALLOW] * 4
    assert verdicts[4:8] == [Verdict.CHALLENGE] * 4
    assert verdicts[8:] == [Verdict.DENY] * 4  # 8 in flight: deny_factor x the floor
    assert g.check("send_otp", "+60123450099", IP).reason == "pumping-prefix-in-flight"
    # a number that verifies is vetted and passes
    g.record("verified", "+60123450099")
    assert g.check("send_otp", "+60123450099", IP).allowed


@pytest.mark.servers
def test_pumping_country_and_ip_on_backend(backend: Backend) -> None:
    g = guard(
        {
            "pumping": {
                "country_floor": 3,
                "unproven_country_floor": 3,
                "deny_margin": 0,
                "ip_floor": 2,
                "prefix_floor": 100,
            }
        },
        backend,
    )
    for i in range(3):
        g.record("sent", f"+60123{i}56789", ip=f"203.0.113.{i}")
    first = g.check("send_otp", "+60139999999", IP)
    assert (first.verdict, first.reason) == (Verdict.CHALLENGE, "pumping-country-in-flight")
    for i in range(3):
        g.record("sent", f"+60124{i}56789", ip=f"203.0.113.{i}")
    assert g.check("send_otp", "+60139999999", IP).verdict is Verdict.DENY
    for number in (UK_MOBILE, "+33612345678"):
        g.record("sent", number, ip="192.0.2.9")
    assert g.check("send_otp", "+4915123456789", "192.0.2.9").reason == "pumping-ip-in-flight"


@pytest.mark.servers
def test_spend_cap_on_backend(backend: Backend) -> None:
    g = guard(
        {
            "spend": {"default_cost": 0.5, "costs": {"GB": 2.0}, "hourly_cap": 3},
            "pumping": {"enabled": False},
        },
        backend,
    )
    g.record("sent", "+60123456701", ip=IP)
    g.record("sent", "+60123456702", ip=IP)  # 1.0 spent
    assert g.check("send_otp", MOBILE, IP).allowed  # 1.5 ≤ 3
    g.record("sent", UK_MOBILE, ip=IP)  # 3.0 spent
    capped = g.check("send_otp", OTHER, "203.0.113.9")
    assert (capped.verdict, capped.reason) == (Verdict.DENY, "spend-cap")
    assert 0 < capped.retry_after <= 3600
    # a second guard on the same store sees the same spend: the cap is global
    other = guard(
        {"spend": {"default_cost": 0.5, "hourly_cap": 3}, "pumping": {"enabled": False}}, backend
    )
    assert other.check("send_otp", OTHER, "203.0.113.10").reason == "spend-cap"
