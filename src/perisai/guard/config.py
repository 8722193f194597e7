"""Guard policy: every limit has a default taken from what hosted verification services ship,
and every one is overridable from a YAML file.

``load_config(path)`` raises :class:`GuardConfigError` with one line for the user on a missing
file, bad YAML or a value out of range.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "Deliveries",
    "DeliveryConfig",
    "EmailPolicy",
    "FailMode",
    "GuardConfig",
    "GuardConfigError",
    "LimitPolicy",
    "Mode",
    "NumberPolicy",
    "PumpingPolicy",
    "Rate",
    "SpendPolicy",
    "VerifyPolicy",
    "load_config",
]


class GuardConfigError(Exception):
    """The guard's configuration cannot be used; the message is one line for the user."""


class Mode(StrEnum):
    MONITOR = "monitor"  # decide and log, but always allow
    ENFORCE = "enforce"


class FailMode(StrEnum):
    OPEN = "open"  # backend down: allow (and count it)
    CLOSED = "closed"  # backend down: deny


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rate(_Model):
    """At most ``limit`` events per ``window`` seconds."""

    limit: int = Field(gt=0)
    window: float = Field(gt=0)


def _rates(*pairs: tuple[int, float]) -> tuple[Rate, ...]:
    return tuple(Rate(limit=limit, window=window) for limit, window in pairs)


class LimitPolicy(_Model):
    """Send caps per destination and per source of the request."""

    recipient: tuple[Rate, ...] = _rates((1, 60), (5, 600))
    ip: tuple[Rate, ...] = _rates((10, 600), (30, 86400))
    ip_prefix: tuple[Rate, ...] = _rates((50, 600), (200, 86400))  # /24 IPv4, /64 IPv6
    device: tuple[Rate, ...] = _rates((5, 600), (20, 86400))
    account: tuple[Rate, ...] = _rates((5, 600), (20, 86400))
    number_prefix: tuple[Rate, ...] = _rates((10, 600))  # bursts to adjacent numbers


class NumberPolicy(_Model):
    """Number intelligence from ``phonenumbers``."""

    deny_types: tuple[str, ...] = (
        "premium_rate",
        "shared_cost",
        "toll_free",
        "pager",
        "voicemail",
        "uan",
    )
    challenge_types: tuple[str, ...] = ("voip", "unknown")
    allow_countries: tuple[str, ...] = ()  # ISO 3166 alpha-2; empty: all
    deny_countries: tuple[str, ...] = ()
    country_budgets: dict[str, int] = {}  # sends per day per country, before pumping baselines

    @field_validator("deny_types", "challenge_types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from perisai.guard.numbers import NUMBER_TYPES

        unknown = sorted(set(value) - set(NUMBER_TYPES))
        if unknown:
            raise ValueError(f"unknown number type(s): {', '.join(unknown)}")
        return value

    @field_validator("allow_countries", "deny_countries")
    @classmethod
    def _upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(country.upper() for country in value)


class PumpingPolicy(_Model):
    """SMS-pumping detection from conversion rates (verified / sent) against baselines.

    Numbers that verified before and ``trusted_ips`` skip every rule here. The rules, in order
    (each challenges first and denies once the refused attempts reach ``deny_factor`` times
    its threshold):

    - ``max_countries_per_ip``: distinct countries one IP sent unverified codes to in a day;
    - ``country_floor`` / ``country_fraction``: a country's daily budget of unverified sends,
      ``max(floor, fraction x its verified sends today and yesterday)`` (``pumping-country``);
    - ``prefix_floor`` / ``min_conversion``: one number prefix (the number minus
      ``prefix_drop_digits``) with that many unverified sends and a conversion under
      ``min_conversion`` (``pumping-prefix``);
    - conversion collapse, over the current and the previous ``conversion_bucket`` seconds.
      A country with at least ``baseline_min_verified`` verified sends today and yesterday is
      judged alone: ``pumping-conversion`` once it has ``country_min_unverified`` unverified
      sends and a conversion under ``collapse_ratio`` x its baseline (yesterday's conversion
      when yesterday had ``baseline_min_sends`` sends, else ``default_conversion``). Countries
      without that much verified traffic are counted together, so an attack spread over many
      of them adds up: ``pumping-conversion-pool`` once they have ``pool_min_unverified``
      unverified sends between them and a conversion under ``collapse_ratio`` x
      ``default_conversion``.
    """

    enabled: bool = True
    prefix_drop_digits: int = Field(default=3, ge=1, le=6)  # prefix = number minus these
    country_floor: int = Field(default=200, ge=0)  # unverified sends/day a country always gets
    country_fraction: float = Field(default=0.5, ge=0)  # of its verified volume, as headroom
    prefix_floor: int = Field(default=8, ge=0)  # unverified sends/day a prefix always gets
    min_conversion: float = Field(default=0.3, ge=0, le=1)
    deny_factor: float = Field(default=2.0, ge=1)  # challenge past the budget, deny past x times
    max_countries_per_ip: int = Field(default=3, ge=1)  # distinct unverified countries a day
    trusted_ips: tuple[str, ...] = ()
    # conversion collapse (verified / sent over the current and the previous bucket)
    conversion_bucket: float = Field(default=3600, ge=60)  # seconds per counting bucket
    country_min_unverified: int = Field(default=25, ge=1)  # a baselined country, before judging
    pool_min_unverified: int = Field(default=6, ge=1)  # countries without a baseline, together
    collapse_ratio: float = Field(default=0.5, gt=0, le=1)  # "collapsed": under this x baseline
    default_conversion: float = Field(default=0.8, gt=0, le=1)  # baseline without history
    baseline_min_verified: int = Field(default=5, ge=0)  # today + yesterday, to be judged alone
    baseline_min_sends: int = Field(default=50, ge=1)  # yesterday's, to use its conversion

    @field_validator("trusted_ips")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value


class SpendPolicy(_Model):
    """The circuit breaker: a global SMS spend cap."""

    default_cost: float = Field(default=0.05, ge=0)
    costs: dict[str, float] = {}  # per country
    hourly_cap: float | None = Field(default=None, gt=0)
    daily_cap: float | None = Field(default=None, gt=0)


class VerifyPolicy(_Model):
    code_length: int = Field(default=6, ge=4, le=10)
    ttl: float = Field(default=300, gt=0)
    max_attempts: int = Field(default=5, ge=1)  # per code and per recipient across resends
    lockout: float = Field(default=900, gt=0)  # how long the per-recipient budget lasts


class EmailPolicy(_Model):
    allowlist: tuple[str, ...] = ()
    require_verified: bool = True  # send_email only to the account's verified address
    block_disposable: bool = True
    recipient: tuple[Rate, ...] = _rates((1, 60), (5, 3600))
    account: tuple[Rate, ...] = _rates((10, 3600))


class DeliveryConfig(_Model):
    """One channel's delivery adapter."""

    type: Literal["console", "file", "webhook", "twilio", "smtp"] = "console"
    path: str | None = None  # file
    url: str | None = None  # webhook; twilio base URL (default: Twilio's)
    headers: dict[str, str] = {}  # webhook
    account_sid: str | None = None  # twilio
    auth_token: str | None = None  # twilio token, or the SMTP password
    sender: str | None = None  # twilio From number, or the e-mail From address
    host: str | None = None  # smtp
    port: int = Field(default=587, gt=0, lt=65536)
    username: str | None = None
    start_tls: bool | None = None


class Deliveries(_Model):
    brand: str = "perisai"
    sms: DeliveryConfig = DeliveryConfig()
    email: DeliveryConfig = DeliveryConfig()


class GuardConfig(_Model):
    """The whole guard policy; ``GuardConfig()`` is the defaults."""

    mode: Mode = Mode.ENFORCE
    fail: FailMode = FailMode.CLOSED
    secret: str | None = None  # HMAC key for stored codes; random per process when absent
    key_tag: str = "perisai"  # Redis Cluster hash tag: every key lives in one slot
    trusted_proxies: tuple[str, ...] = ()  # only these may set X-Forwarded-For
    limits: LimitPolicy = LimitPolicy()
    numbers: NumberPolicy = NumberPolicy()
    pumping: PumpingPolicy = PumpingPolicy()
    spend: SpendPolicy = SpendPolicy()
    verify: VerifyPolicy = VerifyPolicy()
    email: EmailPolicy = EmailPolicy()
    delivery: Deliveries = Deliveries()

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value

    @classmethod
    def from_mapping(cls, data: Any) -> GuardConfig:
        """Validate ``data`` (parsed YAML); raises :class:`GuardConfigError`."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise GuardConfigError("guard config must be a mapping at the top level")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "config"
            raise GuardConfigError(f"bad guard config: {where}: {first['msg']}") from None


def load_config(path: Path | None) -> GuardConfig:
    """The config in the YAML file at ``path``, or the defaults when ``path`` is None."""
    if path is None:
        return GuardConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GuardConfigError(f"cannot read guard config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise GuardConfigError(f"guard config {path} is not valid YAML{where}") from None
    return GuardConfig.from_mapping(data)
