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
from typing import NamedTuple

from perisai.guard import keys
from perisai.guard.clientip import ip_prefix, ip_prefix48
from perisai.guard.config import PumpingPolicy
from perisai.guard.interface import Backend, Decision, Verdict

__all__ = ["PumpingRules", "Scope"]

DAY = 86400.0
_PENDING_TTL = 2 * DAY + 60
_COUNTER_TTL = 2 * DAY + 60
_MAX_PENDING = 16  # sends remembered per recipient until one verifies


class Scope(NamedTuple):
    """One counted population: ``rule`` names it in a refusal (``pumping-{rule}``)."""

    rule: str
    key: str
    floor: float
    earned: bool  # its floor drops to unproven_country_floor until it proves itself


_REASONS = {
    rule: (f"pumping-{rule}-in-flight", f"pumping-{rule}")
    for rule in ("country", "prefix", "ip", "network")
}
_HEADS_CACHE = 64  # (day, bucket) entries; two are live at a time


def _source_scopes(ip: str) -> tuple[str | None, str | None]:
    """(IP scope, network scope): an IPv4 address and its /24, or an IPv6 /64 and its /48."""
    if not ip:
        return None, None
    if ":" in ip:
        return ip_prefix(ip), ip_prefix48(ip)
    return ip, ip_prefix(ip)


class PumpingRules:
    """The verification-credit budgets over one backend (see the module docstring)."""

    def __init__(self, policy: PumpingPolicy, backend: Backend) -> None:
        self.policy = policy
        self.backend = backend
        self._country_floors = {
            country: max(float(policy.country_floor), math.ceil(volume * policy.expected_share))
            for country, volume in policy.expected_countries.items()
        }
        self._heads: dict[tuple[int, int], tuple[str, ...]] = {}

    def scopes(self, country: str, e164: str, ip: str | None) -> list[Scope]:
        """The populations a send to ``e164`` from ``ip`` is counted in; each key carries its
        hash tag (:mod:`perisai.guard.keys`), the prefix's being its numbers' block."""
        policy = self.policy
        seeded = self._country_floors.get(country)
        prefix = e164[: -policy.prefix_drop_digits]
        scopes = [
            Scope("country", f"c:{{{country}}}", seeded or policy.country_floor, seeded is None),
            Scope("prefix", f"p:{keys.block(e164)}{prefix}", policy.prefix_floor, False),
        ]
        if ip:
            address, network = _source_scopes(ip)
            if address is not None:
                scopes.append(Scope("ip", f"i:{{{address}}}", policy.ip_floor, False))
            if network is not None:
                scopes.append(Scope("network", f"n:{{{network}}}", policy.network_floor, False))
        return scopes

    def _periods(self, now: float) -> tuple[int, int]:
        return int(now // DAY), int(now // self.policy.in_flight)

    def _key_heads(self, day: int, bucket: int) -> tuple[str, ...]:
        """The starts of a scope's eight counter keys (sends, then verifications: today,
        yesterday, this in-flight bucket, the last), built once per bucket."""
        heads = self._heads.get((day, bucket))
        if heads is None:
            if len(self._heads) >= _HEADS_CACHE:
                self._heads.clear()
            heads = self._heads[day, bucket] = tuple(
                f"q:{kind}:{period}:"
                for kind in ("s", "v")
                for period in (f"d{day}", f"d{day - 1}", f"b{bucket}", f"b{bucket - 1}")
            )
        return heads

    def counter_keys(self, scopes: Sequence[Scope], now: float) -> list[str]:
        """The counters :meth:`verdict` needs, eight per scope, in its order."""
        heads = self._key_heads(*self._periods(now))
        return [head + scope.key for scope in scopes for head in heads]

    def verdict(
        self, scopes: Sequence[Scope], values: Sequence[float], budget: int | None = None
    ) -> Decision | None:
        """The refusal for one more send, or None, from the values of :meth:`counter_keys`.
        ``budget``: the country's cap on sends today (``numbers.country_budgets``)."""
        if budget is not None and values[0] >= budget:
            return Decision(Verdict.DENY, "country-budget")
        policy = self.policy
        deny_factor, deny_margin = policy.deny_factor, policy.deny_margin
        challenge: Decision | None = None  # a denial by any scope outranks it
        for i, (rule, _, floor, earned) in enumerate(scopes):
            s_day, s_before, s_now, s_last, v_day, v_before, v_now, v_last = values[
                8 * i : 8 * i + 8
            ]
            sent_in_flight = s_now + s_last
            verified_in_flight = v_now + v_last
            in_flight = sent_in_flight - verified_in_flight
            verified = v_day + v_before - verified_in_flight  # of sends past their flight
            unverified = s_day + s_before - sent_in_flight - verified
            in_flight_ratio = policy.in_flight_ratio
            if earned and verified <= unverified:  # not proven: most did not verify
                floor = min(floor, policy.unproven_country_floor)
                in_flight_ratio = min(in_flight_ratio, policy.credit_ratio)
            allowed_in_flight = floor + in_flight_ratio * verified_in_flight
            allowed_unverified = floor + policy.credit_ratio * (verified + verified_in_flight)
            if in_flight < allowed_in_flight and unverified < allowed_unverified:
                continue
            for count, allowed, reason in (
                (in_flight, allowed_in_flight, _REASONS[rule][0]),
                (unverified, allowed_unverified, _REASONS[rule][1]),
            ):
                if count < allowed:
                    continue
                if count >= max(allowed * deny_factor, allowed + deny_margin):
                    return Decision(Verdict.DENY, reason)
                if challenge is None:
                    challenge = Decision(Verdict.CHALLENGE, reason)
        return challenge

    def sent(
        self, recipient: str, country: str, ip: str | None, now: float
    ) -> list[tuple[str, float, float]]:
        """The counter increments one ``sent`` moves; remembers the send's scopes under the
        recipient so that its verification credits exactly those."""
        day, bucket = self._periods(now)
        scope_keys = [scope.key for scope in self.scopes(country, recipient, ip)]
        pending_key = keys.pending(recipient)
        pending = _load_pending(self.backend.get(pending_key))
        pending.append((day, bucket, scope_keys))
        self.backend.put(pending_key, json.dumps(pending[-_MAX_PENDING:]), _PENDING_TTL)
        return self._increments("s", day, bucket, scope_keys)

    def verified(self, recipient: str, now: float) -> list[tuple[str, float, float]]:
        """The increments that credit each of the recipient's pending sends (resends
        included) in the scopes and periods it was counted in; nothing when none is pending."""
        pending_key = keys.pending(recipient)
        pending = _load_pending(self.backend.get(pending_key))
        if not pending:
            return []
        self.backend.delete(pending_key)
        today = int(now // DAY)
        counts: list[tuple[str, float, float]] = []
        for day, bucket, scope_keys in pending:
            if day >= today - 1:  # older sends left every window
                counts.extend(self._increments("v", day, bucket, scope_keys))
        return counts

    def _increments(
        self, kind: str, day: int, bucket: int, scope_keys: Sequence[str]
    ) -> list[tuple[str, float, float]]:
        """+1 on each scope's ``kind`` counter for the send's day and in-flight bucket: the
        keys :meth:`judge` reads, from the same heads."""
        heads = self._key_heads(day, bucket)
        day_head, bucket_head = (heads[0], heads[2]) if kind == "s" else (heads[4], heads[6])
        counts: list[tuple[str, float, float]] = []
        for key in scope_keys:
            counts.append((day_head + key, 1.0, _COUNTER_TTL))
            counts.append((bucket_head + key, 1.0, _COUNTER_TTL))
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
