"""The self-hosted Verify API (Starlette). Malformed requests get 400 with a reason, never 500.

POST /v1/verifications         201 pending | 403 challenge | 429 denied
POST /v1/verifications/check   200 approved | 400 invalid | 429 locked
POST /v1/decisions             200 {"decision","reason","retry_after"}
POST /v1/events                204
GET  /metrics, GET /healthz

Every route but ``/healthz`` (and ``/metrics`` when ``api.metrics_public``) wants
``Authorization: Bearer <token>``, else 401.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

from anyio import CapacityLimiter, to_thread
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from perisai.guard.backends import open_backend
from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.backends.sqlite import SQLiteBackend
from perisai.guard.config import GuardConfig, GuardConfigError, token_problem
from perisai.guard.delivery import Delivery, DeliveryError, build_delivery, render_code_message
from perisai.guard.engine import Guard, VerifyStatus
from perisai.guard.interface import Action, Backend, Event, Verdict

__all__ = ["MAX_BODY", "TOKEN_ENV", "api_tokens", "create_app", "required_tokens"]

log = logging.getLogger("perisai.guard.api")
MAX_BODY = 16 * 1024
_STORE_THREADS = 8  # concurrent calls to a network store; more only contend for the GIL
TOKEN_ENV = "PERISAI_GUARD_TOKEN"  # noqa: S105  # comma-separated: several while rotating
_NEEDS_AUTH = (
    "the guard API needs a token: set api.tokens in the config or PERISAI_GUARD_TOKEN, "
    "or pass --insecure-no-auth for local trials"
)
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# C0, DEL, C1 and lone surrogates: nothing a recipient, address or id needs, and surrogates
# cannot even be encoded for SQLite or Redis keys
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}|[0-9]{1,6}")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _clean(value: object) -> object:
    """Runs before pydantic's own str check (which words surrogates as "unable to parse raw
    data"), so every such string gets this one reason; other types go on to be refused."""
    if isinstance(value, str) and _CONTROL.search(value) is not None:
        raise ValueError("control characters and lone surrogates are not allowed")
    return value


def _valid_ip(value: str) -> str:
    """``value`` when it is an IP address (the engine keys it by its canonical spelling);
    the error never quotes the input, so the reason stays one line."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("not an IP address") from None
    return value


IP = Annotated[str, Field(max_length=64), BeforeValidator(_clean), AfterValidator(_valid_ip)]
Recipient = Annotated[str, Field(min_length=1, max_length=320), BeforeValidator(_clean)]
Code = Annotated[str, Field(min_length=1, max_length=32), BeforeValidator(_clean)]
Tag = Annotated[str, Field(max_length=256), BeforeValidator(_clean)]  # device and account ids


class _StartBody(_Body):
    to: Recipient
    channel: Literal["sms", "email"]
    ip: IP
    device: Tag | None = None
    account: Tag | None = None
    challenge_passed: StrictBool = False  # the user solved the challenge an earlier 403 asked


class _CheckBody(_Body):
    to: Recipient
    code: Code
    ip: IP


class _DecisionBody(_Body):
    action: Action
    to: Recipient
    ip: IP
    device: Tag | None = None
    account: Tag | None = None
    challenge_passed: StrictBool = False


class _EventBody(_Body):
    type: Event
    to: Recipient
    ip: IP | None = None
    account: Tag | None = None


class _BadRequest(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _bad(reason: str) -> JSONResponse:
    return JSONResponse({"status": "error", "reason": reason}, status_code=400)


async def _parse(request: Request, model: type[M]) -> M:
    if request.headers.get("content-type", "").split(";")[0].strip() not in (
        "application/json",
        "",
    ):
        raise _BadRequest("content-type must be application/json")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _BadRequest(f"body larger than {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):  # ints past 4300 digits are a ValueError too
        raise _BadRequest("body is not JSON") from None
    except RecursionError:
        raise _BadRequest("body is nested too deeply") from None
    if not isinstance(data, dict):
        raise _BadRequest("body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(_part(part) for part in first["loc"]) or "body"
        message = " ".join(str(first["msg"]).split()).removeprefix("Value error, ")
        raise _BadRequest(f"{where}: {message}") from None


def _part(part: object) -> str:
    """One step of an error's location; an unknown key is the client's text, so it is quoted,
    escaped to ASCII and cut short: a reason stays one short line."""
    text = str(part)
    if _FIELD.fullmatch(text):
        return text
    quoted = json.dumps(text)
    return quoted if len(quoted) <= 40 else quoted[:36] + '..."'


def _retry(seconds: float) -> int:
    return math.ceil(seconds)


def api_tokens(
    config: GuardConfig, extra: Iterable[str] = (), environ: Mapping[str, str] = os.environ
) -> tuple[str, ...]:
    """Every token the API accepts: ``api.tokens``, ``extra`` and ``PERISAI_GUARD_TOKEN``
    (comma-separated, so the new token can be added before the old one is dropped). Raises
    :class:`GuardConfigError` for a weak token, without quoting it."""
    given = list(extra)
    from_env = [token.strip() for token in environ.get(TOKEN_ENV, "").split(",")]
    from_env = [token for token in from_env if token]
    for source, tokens in (("tokens", given), (TOKEN_ENV, from_env)):
        for token in tokens:
            problem = token_problem(token)
            if problem is not None:
                raise GuardConfigError(f"{source}: {problem}")
    return tuple(dict.fromkeys([*config.api.tokens, *given, *from_env]))


def required_tokens(
    config: GuardConfig, extra: Iterable[str] = (), *, insecure_no_auth: bool = False
) -> tuple[str, ...]:
    """:func:`api_tokens`, which may be empty only when ``insecure_no_auth``: an open API
    lets anyone mark numbers verified. Raises :class:`GuardConfigError`."""
    accepted = api_tokens(config, extra)
    if not accepted and not insecure_no_auth:
        raise GuardConfigError(_NEEDS_AUTH)
    return accepted


class _BearerAuth:
    """Pure ASGI (no BaseHTTPMiddleware: that costs a task per request): a request to any
    path but ``open_paths`` carries one of ``tokens``, else 401. The presented token is
    hashed first, so every comparison has the same length, and it is compared against every
    token, so timing tells neither which one nor how much matched. Tokens are never logged."""

    def __init__(self, app: ASGIApp, tokens: tuple[str, ...], open_paths: frozenset[str]) -> None:
        self.app = app
        self._digests = tuple(hashlib.sha256(token.encode()).digest() for token in tokens)
        self._open = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._path(scope) in self._open:
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope["headers"])
        if refusal is None:
            await self.app(scope, receive, send)
            return
        challenge = 'Bearer realm="perisai-guard"'
        if refusal == "invalid token":
            challenge += ', error="invalid_token"'
        response = JSONResponse(
            {"status": "error", "reason": refusal},
            status_code=401,
            headers={"WWW-Authenticate": challenge},
        )
        await response(scope, receive, send)

    @staticmethod
    def _path(scope: Scope) -> str:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        return path[len(root) :] if root and path.startswith(root) else path

    def _refusal(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        value = next((raw for name, raw in headers if name == b"authorization"), None)
        if value is None:
            return "missing bearer token"
        scheme, _, credential = value.strip().partition(b" ")
        credential = credential.strip()
        if scheme.lower() != b"bearer" or not credential:
            return "missing bearer token"
        presented = hashlib.sha256(credential).digest()
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        return None if matched else "invalid token"


def create_app(
    config: GuardConfig | None = None,
    *,
    state: str = "memory://",
    backend: Backend | None = None,
    guard: Guard | None = None,
    sms: Delivery | None = None,
    email: Delivery | None = None,
    tokens: Iterable[str] = (),
    insecure_no_auth: bool = False,
) -> Starlette:
    """The Verify API for ``config`` on ``backend`` (or one opened from ``state``).

    Callers authenticate with any of :func:`api_tokens` (``tokens`` added); with none, the
    app refuses to exist unless ``insecure_no_auth`` says it is a local trial (see
    :func:`required_tokens`); that flag never switches off tokens that are set.
    ``app.state.authenticated`` tells which it is. Delivery adapters come from
    ``config.delivery`` unless given. Raises :class:`perisai.guard.BackendError` /
    :class:`perisai.guard.GuardConfigError`.
    """
    config = config if config is not None else GuardConfig()
    accepted = required_tokens(config, tokens, insecure_no_auth=insecure_no_auth)
    if guard is None:
        guard = Guard(config, backend if backend is not None else open_backend(state))
    the_guard = guard
    sms_delivery = sms if sms is not None else build_delivery(config.delivery.sms)
    email_delivery = email if email is not None else build_delivery(config.delivery.email)
    # Memory, and SQLite on local disk (a decision is ~0.1 ms of CPU), run on the event loop:
    # a thread hop costs as much, and 200 clients' threads contending for one SQLite lock and
    # the GIL halve the throughput. A network store (Redis) goes to a few worker threads.
    inline = isinstance(the_guard.backend, MemoryBackend | SQLiteBackend)
    limiter = CapacityLimiter(_STORE_THREADS)

    async def call(fn: Callable[..., T], *args: Any) -> T:
        if inline:
            return fn(*args)
        return await to_thread.run_sync(fn, *args, limiter=limiter)

    def handler(
        model: type[M], body: Callable[[M], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                parsed = await _parse(request, model)
            except _BadRequest as exc:
                return _bad(exc.reason)
            try:
                return await body(parsed)
            except ValueError:  # UnicodeError included
                # input that passed validation and still upset the engine: the client's
                # fault as far as it can tell, and worth a look (the trace, not the input)
                log.warning("unprocessable input on %s", request.url.path, exc_info=True)
                return _bad("request could not be processed")

        return endpoint

    async def start(body: _StartBody) -> Response:
        started = await call(
            partial(the_guard.start, challenge_passed=body.challenge_passed),
            body.to,
            body.channel,
            body.ip,
            body.device,
            body.account,
        )
        decision = started.decision
        if decision.verdict is Verdict.CHALLENGE:
            return JSONResponse({"status": "challenge", "reason": decision.reason}, 403)
        if (
            not decision.allowed
            or started.code is None
            or started.to is None
            or started.address is None
        ):
            return JSONResponse(
                {
                    "status": "denied",
                    "reason": decision.reason,
                    "retry_after": _retry(decision.retry_after),
                },
                429,
            )
        message = render_code_message(
            body.channel, started.address, started.code, config.verify.ttl, config.delivery.brand
        )
        delivery = sms_delivery if body.channel == "sms" else email_delivery
        try:
            await delivery.send(message)
        except DeliveryError as exc:
            log.warning("delivery failed: %s", exc)
            return JSONResponse({"status": "failed", "reason": "delivery-failed"}, 502)
        await call(the_guard.record, Event.SENT, started.to, body.ip, body.account)
        return JSONResponse({"id": started.id, "status": "pending"}, 201)

    async def check(body: _CheckBody) -> Response:
        outcome = await call(the_guard.verify, body.to, body.code, body.ip)
        if outcome.status is VerifyStatus.APPROVED:
            return JSONResponse({"status": "approved"}, 200)
        if outcome.status is VerifyStatus.LOCKED:
            return JSONResponse(
                {"status": "locked", "retry_after": _retry(outcome.retry_after)}, 429
            )
        return JSONResponse({"status": "invalid"}, 400)

    async def decide(body: _DecisionBody) -> Response:
        decision = await call(
            partial(the_guard.check, challenge_passed=body.challenge_passed),
            body.action,
            body.to,
            body.ip,
            body.device,
            body.account,
        )
        return JSONResponse(
            {
                "decision": decision.verdict.value,
                "reason": decision.reason,
                "retry_after": _retry(decision.retry_after),
            }
        )

    async def event(body: _EventBody) -> Response:
        await call(the_guard.record, body.type, body.to, body.ip, body.account)
        return Response(status_code=204)

    async def metrics(request: Request) -> Response:
        return Response(
            the_guard.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def healthz(request: Request) -> Response:
        try:
            await call(the_guard.backend.ping)
        except Exception as exc:
            return JSONResponse({"status": "unhealthy", "reason": type(exc).__name__}, 503)
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sms_delivery.aclose()
            await email_delivery.aclose()
            the_guard.backend.close()

    routes = [
        Route("/v1/verifications", handler(_StartBody, start), methods=["POST"]),
        Route("/v1/verifications/check", handler(_CheckBody, check), methods=["POST"]),
        Route("/v1/decisions", handler(_DecisionBody, decide), methods=["POST"]),
        Route("/v1/events", handler(_EventBody, event), methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    middleware: list[Middleware] = []
    if accepted:
        open_paths = {"/healthz"} | ({"/metrics"} if config.api.metrics_public else set())
        middleware.append(
            Middleware(_BearerAuth, tokens=accepted, open_paths=frozenset(open_paths))
        )
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.guard = the_guard
    app.state.authenticated = bool(accepted)
    return app
