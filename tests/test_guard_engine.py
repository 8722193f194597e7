"""The guard's decision engine, on the in-memory backend, with a controllable clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.traffic import SimClock as Clock

from perisai.guard import (
    Action,
    Guard,
    GuardConfig,
    GuardConfigError,
    Verdict,
    VerifyStatus,
    keys,
    load_config,
)
from perisai.guard.clientip import TrustedProxies, ip_prefix
from perisai.guard.interface import BackendError, slide

MOBILE = "+60123456789"  # a valid Malaysian mobile number
OTHER = "+60123456700"
IP = "198.51.100.7"


def guard(config: dict[str, object] | None = None, clock: Clock | None = None) -> Guard:
    return Guard(GuardConfig.from_mapping(config or {}), clock=clock or Clock())


def test_sliding_window_is_exact() -> None:
    stamps: list[float] = []
    for t in range(5):
        allowed, stamps, _retry = slide(stamps, float(t), 5, 600)
        assert allowed
    allowed, stamps, retry = slide(stamps, 10.0, 5, 600)
    assert not allowed
    assert retry == pytest.approx(590)
    allowed, stamps, _retry = slide(stamps, 600.5, 5, 600)
    assert allowed
    assert len(stamps) == 5


def test_recipient_limits_one_per_minute_five_per_ten() -> None:
    clock = Clock()
    g = guard(clock=clock)
    assert g.check("send_otp", MOBILE, IP).verdict is Verdict.ALLOW
    second = g.check("send_otp", MOBILE, IP)
    assert second.verdict is Verdict.DENY
    assert second.reason == "recipient-rate"
    assert 0 < second.retry_after <= 60
    allowed = [0.0]
    for _ in range(12):
        clock.now += 61
        if g.check("send_otp", MOBILE, IP).allowed:
            allowed.append(clock.now - 1_700_000_000.0)
    assert allowed[:6] == [0.0, 61.0, 122.0, 183.0, 244.0, 610.0]  # 5 in 10 min, then wait
    for first, sixth in zip(allowed, allowed[5:], strict=False):
        assert sixth - first >= 600


@pytest.mark.parametrize(
    ("number", "verdict", "reason"),
    [
        ("+6012345", Verdict.DENY, "number-invalid"),
        ("0123456789", Verdict.DENY, "number-invalid"),
        ("+19005550123", Verdict.DENY, "number-premium_rate"),
        ("+18005550123", Verdict.DENY, "number-toll_free"),
        ("+447012345678", Verdict.DENY, "number-personal_number"),
        ("+445612345678", Verdict.CHALLENGE, "number-voip"),
    ],
)
def test_number_intelligence(number: str, verdict: Verdict, reason: str) -> None:
    g = guard({"numbers": {"deny_types": ["premium_rate", "toll_free", "personal_number"]}})
    decision = g.check("send_otp", number, IP)
    assert (decision.verdict, decision.reason) == (verdict, reason)


def test_country_lists() -> None:
    g = guard({"numbers": {"deny_countries": ["my"]}})
    assert g.check("send_otp", MOBILE, IP).reason == "country-denied"
    g = guard({"numbers": {"allow_countries": ["GB"]}})
    assert g.check("send_otp", MOBILE, IP).reason == "country-denied"


def test_ip_and_prefix_limits() -> None:
    g = guard({"limits": {"ip": [{"limit": 3, "window": 600}], "recipient": []}})
    numbers = [f"+6012345{i:04d}" for i in range(5)]
    verdicts = [g.check("send_otp", n, IP).reason for n in numbers]
    assert verdicts[:3] == ["ok", "ok", "ok"]
    assert verdicts[3] == "ip-rate"
    g = guard({"limits": {"ip_prefix": [{"limit": 2, "window": 600}], "recipient": []}})
    reasons = [g.check("send_otp", numbers[i], f"198.51.100.{i}").reason for i in range(3)]
    assert reasons == ["ok", "ok", "ip-prefix-rate"]
    assert ip_prefix("2001:db8::1") == "2001:db8::/64"


def test_device_and_account_limits() -> None:
    g = guard({"limits": {"device": [{"limit": 1, "window": 600}], "recipient": []}})
    assert g.check("send_otp", MOBILE, IP, device="d1").allowed
    assert g.check("send_otp", OTHER, "203.0.113.1", device="d1").reason == "device-rate"
    g = guard({"limits": {"account": [{"limit": 1, "window": 600}], "recipient": []}})
    assert g.check("send_otp", MOBILE, IP, account="a").allowed
    assert g.check("send_otp", OTHER, "203.0.113.1", account="a").reason == "account-rate"


def test_a_denied_request_consumes_nothing() -> None:
    g = guard({"limits": {"ip": [{"limit": 1, "window": 600}]}})
    assert g.check("send_otp", MOBILE, IP).allowed
    assert g.check("send_otp", OTHER, IP).reason == "ip-rate"
    # OTHER's recipient limit was not taken by the refused request
    assert g.check("send_otp", OTHER, "203.0.113.1").allowed


def test_monitor_mode_allows_and_says_why() -> None:
    g = guard({"mode": "monitor"})
    decision = g.check("send_otp", "+6012345", IP)
    assert decision.verdict is Verdict.ALLOW
    assert decision.reason == "monitor:number-invalid"


def test_trusted_proxy_client_ip() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_ip("203.0.113.5", "1.2.3.4") == "203.0.113.5"  # untrusted peer
    assert proxies.client_ip("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.9") == "198.51.100.7"
    assert proxies.client_ip("10.0.0.2", "garbage") == "10.0.0.2"


def test_adjacent_number_burst_is_denied() -> None:
    g = guard({"limits": {"number_prefix": [{"limit": 3, "window": 600}]}})
    reasons = [g.check("send_otp", f"+6012345{i:04d}", f"203.0.113.{i}").reason for i in range(5)]
    assert reasons[:3] == ["ok", "ok", "ok"]
    assert reasons[3] == "number-prefix-rate"


def test_spend_cap_is_a_circuit_breaker() -> None:
    g = guard({"spend": {"default_cost": 1.0, "hourly_cap": 2}, "pumping": {"enabled": False}})
    g.record("sent", "+60123456701", ip=IP)
    g.record("sent", "+60123456702", ip=IP)
    decision = g.check("send_otp", MOBILE, IP)
    assert decision.reason == "spend-cap"
    assert decision.retry_after > 0


def test_verify_happy_path_and_one_live_code() -> None:
    g = guard()
    first = g.start(MOBILE, "sms", IP)
    assert first.code is not None and first.id is not None
    assert g.verify(MOBILE, first.code, IP).status is VerifyStatus.APPROVED
    assert g.verify(MOBILE, first.code, IP).status is VerifyStatus.INVALID  # used up


def test_resend_overwrites_the_old_code() -> None:
    clock = Clock()
    g = guard(clock=clock)
    old = g.start(MOBILE, "sms", IP)
    clock.now += 61
    new = g.start(MOBILE, "sms", IP)
    assert old.code and new.code
    if old.code != new.code:
        assert g.verify(MOBILE, old.code, IP).status is VerifyStatus.INVALID
    assert g.verify(MOBILE, new.code, IP).status is VerifyStatus.APPROVED


def test_codes_are_stored_only_as_hashes() -> None:
    g = guard()
    started = g.start(MOBILE, "sms", IP)
    stored = g.backend.get(keys.code(MOBILE))
    assert stored is not None and started.code is not None
    assert started.code not in stored.replace(started.id or "", "")


def test_verify_lockout_survives_resends() -> None:
    clock = Clock()
    g = guard(clock=clock)
    started = g.start(MOBILE, "sms", IP)
    wrong = "000000" if started.code != "000000" else "111111"
    for _ in range(3):
        assert g.verify(MOBILE, wrong, IP).status is VerifyStatus.INVALID
    clock.now += 61
    resent = g.start(MOBILE, "sms", IP)  # a resend must not reset the budget
    assert resent.code is not None
    wrong = "000000" if resent.code != "000000" else "111111"
    assert g.verify(MOBILE, wrong, IP).status is VerifyStatus.INVALID
    assert g.verify(MOBILE, wrong, IP).status is VerifyStatus.INVALID
    locked = g.verify(MOBILE, resent.code, IP)  # the 6th attempt, even with the right code
    assert locked.status is VerifyStatus.LOCKED
    assert locked.retry_after > 0
    assert g.check(Action.VERIFY_OTP, MOBILE, IP).reason == "verify-locked"


def test_code_expires_after_five_minutes() -> None:
    clock = Clock()
    g = guard(clock=clock)
    started = g.start(MOBILE, "sms", IP)
    assert started.code is not None
    clock.now += 301
    assert g.verify(MOBILE, started.code, IP).status is VerifyStatus.INVALID


def test_failed_events_lock_verify_for_apps_with_their_own_otp() -> None:
    g = guard()
    for _ in range(5):
        g.record("failed", MOBILE)
    assert g.check("verify_otp", MOBILE, IP).reason == "verify-locked"
    g.record("verified", MOBILE)
    assert g.check("verify_otp", MOBILE, IP).allowed


def test_email_rules() -> None:
    g = guard({"email": {"allowlist": ["help@example.org"]}})
    assert g.check("send_email", "not an address", IP).reason == "email-invalid"
    assert g.check("send_email", "x@mailinator.com", IP).reason == "email-disposable"
    assert g.check("send_email", "victim@example.com", IP).reason == "email-unverified"
    assert g.check("send_email", "victim@example.com", IP, account="a").reason == (
        "email-unverified"
    )
    g.record("verified", "Owner@Example.com", account="a")
    assert g.check("send_email", "owner@example.com", IP, account="a").allowed
    assert g.check("send_email", "victim@example.com", IP, account="a").reason == (
        "email-unverified"
    )
    assert g.check("send_email", "help@example.org", IP).allowed
    assert g.check("send_email", "help@example.org", IP).reason == "recipient-rate"


def test_email_verification_channel() -> None:
    g = guard()
    assert g.start("x@mailinator.com", "email", IP).decision.reason == "email-disposable"
    assert g.start(MOBILE, "email", IP).decision.reason == "channel-mismatch"
    started = g.start("new@example.com", "email", IP, account="a")
    assert started.code is not None
    assert g.verify("new@example.com", started.code, IP).status is VerifyStatus.APPROVED


class DownBackend:
    def __getattr__(self, name: str) -> object:
        def fail(*args: object, **kwargs: object) -> object:
            raise BackendError("down")

        return fail


@pytest.mark.parametrize(("fail", "verdict"), [("open", Verdict.ALLOW), ("closed", Verdict.DENY)])
def test_backend_down_fails_open_or_closed(fail: str, verdict: Verdict) -> None:
    g = Guard(GuardConfig.from_mapping({"fail": fail}), DownBackend())  # type: ignore[arg-type]
    decision = g.check("send_otp", MOBILE, IP)
    assert (decision.verdict, decision.reason) == (verdict, "backend-down")
    g.record("sent", MOBILE)  # logged and counted, never raised
    assert b'perisai_guard_backend_errors_total{fail="' + fail.encode() in g.metrics.render()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mode: sometimes\n", "mode"),
        ("limits:\n  recipient:\n    - {limit: 0, window: 60}\n", "limits.recipient.0.limit"),
        ("numbers:\n  deny_types: [premium]\n", "unknown number type"),
        ("trusted_proxies: [not-a-net]\n", "trusted_proxies"),
        ("bogus: 1\n", "bogus"),
        ("[1, 2]\n", "mapping"),
        ("mode: [\n", "not valid YAML"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text(text)
    with pytest.raises(GuardConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(GuardConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_config_overrides(tmp_path: Path) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text("mode: monitor\nfail: open\nverify: {max_attempts: 3}\n")
    config = load_config(path)
    assert config.mode.value == "monitor" and config.fail.value == "open"
    assert config.verify.max_attempts == 3
    assert config.limits.recipient[0].limit == 1  # defaults stay


def test_unknown_action() -> None:
    with pytest.raises(ValueError, match="send_fax"):
        guard().check("send_fax", MOBILE, IP)
