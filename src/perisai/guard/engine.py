"""The decision engine: policy ► number intelligence ► pumping ► limits ► allow/challenge/deny."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from perisai.guard import keys
from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.clientip import TrustedProxies, canonical_ip, ip_prefix, ip_prefix48
from perisai.guard.codes import CodeRecord, hash_code, new_code
from perisai.guard.config import FailMode, GuardConfig, Mode, Rate
from perisai.guard.email import is_disposable, normalize_email
from perisai.guard.interface import (
    Action,
    Backend,
    BackendError,
    Decision,
    Event,
    Gate,
    Limit,
    Passage,
    Verdict,
)
from perisai.guard.metrics import GuardMetrics
from perisai.guard.numbers import NumberInfo, inspect_number
from perisai.guard.pumping import PumpingRules

__all__ = ["Guard", "Started", "VerifyOutcome", "VerifyStatus"]

log = logging.getLogger("perisai.guard")

DAY = 86400.0
HOUR = 3600.0
KNOWN_TTL = 90 * DAY
ALLOW = Decision(Verdict.ALLOW, "ok")
_ACTIONS: dict[str, Action] = {action.value: action for action in Action}


class VerifyStatus(StrEnum):
    APPROVED = "approved"
    INVALID = "invalid"
    LOCKED = "locked"


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    status: VerifyStatus
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class Started:
    """A verification that was started (``id`` and ``code`` set) or refused (``decision``)."""

    decision: Decision
    id: str | None = None
    code: str | None = None
    to: str | None = None  # the canonical recipient: what every counter is keyed by
    address: str | None = None  # where to deliver: the address as given, the E.164 number


def _deny(reason: str, retry_after: float = 0.0) -> Decision:
    return Decision(Verdict.DENY, reason, retry_after)


def _challenge(reason: str) -> Decision:
    return Decision(Verdict.CHALLENGE, reason)


class Guard:
    """Decides whether to send an OTP or e-mail, and runs verifications.

    Every backend call may fail; then the configured fail mode decides (and it is logged and
    counted). Build one per process; it is thread-safe when its backend is.
    """

    def __init__(
        self,
        config: GuardConfig | None = None,
        backend: Backend | None = None,
        *,
        metrics: GuardMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config if config is not None else GuardConfig()
        self.backend = backend if backend is not None else MemoryBackend()
        self.metrics = metrics if metrics is not None else GuardMetrics()
        self.proxies = TrustedProxies(self.config.trusted_proxies)
        self._trusted_ips = TrustedProxies(self.config.pumping.trusted_ips)
        self._any_trusted_ips = bool(self.config.pumping.trusted_ips)
        self._clock = clock
        secret = self.config.secret
        self._secret = secret.encode() if secret else secrets.token_bytes(32)
        # (key suffix, limit, window) per rate tuple of the frozen config, keyed by identity
        self._templates: dict[int, tuple[tuple[str, int, float], ...]] = {}
        self._rules = PumpingRules(self.config.pumping, self.backend)

    def _add_limits(self, out: list[Limit], key: str, rates: tuple[Rate, ...], name: str) -> None:
        """Append one sliding-window Limit per rate, on ``key:0``, ``key:1`` …"""
        template = self._templates.get(id(rates))
        if template is None:
            template = tuple((f":{i}", rate.limit, rate.window) for i, rate in enumerate(rates))
            self._templates[id(rates)] = template
        for suffix, limit, window in template:
            out.append(Limit(key + suffix, limit, window, name))

    def _limits(self, key: str, rates: tuple[Rate, ...], name: str) -> list[Limit]:
        limits: list[Limit] = []
        self._add_limits(limits, key, rates, name)
        return limits

    # ------------------------------------------------------------------ decisions
    def check(
        self,
        action: Action | str,
        to: str,
        ip: str,
        device: str | None = None,
        account: str | None = None,
        *,
        challenge_passed: bool = False,
    ) -> Decision:
        """Decide on one request. Raises ValueError for an unknown action. ``ip`` is keyed in
        its canonical spelling (``canonical_ip``), as in every entry point.

        ``challenge_passed``: the app showed this user a challenge (a CAPTCHA) for an earlier
        ``challenge`` verdict and the user solved it; a rule that would challenge then lets
        the send go on to the remaining rules (a denial still denies). A human who earns a
        send can verify, so a challenged country or prefix earns its way out."""
        started = time.perf_counter()
        known = _ACTIONS.get(action) if isinstance(action, str) else None
        action = known if known is not None else Action(action)
        try:
            decision = self._decide(
                action, to, canonical_ip(ip), device, account, self._clock(), challenge_passed
            )
        except BackendError as exc:
            decision = self._backend_down(exc)
        if self.config.mode is Mode.MONITOR and decision.verdict is not Verdict.ALLOW:
            log.info(
                "guard monitor: would %s %s: %s",
                decision.verdict.value,
                action.value,
                decision.reason,
            )
            decision = Decision(Verdict.ALLOW, f"monitor:{decision.reason}")
        self.metrics.decided(
            action.value, decision.verdict.value, decision.reason, time.perf_counter() - started
        )
        return decision

    def _backend_down(self, exc: BackendError) -> Decision:
        mode = self.config.fail
        log.warning("guard backend down (failing %s): %s", mode.value, exc)
        self.metrics.backend_errors.labels(mode.value).inc()
        if mode is FailMode.OPEN:
            return Decision(Verdict.ALLOW, "backend-down")
        return _deny("backend-down", 1.0)

    def _decide(
        self,
        action: Action,
        to: str,
        ip: str,
        device: str | None,
        account: str | None,
        now: float,
        challenge_passed: bool = False,
    ) -> Decision:
        if action is Action.VERIFY_OTP:
            return self._decide_verify(to, ip, now)
        if action is Action.SEND_EMAIL or "@" in to:
            return self._decide_email(action, to, ip, device, account, now)
        return self._decide_sms(to, ip, device, account, now, challenge_passed)

    def _source_limits(
        self, out: list[Limit], ip: str, device: str | None, account: str | None, space: str
    ) -> None:
        policy = self.config.limits
        add = self._add_limits
        add(out, keys.source(space, "ip", ip), policy.ip, "ip-rate")
        prefix = ip_prefix(ip)
        if prefix is not None:
            add(out, keys.source(space, "net", prefix), policy.ip_prefix, "ip-prefix-rate")
            if ":" in prefix:  # IPv6: per /64 above, and per /48 (one site) too
                site = ip_prefix48(ip)
                if site is not None:
                    add(
                        out,
                        keys.source(space, "net48", site),
                        policy.ip_prefix48,
                        "ip-prefix48-rate",
                    )
        if device:
            add(out, keys.source(space, "dev", device), policy.device, "device-rate")
        if account:
            add(out, keys.source(space, "acct", account), policy.account, "account-rate")

    def _decide_sms(
        self,
        to: str,
        ip: str,
        device: str | None,
        account: str | None,
        now: float,
        challenge_passed: bool = False,
    ) -> Decision:
        info = inspect_number(to)
        if info is None:
            return _deny("number-invalid")
        numbers = self.config.numbers
        if info.country in numbers.deny_countries or (
            numbers.allow_countries and info.country not in numbers.allow_countries
        ):
            return _deny("country-denied")
        if info.number_type in numbers.deny_types:
            return _deny(f"number-{info.number_type}")
        if info.number_type in numbers.challenge_types and not challenge_passed:
            return _challenge(f"number-{info.number_type}")
        trusted = self._any_trusted_ips and self._trusted_ips.trusted(ip)
        pumping = self.config.pumping.enabled and not trusted
        scopes = self._rules.scopes(info.country, info.e164, ip) if pumping else []
        counters = self._rules.counter_keys(scopes, now) if scopes else []
        spend = self.config.spend
        capped = spend.hourly_cap is not None or spend.daily_cap is not None
        spend_keys = self._spend_keys(now) if capped else []
        policy = self.config.limits
        limits: list[Limit] = []
        self._add_limits(limits, keys.recipient("s", info.e164), policy.recipient, "recipient-rate")
        self._source_limits(limits, ip, device, account, "s")
        unvetted: list[Limit] = []  # a number that verified before (or a trusted IP) skips it
        if not trusted:
            prefix = info.prefix(self.config.pumping.prefix_drop_digits)
            self._add_limits(
                unvetted,
                keys.number_prefix(info.e164, prefix),
                policy.number_prefix,
                "number-prefix-rate",
            )
        # one round trip: the reads every rule needs, and the limits taken at once
        passage = self.backend.gate(
            Gate(
                counters=[*counters, *spend_keys],
                limits=limits,
                flag=None if trusted else keys.known(info.e164),
                unflagged=unvetted,
            ),
            now,
        )
        refusal: Decision | None = None
        if pumping and not passage.flagged:
            budget = numbers.country_budgets.get(info.country)
            verdict = self._rules.verdict(scopes, passage.counters[: len(counters)], budget)
            if verdict is not None and not (
                challenge_passed and verdict.verdict is Verdict.CHALLENGE
            ):
                refusal = verdict
        if refusal is None and capped:
            refusal = self._spend_check(info, now, passage.counters[len(counters) :])
        return self._admitted(passage, refusal)

    def _admitted(self, passage: Passage, refusal: Decision | None) -> Decision:
        """The decision once a gate passed: a rule's refusal gives back the limits it took
        (refusals are never evidence), else the limits' own answer."""
        if refusal is not None:
            if passage.admission.allowed:
                self.backend.release(passage.ticket)
            return refusal
        admission = passage.admission
        if not admission.allowed:
            return _deny(admission.denied_by or "rate", admission.retry_after)
        return ALLOW

    def _cost(self, info: NumberInfo) -> float:
        return self.config.spend.costs.get(info.country, self.config.spend.default_cost)

    @staticmethod
    def _spend_keys(now: float) -> list[str]:
        """This hour's and today's spend counters."""
        return [keys.spend(f"h{int(now // HOUR)}"), keys.spend(f"d{int(now // DAY)}")]

    def _spend_check(self, info: NumberInfo, now: float, spent: Sequence[float]) -> Decision | None:
        """A refusal when this send's cost would pass the hourly or daily cap."""
        spend = self.config.spend
        hour, day = int(now // HOUR), int(now // DAY)
        spent_hour, spent_day = spent
        cost = self._cost(info)
        if spend.hourly_cap is not None and spent_hour + cost > spend.hourly_cap:
            return _deny("spend-cap", (hour + 1) * HOUR - now)
        if spend.daily_cap is not None and spent_day + cost > spend.daily_cap:
            return _deny("spend-cap", (day + 1) * DAY - now)
        return None

    def _decide_email(
        self,
        action: Action,
        to: str,
        ip: str,
        device: str | None,
        account: str | None,
        now: float,
    ) -> Decision:
        address = normalize_email(to)
        if address is None:
            return _deny("email-invalid")
        policy = self.config.email
        allowlisted = address in policy.allowlist  # canonical too, see EmailPolicy
        if policy.block_disposable and not allowlisted and is_disposable(address):
            return _deny("email-disposable")
        must_be_verified = (
            action is Action.SEND_EMAIL and policy.require_verified and not allowlisted
        )
        if must_be_verified and not account:
            return _deny("email-unverified")
        limits = self._limits(keys.recipient("e", address), policy.recipient, "recipient-rate")
        if account:
            self._add_limits(
                limits, keys.source("e", "acct", account), policy.account, "account-rate"
            )
        self._source_limits(limits, ip, device, None, "e")
        texts = [keys.account_email(account)] if must_be_verified and account else []
        passage = self.backend.gate(Gate(texts=texts, limits=limits), now)
        unverified = must_be_verified and passage.texts[0] != address
        return self._admitted(passage, _deny("email-unverified") if unverified else None)

    def _decide_verify(self, to: str, ip: str, now: float) -> Decision:
        recipient = self.canonical(to)
        if recipient is None:
            return _deny("recipient-invalid")
        verify = self.config.verify
        limits = self._limits(keys.source("v", "ip", ip), self.config.limits.ip, "ip-rate")
        passage = self.backend.gate(
            Gate(counters=[keys.verify_attempts(recipient)], limits=limits), now
        )
        locked = passage.counters[0] >= verify.max_attempts
        return self._admitted(passage, _deny("verify-locked", verify.lockout) if locked else None)

    # ------------------------------------------------------------------ events
    def record(
        self,
        event: Event | str,
        to: str,
        ip: str | None = None,
        account: str | None = None,
    ) -> None:
        """Tell the guard what happened: ``sent`` (a message went out), ``verified`` (the
        recipient proved it), ``failed`` (a wrong code). Raises ValueError for an unknown event;
        a backend failure is logged and counted, never raised."""
        event = Event(event)
        try:
            self._record(event, to, canonical_ip(ip) if ip else ip, account, self._clock())
        except BackendError as exc:
            log.warning("guard backend down while recording %s: %s", event.value, exc)
            self.metrics.backend_errors.labels(self.config.fail.value).inc()

    def _record(
        self, event: Event, to: str, ip: str | None, account: str | None, now: float
    ) -> None:
        recipient = self.canonical(to)
        if recipient is None:
            return
        verify = self.config.verify
        if event is Event.FAILED:
            self.backend.add(keys.verify_attempts(recipient), 1, verify.lockout)
            return
        info = inspect_number(recipient) if "@" not in recipient else None
        if event is Event.VERIFIED:
            self.backend.delete(keys.verify_attempts(recipient))
            if info is None:
                if account:
                    self.backend.put(keys.account_email(account), recipient, KNOWN_TTL)
                return
            self.backend.put(keys.known(info.e164), "1", KNOWN_TTL)
            credits = self._rules.verified(info.e164, now)
            if credits:
                self.backend.add_many(credits)
            return
        if info is None:  # an e-mail went out: its rates were taken at check time
            return
        counts = self._rules.sent(info.e164, info.country, ip, now)
        spend = self.config.spend
        if spend.hourly_cap is not None or spend.daily_cap is not None:
            cost = self._cost(info)
            hourly, daily = self._spend_keys(now)
            counts.append((hourly, cost, HOUR + 60))
            counts.append((daily, cost, DAY + 60))
        self.backend.add_many(counts)

    # ------------------------------------------------------------------ verifications
    @staticmethod
    def canonical(to: str) -> str | None:
        """E.164 for a number, the canonical address for an e-mail (``normalize_email``:
        case, ``+tag``, punycode domain, Gmail dots), None for neither."""
        if "@" in to:
            return normalize_email(to)
        info = inspect_number(to)
        return None if info is None else info.e164

    def start(
        self,
        to: str,
        channel: str,
        ip: str,
        device: str | None = None,
        account: str | None = None,
        *,
        challenge_passed: bool = False,
    ) -> Started:
        """Decide, and if allowed make a fresh code (replacing any live one). The caller
        delivers ``code`` and then records ``sent``. ``challenge_passed``: see :meth:`check`."""
        if channel not in ("sms", "email") or (channel == "email") != ("@" in to):
            decision = _deny("channel-mismatch")
            self.metrics.decisions.labels("send_otp", "deny", decision.reason).inc()
            return Started(decision)
        decision = self.check(
            Action.SEND_OTP, to, ip, device, account, challenge_passed=challenge_passed
        )
        if not decision.allowed:
            return Started(decision)
        recipient = self.canonical(to)
        if recipient is None:  # only when monitor mode let an invalid recipient through
            return Started(_deny("recipient-invalid"))
        verify = self.config.verify
        verification_id = secrets.token_urlsafe(12)
        code = new_code(verify.code_length)
        record = CodeRecord(
            id=verification_id,
            digest=hash_code(self._secret, recipient, verification_id, code),
            expires=self._clock() + verify.ttl,
            channel=channel,
        )
        try:
            self.backend.put(keys.code(recipient), record.dumps(), verify.ttl)
        except BackendError as exc:
            self._backend_down(exc)
            return Started(_deny("backend-down", 1.0))
        # a +tag or a dot can matter to a mailbox provider: deliver to the address as given
        address = to.strip() if channel == "email" else recipient
        return Started(decision, verification_id, code, recipient, address)

    def verify(self, to: str, code: str, ip: str) -> VerifyOutcome:
        """Check a code: at most ``max_attempts`` per code and per recipient, across resends."""
        try:
            outcome = self._verify(to, code, canonical_ip(ip))
        except BackendError as exc:
            self._backend_down(exc)
            outcome = VerifyOutcome(VerifyStatus.LOCKED, 1.0)
        self.metrics.verifications.labels(outcome.status.value).inc()
        return outcome

    def _verify(self, to: str, code: str, ip: str) -> VerifyOutcome:
        recipient = self.canonical(to)
        if recipient is None:
            return VerifyOutcome(VerifyStatus.INVALID)
        verify = self.config.verify
        now = self._clock()
        admission = self.backend.acquire(
            self._limits(keys.source("v", "ip", ip), self.config.limits.ip, "ip-rate"), now
        )
        if not admission.allowed:
            return VerifyOutcome(VerifyStatus.LOCKED, admission.retry_after)
        attempts = self.backend.add(keys.verify_attempts(recipient), 1, verify.lockout)
        if attempts > verify.max_attempts:
            return VerifyOutcome(VerifyStatus.LOCKED, verify.lockout)
        stored = self.backend.get(keys.code(recipient))
        if stored is None:
            return VerifyOutcome(VerifyStatus.INVALID)
        record = CodeRecord.loads(stored)
        if record.expires <= now:
            return VerifyOutcome(VerifyStatus.INVALID)
        per_code = self.backend.add(keys.verification(record.id), 1, verify.ttl)
        if per_code > verify.max_attempts:
            return VerifyOutcome(VerifyStatus.LOCKED, max(0.0, record.expires - now))
        if not code.isdigit() or not record.matches(self._secret, recipient, code):
            return VerifyOutcome(VerifyStatus.INVALID)
        self.backend.delete(keys.code(recipient))
        self._record(Event.VERIFIED, recipient, ip, None, now)
        return VerifyOutcome(VerifyStatus.APPROVED)
