"""Prove whether your own OTP, e-mail and account endpoints can be abused (``perisai audit-api``).

spec → roles (:mod:`~perisai.api_audit.roles`) → checks (:mod:`~perisai.api_audit.checks`, one
rule id each) → findings in the shared contract. Every request is budgeted, paced and masked
(:mod:`~perisai.api_audit.context`); mail relaying is proven through perisai's own SMTP sink
(:mod:`~perisai.api_audit.sink`).
"""

from __future__ import annotations

from perisai.api_audit.auditor import AuditError, audit_api, base_target, load_operations, plan
from perisai.api_audit.checks import all_checks, all_rules
from perisai.api_audit.context import AuditConfig, AuditContext
from perisai.api_audit.interface import (
    Check,
    CheckResult,
    CheckSkipped,
    ClassifiedOperation,
    FieldKind,
    Operation,
    Outcome,
    Role,
)
from perisai.api_audit.sink import SmtpSink

__all__ = [
    "AuditConfig",
    "AuditContext",
    "AuditError",
    "Check",
    "CheckResult",
    "CheckSkipped",
    "ClassifiedOperation",
    "FieldKind",
    "Operation",
    "Outcome",
    "Role",
    "SmtpSink",
    "all_checks",
    "all_rules",
    "audit_api",
    "base_target",
    "load_operations",
    "plan",
]
