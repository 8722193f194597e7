"""SMS-pumping detection by verification credit.

A pumping attack buys SMS to numbers nobody answers from; real users answer most of their
codes. So every send is counted, in four *scopes*, against the verifications it earns:
its **country**, its number **prefix** (the number minus ``prefix_drop_digits``: adjacent
numbers), the client **IP** (an IPv6 client's /64, which a carrier may share among
thousands of users) and its **network** (IPv4 /24, IPv6 /48).

Per scope, two budgets (the floors and ratios are :class:`PumpingPolicy`'s):

- **in flight**: sends of the last one to two ``in_flight`` periods (a code that can still be
  used) minus the verifications they earned, at most ``floor + in_flight_ratio x`` those
  verifications;
- **unverified**: older sends (today and yesterday) minus their verifications, at most
  ``floor + credit_ratio x`` their verifications. A send counts here only once its code has
  expired: never while it can still be verified.

A verification credits every send to that recipient still pending (a resend is not held
against the user who asked twice), in the scopes and periods each was counted in; a
verification with no recorded send credits nothing. A country outside
``expected_countries`` whose settled sends did not mostly verify is *unproven*: it gets
``unproven_country_floor`` and in-flight credit at ``credit_ratio``, so an attacker who
verifies some of its own sends to fake conversion gains little.

Past a budget a send is challenged; denied only past ``deny_factor`` times it and
``deny_margin`` sends beyond it, which takes sends made after challenges were solved that
then went unverified: people who solve a challenge mostly verify, and earn the room back.

Why this cannot lock real users out (``tests/test_guard_pumping_props.py`` holds each step
with generated traffic):

1. **Refusals are never evidence.** Only ``sent`` and ``verified`` events move a counter;
   a challenged or denied request changes no state, so refusing one user cannot make the
   guard refuse the next.
2. **Isolation.** A country's and a prefix's counters hold only sends to that country or
   prefix; an IP's and a network's only sends from it. Traffic that shares no scope with a
   request cannot change its verdict, so an attack on other countries, from other networks,
   leaves a country's users exactly where they would be without it.
3. **Real traffic stays inside its budgets.** A population whose sends convert at ``q``
   holds ``(1 - q) x S`` unverified against ``floor + credit_ratio x q x S``: never exceeded
   when ``q >= 1 / (1 + credit_ratio)`` (50% by default), however large ``S``; the floor
   absorbs the first users' bad luck. In flight, a steady flow with mean verification delay
   ``d`` holds about ``rate x d`` pending against ``in_flight_ratio x`` the verifications of
   up to two periods; a ten-fold flash crowd exceeds that for under a minute at most.
4. **A challenge is a way through, not a wall.** ``challenge_passed`` (the user solved the
   app's CAPTCHA) lets the send go on; that user verifies and earns the scope its credit
   back, so a small country whose first users never answered is challenged for a user or
   two, not locked out.
5. **Nothing sticks.** In-flight counts leave within two periods whatever happened to the
   codes, and unverified counts after two days; no flag or score outlives its evidence.

What it does not stop: an attacker who verifies at least half of what it sends (it earns
its own credit; recipient and prefix rates, ``numbers.country_budgets`` and the spend cap
still apply); about ``unproven_country_floor`` / (1 - 2 x its conversion) sends per
country from one that verifies less; and a slow drip of about that many per country a day.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from perisai.guard.clientip import ip_prefix, ip_prefix48
from perisai.guard.config import PumpingPolicy
from perisai.guard.interface import Backend, Decision, Verdict

__all__ = ["PumpingRules", "Scope"]

DAY = 86400.0
_PENDING_TTL = 2 * DAY + 60
_COUNTER_TTL = 2 * DAY + 60
_MAX_PENDING = 16  # sends remembered per recipient until one verifies


@dataclass(frozen=True, slots=True)
class Scope:
    """One counted population: ``rule`` names it in a refusal (``pumping-{rule}``)."""

    rule: str
    key: str
    floor: float
    earned: bool = False  # the floor grows with verifications (unproven_country_floor)


def _source_scopes(ip: str) -> tuple[str | None, str | None]:
    """(IP scope, network scope): an IPv4 address and its /24, or an IPv6 /64 and its /48."""
    if not ip:
        return None, None
    if ":" in ip:
        return ip_prefix(ip), ip_prefix48(ip)
    net = ip_prefix(ip)
    return (ip, net) if net is not None else (ip, None)


class PumpingRules:
    """The verification-credit budgets over one backend (see the module docstring)."""

    def __init__(self, policy: PumpingPolicy, backend: Backend) -> None:
        self.policy = policy
        self.backend = backend
        self._country_floors = {
            country: max(float(policy.country_floor), math.ceil(volume * policy.expected_share))
            for country, volume in policy.expected_countries.items()
        }

    def scopes(self, country: str, prefix: str, ip: str | None) -> list[Scope]:
        policy = self.policy
        seeded = self._country_floors.get(country)
        scopes = [
            Scope("country", f"c:{country}", seeded or float(policy.country_floor), not seeded),
            Scope("prefix", f"p:{prefix}", float(policy.prefix_floor)),
        ]
        if ip:
            address, network = _source_scopes(ip)
            if address is not None:
                scopes.append(Scope("ip", f"i:{address}", float(policy.ip_floor)))
            if network is not None:
                scopes.append(Scope("network", f"n:{network}", float(policy.network_floor)))
        return scopes

    def _periods(self, now: float) -> tuple[int, int]:
        return int(now // DAY), int(now // self.policy.in_flight)

    @staticmethod
    def _keys(scope_key: str, day: int, bucket: int) -> tuple[str, ...]:
        """Sends and verifications, today, yesterday, this in-flight bucket and the last."""
        return (
            f"q:s:d{day}:{scope_key}",
            f"q:s:d{day - 1}:{scope_key}",
            f"q:s:b{bucket}:{scope_key}",
            f"q:s:b{bucket - 1}:{scope_key}",
            f"q:v:d{day}:{scope_key}",
            f"q:v:d{day - 1}:{scope_key}",
            f"q:v:b{bucket}:{scope_key}",
            f"q:v:b{bucket - 1}:{scope_key}",
        )

    def judge(
        self, country: str, prefix: str, ip: str | None, now: float, budget: int | None = None
    ) -> Decision | None:
        """The refusal for one more send, or None. ``budget``: the country's cap on sends
        today (``numbers.country_budgets``)."""
        day, bucket = self._periods(now)
        scopes = self.scopes(country, prefix, ip)
        keys: list[str] = []
        for scope in scopes:
            keys.extend(self._keys(scope.key, day, bucket))
        values = self.backend.get_many(keys)
        if budget is not None and values[0] >= budget:
            return Decision(Verdict.DENY, "country-budget")
        policy = self.policy
        challenge: Decision | None = None  # a denial by any scope outranks it
        for i, scope in enumerate(scopes):
            s_day, s_before, s_now, s_last, v_day, v_before, v_now, v_last = values[
                8 * i : 8 * i + 8
            ]
            sent_in_flight = s_now + s_last
            verified_in_flight = v_now + v_last
            in_flight = sent_in_flight - verified_in_flight
            verified = v_day + v_before - verified_in_flight  # of sends past their flight
            unverified = s_day + s_before - sent_in_flight - verified
            floor, in_flight_ratio = scope.floor, policy.in_flight_ratio
            if scope.earned and verified <= unverified:  # not proven: most did not verify
                floor = min(floor, policy.unproven_country_floor)
                in_flight_ratio = min(in_flight_ratio, policy.credit_ratio)
            for count, allowed, reason in (
                (
                    in_flight,
                    floor + in_flight_ratio * verified_in_flight,
                    f"pumping-{scope.rule}-in-flight",
                ),
                (
                    unverified,
                    floor + policy.credit_ratio * (verified + verified_in_flight),
                    f"pumping-{scope.rule}",
                ),
            ):
                if count < allowed:
                    continue
                if count >= max(allowed * policy.deny_factor, allowed + policy.deny_margin):
                    return Decision(Verdict.DENY, reason)
                if challenge is None:
                    challenge = Decision(Verdict.CHALLENGE, reason)
        return challenge

    def sent(
        self, recipient: str, country: str, prefix: str, ip: str | None, now: float
    ) -> list[tuple[str, float, float]]:
        """The counter increments one ``sent`` moves; remembers the send's scopes under the
        recipient so that its verification credits exactly those."""
        day, bucket = self._periods(now)
        scope_keys = [scope.key for scope in self.scopes(country, prefix, ip)]
        pending_key = f"qp:{recipient}"
        pending = _load_pending(self.backend.get(pending_key))
        pending.append((day, bucket, scope_keys))
        self.backend.put(pending_key, json.dumps(pending[-_MAX_PENDING:]), _PENDING_TTL)
        return _increments("s", day, bucket, scope_keys)

    def verified(self, recipient: str, now: float) -> list[tuple[str, float, float]]:
        """The increments that credit each of the recipient's pending sends (resends
        included) in the scopes and periods it was counted in; nothing when none is pending."""
        pending_key = f"qp:{recipient}"
        pending = _load_pending(self.backend.get(pending_key))
        if not pending:
            return []
        self.backend.delete(pending_key)
        today = int(now // DAY)
        counts: list[tuple[str, float, float]] = []
        for day, bucket, scope_keys in pending:
            if day >= today - 1:  # older sends left every window
                counts.extend(_increments("v", day, bucket, scope_keys))
        return counts


def _increments(
    kind: str, day: int, bucket: int, scope_keys: Sequence[str]
) -> list[tuple[str, float, float]]:
    counts: list[tuple[str, float, float]] = []
    for key in scope_keys:
        counts.append((f"q:{kind}:d{day}:{key}", 1.0, _COUNTER_TTL))
        counts.append((f"q:{kind}:b{bucket}:{key}", 1.0, _COUNTER_TTL))
    return counts


_Pending = tuple[int, int, list[str]]  # (day, in-flight bucket, scope keys) of one send


def _load_pending(raw: str | None) -> list[_Pending]:
    """The pending sends stored for a recipient; a damaged record counts as none."""
    if raw is None:
        return []
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(data, list):
        return []
    pending: list[_Pending] = []
    for entry in data:
        if (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], int)
            and isinstance(entry[1], int)
            and isinstance(entry[2], list)
            and all(isinstance(key, str) for key in entry[2])
        ):
            pending.append((entry[0], entry[1], entry[2]))
    return pending
