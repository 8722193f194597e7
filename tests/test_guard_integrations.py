"""Delivery adapters against local servers (aiosmtpd, a loopback HTTP server), the ASGI
middleware and WSGI wrapper in process, and ``guard serve`` as a real process."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

import httpx
import pytest
from aiosmtpd.controller import Controller
from httpx import ASGITransport, AsyncClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from perisai.cli.guard import guard_app
from perisai.guard import Action, Guard, GuardConfig
from perisai.guard.api import TOKEN_ENV
from perisai.guard.delivery import DeliveryError, Message
from perisai.guard.delivery.smtp import SMTPDelivery
from perisai.guard.delivery.twilio import TwilioSMSDelivery
from perisai.guard.delivery.webhook import WebhookDelivery
from perisai.guard.middleware import GuardMiddleware, GuardRoute, WSGIGuard
from perisai.lab.instances import free_port

MOBILE = "+60123456789"
TOKEN = "serve-test-token-0123456789"
SMS = Message("sms", MOBILE, "Your code", "Your code is 123456.")


class Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    status: ClassVar[int] = 201

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        type(self).requests.append((self.path, dict(self.headers.items()), body))
        self.send_response(type(self).status)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"sid": "SM1"}')

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[Recorder]]]:
    handler = type("Handler", (Recorder,), {"requests": [], "status": 201})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_twilio_adapter(http_server: tuple[str, type[Recorder]]) -> None:
    url, handler = http_server
    delivery = TwilioSMSDelivery("AC123", "tok", "+15005550006", base_url=url)
    await delivery.send(SMS)
    path, headers, body = handler.requests[0]
    assert path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"AC123:tok").decode()
    form = parse_qs(body.decode())
    assert form == {"To": [MOBILE], "From": ["+15005550006"], "Body": [SMS.body]}
    handler.status = 400
    with pytest.raises(DeliveryError, match="HTTP 400"):
        await delivery.send(SMS)
    await delivery.aclose()


async def test_webhook_adapter(http_server: tuple[str, type[Recorder]]) -> None:
    url, handler = http_server
    delivery = WebhookDelivery(url + "/hook", headers={"X-Key": "k"})
    await delivery.send(SMS)
    path, headers, body = handler.requests[0]
    assert path == "/hook" and headers["X-Key"] == "k"
    assert json.loads(body)["to"] == MOBILE
    await delivery.aclose()
    dead = WebhookDelivery(f"http://127.0.0.1:{free_port()}/", timeout=2)
    with pytest.raises(DeliveryError, match="ConnectError"):
        await dead.send(SMS)
    await dead.aclose()


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


async def test_smtp_adapter() -> None:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        delivery = SMTPDelivery("127.0.0.1", controller.port, "otp@example.org", start_tls=False)
        await delivery.send(Message("email", "user@example.com", "Your code", "Code 123456."))
    finally:
        controller.stop()
    sender, recipients, content = sink.messages[0]
    assert (sender, recipients) == ("otp@example.org", ["user@example.com"])
    assert b"Subject: Your code" in content and b"Code 123456." in content
    dead = SMTPDelivery("127.0.0.1", free_port(), "otp@example.org", start_tls=False, timeout=2)
    with pytest.raises(DeliveryError, match="SMTP"):
        await dead.send(Message("email", "user@example.com", "s", "b"))


ROUTES = [
    GuardRoute("/otp/send", Action.SEND_OTP, to_field="phone"),
    GuardRoute("/otp/verify", Action.VERIFY_OTP, to_field="phone"),
]


def asgi_app() -> Starlette:
    async def send(request: Request) -> JSONResponse:
        return JSONResponse({"sent": (await request.json())["phone"]})

    async def verify(request: Request) -> JSONResponse:
        ok = (await request.json()).get("code") == "1234"
        return JSONResponse({"ok": ok}, status_code=200 if ok else 400)

    async def other(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/otp/send", send, methods=["POST"]),
            Route("/otp/verify", verify, methods=["POST"]),
            Route("/other", other, methods=["POST"]),
        ]
    )


async def test_asgi_middleware() -> None:
    guard = Guard(GuardConfig(trusted_proxies=("127.0.0.0/8",)))
    app = GuardMiddleware(asgi_app(), guard, ROUTES)
    transport = ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        headers = {"x-forwarded-for": "203.0.113.9"}
        first = await client.post("/otp/send", json={"phone": MOBILE}, headers=headers)
        assert (first.status_code, first.json()) == (200, {"sent": MOBILE})
        second = await client.post("/otp/send", json={"phone": MOBILE}, headers=headers)
        assert second.status_code == 429
        assert second.json()["reason"] == "recipient-rate"
        assert int(second.headers["retry-after"]) > 0
        voip = await client.post("/otp/send", json={"phone": "+445612345678"})
        assert (voip.status_code, voip.json()["status"]) == (403, "challenge")
        missing = await client.post("/otp/send", content=b"garbage")
        assert missing.status_code == 429 and missing.json()["reason"] == "recipient-missing"
        for _ in range(5):
            wrong = await client.post("/otp/verify", json={"phone": MOBILE, "code": "0"})
            assert wrong.status_code == 400  # the app answered; the guard recorded "failed"
        locked = await client.post("/otp/verify", json={"phone": MOBILE, "code": "1234"})
        assert locked.status_code == 429 and locked.json()["reason"] == "verify-locked"
        assert (await client.post("/other", json={})).status_code == 200
    text = guard.metrics.render().decode()
    assert 'reason="recipient-rate"' in text
    day = int(time.time() // 86400)  # the send was counted for the client's address
    assert guard.backend.get_many([f"q:s:d{day}:i:{{203.0.113.9}}"]) == [1.0]


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"echo": ' + json.dumps(body.decode()).encode() + b"}"]


def wsgi_call(app: WSGIGuard, path: str, body: bytes) -> tuple[str, bytes]:
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], *args: Any) -> None:
        seen.append(status)

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "REMOTE_ADDR": "198.51.100.7",
        "HTTP_X_FORWARDED_FOR": "6.6.6.6",  # not from a trusted proxy: ignored
    }
    result = b"".join(app(environ, start_response))
    return seen[0], result


def test_wsgi_wrapper() -> None:
    guard = Guard()
    app = WSGIGuard(wsgi_app, guard, ROUTES)
    payload = json.dumps({"phone": MOBILE}).encode()
    status, body = wsgi_call(app, "/otp/send", payload)
    assert status == "200 OK" and json.loads(json.loads(body)["echo"]) == {"phone": MOBILE}
    status, body = wsgi_call(app, "/otp/send", payload)
    assert status == "429 Too Many Requests"
    assert json.loads(body)["reason"] == "recipient-rate"
    assert wsgi_call(app, "/unguarded", payload)[0] == "200 OK"
    day = int(time.time() // 86400)
    assert guard.backend.get_many(
        [f"q:s:d{day}:i:{{198.51.100.7}}", f"q:s:d{day}:i:{{6.6.6.6}}"]
    ) == [
        1,
        0,
    ]


def test_serve_bad_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "guard.yaml"
    bad.write_text("mode: sometimes\n")
    result = CliRunner().invoke(guard_app, ["serve", "--config", str(bad)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "perisai: error: bad guard config: mode" in (
        result.output
    )
    result = CliRunner().invoke(
        guard_app, ["serve", "--state", "mongodb://x"], env={TOKEN_ENV: TOKEN}
    )
    assert result.exit_code == 2 and "unknown guard state" in result.output


def test_serve_without_a_token_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No token and no --insecure-no-auth: exit 2 before any state is created."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(guard_app, ["serve"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert result.output.startswith("perisai: error: the guard API needs a token: ")
    assert "--insecure-no-auth" in result.output
    assert list(tmp_path.iterdir()) == []  # no SQLite file left behind
    weak = CliRunner().invoke(guard_app, ["serve"], env={TOKEN_ENV: "short"})
    assert weak.exit_code == 2 and weak.output.count("\n") == 1
    assert weak.output == f"perisai: error: {TOKEN_ENV}: every token needs at least 16 characters\n"


def test_serve_insecure_no_auth_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flag gets past the token check (and warns); uvicorn itself is not started here."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    served: list[Any] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: served.append(app))
    result = CliRunner().invoke(guard_app, ["serve", "--state", "memory://", "--insecure-no-auth"])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("perisai: warning: ")
    assert not served[0].state.authenticated
    shown = CliRunner().invoke(guard_app, ["serve", "--help"]).output
    assert "local trials only" in " ".join(shown.split())  # however the help text wraps
    served.clear()
    result = CliRunner().invoke(
        guard_app, ["serve", "--state", "memory://"], env={TOKEN_ENV: TOKEN}
    )
    assert result.exit_code == 0 and result.output == ""
    assert served[0].state.authenticated


def test_serve_runs_the_verify_api(tmp_path: Path) -> None:
    port = free_port()
    outbox = tmp_path / "outbox.jsonl"
    config = tmp_path / "guard.yaml"
    config.write_text(f"delivery:\n  sms: {{type: file, path: {json.dumps(str(outbox))}}}\n")
    state = f"sqlite:///{tmp_path / 'state.db'}"
    code = "from perisai.cli.guard import guard_app; guard_app()"
    argv = ["serve", "--config", str(config), "--state", state, "--port", str(port)]
    env = {**os.environ, TOKEN_ENV: f"{TOKEN},{TOKEN}-next"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    process = subprocess.Popen([sys.executable, "-c", code, *argv], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "guard serve did not come up"
            assert process.poll() is None, "guard serve exited"
            time.sleep(0.1)
        body = {"to": MOBILE, "channel": "sms", "ip": "198.51.100.7"}
        refused = httpx.post(base + "/v1/verifications", json=body, timeout=10)
        assert refused.status_code == 401 and not outbox.exists()
        started = httpx.post(base + "/v1/verifications", json=body, headers=auth, timeout=10)
        assert started.status_code == 201
        sent = json.loads(outbox.read_text().splitlines()[0])
        otp = next(w.rstrip(".") for w in sent["body"].split() if w.rstrip(".").isdigit())
        checked = httpx.post(
            base + "/v1/verifications/check",
            json={"to": MOBILE, "code": otp, "ip": "198.51.100.7"},
            headers={"Authorization": f"Bearer {TOKEN}-next"},  # the rotated-in token
            timeout=10,
        )
        assert checked.json() == {"status": "approved"}
        assert httpx.get(base + "/metrics", timeout=5).status_code == 401
        metrics = httpx.get(base + "/metrics", headers=auth, timeout=5).text
        assert "perisai_guard_decisions_total" in metrics
    finally:
        process.terminate()
        process.wait(timeout=10)
