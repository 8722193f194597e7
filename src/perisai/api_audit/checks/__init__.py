"""The abuse checks, one module and one rule id each, in the order a run applies them."""

from __future__ import annotations

from perisai.api_audit.checks.account_enumeration import AccountEnumeration
from perisai.api_audit.checks.login_enumeration import LoginEnumeration
from perisai.api_audit.checks.mail_relay import MailRelay
from perisai.api_audit.checks.no_challenge import NoChallenge
from perisai.api_audit.checks.otp_in_response import OtpInResponse
from perisai.api_audit.checks.otp_send_any_recipient import OtpSendAnyRecipient
from perisai.api_audit.checks.otp_send_unlimited import OtpSendUnlimited
from perisai.api_audit.checks.otp_verify_bruteforce import OtpVerifyBruteforce
from perisai.api_audit.interface import Check
from perisai.findings import Rule

__all__ = [
    "AccountEnumeration",
    "LoginEnumeration",
    "MailRelay",
    "NoChallenge",
    "OtpInResponse",
    "OtpSendAnyRecipient",
    "OtpSendUnlimited",
    "OtpVerifyBruteforce",
    "all_checks",
    "all_rules",
]

# Order matters for defended targets: the brute-force check first (it needs one code issued
# before any send limit is spent), then the limit-probing check, so a per-recipient limit is met
# by the check that measures it, then the single-request checks.
_CHECKS: tuple[type[Check], ...] = (
    OtpVerifyBruteforce,
    OtpSendUnlimited,
    OtpSendAnyRecipient,
    OtpInResponse,
    AccountEnumeration,
    LoginEnumeration,
    MailRelay,
    NoChallenge,
)


def all_checks() -> list[Check]:
    """Fresh instances of every check (built on call, never at import)."""
    return [cls() for cls in _CHECKS]


def all_rules() -> dict[str, Rule]:
    return {cls.rule.id: cls.rule for cls in _CHECKS}
