"""The self-hosted Verify API (Starlette). Malformed requests get 400 with a reason, never 500.

POST /v1/verifications         201 pending | 403 challenge | 429 denied
POST /v1/verifications/check   200 approved | 400 invalid | 429 locked
POST /v1/decisions             200 {"decision","reason","retry_after"}
POST /v1/events                204
GET  /metrics, GET /healthz
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

from anyio import to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from perisai.guard.backends import open_backend
from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.config import GuardConfig
from perisai.guard.delivery import Delivery, DeliveryError, build_delivery, render_code_message
from perisai.guard.engine import Guard, VerifyStatus
from perisai.guard.interface import Action, Backend, Event, Verdict

__all__ = ["MAX_BODY", "create_app"]

log = logging.getLogger("perisai.guard.api")
MAX_BODY = 16 * 1024
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _valid_ip(value: str) -> str:
    ipaddress.ip_address(value)
    return value


class _StartBody(_Body):
    to: str = Field(min_length=1, max_length=320)
    channel: Literal["sms", "email"]
    ip: str = Field(max_length=64)
    device: str | None = Field(default=None, max_length=256)
    account: str | None = Field(default=None, max_length=256)
    _ip = field_validator("ip")(_valid_ip)


class _CheckBody(_Body):
    to: str = Field(min_length=1, max_length=320)
    code: str = Field(min_length=1, max_length=32)
    ip: str = Field(max_length=64)
    _ip = field_validator("ip")(_valid_ip)


class _DecisionBody(_Body):
    action: Action
    to: str = Field(min_length=1, max_length=320)
    ip: str = Field(max_length=64)
    device: str | None = Field(default=None, max_length=256)
    account: str | None = Field(default=None, max_length=256)
    _ip = field_validator("ip")(_valid_ip)


class _EventBody(_Body):
    type: Event
    to: str = Field(min_length=1, max_length=320)
    ip: str | None = Field(default=None, max_length=64)
    account: str | None = Field(default=None, max_length=256)

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        return None if value is None else _valid_ip(value)


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
    except (ValueError, UnicodeDecodeError):
        raise _BadRequest("body is not JSON") from None
    if not isinstance(data, dict):
        raise _BadRequest("body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise _BadRequest(f"{where}: {first['msg']}") from None


def _retry(seconds: float) -> int:
    return math.ceil(seconds)


def create_app(
    config: GuardConfig | None = None,
    *,
    state: str = "memory://",
    backend: Backend | None = None,
    guard: Guard | None = None,
    sms: Delivery | None = None,
    email: Delivery | None = None,
) -> Starlette:
    """The Verify API for ``config`` on ``backend`` (or one opened from ``state``).

    Delivery adapters come from ``config.delivery`` unless given. Raises
    :class:`perisai.guard.BackendError` / :class:`perisai.guard.GuardConfigError`.
    """
    config = config if config is not None else GuardConfig()
    if guard is None:
        guard = Guard(config, backend if backend is not None else open_backend(state))
    the_guard = guard
    sms_delivery = sms if sms is not None else build_delivery(config.delivery.sms)
    email_delivery = email if email is not None else build_delivery(config.delivery.email)
    inline = isinstance(the_guard.backend, MemoryBackend)  # no I/O: no thread hop

    async def call(fn: Callable[..., T], *args: Any) -> T:
        if inline:
            return fn(*args)
        return await to_thread.run_sync(fn, *args)

    def handler(
        model: type[M], body: Callable[[M], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                parsed = await _parse(request, model)
            except _BadRequest as exc:
                return _bad(exc.reason)
            return await body(parsed)

        return endpoint

    async def start(body: _StartBody) -> Response:
        started = await call(
            the_guard.start, body.to, body.channel, body.ip, body.device, body.account
        )
        decision = started.decision
        if decision.verdict is Verdict.CHALLENGE:
            return JSONResponse({"status": "challenge", "reason": decision.reason}, 403)
        if not decision.allowed or started.code is None or started.to is None:
            return JSONResponse(
                {
                    "status": "denied",
                    "reason": decision.reason,
                    "retry_after": _retry(decision.retry_after),
                },
                429,
            )
        message = render_code_message(
            body.channel, started.to, started.code, config.verify.ttl, config.delivery.brand
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
            the_guard.check, body.action, body.to, body.ip, body.device, body.account
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
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.guard = the_guard
    return app
