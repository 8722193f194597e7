"""The Verify API over HTTP, in process: every endpoint, every status code, every error path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient
from starlette.applications import Starlette

from perisai.guard import Guard, GuardConfig
from perisai.guard.api import MAX_BODY, create_app
from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.delivery import DeliveryError, Message
from perisai.guard.delivery.interface import Delivery
from perisai.guard.interface import Backend

MOBILE = "+60123456789"
IP = "198.51.100.7"


class Outbox(Delivery):
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Message] = []
        self.fail = fail

    async def send(self, message: Message) -> None:
        if self.fail:
            raise DeliveryError("provider down")
        self.sent.append(message)

    def code_for(self, to: str) -> str:
        body = next(m.body for m in reversed(self.sent) if m.to == to)
        return next(word.rstrip(".") for word in body.split() if word.rstrip(".").isdigit())


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


def http(app: Starlette) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://127.0.0.1")


@pytest.fixture
async def client(outbox: Outbox) -> AsyncIterator[AsyncClient]:
    async with http(create_app(GuardConfig(), sms=outbox, email=outbox)) as test_client:
        yield test_client


async def start(client: AsyncClient, **overrides: object) -> tuple[int, dict[str, object]]:
    body: dict[str, object] = {"to": MOBILE, "channel": "sms", "ip": IP} | overrides
    response = await client.post("/v1/verifications", json=body)
    return response.status_code, response.json()


async def test_verification_round_trip(client: AsyncClient, outbox: Outbox) -> None:
    status, body = await start(client)
    assert status == 201
    assert body["status"] == "pending" and isinstance(body["id"], str)
    assert outbox.sent[0].to == MOBILE
    code = outbox.code_for(MOBILE)
    check = {"to": MOBILE, "code": code, "ip": IP}
    response = await client.post("/v1/verifications/check", json=check)
    assert (response.status_code, response.json()) == (200, {"status": "approved"})
    response = await client.post("/v1/verifications/check", json=check)
    assert (response.status_code, response.json()) == (400, {"status": "invalid"})


async def test_denied_and_challenged(client: AsyncClient) -> None:
    assert (await start(client))[0] == 201
    status, body = await start(client)
    assert status == 429
    assert body["status"] == "denied" and body["reason"] == "recipient-rate"
    assert isinstance(body["retry_after"], int) and 0 < body["retry_after"] <= 60
    status, body = await start(client, to="+445612345678")  # a UK VoIP number
    assert (status, body) == (403, {"status": "challenge", "reason": "number-voip"})
    status, body = await start(client, to="+19005550123")
    assert status == 429 and body["reason"] == "number-premium_rate"


async def test_locked_after_five_wrong_codes(client: AsyncClient, outbox: Outbox) -> None:
    assert (await start(client))[0] == 201
    code = outbox.code_for(MOBILE)
    wrong = "000000" if code != "000000" else "111111"
    statuses = [
        await client.post("/v1/verifications/check", json={"to": MOBILE, "code": wrong, "ip": IP})
        for _ in range(5)
    ]
    assert [r.status_code for r in statuses] == [400] * 5
    response = await client.post(
        "/v1/verifications/check", json={"to": MOBILE, "code": code, "ip": IP}
    )
    assert response.status_code == 429
    assert response.json()["status"] == "locked" and response.json()["retry_after"] > 0


async def test_email_channel(client: AsyncClient, outbox: Outbox) -> None:
    status, _ = await start(client, to="user@example.com", channel="email")
    assert status == 201
    assert outbox.sent[-1].subject.startswith("Your perisai verification code")
    status, body = await start(client, to="x@mailinator.com", channel="email")
    assert status == 429 and body["reason"] == "email-disposable"


async def test_decisions_and_events(client: AsyncClient) -> None:
    body = {"action": "send_otp", "to": MOBILE, "ip": IP}
    response = await client.post("/v1/decisions", json=body)
    assert response.status_code == 200
    assert response.json() == {"decision": "allow", "reason": "ok", "retry_after": 0}
    second = (await client.post("/v1/decisions", json=body)).json()
    assert second["decision"] == "deny" and second["retry_after"] > 0
    for kind in ("sent", "verified", "failed"):
        response = await client.post("/v1/events", json={"type": kind, "to": MOBILE, "ip": IP})
        assert response.status_code == 204
        assert response.content == b""


async def test_metrics_and_health(client: AsyncClient) -> None:
    await client.post("/v1/decisions", json={"action": "send_otp", "to": "+1", "ip": IP})
    text = (await client.get("/metrics")).text
    assert 'perisai_guard_decisions_total{action="send_otp",reason="number-invalid"' in text
    assert "perisai_guard_decision_seconds_bucket" in text
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("path", "content", "reason"),
    [
        ("/v1/verifications", b"not json", "body is not JSON"),
        ("/v1/verifications", b"[1]", "body must be a JSON object"),
        ("/v1/verifications", b'{"to": "+60123456789", "ip": "1.2.3.4"}', "channel"),
        ("/v1/verifications", b'{"to": "+6", "channel": "fax", "ip": "1.2.3.4"}', "channel"),
        ("/v1/verifications", b'{"to": "+6", "channel": "sms", "ip": "nope"}', "ip"),
        ("/v1/verifications", b'{"to": 5, "channel": "sms", "ip": "1.2.3.4"}', "to"),
        ("/v1/verifications", b'{"to": "", "channel": "sms", "ip": "1.2.3.4"}', "to"),
        ("/v1/verifications", b'{"to":"+6","channel":"sms","ip":"1.2.3.4","x":1}', "x"),
        ("/v1/verifications", b"\xff\xfe", "body is not JSON"),
        ("/v1/verifications", b"", "body is not JSON"),
        ("/v1/verifications/check", b'{"to": "+6", "ip": "1.2.3.4"}', "code"),
        ("/v1/verifications/check", b'{"to": "+6", "code": "1", "ip": null}', "ip"),
        ("/v1/decisions", b'{"action": "send_fax", "to": "+6", "ip": "1.2.3.4"}', "action"),
        ("/v1/decisions", b'{"action": "send_otp", "to": "+6"}', "ip"),
        ("/v1/events", b'{"type": "opened", "to": "+6"}', "type"),
        ("/v1/events", b'{"type": "sent", "to": "+6", "ip": "x"}', "ip"),
        ("/v1/events", b"1e999999", "body must be a JSON object"),
    ],
)
async def test_malformed_requests_get_400_with_a_reason(
    client: AsyncClient, path: str, content: bytes, reason: str
) -> None:
    response = await client.post(
        path, content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and reason in body["reason"]


async def test_oversized_and_wrong_content_type(client: AsyncClient) -> None:
    big = json.dumps({"to": "x" * (MAX_BODY + 10), "channel": "sms", "ip": IP})
    response = await client.post("/v1/verifications", content=big)
    assert response.status_code == 400 and "larger than" in response.json()["reason"]
    response = await client.post(
        "/v1/verifications", content=b"to=1", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 400 and "content-type" in response.json()["reason"]


async def test_wrong_method_and_unknown_path(client: AsyncClient) -> None:
    assert (await client.get("/v1/verifications")).status_code == 405
    assert (await client.post("/v1/nothing", json={})).status_code == 404


async def test_invalid_code_shapes_are_invalid_not_errors(client: AsyncClient) -> None:
    assert (await start(client))[0] == 201
    for code in ("abc", "1" * 32, "١٢٣٤٥٦"):
        response = await client.post(
            "/v1/verifications/check", json={"to": MOBILE, "code": code, "ip": IP}
        )
        assert response.status_code == 400
        assert response.json() == {"status": "invalid"}


async def test_delivery_failure_is_502() -> None:
    app = create_app(GuardConfig(), sms=Outbox(fail=True), email=Outbox())
    async with http(app) as client:
        status, body = await start(client)
    assert (status, body) == (502, {"status": "failed", "reason": "delivery-failed"})


class DownBackend(MemoryBackend):
    def __getattribute__(self, name: str) -> object:
        if name in ("acquire", "add", "get", "get_many", "put", "delete", "ping"):
            from perisai.guard.interface import BackendError

            def fail(*args: object) -> object:
                raise BackendError("down")

            return fail
        return super().__getattribute__(name)


@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_backend_down_over_http(fail: str) -> None:
    backend: Backend = DownBackend()
    guard = Guard(GuardConfig.from_mapping({"fail": fail}), backend)
    app = create_app(guard.config, guard=guard, sms=Outbox(), email=Outbox())
    async with http(app) as client:
        status_code, body = await start(client)
        assert (status_code, body["reason"]) == (429, "backend-down")
        assert (await client.get("/healthz")).status_code == 503
        decision = await client.post(
            "/v1/decisions", json={"action": "send_otp", "to": MOBILE, "ip": IP}
        )
        expected = "allow" if fail == "open" else "deny"
        assert decision.json()["decision"] == expected
        metrics = (await client.get("/metrics")).text
        assert f'perisai_guard_backend_errors_total{{fail="{fail}"}}' in metrics


async def test_file_sink_delivery_from_config(tmp_path: Path) -> None:
    out = tmp_path / "outbox.jsonl"
    config = GuardConfig.from_mapping({"delivery": {"sms": {"type": "file", "path": str(out)}}})
    async with http(create_app(config)) as client:
        assert (await start(client))[0] == 201
    line = json.loads(out.read_text().splitlines()[0])
    assert line["to"] == MOBILE and "verification code is" in line["body"]
