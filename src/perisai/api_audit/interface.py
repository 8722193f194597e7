"""The api_audit layer's types: operations and their roles, exchanges, and the check base class.

A check declares its rule (id, severity, remediation) and the roles it tests as typed class
attributes; it returns a :class:`CheckResult` (vulnerable or not, and which defence was seen) or
a :class:`CheckSkipped` (could not test, and why) for one operation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

from perisai.findings import Rule, Severity

if TYPE_CHECKING:
    from perisai.api_audit.context import AuditContext

__all__ = [
    "Check",
    "CheckResult",
    "CheckSkipped",
    "ClassifiedOperation",
    "Exchange",
    "FieldKind",
    "Operation",
    "Outcome",
    "Param",
    "Role",
]


class Role(StrEnum):
    """What an operation does, as far as abuse is concerned."""

    OTP_SEND = "otp-send"
    OTP_VERIFY = "otp-verify"
    ACCOUNT_LOOKUP = "account-lookup"
    MAIL_SEND = "mail-send"
    LOGIN = "login"
    PASSWORD_RESET = "password-reset"  # noqa: S105


class FieldKind(StrEnum):
    """What a request field carries."""

    PHONE = "phone"
    EMAIL = "email"
    CODE = "code"
    NATIONAL_ID = "national-id"
    USERNAME = "username"
    PASSWORD = "password"  # noqa: S105
    TEXT = "text"
    CHALLENGE = "challenge"
    OTHER = "other"


@dataclass(frozen=True)
class Param:
    """One request field from the spec: a query/path/header parameter or a body property."""

    name: str
    location: str  # query, path, header, body, form
    type: str = "string"
    format: str | None = None
    required: bool = False
    example: object = None
    max_length: int | None = None
    pattern: str | None = None
    kind: FieldKind = FieldKind.OTHER
    # the anyOf/oneOf branch of the body this field belongs to (None: every request has it);
    # a request sends the fields of one branch only
    alternative: int | None = None


@dataclass(frozen=True)
class Operation:
    """One operation of the spec."""

    method: str  # upper case
    path: str
    summary: str = ""
    description: str = ""
    operation_id: str = ""
    params: tuple[Param, ...] = ()
    body: str | None = None  # "json" or "form" when the operation takes a body

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def fields_of(self, kind: FieldKind) -> list[Param]:
        return [p for p in self.params if p.kind is kind]


@dataclass(frozen=True)
class ClassifiedOperation:
    """An operation, the role perisai gave it (None: no abuse-relevant role), and why."""

    operation: Operation
    role: Role | None
    reasons: tuple[str, ...] = ()
    from_flows: bool = False


class Outcome(StrEnum):
    """What one answer means: acceptance, a defence, or a plain failure."""

    ACCEPTED = "accepted"
    RATE_LIMITED = "rate-limited"
    LOCKED_OUT = "locked-out"
    CHALLENGED = "challenge-required"
    AUTH_REQUIRED = "auth-required"
    REJECTED = "rejected"
    SERVER_ERROR = "server-error"
    UNREACHABLE = "unreachable"

    @property
    def is_defence(self) -> bool:
        return self in (Outcome.RATE_LIMITED, Outcome.LOCKED_OUT, Outcome.CHALLENGED)


@dataclass(frozen=True)
class Exchange:
    """One request and its answer. ``line`` is the masked evidence line; the raw answer stays
    in memory for the check that made it."""

    method: str
    path: str
    status: int
    outcome: Outcome
    elapsed: float
    line: str
    text: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


@dataclass(frozen=True)
class CheckResult:
    """A check ran on an operation: vulnerable or not, what was seen, the masked requests."""

    rule: str
    operation: Operation
    vulnerable: bool
    summary: str
    evidence: tuple[str, ...] = ()
    defence: str | None = None  # the defence seen, when not vulnerable because of one
    entities: dict[str, int] = field(default_factory=dict)
    anonymous: bool = True
    # below the rule's default when the flaw is only indicated (the answer suggests it) and
    # not proven (a sink received the message, or the answer carries the code)
    severity: Severity | None = None


@dataclass(frozen=True)
class CheckSkipped:
    """A check could not test an operation, and why (a note for the user, not a finding)."""

    rule: str
    operation: Operation | None
    reason: str


class Check(ABC):
    """One abuse check; one implementation per module, one rule id each."""

    rule: ClassVar[Rule]
    roles: ClassVar[tuple[Role, ...]]

    @abstractmethod
    def planned_requests(self, op: Operation, ctx: AuditContext) -> int:
        """The most requests :meth:`run` makes for ``op``."""

    @abstractmethod
    def describe(self, op: Operation, ctx: AuditContext) -> str:
        """One line for ``--dry-run``: what would be sent (recipients masked)."""

    @abstractmethod
    async def run(self, op: Operation, ctx: AuditContext) -> CheckResult | CheckSkipped:
        """Test ``op``; every request goes through ``ctx`` (budget, pacing, masking)."""

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if "rule" in cls.__dict__:
            rule = cls.__dict__["rule"]
            if not isinstance(rule, Rule) or not rule.id.startswith("api."):
                raise TypeError(f"{cls.__name__}.rule must be a Rule with an api.* id")
            if not cls.roles:
                raise TypeError(f"{cls.__name__}.roles must name at least one role")
