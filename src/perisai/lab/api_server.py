"""A registration / helpdesk HTTP API with the health-app flaws, and its fixed twin.

The vulnerable twin (``exposed=True``) is the incident's API: its TAC (OTP) send endpoint texts
any number a script names, with no limit and no challenge, and echoes the code in its answer;
its verify endpoint takes unlimited guesses; its account lookup answers "exists" and "does not
exist" differently; its helpdesk endpoint e-mails the caller's subject and message to the
caller's address. The fixed twin keeps the same routes and closes each hole: per-recipient and
per-IP limits answered with 429 and ``Retry-After``, a lockout after a few wrong codes, no code
in any answer, one answer for every account lookup, a challenge token on anonymous send flows,
and helpdesk mail that is a fixed template sent only to verified addresses.

Both serve their spec: ``/openapi.json`` (OpenAPI 3.0) and ``/swagger.json`` (Swagger 2.0).
"Sent" SMS land in an SMS sink (``root/sms.jsonl``); helpdesk mail goes through SMTP to the
relay named at start (``smtp_relay``: perisai's own sink in the tests). Every request except a
spec download is appended to ``root/requests.jsonl``, so tests count what a scanner sent.

The server runs in its own process (``python -m uvicorn --factory``), configured through
``PERISAI_LAB_API_*`` environment variables, on a free 127.0.0.1 port: our child in its own
session (the supervisor's :func:`~perisai.lab.supervisor.spawn` mode).
"""

from __future__ import annotations

import json
import os
import secrets
import smtplib
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar

import httpx

from perisai.lab.instances import Instance
from perisai.lab.supervisor import (
    HOST,
    START_TIMEOUT,
    Process,
    free_port,
    make_root,
    spawn,
    start_with_retries,
)

__all__ = [
    "KNOWN_ACCOUNT",
    "LAB_TOKEN",
    "VERIFIED_EMAIL",
    "ApiInstance",
    "create_app",
    "openapi_spec",
    "start_api_server",
    "swagger_spec",
]

SERVICE = "http-api"
LAB_TOKEN = "lab-token-0f3c"  # noqa: S105  # the bearer token /api/v1/me accepts
KNOWN_ACCOUNT = "+60123456789"  # the one registered mobile number (synthetic)
VERIFIED_EMAIL = "verified@lab.perisai.test"  # the one verified helpdesk address
CODE_LENGTH = 6
SPEC_PATHS = ("/openapi.json", "/swagger.json")

# Fixed-twin limits.
PER_RECIPIENT_LIMIT = 3  # TAC sends per number per window
PER_IP_LIMIT = 10  # TAC sends per client address per window
LIMIT_WINDOW = 600.0
MAX_VERIFY_ATTEMPTS = 5
LOCKOUT_SECONDS = 900

_ENV_ROOT = "PERISAI_LAB_API_ROOT"
_ENV_VULNERABLE = "PERISAI_LAB_API_VULNERABLE"
_ENV_SMTP = "PERISAI_LAB_API_SMTP"
_ENV_CHALLENGE = "PERISAI_LAB_API_CHALLENGE"
_ENV_SMS = "PERISAI_LAB_API_SMS"  # an SMS provider base URL (Twilio's API shape), or empty
_TWILIO_ACCOUNT = "AC" + "1ab" * 10 + "00"  # a made-up account id of Twilio's shape

# --- the spec -------------------------------------------------------------------------------

# (method, path, summary, fields: (name, location, type, format, required), tags)
_Field = tuple[str, str, str, str | None, bool]
_OPERATIONS: tuple[tuple[str, str, str, str, tuple[_Field, ...]], ...] = (
    (
        "post",
        "/api/v1/register/request-tac",
        "Request a TAC",
        "Sends a 6-digit TAC by SMS to the mobile number (msisdn) being registered.",
        (("msisdn", "body", "string", None, True),),
    ),
    (
        "post",
        "/api/v1/register/verify-tac",
        "Verify a TAC",
        "Checks the TAC the user typed for the msisdn.",
        (("msisdn", "body", "string", None, True), ("tac", "body", "string", None, True)),
    ),
    (
        "get",
        "/api/v1/accounts/exists",
        "Account lookup",
        "Whether an account is registered for a mobile number.",
        (("mobile", "query", "string", None, True),),
    ),
    (
        "post",
        "/api/v1/helpdesk/tickets",
        "Open a helpdesk ticket",
        "Creates a support ticket and e-mails a copy to the given address.",
        (
            ("email", "body", "string", "email", True),
            ("subject", "body", "string", None, True),
            ("message", "body", "string", None, True),
        ),
    ),
    (
        "post",
        "/api/v1/auth/login",
        "Log in",
        "Log in with mobile number and password.",
        (
            ("mobile", "body", "string", None, True),
            ("password", "body", "string", "password", True),
        ),
    ),
    (
        "post",
        "/api/v1/auth/forgot-password",
        "Forgot password",
        "Sends a password reset link to the account's e-mail address.",
        (("email", "body", "string", "email", True),),
    ),
    (
        "get",
        "/api/v1/me",
        "Current user",
        "The logged-in user's profile.",
        (),
    ),
    (
        "get",
        "/api/v1/challenge",
        "Get a challenge token",
        "A single-use challenge token for anonymous send requests.",
        (),
    ),
)
_CHALLENGED = {"/api/v1/register/request-tac", "/api/v1/helpdesk/tickets"}
_FIXED_ONLY = {"/api/v1/challenge"}


def _operations(vulnerable: bool) -> list[tuple[str, str, str, str, tuple[_Field, ...]]]:
    out = []
    for method, path, summary, description, fields in _OPERATIONS:
        if vulnerable and path in _FIXED_ONLY:
            continue
        if not vulnerable and path in _CHALLENGED:
            fields = (*fields, ("challenge_token", "body", "string", None, True))
        out.append((method, path, summary, description, fields))
    return out


def openapi_spec(vulnerable: bool) -> dict[str, Any]:
    """The twin's OpenAPI 3.0 document."""
    paths: dict[str, Any] = {}
    for method, path, summary, description, fields in _operations(vulnerable):
        operation: dict[str, Any] = {
            "summary": summary,
            "description": description,
            "operationId": path.strip("/").replace("/", "_").replace("-", "_"),
            "responses": {"200": {"description": "OK"}},
        }
        query = [f for f in fields if f[1] == "query"]
        body = [f for f in fields if f[1] == "body"]
        if query:
            operation["parameters"] = [
                {"name": n, "in": "query", "required": r, "schema": _schema(t, fmt)}
                for n, _, t, fmt, r in query
            ]
        if body:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _object_schema(body)}},
            }
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": _title(vulnerable), "version": "1.0"},
        "paths": paths,
    }


def swagger_spec(vulnerable: bool) -> dict[str, Any]:
    """The twin's Swagger 2.0 document (same operations; body schemas under definitions)."""
    paths: dict[str, Any] = {}
    definitions: dict[str, Any] = {}
    for method, path, summary, description, fields in _operations(vulnerable):
        params: list[dict[str, Any]] = []
        for name, where, kind, fmt, required in fields:
            if where == "query":
                param = {"name": name, "in": "query", "required": required, "type": kind}
                if fmt:
                    param["format"] = fmt
                params.append(param)
        body = [f for f in fields if f[1] == "body"]
        if body:
            ref = path.strip("/").replace("/", "_").replace("-", "_") + "_body"
            definitions[ref] = _object_schema(body)
            params.append(
                {
                    "name": "body",
                    "in": "body",
                    "required": True,
                    "schema": {"$ref": f"#/definitions/{ref}"},
                }
            )
        paths.setdefault(path, {})[method] = {
            "summary": summary,
            "description": description,
            "consumes": ["application/json"],
            "parameters": params,
            "responses": {"200": {"description": "OK"}},
        }
    return {
        "swagger": "2.0",
        "info": {"title": _title(vulnerable), "version": "1.0"},
        "paths": paths,
        "definitions": definitions,
    }


def _title(vulnerable: bool) -> str:
    return "Registration & helpdesk API" + ("" if vulnerable else " (fixed)")


def _schema(kind: str, fmt: str | None) -> dict[str, Any]:
    return {"type": kind, **({"format": fmt} if fmt else {})}


def _object_schema(fields: list[_Field] | tuple[_Field, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [n for n, _, _, _, r in fields if r],
        "properties": {n: _schema(t, fmt) for n, _, t, fmt, _ in fields},
    }


# --- the application --------------------------------------------------------------------------


class _State:
    """The twin's in-process state: codes, counters, lockouts, challenge tokens."""

    def __init__(self, root: Path, vulnerable: bool, smtp: str | None, challenge: bool) -> None:
        self.root = root
        self.vulnerable = vulnerable
        self.smtp = smtp
        self.challenge = challenge
        self.codes: dict[str, str] = {}
        self.sends: dict[str, list[float]] = {}
        self.attempts: dict[str, int] = {}
        self.locked_until: dict[str, float] = {}
        self.tokens: set[str] = set()
        self.lock = threading.Lock()

    def record(self, name: str, entry: dict[str, Any]) -> None:
        with self.lock, (self.root / name).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def limited(self, key: str, limit: int) -> bool:
        """Count one send under ``key``; whether it is over ``limit`` in the window."""
        now = time.monotonic()
        recent = [t for t in self.sends.get(key, []) if now - t < LIMIT_WINDOW]
        recent.append(now)
        self.sends[key] = recent
        return len(recent) > limit


def create_app() -> Any:
    """The uvicorn factory: a Starlette app configured from ``PERISAI_LAB_API_*``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    root = Path(os.environ[_ENV_ROOT])
    state = _State(
        root,
        os.environ.get(_ENV_VULNERABLE, "1") == "1",
        os.environ.get(_ENV_SMTP) or None,
        os.environ.get(_ENV_CHALLENGE, "1") == "1",
    )
    vulnerable = state.vulnerable
    sms_provider = (os.environ.get(_ENV_SMS) or "").rstrip("/")

    async def text(to: str, body: str) -> None:
        """Keep the message, and hand it to the SMS provider when one is set, as a staging
        deployment would (Twilio's Messages API form)."""
        state.record("sms.jsonl", {"to": to, "text": body})
        if not sms_provider:
            return
        url = f"{sms_provider}/2010-04-01/Accounts/{_TWILIO_ACCOUNT}/Messages.json"
        form = {"To": to, "From": "+15005550006", "Body": body}
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                await client.post(url, data=form, auth=(_TWILIO_ACCOUNT, "lab"))
        except httpx.HTTPError:
            pass  # a provider outage is the provider's: the app answered already

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def too_many(message: str, retry_after: int) -> Response:
        return JSONResponse(
            {"error": "rate_limited", "detail": message},
            status_code=429,
            headers={"Retry-After": str(retry_after)},
        )

    def challenge_failed(data: dict[str, Any]) -> Response | None:
        if vulnerable or not state.challenge:
            return None
        token = str(data.get("challenge_token") or "")
        if token and token in state.tokens:
            state.tokens.discard(token)
            return None
        return JSONResponse(
            {"error": "challenge_required", "detail": "solve the challenge first"},
            status_code=403,
        )

    async def spec_openapi(request: Request) -> Response:
        return JSONResponse(openapi_spec(vulnerable))

    async def spec_swagger(request: Request) -> Response:
        return JSONResponse(swagger_spec(vulnerable))

    async def request_tac(request: Request) -> Response:
        data = await body_of(request)
        msisdn = str(data.get("msisdn") or "").strip()
        if not msisdn.lstrip("+").isdigit() or not 8 <= len(msisdn.lstrip("+")) <= 15:
            return JSONResponse({"error": "invalid msisdn"}, status_code=400)
        if not vulnerable:
            client = request.client.host if request.client else "unknown"
            if state.limited("ip:" + client, PER_IP_LIMIT) or state.limited(
                "to:" + msisdn, PER_RECIPIENT_LIMIT
            ):
                return too_many("too many TAC requests; try again later", int(LIMIT_WINDOW))
            failed = challenge_failed(data)
            if failed is not None:
                return failed
        code = f"{secrets.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"
        state.codes[msisdn] = code
        await text(msisdn, f"Your registration TAC is {code}")
        if vulnerable:
            return JSONResponse({"status": "sent", "msisdn": msisdn, "tac": code})
        return JSONResponse({"status": "sent"})

    async def verify_tac(request: Request) -> Response:
        data = await body_of(request)
        msisdn = str(data.get("msisdn") or "")
        tac = str(data.get("tac") or "")
        if not vulnerable and state.locked_until.get(msisdn, 0.0) > time.monotonic():
            return too_many("too many wrong codes; this number is locked", LOCKOUT_SECONDS)
        if vulnerable and msisdn not in state.codes:
            # careless: tells a number with no code pending from a wrong code
            return JSONResponse({"error": "no TAC requested for this number"}, status_code=404)
        if msisdn in state.codes and secrets.compare_digest(state.codes[msisdn], tac):
            state.codes.pop(msisdn)
            state.attempts.pop(msisdn, None)
            return JSONResponse({"status": "verified"})
        if not vulnerable:
            state.attempts[msisdn] = state.attempts.get(msisdn, 0) + 1
            if state.attempts[msisdn] >= MAX_VERIFY_ATTEMPTS:
                state.locked_until[msisdn] = time.monotonic() + LOCKOUT_SECONDS
                state.codes.pop(msisdn, None)
                return too_many("too many wrong codes; this number is locked", LOCKOUT_SECONDS)
        return JSONResponse({"error": "invalid TAC"}, status_code=400)

    async def account_exists(request: Request) -> Response:
        mobile = request.query_params.get("mobile", "")
        if not vulnerable:
            return JSONResponse(
                {"status": "received", "detail": "if an account matches, its owner is notified"},
                status_code=202,
            )
        if mobile == KNOWN_ACCOUNT:
            return JSONResponse({"exists": True, "name": "Aisyah binti Rahman", "kyc": "done"})
        return JSONResponse({"exists": False}, status_code=404)

    def send_mail(to: str, subject: str, text: str) -> None:
        if not state.smtp:
            state.record("mail.jsonl", {"to": to, "subject": subject, "delivered": False})
            return
        host, _, port = state.smtp.rpartition(":")
        message = EmailMessage()
        message["From"] = "helpdesk@lab.perisai.test"
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        try:
            with smtplib.SMTP(host, int(port), timeout=5) as smtp:
                smtp.send_message(message)
            delivered = True
        except (OSError, smtplib.SMTPException):
            delivered = False
        state.record("mail.jsonl", {"to": to, "subject": subject, "delivered": delivered})

    async def helpdesk(request: Request) -> Response:
        data = await body_of(request)
        email = str(data.get("email") or "")
        subject = str(data.get("subject") or "")
        message = str(data.get("message") or "")
        if "@" not in email:
            return JSONResponse({"error": "invalid email"}, status_code=400)
        ticket = secrets.token_hex(4)
        if vulnerable:
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(send_mail, email, subject, message)
            return JSONResponse({"status": "created", "ticket": ticket})
        failed = challenge_failed(data)
        if failed is not None:
            return failed
        if email == VERIFIED_EMAIL:
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(
                send_mail,
                email,
                f"Ticket {ticket} received",
                f"We received your ticket {ticket}. Sign in to the app to read our reply.",
            )
        return JSONResponse({"status": "received", "ticket": ticket}, status_code=202)

    async def login(request: Request) -> Response:
        return JSONResponse({"error": "invalid credentials"}, status_code=401)

    async def forgot_password(request: Request) -> Response:
        data = await body_of(request)
        email = str(data.get("email") or "")
        if vulnerable and email != VERIFIED_EMAIL:
            return JSONResponse({"error": "no account with this e-mail"}, status_code=404)
        return JSONResponse(
            {"status": "received", "detail": "if an account matches, a link is on its way"},
            status_code=202,
        )

    async def me(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {LAB_TOKEN}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse({"mobile": KNOWN_ACCOUNT})

    async def challenge(request: Request) -> Response:
        token = secrets.token_urlsafe(16)
        state.tokens.add(token)
        return JSONResponse({"challenge_token": token})

    routes = [
        Route("/openapi.json", spec_openapi),
        Route("/swagger.json", spec_swagger),
        Route("/api/v1/register/request-tac", request_tac, methods=["POST"]),
        Route("/api/v1/register/verify-tac", verify_tac, methods=["POST"]),
        Route("/api/v1/accounts/exists", account_exists, methods=["GET"]),
        Route("/api/v1/helpdesk/tickets", helpdesk, methods=["POST"]),
        Route("/api/v1/auth/login", login, methods=["POST"]),
        Route("/api/v1/auth/forgot-password", forgot_password, methods=["POST"]),
        Route("/api/v1/me", me, methods=["GET"]),
    ]
    if not vulnerable:
        routes.append(Route("/api/v1/challenge", challenge, methods=["GET"]))
    return _RequestLog(Starlette(routes=routes), state)


_ASGI = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


class _RequestLog:
    """ASGI middleware appending every request but spec downloads to ``requests.jsonl``."""

    def __init__(self, app: _ASGI, state: _State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") not in SPEC_PATHS:
            self.state.record(
                "requests.jsonl",
                {"method": scope.get("method"), "path": scope.get("path"), "at": time.time()},
            )
        await self.app(scope, receive, send)


# --- the instance -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiInstance(Instance):
    """A running lab API twin: where it listens, its files, and what it recorded.

    ``user`` and ``password`` are None (the API's one authenticated route takes
    :data:`LAB_TOKEN` as a bearer token). ``smtp_relay`` is ``host:port`` its mail goes to.
    """

    PROCESSES: ClassVar[Mapping[str, Process]] = {SERVICE: Process("python")}

    database: str = ""  # none: the API keeps its state in memory
    smtp_relay: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def spec_url(self) -> str:
        return self.url + "/openapi.json"

    def answering(self, timeout: float = 2.0) -> bool:
        try:
            with httpx.Client(timeout=timeout, trust_env=False) as client:
                return client.get(self.spec_url).status_code == 200
        except httpx.HTTPError:
            return False

    def requests(self) -> list[dict[str, Any]]:
        """Every request the twin received (spec downloads aside), oldest first."""
        return _read_jsonl(self.root / "requests.jsonl")

    def sms(self) -> list[dict[str, Any]]:
        """Every SMS the twin "sent" (its SMS sink)."""
        return _read_jsonl(self.root / "sms.jsonl")

    def mails(self) -> list[dict[str, Any]]:
        """Every helpdesk mail the twin tried to send, and whether the relay took it."""
        return _read_jsonl(self.root / "mail.jsonl")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def start_api_server(
    base_dir: Path,
    exposed: bool = True,
    smtp_relay: str | None = None,
    name: str | None = None,
    challenge: bool = True,
    sms_provider: str | None = None,
) -> ApiInstance:
    """Start the vulnerable (``exposed``) or fixed twin on a free 127.0.0.1 port.

    ``smtp_relay`` (``host:port``) is where helpdesk mail goes; ``challenge=False`` drops the
    fixed twin's challenge token so its rate limits can be seen on their own;
    ``sms_provider`` (a base URL, e.g. perisai's SMS sink) is where its texts are also posted.
    """
    name = name or ("api-vulnerable" if exposed else "api-fixed")
    root = make_root(base_dir, name)
    for stale in ("requests.jsonl", "sms.jsonl", "mail.jsonl"):
        (root / stale).unlink(missing_ok=True)
    log_file = root / "server.log"

    def attempt() -> ApiInstance:
        log_file.unlink(missing_ok=True)  # a port taken last time must not fail this one
        port = free_port()
        env = dict(os.environ)
        env.update(
            {
                _ENV_ROOT: str(root),
                _ENV_VULNERABLE: "1" if exposed else "0",
                _ENV_SMTP: smtp_relay or "",
                _ENV_CHALLENGE: "1" if challenge else "0",
                _ENV_SMS: sms_provider or "",
            }
        )
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "perisai.lab.api_server:create_app",
            "--host",
            HOST,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        launch = spawn(name, argv, log_file, ApiInstance.PROCESSES[SERVICE], env=env)
        instance = ApiInstance(
            name=name,
            service=SERVICE,
            host=HOST,
            port=port,
            exposed=exposed,
            user=None,
            password=None,
            pid=launch.pid or 0,
            root=root,
            log_file=log_file,
            smtp_relay=smtp_relay,
        )
        launch.await_ready(instance.answering, START_TIMEOUT, instance.url, port_taken=_port_taken)
        return instance

    return start_with_retries(root, attempt, _port_taken)


def _port_taken(log: str) -> bool:
    return "address already in use" in log.lower()
