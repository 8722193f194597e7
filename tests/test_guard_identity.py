"""Identities are normalised before any counter: every spelling of one IP address, one e-mail
address or one phone number shares that identity's limits, and IPv6 is limited per /64 and per
/48. Each rule is checked through the Guard (two spellings, one limit), with the in-memory
backend and a controllable clock."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest
from benchmarks.traffic import SimClock as Clock
from hypothesis import given
from hypothesis import strategies as st

from perisai.guard import Guard, GuardConfig, GuardConfigError, Verdict, VerifyStatus
from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.clientip import TrustedProxies, canonical_ip, ip_prefix48
from perisai.guard.email import is_disposable, normalize_email
from perisai.guard.interface import Admission, Gate, Limit, Passage

NUMBERS = [f"+6012345{i:04d}" for i in range(10)]  # valid Malaysian mobiles
IP = "198.51.100.7"


class KeyLog(MemoryBackend):
    """The memory backend, remembering every key the guard read or wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    def acquire(self, limits: Sequence[Limit], now: float) -> Admission:
        self.keys += [limit.key for limit in limits]
        return super().acquire(limits, now)

    def gate(self, gate: Gate, now: float) -> Passage:
        self.keys += [*gate.counters, *gate.texts, *(limit.key for limit in gate.limits)]
        self.keys += [limit.key for limit in gate.unflagged]
        return super().gate(gate, now)

    def add(self, key: str, amount: float, ttl: float) -> float:
        self.keys.append(key)
        return super().add(key, amount, ttl)

    def add_many(self, items: Sequence[tuple[str, float, float]]) -> list[float]:
        self.keys += [key for key, _amount, _ttl in items]
        return super().add_many(items)

    def get_many(self, keys: Sequence[str]) -> list[float]:
        self.keys += keys
        return super().get_many(keys)


def guard(config: dict[str, object] | None = None, backend: MemoryBackend | None = None) -> Guard:
    return Guard(
        GuardConfig.from_mapping(config or {}),
        backend if backend is not None else MemoryBackend(),
        clock=Clock(),
    )


def ip_only(limit: int = 1) -> dict[str, object]:
    """Only the per-IP limit, at ``limit`` sends per 10 minutes."""
    return {
        "limits": {
            "recipient": [],
            "ip": [{"limit": limit, "window": 600}],
            "ip_prefix": [],
            "ip_prefix48": [],
        },
        "pumping": {"enabled": False},
    }


# ------------------------------------------------------------------ IP addresses
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::ffff:0102:0304", "1.2.3.4"),
        ("1.2.3.4", "::FFFF:1.2.3.4"),
        ("fe80::1%eth0", "FE80:0:0::1"),
        ("2001:DB8::1", "2001:0db8:0000:0000:0000:0000:0000:0001"),
        ("0:0::1", "::1"),
    ],
)
def test_ip_spellings_share_the_ip_limit(first: str, second: str) -> None:
    g = guard(ip_only())
    assert g.check("send_otp", NUMBERS[0], first).allowed
    assert g.check("send_otp", NUMBERS[1], second).reason == "ip-rate"


def test_distinct_ips_do_not_share_the_ip_limit() -> None:
    g = guard(ip_only())
    assert g.check("send_otp", NUMBERS[0], "fe80::1%eth0").allowed
    assert g.check("send_otp", NUMBERS[1], "fe80::2%eth0").allowed
    assert g.check("send_otp", NUMBERS[2], "::ffff:1.2.3.5").allowed
    assert g.check("send_otp", NUMBERS[3], "1.2.3.4").allowed


def test_verify_keys_the_canonical_ip() -> None:
    g = guard(ip_only())
    started = g.start(NUMBERS[0], "sms", "198.51.100.9")
    assert started.code is not None
    assert g.verify(NUMBERS[0], "000000", "::ffff:203.0.113.5").status is VerifyStatus.INVALID
    locked = g.verify(NUMBERS[0], started.code, "203.0.113.5")
    assert locked.status is VerifyStatus.LOCKED  # the per-IP verify limit was shared
    assert g.check("verify_otp", NUMBERS[1], "::FFFF:cb00:7105").reason == "ip-rate"


def test_no_counter_is_keyed_by_a_non_canonical_ip() -> None:
    """Every counter, the pumping ones included, sees the canonical spelling."""
    backend = KeyLog()
    g = guard({"pumping": {"unproven_country_floor": 5}}, backend)
    for i, ip in enumerate(["::ffff:198.51.100.7", "FE80::0001%eth0", "2001:DB8:0:0::7"]):
        decision = g.check("send_otp", NUMBERS[i], ip)
        assert decision.allowed
        g.record("sent", NUMBERS[i], ip=ip)
        g.record("failed", NUMBERS[i], ip=ip)
    assert backend.keys
    joined = "\n".join(backend.keys)
    for bad in ("::ffff:", "%eth0", "FE80", "DB8", "::0001"):
        assert bad not in joined
    for good in ("198.51.100.7", "fe80::1", "2001:db8::7"):
        assert good in joined


def test_ipv6_slash_48_limit_spans_its_slash_64s() -> None:
    g = guard(
        {
            "limits": {
                "recipient": [],
                "ip": [],
                "ip_prefix": [],
                "ip_prefix48": [{"limit": 2, "window": 600}],
            },
            "pumping": {"enabled": False},
        }
    )
    reasons = [
        g.check("send_otp", NUMBERS[i], ip).reason
        for i, ip in enumerate(["2001:db8:1:1::1", "2001:db8:1:2::1", "2001:db8:1:ffff::9"])
    ]
    assert reasons == ["ok", "ok", "ip-prefix48-rate"]
    # another /48 is another site; spellings of the first one are not
    assert g.check("send_otp", NUMBERS[3], "2001:db8:2:1::1").allowed
    assert g.check("send_otp", NUMBERS[4], "2001:0DB8:0001:0003:0:0:0:1").reason == (
        "ip-prefix48-rate"
    )
    # IPv4 is limited per /24 only: one /16 is not a /48
    for i in range(3):
        assert g.check("send_otp", NUMBERS[5 + i], f"198.51.{i}.7").allowed


def test_ipv6_slash_64_trips_before_its_slash_48() -> None:
    g = guard(
        {
            "limits": {
                "recipient": [],
                "ip": [],
                "ip_prefix": [{"limit": 1, "window": 600}],
                "ip_prefix48": [{"limit": 2, "window": 600}],
            },
            "pumping": {"enabled": False},
        }
    )
    assert g.check("send_otp", NUMBERS[0], "2001:db8:1:1::1").allowed
    assert g.check("send_otp", NUMBERS[1], "2001:db8:1:1::2").reason == "ip-prefix-rate"
    assert g.check("send_otp", NUMBERS[2], "2001:db8:1:2::1").allowed
    assert g.check("send_otp", NUMBERS[3], "2001:db8:1:3::1").reason == "ip-prefix48-rate"


def test_slash_48_default_is_wider_than_slash_64() -> None:
    limits = GuardConfig().limits
    assert limits.ip_prefix48
    for wide, narrow in zip(limits.ip_prefix48, limits.ip_prefix, strict=True):
        assert wide.window == narrow.window
        assert wide.limit > narrow.limit


def test_trusted_networks_match_mapped_and_zoned_addresses() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "fe80::/64", "::ffff:192.0.2.0/120"])
    assert proxies.trusted("::ffff:10.1.2.3")
    assert proxies.trusted("fe80::1%eth0")
    assert proxies.trusted("192.0.2.9")  # a mapped network is its IPv4 network
    assert not proxies.trusted("::ffff:11.0.0.1")
    assert proxies.client_ip("::ffff:10.0.0.2", "198.51.100.7, 10.0.0.9") == "198.51.100.7"
    assert proxies.client_ip("10.0.0.2", "::FFFF:198.51.100.7") == "198.51.100.7"
    assert proxies.client_ip("::ffff:203.0.113.5", "6.6.6.6") == "203.0.113.5"
    assert proxies.client_ip("testclient", None) == "testclient"  # not an IP: untouched


def test_trusted_pumping_ips_match_mapped_addresses() -> None:
    g = guard(
        {
            "limits": {"number_prefix": [], "ip": [], "ip_prefix": [], "recipient": []},
            "pumping": {"prefix_floor": 2, "trusted_ips": ["192.0.2.0/24"]},
        }
    )
    for i in range(6):
        g.record("sent", f"+60123456{i:03d}", ip=IP)
    assert g.check("send_otp", "+60123456789", IP).verdict is not Verdict.ALLOW
    assert g.check("send_otp", "+60123456789", "::ffff:192.0.2.5").allowed


@pytest.mark.parametrize("text", ["", "testclient", "unix:/run/app.sock", " 1.2.3.4", "01.2.3.4"])
def test_canonical_ip_leaves_non_ips_alone(text: str) -> None:
    assert canonical_ip(text) == text


def test_ip_prefix48() -> None:
    assert ip_prefix48("2001:db8:1:ffff::9") == "2001:db8:1::/48"
    assert ip_prefix48("198.51.100.7") is None
    assert ip_prefix48("not:an:ip") is None


@given(st.ip_addresses(v=4))
def test_canonical_ipv4_and_its_mapped_forms(address: ipaddress.IPv4Address) -> None:
    text = str(address)
    mapped = ipaddress.IPv6Address(int(address) | 0xFFFF_0000_0000)
    spellings = [text, f"::ffff:{text}", f"::FFFF:{text}", str(mapped), mapped.exploded]
    for spelling in spellings:
        assert canonical_ip(spelling) == text
    assert canonical_ip(text) == str(ipaddress.ip_address(text))


@given(st.ip_addresses(v=6), st.sampled_from(["", "%eth0", "%1"]))
def test_canonical_ipv6_spellings(address: ipaddress.IPv6Address, zone: str) -> None:
    expected = str(address.ipv4_mapped or address)
    for spelling in (str(address), address.exploded, address.exploded.upper()):
        assert canonical_ip(spelling + zone) == expected
    assert canonical_ip(expected) == expected  # idempotent
    if address.ipv4_mapped is None:
        assert expected == str(ipaddress.ip_address(str(address)))


# ------------------------------------------------------------------ e-mail addresses
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Siti+x@Example.ORG", "siti@example.org"),
        ("siti+promo@example.org", "SITI+other@example.org"),
        ("siti@bücher.example", "siti@xn--bcher-kva.example"),
        ("siti@BÜCHER.example", "Siti+a@XN--BCHER-KVA.example"),
        ("s.i.t.i@gmail.com", "siti@gmail.com"),
        ("Si.Ti+news@GoogleMail.com", "siti@gmail.com"),
        ("cafe\u0301@example.org", "caf\u00e9@example.org"),  # decomposed and composed é
    ],
)
def test_email_spellings_share_the_recipient_limit(first: str, second: str) -> None:
    g = guard()
    assert g.check("send_otp", first, IP).allowed
    assert g.check("send_otp", second, "203.0.113.9").reason == "recipient-rate"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("s.iti@example.org", "siti@example.org"),  # dots count outside Gmail
        ("siti@example.org", "siti@example.com"),
        ("+promo@example.org", "promo@example.org"),  # a leading + is no tag
    ],
)
def test_distinct_addresses_do_not_share(first: str, second: str) -> None:
    g = guard()
    assert g.check("send_otp", first, IP).allowed
    assert g.check("send_otp", second, "203.0.113.9").allowed


@pytest.mark.parametrize(
    "address",
    [
        "not an address",
        "siti@example",
        "siti@bücher..example",
        "siti@xn--zz.example",  # an invalid A-label
        "siti@exa😀mple.org",  # no IDNA domain
        "...@gmail.com",
        "a@b@example.org",
    ],
)
def test_malformed_addresses_are_rejected(address: str) -> None:
    assert normalize_email(address) is None
    assert guard().check("send_email", address, IP).reason == "email-invalid"


def test_a_code_verifies_under_any_spelling() -> None:
    g = guard()
    started = g.start("Siti+login@Bücher.example", "email", IP)
    assert started.code is not None
    assert started.to == "siti@xn--bcher-kva.example"
    outcome = g.verify("siti@xn--BCHER-kva.example", started.code, IP)
    assert outcome.status is VerifyStatus.APPROVED


def test_verified_address_matches_any_spelling() -> None:
    g = guard()
    g.record("verified", "S.iti+signup@googlemail.com", account="a")
    assert g.check("send_email", "siti@gmail.com", IP, account="a").allowed
    unverified = g.check("send_email", "other@gmail.com", IP, account="a")
    assert unverified.reason == "email-unverified"


def test_allowlist_is_compared_canonically() -> None:
    g = guard({"email": {"allowlist": ["Help+desk@Bücher.example"]}})
    assert g.config.email.allowlist == ("help@xn--bcher-kva.example",)
    assert g.check("send_email", "HELP@xn--bcher-kva.example", IP).allowed
    with pytest.raises(GuardConfigError, match="allowlist"):
        GuardConfig.from_mapping({"email": {"allowlist": ["example.org"]}})


@pytest.mark.parametrize("address", ["x+t@Mailinator.COM", "x@雨云.com", "x@xn--9kq967o.com"])
def test_disposable_domains_in_any_spelling(address: str) -> None:
    canonical = normalize_email(address)
    assert canonical is not None
    assert is_disposable(canonical)
    assert is_disposable(address)
    assert guard().check("send_otp", address, IP).reason == "email-disposable"


_LOCAL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20)
_DOMAIN = st.sampled_from(
    ["example.org", "gmail.com", "googlemail.com", "bücher.example", "xn--bcher-kva.example"]
)


@given(_LOCAL, st.text(alphabet="abc+", max_size=5), _DOMAIN)
def test_email_normalisation_is_idempotent_and_ignores_case_and_tags(
    local: str, tag: str, domain: str
) -> None:
    canonical = normalize_email(f"{local}@{domain}")
    if canonical is None:
        return
    assert normalize_email(canonical) == canonical
    assert canonical.isascii()
    assert normalize_email(f"{local.upper()}+{tag}@{domain.upper()}") == canonical


# ------------------------------------------------------------------ phone numbers
def test_phone_spellings_share_the_recipient_limit() -> None:
    g = guard()
    assert g.check("send_otp", "+60 12-345 6789", IP).allowed
    assert g.check("send_otp", "+60123456789", "203.0.113.9").reason == "recipient-rate"
