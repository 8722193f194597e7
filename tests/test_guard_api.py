"""The Verify API over HTTP, in process: every endpoint, every status code, every error path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from starlette.applications import Starlette

from perisai.guard import Guard, GuardConfig, GuardConfigError
from perisai.guard.api import MAX_BODY, TOKEN_ENV, create_app
from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.delivery import DeliveryError, Message
from perisai.guard.delivery.interface import Delivery
from perisai.guard.interface import Backend

MOBILE = "+60123456789"
IP = "198.51.100.7"
TOKEN = "api-test-token-0123456789"


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


def http(app: Starlette, token: str | None = TOKEN) -> AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return AsyncClient(
        transport=ASGITransport(app=app), base_url="http://127.0.0.1", headers=headers
    )


@pytest.fixture
async def client(outbox: Outbox) -> AsyncIterator[AsyncClient]:
    app = create_app(GuardConfig(), sms=outbox, email=outbox, tokens=[TOKEN])
    async with http(app) as test_client:
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


async def test_a_solved_challenge_goes_on(client: AsyncClient, outbox: Outbox) -> None:
    """``challenge_passed`` lets a challenged send go on to the other rules: the code goes
    out, and a denial still denies; it must be a JSON boolean."""
    voip = "+445612345678"
    status, body = await start(client, to=voip, challenge_passed=True)
    assert status == 201 and outbox.sent[-1].to == voip
    decided = await client.post(
        "/v1/decisions",
        json={"action": "send_otp", "to": voip, "ip": IP, "challenge_passed": True},
    )
    assert decided.json()["reason"] == "recipient-rate"  # past the challenge, still limited
    status, body = await start(client, to="+19005550123", challenge_passed=True)
    assert status == 429 and body["reason"] == "number-premium_rate"
    status, body = await start(client, to=voip, challenge_passed="yes")
    assert status == 400 and "challenge_passed" in str(body["reason"])


async def test_email_goes_to_the_address_as_given(client: AsyncClient, outbox: Outbox) -> None:
    """Counters key the canonical address; delivery keeps the +tag a mailbox may need."""
    status, _ = await start(client, to=" Siti+Login@Example.org", channel="email")
    assert status == 201 and outbox.sent[-1].to == "Siti+Login@Example.org"
    code = outbox.code_for("Siti+Login@Example.org")
    checked = await client.post(
        "/v1/verifications/check", json={"to": "siti@example.org", "code": code, "ip": IP}
    )
    assert checked.json() == {"status": "approved"}


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
    app = create_app(GuardConfig(), sms=Outbox(fail=True), email=Outbox(), tokens=[TOKEN])
    async with http(app) as client:
        status, body = await start(client)
    assert (status, body) == (502, {"status": "failed", "reason": "delivery-failed"})


class DownBackend(MemoryBackend):
    def __getattribute__(self, name: str) -> object:
        if name in (
            "gate",
            "release",
            "acquire",
            "add",
            "get",
            "get_many",
            "put",
            "delete",
            "ping",
        ):
            from perisai.guard.interface import BackendError

            def fail(*args: object) -> object:
                raise BackendError("down")

            return fail
        return super().__getattribute__(name)


@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_backend_down_over_http(fail: str) -> None:
    backend: Backend = DownBackend()
    guard = Guard(GuardConfig.from_mapping({"fail": fail}), backend)
    app = create_app(guard.config, guard=guard, sms=Outbox(), email=Outbox(), tokens=[TOKEN])
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
    async with http(create_app(config, tokens=[TOKEN])) as client:
        assert (await start(client))[0] == 201
    line = json.loads(out.read_text().splitlines()[0])
    assert line["to"] == MOBILE and "verification code is" in line["body"]


# ---------------------------------------------------------------- authentication
ROUTES = [
    ("/v1/verifications", {"to": MOBILE, "channel": "sms", "ip": IP}),
    ("/v1/verifications/check", {"to": MOBILE, "code": "123456", "ip": IP}),
    ("/v1/decisions", {"action": "send_otp", "to": MOBILE, "ip": IP}),
    ("/v1/events", {"type": "sent", "to": MOBILE, "ip": IP}),
]


def assert_401(response: object, reason: str) -> None:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json() == {"status": "error", "reason": reason}
    assert TOKEN not in response.text


@pytest.mark.parametrize(("path", "body"), ROUTES)
async def test_every_route_needs_the_token(outbox: Outbox, path: str, body: dict[str, str]) -> None:
    app = create_app(GuardConfig(), sms=outbox, email=outbox, tokens=[TOKEN])
    async with http(app, token=None) as client:
        assert_401(await client.post(path, json=body), "missing bearer token")
        wrong = {"Authorization": "Bearer " + "x" * len(TOKEN)}
        assert_401(await client.post(path, json=body, headers=wrong), "invalid token")
        for header in (TOKEN, f"Basic {TOKEN}", "Bearer", "Bearer "):
            response = await client.post(path, json=body, headers={"Authorization": header})
            assert_401(response, "missing bearer token")
        assert_401(await client.post("/v1/nothing", json=body), "missing bearer token")
    assert outbox.sent == []
    async with http(app, token=None) as client:
        # the scheme is case-insensitive (RFC 7235)
        response = await client.post(path, json=body, headers={"Authorization": f"bearer {TOKEN}"})
        assert response.status_code < 500 and response.status_code != 401


async def test_rotated_tokens_each_work(outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Old and new token side by side, from the config and from the environment."""
    old, new, env_a, env_b = (f"{name}-token-0123456789abcdef" for name in "abcd")
    monkeypatch.setenv(TOKEN_ENV, f" {env_a}, {env_b} ,")
    config = GuardConfig.from_mapping({"api": {"tokens": [old, new]}})
    app = create_app(config, sms=outbox, email=outbox)
    assert app.state.authenticated
    for token in (old, new, env_a, env_b):
        async with http(app, token=token) as client:
            response = await client.post("/v1/decisions", json=ROUTES[2][1])
            assert response.status_code == 200, token
    async with http(app, token=old[:-1]) as client:
        assert_401(await client.post("/v1/decisions", json=ROUTES[2][1]), "invalid token")


async def test_healthz_is_open_and_metrics_closed_unless_public(outbox: Outbox) -> None:
    closed = create_app(GuardConfig(), sms=outbox, email=outbox, tokens=[TOKEN])
    async with http(closed, token=None) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert_401(await client.get("/metrics"), "missing bearer token")
    async with http(closed) as client:
        assert (await client.get("/metrics")).status_code == 200
    config = GuardConfig.from_mapping({"api": {"tokens": [TOKEN], "metrics_public": True}})
    public = create_app(config, sms=outbox, email=outbox)
    async with http(public, token=None) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert "perisai_guard" in (await client.get("/metrics")).text
        path, body = ROUTES[3]
        assert_401(await client.post(path, json=body), "missing bearer token")


async def test_no_token_needs_insecure_no_auth(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(GuardConfigError, match=r"^the guard API needs a token: .*--insecure"):
        create_app(GuardConfig(), sms=outbox, email=outbox)
    app = create_app(GuardConfig(), sms=outbox, email=outbox, insecure_no_auth=True)
    assert not app.state.authenticated
    async with http(app, token=None) as client:
        assert (await client.post("/v1/decisions", json=ROUTES[2][1])).status_code == 200
    # the flag allows running without a token; it never switches off one that is set
    app = create_app(GuardConfig(), sms=outbox, email=outbox, tokens=[TOKEN], insecure_no_auth=True)
    async with http(app, token=None) as client:
        assert_401(await client.post("/v1/decisions", json=ROUTES[2][1]), "missing bearer token")


@pytest.mark.parametrize("token", ["short-token", "sixteen chars ok", "comma,in-the-token-here"])
def test_weak_tokens_are_config_errors(token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(GuardConfigError, match=r"^bad guard config: api\.tokens: ") as info:
        GuardConfig.from_mapping({"api": {"tokens": [token]}})
    assert token not in str(info.value)
    with pytest.raises(ValueError) as raw:
        GuardConfig(api={"tokens": [token]})  # type: ignore[arg-type]
    assert token not in str(raw.value)
    monkeypatch.setenv(TOKEN_ENV, token)
    if "," not in token:  # a comma in the environment separates two tokens
        with pytest.raises(GuardConfigError, match=f"^{TOKEN_ENV}: ") as env:
            create_app(GuardConfig(), sms=Outbox(), email=Outbox())
        assert token not in str(env.value)
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(GuardConfigError, match=r"^tokens: "):
        create_app(GuardConfig(), sms=Outbox(), email=Outbox(), tokens=[TOKEN, token])


# ---------------------------------------------------------------- hostile input
NUMBER_TO = b'{"channel": "sms", "ip": "1.2.3.4", "to": '


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"[" * 10240, "body is nested too deeply"),
        (b'{"to": ' + b"[" * 5000 + b"]" * 5000 + b"}", "body is nested too deeply"),
        (NUMBER_TO + b'"+6012345\\u00006789"}', "to: control characters"),
        (NUMBER_TO + b'"+60123\\u001b[2J"}', "to: control characters"),
        (NUMBER_TO + b'"+60123\\u0085"}', "to: control characters"),
        (NUMBER_TO + b'"\\ud800"}', "to: control characters and lone surrogates"),
        (NUMBER_TO + b'"+60123456789", "device": "\\udfff"}', "device: control"),
        (NUMBER_TO + b'"+60123456789", "account": "a\\nb"}', "account: control"),
        (b'{"channel": "sms", "to": "+60123456789", "ip": "1.2.3.4\\u0000"}', "ip: control"),
        (b'{"channel": "sms", "to": "+60123456789", "ip": "1.2.3.4\\n"}', "ip: control"),
        (b'{"channel": "sms", "to": "+60123456789", "ip": "1.2.3.4/24"}', "ip: not an IP"),
        (NUMBER_TO + b"1e400}", "to: Input should be a valid string"),
        (NUMBER_TO + b"9" * 400 + b"}", "to: Input should be a valid string"),
        (NUMBER_TO + b"9" * 5000 + b"}", "body is not JSON"),  # past int's 4300 digits
        (NUMBER_TO + b"NaN}", "to: Input should be a valid string"),
        (NUMBER_TO + b'{"+": 1}}', "to: Input should be a valid string"),
        (NUMBER_TO + b'"+6\xc3\x28"}', "body is not JSON"),  # invalid UTF-8
        (NUMBER_TO + b'"+6", "\\n\\u0000' + b"k" * 200 + b'": 1}', "Extra inputs"),
    ],
)
async def test_hostile_bodies_get_a_one_line_400(
    client: AsyncClient, content: bytes, reason: str
) -> None:
    response = await client.post(
        "/v1/verifications", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "error" and reason in body["reason"]
    assert body["reason"].isprintable() and len(body["reason"]) < 200


async def test_oversized_number_is_refused_not_an_error(client: AsyncClient) -> None:
    status, body = await start(client, to="+1" + "9" * 300)
    assert (status, body["reason"]) == (429, "number-invalid")
    response = await client.post(
        "/v1/verifications/check", json={"to": "+1" + "9" * 300, "code": "123456", "ip": IP}
    )
    assert (response.status_code, response.json()) == (400, {"status": "invalid"})


async def test_control_characters_in_code_and_events(client: AsyncClient) -> None:
    check = {"to": MOBILE, "code": "12\x0034", "ip": IP}
    response = await client.post("/v1/verifications/check", json=check)
    assert response.status_code == 400 and response.json()["reason"].startswith("code: control")
    event = {"type": "sent", "to": MOBILE, "ip": IP, "account": "\x7f"}
    response = await client.post("/v1/events", json=event)
    assert response.status_code == 400 and response.json()["reason"].startswith("account:")


class RaisingGuard(Guard):
    def check(self, *args: Any, **kwargs: Any) -> Any:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")


async def test_engine_value_errors_are_400_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A last line of defence: input that passed validation yet made the engine raise."""
    app = create_app(
        GuardConfig(), guard=RaisingGuard(), sms=Outbox(), email=Outbox(), tokens=[TOKEN]
    )
    async with http(app) as client:
        response = await client.post("/v1/decisions", json=ROUTES[2][1])
    assert response.status_code == 400
    assert response.json() == {"status": "error", "reason": "request could not be processed"}
    assert "unprocessable input on /v1/decisions" in caplog.text
    assert TOKEN not in caplog.text
