"""Unit tests of api_audit's parsing and judging, on recorded specs and answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from perisai.api_audit.auditor import AuditError, check_known_account
from perisai.api_audit.checks import all_checks, all_rules
from perisai.api_audit.checks._common import no_recipient, recipient
from perisai.api_audit.checks.otp_verify_bruteforce import (
    code_in_message,
    code_space,
    paired_send_op,
)
from perisai.api_audit.context import AuditConfig, AuditContext
from perisai.api_audit.interface import (
    CheckResult,
    FieldKind,
    Operation,
    Outcome,
    Param,
    Role,
)
from perisai.api_audit.responses import classify_response
from perisai.api_audit.roles import classify, field_kind, load_flows
from perisai.api_audit.spec import SpecError, parse_spec


@pytest.mark.parametrize(
    ("status", "headers", "body", "outcome"),
    [
        (200, {}, '{"status":"sent"}', Outcome.ACCEPTED),
        (429, {"Retry-After": "60"}, '{"error":"slow"}', Outcome.RATE_LIMITED),
        (429, {}, '{"error":"too many wrong codes; locked"}', Outcome.LOCKED_OUT),
        (423, {}, "", Outcome.LOCKED_OUT),
        (403, {}, '{"error":"captcha required"}', Outcome.CHALLENGED),
        (200, {}, '{"error":"rate limit exceeded"}', Outcome.RATE_LIMITED),
        (400, {}, '{"error":"invalid code"}', Outcome.REJECTED),
        (401, {}, "", Outcome.AUTH_REQUIRED),
        (500, {}, "boom", Outcome.SERVER_ERROR),
    ],
)
def test_defences_are_told_apart_from_failures(
    status: int, headers: dict[str, str], body: str, outcome: Outcome
) -> None:
    assert classify_response(status, headers, body) is outcome


@pytest.mark.parametrize(
    ("name", "fmt", "kind"),
    [
        ("msisdn", None, FieldKind.PHONE),
        ("mobileNo", None, FieldKind.PHONE),
        ("phone_number", None, FieldKind.PHONE),
        ("email", None, FieldKind.EMAIL),
        ("to", "email", FieldKind.EMAIL),
        ("tac", None, FieldKind.CODE),
        ("otpCode", None, FieldKind.CODE),
        ("pin", None, FieldKind.CODE),
        ("country_code", None, FieldKind.OTHER),
        ("nric", None, FieldKind.NATIONAL_ID),
        ("ic_no", None, FieldKind.NATIONAL_ID),
        ("captchaToken", None, FieldKind.CHALLENGE),
        ("message", None, FieldKind.TEXT),
        ("password", None, FieldKind.PASSWORD),
        ("new_password", "password", FieldKind.PASSWORD),
        ("reset_password_code", None, FieldKind.CODE),
        ("passwordResetToken", None, FieldKind.CODE),
        ("pin", "password", FieldKind.CODE),
        ("access_token", None, FieldKind.OTHER),
    ],
)
def test_field_kinds(name: str, fmt: str | None, kind: FieldKind) -> None:
    assert field_kind(Param(name, "body", format=fmt)) is kind


def test_swagger2_form_and_refs() -> None:
    spec = {
        "swagger": "2.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/otp/send": {
                "post": {
                    "summary": "Send verification code",
                    "parameters": [{"name": "mobile", "in": "formData", "type": "string"}],
                }
            },
            "/otp/check": {
                "post": {
                    "parameters": [
                        {"in": "body", "name": "b", "schema": {"$ref": "#/definitions/Check"}}
                    ]
                }
            },
        },
        "definitions": {
            "Check": {"properties": {"phone": {"type": "string"}, "pin": {"maxLength": 4}}}
        },
    }
    operations, _ = parse_spec(json.dumps(spec))
    roles = {c.operation.key: c for c in classify(operations)}
    send = roles["POST /otp/send"]
    assert send.role is Role.OTP_SEND and send.operation.body == "form"
    check = roles["POST /otp/check"]
    assert check.role is Role.OTP_VERIFY
    assert check.operation.fields_of(FieldKind.CODE)[0].max_length == 4


def test_openapi3_account_lookup_by_nric() -> None:
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/users/check": {
                "get": {"parameters": [{"name": "ic", "in": "query", "schema": {"type": "string"}}]}
            }
        },
    }
    operations, _ = parse_spec(json.dumps(spec))
    assert classify(operations)[0].role is Role.ACCOUNT_LOOKUP


def test_unsafe_methods_get_a_role_only_from_flows() -> None:
    """The deliberately vulnerable API's user routes: DELETE and PUT on a username would
    classify as account lookups by their words; the audit must never send them unasked."""
    user = [{"name": "username", "in": "path", "required": True, "schema": {"type": "string"}}]
    email = {
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"email": {"type": "string"}}}
            }
        }
    }
    spec = {
        "openapi": "3.0.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/users/v1/{username}": {
                "get": {"summary": "Retrieve user by username", "parameters": user},
                "delete": {"summary": "Delete user by username", "parameters": user},
            },
            "/users/v1/{username}/email": {
                "put": {"summary": "Update users email", "parameters": user, "requestBody": email}
            },
        },
    }
    operations, _ = parse_spec(json.dumps(spec))
    roles = {c.operation.key: c for c in classify(operations)}
    assert roles["GET /users/v1/{username}"].role is Role.ACCOUNT_LOOKUP
    for key in ("DELETE /users/v1/{username}", "PUT /users/v1/{username}/email"):
        assert roles[key].role is None
        assert "never sent unless --flows" in roles[key].reasons[0]
    stated: dict[str, tuple[Role | None, dict[str, FieldKind]]] = {
        "DELETE /users/v1/{username}": (Role.ACCOUNT_LOOKUP, {})
    }
    chosen = {c.operation.key: c.role for c in classify(operations, stated)}
    assert chosen["DELETE /users/v1/{username}"] is Role.ACCOUNT_LOOKUP  # the tester's call


def test_unresolvable_ref_is_a_spec_error() -> None:
    spec = {
        "openapi": "3.0.0",
        "paths": {"/x": {"post": {"requestBody": {"$ref": "#/components/requestBodies/Nope"}}}},
    }
    with pytest.raises(SpecError, match="unresolvable"):
        parse_spec(json.dumps(spec))


def test_one_rule_per_check_with_metadata() -> None:
    checks = all_checks()
    assert len({c.rule.id for c in checks}) == len(checks) == len(all_rules()) == 8
    for check in checks:
        assert check.rule.id.startswith("api.") and check.rule.remediation and check.roles
        # an API rule says how to check and fix it itself (reports have no service to ask)
        assert check.rule.verify and check.rule.fix


@pytest.mark.parametrize(
    ("message", "code", "space"),
    [
        ("Use this code to sign in: 123456", "123456", 10**6),
        ("Your TAC is 4829. Do not share it.", "4829", 10**4),
        ("Your sign-in code: NQ3T-M5KX", "NQ3T-M5KX", 36**8),
        ("Code K7QX2M, valid 3 minutes: https://app.example:8443/c/K7QX2M", "K7QX2M", 36**6),
        ("Reset: http://127.0.0.1:48401/reset?token=eyJhbGciOi.eyJzdWIiOiIxMjM0NTY3.abc", None, 0),
    ],
)
def test_the_code_space_is_read_from_the_delivered_code(
    message: str, code: str | None, space: int
) -> None:
    found = code_in_message(message)
    param = Param("code", "body")
    if code is None:  # a long token: a JWT, never a port or a number inside it
        assert found is not None and len(found) >= 20
        return
    assert found == code
    assert code_space(found, param).size == space
    assert code_space(None, Param("pin", "body", max_length=4)).size == 10**4


def test_any_of_bodies_send_one_branch() -> None:
    """allauth's code request is ``anyOf: [{email}, {phone}]``: both fields are known, and a
    request carries only the branch of the field it names."""
    spec = {
        "openapi": "3.0.0",
        "paths": {
            "/auth/code/request": {
                "post": {
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "anyOf": [
                                        {"properties": {"email": {"type": "string"}}},
                                        {"properties": {"phone": {"type": "string"}}},
                                    ]
                                }
                            }
                        }
                    }
                }
            }
        },
    }
    operations, _ = parse_spec(json.dumps(spec))
    (classified,) = classify(operations)
    assert classified.role is Role.OTP_SEND
    op = classified.operation
    ctx = AuditContext(AuditConfig("http://127.0.0.1:9"), [classified])
    assert ctx.values_for(op, {"phone": "+447700900555"}) == {"phone": "+447700900555"}
    assert ctx.values_for(op, {"email": "a@example.org"}) == {"email": "a@example.org"}


def test_spec_examples_never_fill_passwords_or_accounts() -> None:
    """A spec's example password or username may be a real seeded account's: never sent."""
    op = Operation(
        "POST",
        "/users/v1/login",
        params=(
            Param("username", "body", example="name1", kind=FieldKind.USERNAME),
            Param("password", "body", example="pass1", kind=FieldKind.PASSWORD),
        ),
    )
    ctx = AuditContext(AuditConfig("http://127.0.0.1:9"), [])
    values = ctx.values_for(op)
    assert values["username"] != "name1" and values["password"] != "pass1"
    owned = AuditContext(AuditConfig("http://127.0.0.1:9", known_account="tester"), [])
    assert owned.values_for(op)["username"] == "tester"


@pytest.mark.parametrize(
    ("known", "sink_phone", "sink_email", "allowed"),
    [
        ("+447700900555", "+447700900555", "s@example.org", True),
        ("+60123456789", "+447700900555", "s@example.org", False),
        ("S@Example.org", "+447700900555", "s@example.org", True),
        ("victim@example.org", "+447700900555", "s@example.org", False),
        ("perisai-tester", "+447700900555", "s@example.org", True),
    ],
)
def test_a_known_phone_or_address_must_be_the_sink(
    known: str, sink_phone: str, sink_email: str, allowed: bool
) -> None:
    config = AuditConfig(
        "http://127.0.0.1:9", sink_phone=sink_phone, sink_email=sink_email, known_account=known
    )
    if allowed:
        check_known_account(config)
    else:
        with pytest.raises(AuditError, match="must be your sink"):
            check_known_account(config)


def test_a_verify_step_is_paired_with_its_own_send() -> None:
    ops = [
        Operation("POST", "/auth/forgot-password", params=(Param("email", "body"),)),
        Operation("POST", "/auth/request-verify-token", params=(Param("email", "body"),)),
        Operation("POST", "/auth/verify", params=(Param("token", "body"),)),
        Operation(
            "POST",
            "/auth/reset-password",
            params=(Param("token", "body"), Param("password", "body")),
        ),
    ]
    classified = classify(ops)
    roles = {c.operation.path: c.role for c in classified}
    assert roles["/auth/reset-password"] is Role.OTP_VERIFY  # a reset's second step takes a code
    assert roles["/auth/forgot-password"] is Role.PASSWORD_RESET
    ctx = AuditContext(AuditConfig("http://127.0.0.1:9"), classified)
    by_path = {c.operation.path: c.operation for c in classified}
    assert paired_send_op(by_path["/auth/verify"], ctx) == by_path["/auth/request-verify-token"]
    assert paired_send_op(by_path["/auth/reset-password"], ctx) == by_path["/auth/forgot-password"]


def test_the_readme_flows_example_loads(tmp_path: Path) -> None:
    """The ``--flows`` example the README shows is a file ``load_flows`` accepts."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(# flows\.yaml.*?)```", readme, re.DOTALL)
    assert block is not None
    path = tmp_path / "flows.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    flows = load_flows(path)
    assert flows["POST /v2/sms/dispatch"] == (Role.OTP_SEND, {"dest": FieldKind.PHONE})
    assert flows["DELETE /users/{id}"] == (None, {})


def test_a_reset_keyed_by_username_goes_to_the_known_account() -> None:
    """A reset that names an account, not a contact, is sent for the tester's own account (its
    contact is the sink), never for a spec's example user; without one it says what to give."""
    (classified,) = classify(
        [
            Operation(
                "POST",
                "/users/v1/reset-pin",
                params=(Param("username", "body", example="name1"),),
            )
        ]
    )
    assert classified.role is Role.PASSWORD_RESET
    op = classified.operation
    owned = AuditContext(AuditConfig("http://127.0.0.1:9", known_account="perisai-tester"), [])
    assert recipient(op, owned) == ("username", "perisai-tester")
    assert owned.sink_addresses("perisai-tester") == (
        owned.config.sink_phone,
        owned.config.sink_email,
    )
    anonymous = AuditContext(AuditConfig("http://127.0.0.1:9"), [])
    assert recipient(op, anonymous) is None
    assert "--known-account" in no_recipient(op, anonymous)


async def test_a_guess_that_gets_through_is_a_finding() -> None:
    """A verify step that lets a guess through after wrong ones (TOTP accepts several codes at
    once) is brute-forced for real: a finding, never a skip. An in-process ASGI app stands
    in for the API (its third guess passes whatever it is)."""
    tries: list[str] = []

    async def send(request: Request) -> JSONResponse:
        return JSONResponse({"status": "sent"})

    async def verify(request: Request) -> JSONResponse:
        body = await request.json()
        if body["msisdn"] != "+447700900555":
            return JSONResponse({"error": "no code pending"}, status_code=404)
        tries.append(body["code"])
        if len(tries) == 3:
            return JSONResponse({"status": "verified"})
        return JSONResponse({"error": "wrong code"}, status_code=400)

    app = Starlette(
        routes=[
            Route("/otp/send", send, methods=["POST"]),
            Route("/otp/verify", verify, methods=["POST"]),
        ]
    )
    phone = Param("msisdn", "body")
    classified = classify(
        [
            Operation("POST", "/otp/send", summary="Send OTP", params=(phone,), body="json"),
            Operation("POST", "/otp/verify", params=(phone, Param("code", "body")), body="json"),
        ]
    )
    ctx = AuditContext(AuditConfig("http://api.test", pace=0), classified)
    verify_op = next(c.operation for c in classified if c.role is Role.OTP_VERIFY)
    check = next(c for c in all_checks() if c.rule.id == "api.otp-verify-bruteforce")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        ctx.client = client
        ctx.begin(check.planned_requests(verify_op, ctx))
        result = await check.run(verify_op, ctx)
    assert isinstance(result, CheckResult) and result.vulnerable, result
    assert result.summary.startswith("proven: guess 3 was accepted after 2 wrong ones")
