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
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "MIN_TOKEN_LENGTH",
    "ApiPolicy",
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
    "token_problem",
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

    # one per 30 s lets a user ask again after the usual resend timer (30-90 s); a day cap:
    # a victim bombed from rotating addresses gets 10 a day, not 720
    recipient: tuple[Rate, ...] = _rates((1, 30), (5, 600), (10, 86400))
    # Backstops against one machine flooding, sized for carrier-grade NAT: hundreds of users
    # a day behind one IPv4 address, thousands behind one IPv6 /64, and a ten-fold flash
    # crowd on top. Pumping from one source is stopped far earlier by the verification
    # credit of ``pumping`` (``pumping-ip``, ``pumping-network``), which real users earn.
    ip: tuple[Rate, ...] = _rates((100, 600), (2000, 86400))
    ip_prefix: tuple[Rate, ...] = _rates((600, 600), (20000, 86400))  # /24 IPv4, /64 IPv6
    # IPv6 only, per /48 (``ip-prefix48-rate``): a /64 is one LAN, a /48 one site, and a
    # client given a /48 can hop across its 65,536 /64s, so the /64 limit alone caps nothing.
    # Twice the /64 rates, as a site holds several busy LANs.
    ip_prefix48: tuple[Rate, ...] = _rates((1200, 600), (40000, 86400))
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


_REMOVED_PUMPING_KEYS = frozenset(
    {
        "country_fraction",
        "min_conversion",
        "max_countries_per_ip",
        "conversion_bucket",
        "country_min_unverified",
        "pool_min_unverified",
        "collapse_ratio",
        "default_conversion",
        "baseline_min_verified",
        "baseline_min_sends",
    }
)


class PumpingPolicy(_Model):
    """SMS-pumping detection by verification credit (see :mod:`perisai.guard.pumping`).

    Every send is counted in four scopes: its country, its number prefix (the number minus
    ``prefix_drop_digits``), the client IP (an IPv6 client's /64) and its network (IPv4 /24,
    IPv6 /48). A send is *in flight* for ``in_flight`` seconds (its code can still be used:
    set it to your code lifetime plus a grace period) and *unverified* only after that, if no
    verification came. Each scope may hold ``floor`` + ``credit_ratio`` x its verified sends
    unverified (today and yesterday), and ``floor`` + ``in_flight_ratio`` x the verified
    sends of the same window in flight; past that a send is challenged, and past both
    ``deny_factor`` times that and ``deny_margin`` sends beyond it denied. Only ``sent`` and
    ``verified`` events move the counters: a refused request is never evidence against the
    next one.

    Numbers that verified before and ``trusted_ips`` skip every rule here.
    ``expected_countries`` (ISO code -> expected sends a day) raises a country's floor to
    ``expected_share`` of its expected volume, so a launch day's first hours need no history.
    """

    enabled: bool = True
    in_flight: float = Field(default=600, ge=60)  # seconds a code can still be verified
    prefix_drop_digits: int = Field(default=3, ge=1, le=6)  # prefix = number minus these
    credit_ratio: float = Field(default=1.0, gt=0)  # unverified sends allowed per verified
    in_flight_ratio: float = Field(default=2.0, gt=0)  # in-flight sends per verified
    country_floor: int = Field(default=5, ge=1)
    # for a country not in expected_countries whose settled sends (today and yesterday) did
    # not mostly verify, or that has none: its floor, with in-flight credit at credit_ratio
    # instead of in_flight_ratio. A spread over fresh countries gets about 2 sends in each.
    unproven_country_floor: int = Field(default=2, ge=1)
    prefix_floor: int = Field(default=3, ge=1)
    ip_floor: int = Field(default=10, ge=1)
    network_floor: int = Field(default=30, ge=1)
    expected_countries: dict[str, int] = {}  # ISO 3166 alpha-2 -> expected sends a day
    expected_share: float = Field(default=0.005, gt=0, le=1)
    deny_factor: float = Field(default=2.0, ge=1)  # challenge past the allowance, deny past x
    deny_margin: int = Field(default=10, ge=0)  # ... and this many sends past it
    trusted_ips: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            removed = sorted(_REMOVED_PUMPING_KEYS & set(data))
            if removed:
                raise ValueError(
                    f"{', '.join(removed)}: removed; pumping is now judged by verification "
                    "credit (see the README's guard section)"
                )
        return data

    @field_validator("trusted_ips")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value

    @field_validator("expected_countries")
    @classmethod
    def _countries(cls, value: dict[str, int]) -> dict[str, int]:
        for country, volume in value.items():
            if len(country) != 2 or not country.isalpha():
                raise ValueError(f"{country!r} is not an ISO 3166 alpha-2 country code")
            if volume < 0:
                raise ValueError(f"expected sends for {country} must be >= 0")
        return {country.upper(): volume for country, volume in value.items()}


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
    allowlist: tuple[str, ...] = ()  # addresses, kept in their canonical spelling
    require_verified: bool = True  # send_email only to the account's verified address
    block_disposable: bool = True
    recipient: tuple[Rate, ...] = _rates((1, 60), (5, 3600))
    account: tuple[Rate, ...] = _rates((10, 3600))

    @field_validator("allowlist")
    @classmethod
    def _canonical(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Canonical, like the addresses they are compared with (``Siti+x@Example.org`` is
        ``siti@example.org``); an entry that is no address would silently never match."""
        from perisai.guard.email import normalize_email

        addresses = []
        for entry in value:
            address = normalize_email(entry)
            if address is None:
                raise ValueError(f"not an e-mail address: {entry!r}")
            addresses.append(address)
        return tuple(addresses)


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


MIN_TOKEN_LENGTH = 16


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be a bearer token (it goes in a header and must resist guessing),
    or None; the answer never quotes the token."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"every token needs at least {MIN_TOKEN_LENGTH} characters"
    if not all("!" <= ch <= "~" and ch != "," for ch in token):
        return "tokens must be printable ASCII without spaces or commas"
    return None


class ApiPolicy(_Model):
    """Who may call the Verify API: any of ``tokens`` as ``Authorization: Bearer …`` (several,
    so a team can rotate one out); ``/healthz`` is always open, ``/metrics`` when
    ``metrics_public``."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    tokens: tuple[str, ...] = Field(default=(), repr=False)
    metrics_public: bool = False

    @field_validator("tokens")
    @classmethod
    def _strong(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for token in value:
            problem = token_problem(token)
            if problem is not None:
                raise ValueError(problem)
        return value


class Deliveries(_Model):
    brand: str = "perisai"
    sms: DeliveryConfig = DeliveryConfig()
    email: DeliveryConfig = DeliveryConfig()


class GuardConfig(_Model):
    """The whole guard policy; ``GuardConfig()`` is the defaults."""

    # errors never echo the input: it may hold API tokens and delivery credentials
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

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
    api: ApiPolicy = ApiPolicy()

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value

    @model_validator(mode="after")
    def _codes_settle_in_flight(self) -> GuardConfig:
        """A code that can still be used must not count as unverified."""
        if self.verify.ttl > self.pumping.in_flight:
            raise ValueError(
                f"pumping.in_flight ({self.pumping.in_flight:g} s) must be at least "
                f"verify.ttl ({self.verify.ttl:g} s)"
            )
        return self

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
