"""Give each operation a role (otp-send, otp-verify, …) from its path, texts and fields.

Heuristics read word tokens (``requestTac`` → ``request``, ``tac``) of the path, summary,
description and operationId, and the names and formats of the fields. A ``--flows`` YAML file
states roles (and field kinds) where the heuristics cannot::

    flows:
      - operation: POST /v2/sms/dispatch      # or an operationId
        role: otp-send                        # or none, to leave an operation alone
        fields: {dest: phone}                 # optional: field name -> kind
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from perisai.api_audit.interface import ClassifiedOperation, FieldKind, Operation, Param, Role

__all__ = ["FlowsError", "classify", "field_kind", "load_flows", "tokens"]

_PHONE = {"msisdn", "phone", "mobile", "tel", "telephone", "handphone", "hp", "cellphone", "cell"}
_EMAIL = {"email", "mail", "recipient", "to", "cc", "bcc"}
_CODE = {"otp", "tac", "pin", "code", "passcode", "totp", "token"}
_NATIONAL = {"nric", "ic", "mykad", "nationalid", "ssn", "nin", "passport", "kp"}
_USER = {"username", "user", "login", "account", "userid", "uid", "identity", "identifier"}
_TEXT = {
    "message",
    "body",
    "content",
    "description",
    "text",
    "comment",
    "subject",
    "details",
    "note",
    "notes",
    "remarks",
    "feedback",
    "html",
    "title",
    "msg",
    "enquiry",
    "inquiry",
}
_CHALLENGE = {
    "captcha",
    "recaptcha",
    "hcaptcha",
    "turnstile",
    "challenge",
    "pow",
    "attestation",
    "appcheck",
    "integrity",
    "safetynet",
    "devicecheck",
}
_NOT_CODE = {
    "country",
    "postal",
    "post",
    "zip",
    "area",
    "currency",
    "language",
    "promo",
    "referral",
    "coupon",
    "voucher",
    "access",
    "refresh",
    "bearer",
    "csrf",
    "device",
}

_OTP_WORDS = {
    "otp",
    "tac",
    "pin",
    "code",
    "verification",
    "2fa",
    "mfa",
    "sms",
    "passcode",
    "totp",
    "token",
}
_SEND_WORDS = {"send", "request", "resend", "generate", "issue", "deliver", "dispatch", "sends"}
_VERIFY_WORDS = {"verify", "confirm", "validate", "check", "submit", "verification"}
_LOGIN_WORDS = {"login", "signin", "session", "authenticate", "logon"}
_RESET_WORDS = {"reset", "forgot", "forgotten", "recover", "recovery"}
_LOOKUP_WORDS = {
    "lookup",
    "exists",
    "exist",
    "check",
    "find",
    "search",
    "available",
    "availability",
    "registered",
    "account",
    "accounts",
    "user",
    "users",
}
_MAIL_WORDS = {
    "mail",
    "email",
    "helpdesk",
    "ticket",
    "tickets",
    "contact",
    "support",
    "feedback",
    "share",
    "invite",
    "notify",
    "enquiry",
}

_SPLIT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


class FlowsError(ValueError):
    """A --flows file perisai cannot use; one line."""


def tokens(text: str) -> list[str]:
    """Lower-case word tokens: ``sendOTP_code-v2`` → ``send, otp, code, v, 2``."""
    return [t.lower() for t in _SPLIT.findall(text)]


def field_kind(param: Param) -> FieldKind:
    """What a field carries, from its name and format."""
    words = tokens(param.name)
    joined = "".join(words)
    fmt = (param.format or "").lower()
    if any(w in _CHALLENGE for w in words) or joined in _CHALLENGE:
        return FieldKind.CHALLENGE
    if words and words[-1] in _CODE and not any(w in _NOT_CODE for w in words):
        # named for what it is, whatever it is for: reset_password_code, passwordResetToken,
        # a PIN the spec marks format: password, all carry a one-time code
        return FieldKind.CODE
    if fmt == "password" or "password" in words or joined in {"passwd", "pwd", "pass"}:
        return FieldKind.PASSWORD
    if fmt == "email" or "email" in words or joined in {"email", "emailaddress"}:
        return FieldKind.EMAIL
    if fmt in {"phone", "tel", "msisdn"} or any(w in _PHONE for w in words):
        return FieldKind.PHONE
    if joined in _NATIONAL or any(w in _NATIONAL for w in words if w != "kp" or len(words) == 1):
        return FieldKind.NATIONAL_ID
    if any(w in _CODE for w in words) and not any(w in _NOT_CODE for w in words):
        return FieldKind.CODE
    if words and words[-1] in _EMAIL and fmt in {"", "email"} and joined in _EMAIL:
        return FieldKind.EMAIL
    if joined in _USER or (words and words[0] in _USER and words[-1] in {"name", "id"}):
        return FieldKind.USERNAME
    if any(w in _TEXT for w in words):
        return FieldKind.TEXT
    return FieldKind.OTHER


def _with_kinds(op: Operation, overrides: dict[str, FieldKind] | None = None) -> Operation:
    overrides = overrides or {}
    params = tuple(
        dataclasses.replace(p, kind=overrides.get(p.name) or field_kind(p)) for p in op.params
    )
    return dataclasses.replace(op, params=params)


def _heuristic(op: Operation) -> tuple[Role | None, list[str]]:
    path_words = set(tokens(op.path.replace("{", " ").replace("}", " ")))
    text_words = set(tokens(" ".join((op.summary, op.description, op.operation_id))))
    words = path_words | text_words
    kinds = {p.kind for p in op.params}
    named = {p.kind: p.name for p in reversed(op.params)}
    identifiers = kinds & {
        FieldKind.PHONE,
        FieldKind.EMAIL,
        FieldKind.NATIONAL_ID,
        FieldKind.USERNAME,
    }
    reasons: list[str] = []

    def said(found: set[str], what: str) -> None:
        parts = [
            f"{where} says {', '.join(sorted(found & words_at))}"
            for where, words_at in (("path", path_words), ("summary/description", text_words))
            if found & words_at
        ]
        reasons.append(f"{' and '.join(parts)} ({what})")

    def field(kind: FieldKind) -> None:
        article = "an" if kind in (FieldKind.EMAIL, FieldKind.OTHER) else "a"
        reasons.append(f"field '{named[kind]}' holds {article} {kind.value}")

    if FieldKind.PASSWORD in kinds and words & _LOGIN_WORDS:
        said(words & _LOGIN_WORDS, "login")
        field(FieldKind.PASSWORD)
        return Role.LOGIN, reasons
    if FieldKind.CODE in kinds and (identifiers or words & (_VERIFY_WORDS | _RESET_WORDS)):
        # a code and who it is for, or a code and a verb: the step that takes the code (a
        # reset's second step, token and new password, included)
        field(FieldKind.CODE)
        if words & (_VERIFY_WORDS | _RESET_WORDS):
            said(words & (_VERIFY_WORDS | _RESET_WORDS), "verify")
        return Role.OTP_VERIFY, reasons
    if words & _RESET_WORDS and ("password" in words or "passwd" in words or identifiers):
        said(words & _RESET_WORDS, "password reset")
        for kind in sorted(identifiers):
            field(kind)
        return Role.PASSWORD_RESET, reasons
    otp = words & _OTP_WORDS
    if (
        otp
        and FieldKind.CODE not in kinds
        and (words & _SEND_WORDS or FieldKind.PHONE in kinds)
        and (FieldKind.PHONE in kinds or FieldKind.EMAIL in kinds or identifiers)
    ):
        said(otp, "one-time code")
        if words & _SEND_WORDS:
            said(words & _SEND_WORDS, "send")
        for kind in sorted(identifiers):
            field(kind)
        return Role.OTP_SEND, reasons
    if FieldKind.EMAIL in kinds and FieldKind.TEXT in kinds:
        field(FieldKind.EMAIL)
        field(FieldKind.TEXT)
        if words & _MAIL_WORDS:
            said(words & _MAIL_WORDS, "mail")
        return Role.MAIL_SEND, reasons
    if identifiers and words & _LOOKUP_WORDS and FieldKind.PASSWORD not in kinds:
        said(words & _LOOKUP_WORDS, "lookup")
        for kind in sorted(identifiers):
            field(kind)
        return Role.ACCOUNT_LOOKUP, reasons
    return None, ["no OTP, mail, account or login words and fields"]


def load_flows(path: Path) -> dict[str, tuple[Role | None, dict[str, FieldKind]]]:
    """``--flows``: operation key or operationId → (role or None, field kinds)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FlowsError(f"no such flows file: {path}") from None
    except OSError as error:
        raise FlowsError(f"cannot read flows file {path}: {error.strerror or error}") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise FlowsError(f"flows file {path} is not valid YAML") from None
    entries: Iterable[Any]
    if isinstance(raw, dict) and isinstance(raw.get("flows"), list):
        entries = raw["flows"]
    elif isinstance(raw, dict):
        entries = [{"operation": k, "role": v} for k, v in raw.items()]
    else:
        raise FlowsError(f"flows file {path}: expected a 'flows:' list of operation/role entries")
    out: dict[str, tuple[Role | None, dict[str, FieldKind]]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or "operation" not in entry or "role" not in entry:
            raise FlowsError(f"flows file {path}: each entry needs 'operation' and 'role'")
        role_text = str(entry["role"]).strip().lower()
        try:
            role = None if role_text in {"none", "null", ""} else Role(role_text)
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise FlowsError(
                f"flows file {path}: unknown role {role_text!r} (use {roles} or none)"
            ) from None
        kinds: dict[str, FieldKind] = {}
        for name, kind in (entry.get("fields") or {}).items():
            try:
                kinds[str(name)] = FieldKind(str(kind))
            except ValueError:
                names = ", ".join(k.value for k in FieldKind)
                raise FlowsError(
                    f"flows file {path}: unknown field kind {kind!r} (use {names})"
                ) from None
        operation = str(entry["operation"]).strip()
        method, _, rest = operation.partition(" ")
        key = f"{method.upper()} {rest.strip()}" if rest else operation
        out[key] = (role, kinds)
    return out


# Methods that change or remove what a target holds: an operation with one gets a role only
# from --flows, where the tester says it is safe to call (the audit then sends that method)
_UNSAFE = frozenset({"DELETE", "PUT", "PATCH"})


def classify(
    operations: Iterable[Operation],
    flows: dict[str, tuple[Role | None, dict[str, FieldKind]]] | None = None,
) -> list[ClassifiedOperation]:
    """Every operation with its role and the reasons for it; ``flows`` entries win, and only
    they give a role to a DELETE, PUT or PATCH operation."""
    flows = flows or {}
    out: list[ClassifiedOperation] = []
    for op in operations:
        stated = flows.get(op.key) or (flows.get(op.operation_id) if op.operation_id else None)
        if stated is not None:
            role, kinds = stated
            typed = _with_kinds(op, kinds)
            out.append(ClassifiedOperation(typed, role, ("stated in --flows",), from_flows=True))
            continue
        typed = _with_kinds(op)
        if op.method in _UNSAFE:
            reason = f"{op.method} changes data: never sent unless --flows gives it a role"
            out.append(ClassifiedOperation(typed, None, (reason,)))
            continue
        role, reasons = _heuristic(typed)
        out.append(ClassifiedOperation(typed, role, tuple(reasons)))
    return out


def unused_flows(
    flows: dict[str, tuple[Role | None, dict[str, FieldKind]]], operations: Iterable[Operation]
) -> list[str]:
    """``--flows`` entries that name no operation of the spec (likely typos)."""
    known = set()
    for op in operations:
        known.add(op.key)
        if op.operation_id:
            known.add(op.operation_id)
    return [key for key in flows if key not in known]
