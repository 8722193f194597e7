"""Put the guard in front of an app's own routes: an ASGI middleware (Starlette, FastAPI) and a
WSGI wrapper (Flask, Django). Each maps ``(method, path)`` to an action and a JSON field that
holds the recipient; a refused request gets 429 (deny) or 403 (challenge) and never reaches the
app. After the app answers, 2xx on a send records ``sent``; on a verify, 2xx records
``verified`` and 4xx ``failed``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from perisai.guard.engine import Guard
from perisai.guard.interface import Action, Decision, Event, Verdict

__all__ = ["GuardMiddleware", "GuardRoute", "WSGIGuard"]

MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class GuardRoute:
    path: str
    action: Action
    method: str = "POST"
    to_field: str = "to"
    account_field: str | None = None


def _lookup(routes: Sequence[GuardRoute], method: str, path: str) -> GuardRoute | None:
    for route in routes:
        if route.path == path and route.method == method.upper():
            return route
    return None


def _refusal(decision: Decision) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    if decision.verdict is Verdict.CHALLENGE:
        status, body = 403, {"status": "challenge", "reason": decision.reason}
    else:
        retry = int(-(-decision.retry_after // 1))
        status = 429
        body = {"status": "denied", "reason": decision.reason, "retry_after": str(retry)}
    if "retry_after" in body:
        payload = json.dumps(body | {"retry_after": int(body["retry_after"])}).encode()
    else:
        payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status == 429:
        headers.append((b"retry-after", str(body["retry_after"]).encode()))
    return status, payload, headers


def _fields(route: GuardRoute, body: bytes) -> tuple[str | None, str | None]:
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    to = data.get(route.to_field)
    account = data.get(route.account_field) if route.account_field else None
    return (
        to if isinstance(to, str) else None,
        account if isinstance(account, str) else None,
    )


def _after(route: GuardRoute, status: int) -> Event | None:
    if route.action is Action.VERIFY_OTP:
        if 200 <= status < 300:
            return Event.VERIFIED
        return Event.FAILED if 400 <= status < 500 else None
    return Event.SENT if 200 <= status < 300 else None


_MISSING = Decision(Verdict.DENY, "recipient-missing")


class GuardMiddleware:
    """ASGI middleware; other scope types and unmapped routes pass straight through."""

    def __init__(
        self,
        app: ASGIApp,
        guard: Guard,
        routes: Iterable[GuardRoute],
        *,
        device_header: str = "x-device-id",
    ) -> None:
        self.app = app
        self.guard = guard
        self.routes = list(routes)
        self.device_header = device_header.lower().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = _lookup(self.routes, scope["method"], scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                await _respond(send, 413, b'{"status":"error","reason":"body too large"}')
                return
        headers: Mapping[bytes, bytes] = dict(scope.get("headers") or [])
        client = scope.get("client") or ("", 0)
        forwarded = headers.get(b"x-forwarded-for")
        ip = self.guard.proxies.client_ip(
            client[0], forwarded.decode("latin-1") if forwarded else None
        )
        device = headers.get(self.device_header)
        to, account = _fields(route, body)
        if to is None:
            decision = _MISSING
        else:
            decision = await to_thread.run_sync(
                self.guard.check,
                route.action,
                to,
                ip,
                device.decode("latin-1") if device else None,
                account,
            )
        if not decision.allowed:
            status, payload, extra = _refusal(decision)
            await send({"type": "http.response.start", "status": status, "headers": extra})
            await send({"type": "http.response.body", "body": payload})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        seen: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen.append(int(message["status"]))
            await send(message)

        await self.app(scope, replay, watch)
        event = _after(route, seen[0]) if seen and to is not None else None
        if event is not None and to is not None:
            await to_thread.run_sync(self.guard.record, event, to, ip, account)


async def _respond(send: Send, status: int, payload: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})


StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class WSGIGuard:
    """The same guard for a WSGI app: ``app.wsgi_app = WSGIGuard(app.wsgi_app, guard, routes)``."""

    def __init__(
        self,
        app: WSGIApp,
        guard: Guard,
        routes: Iterable[GuardRoute],
        *,
        device_header: str = "X-Device-Id",
    ) -> None:
        self.app = app
        self.guard = guard
        self.routes = list(routes)
        self.device_key = "HTTP_" + device_header.upper().replace("-", "_")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        route = _lookup(
            self.routes, environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        )
        if route is None:
            return self.app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            start_response("413 Payload Too Large", [("Content-Type", "application/json")])
            return [b'{"status":"error","reason":"body too large"}']
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        ip = self.guard.proxies.client_ip(
            environ.get("REMOTE_ADDR", ""), environ.get("HTTP_X_FORWARDED_FOR")
        )
        to, account = _fields(route, body)
        decision = (
            _MISSING
            if to is None
            else self.guard.check(route.action, to, ip, environ.get(self.device_key), account)
        )
        if not decision.allowed:
            status, payload, headers = _refusal(decision)
            reason = "Forbidden" if status == 403 else "Too Many Requests"
            start_response(f"{status} {reason}", [(k.decode(), v.decode()) for k, v in headers])
            return [payload]
        seen: list[int] = []

        def watch(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            seen.append(int(status.split(" ", 1)[0]))
            return start_response(status, headers, *args)

        result = self.app(environ, watch)
        event = _after(route, seen[0]) if seen and to is not None else None
        if event is not None and to is not None:
            self.guard.record(event, to, ip, account)
        return result
