"""perisai's SMS sink, spoken to by clients it did not write: the official Twilio SDK
(``twilio`` from PyPI, its base URL pointed at the sink), perisai guard's Twilio adapter, and
raw requests in Vonage's and a generic webhook's published shapes. All on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from twilio.rest import Client

from perisai.api_audit.sink import SinkError, parse_sink_address
from perisai.api_audit.sms_sink import MAX_BODY, SmsSink
from perisai.guard.delivery.interface import Message
from perisai.guard.delivery.twilio import TwilioSMSDelivery

ACCOUNT = "AC" + "0" * 32
TEST_NUMBER = "+447700900123"  # Ofcom's drama range: never a real subscriber


@pytest.fixture
def sink() -> Iterator[SmsSink]:
    with SmsSink("127.0.0.1", 0) as running:
        yield running


def base(sink: SmsSink) -> str:
    host, port = sink.address
    return f"http://{host}:{port}"


def test_the_official_twilio_sdk_delivers_here(sink: SmsSink) -> None:
    client = Client(ACCOUNT, "not-a-real-token")
    client.api.base_url = base(sink)
    sent = client.messages.create(to=TEST_NUMBER, from_="+15005550006", body="Code 551204")
    assert sent.sid is not None and sent.sid.startswith("SM")
    assert sent.status == "queued" and sent.to == TEST_NUMBER
    (message,) = sink.messages
    assert (message.to, message.body, message.sender, message.api) == (
        TEST_NUMBER,
        "Code 551204",
        "+15005550006",
        "twilio",
    )


async def test_the_guards_twilio_adapter_delivers_here(sink: SmsSink) -> None:
    adapter = TwilioSMSDelivery(ACCOUNT, "token", "+15005550006", base_url=base(sink))
    try:
        await adapter.send(Message("sms", TEST_NUMBER, "", "Your code is 123456."))
    finally:
        await adapter.aclose()
    found = await sink.wait_for("+44 7700 900123", timeout=1.0)
    assert found is not None and found.body == "Your code is 123456."


def test_vonage_and_webhook_shapes(sink: SmsSink) -> None:
    with httpx.Client(base_url=base(sink)) as client:
        vonage = client.post(
            "/sms/json", data={"to": "447700900124", "text": "551204", "from": "X"}
        )
        assert vonage.json()["messages"][0]["status"] == "0"
        webhook = client.post("/sms", json={"to": TEST_NUMBER, "message": "Code 1"})
        assert webhook.status_code == 201
    assert [(m.api, m.body) for m in sink.messages] == [("vonage", "551204"), ("webhook", "Code 1")]


def test_what_is_not_a_message_is_refused_and_kept_out(sink: SmsSink) -> None:
    with httpx.Client(base_url=base(sink)) as client:
        assert client.post("/sms", json={"to": TEST_NUMBER}).status_code == 400  # no body
        assert (
            client.post(
                "/sms", content=b"[1, 2]", headers={"content-type": "application/json"}
            ).status_code
            == 400
        )
        assert client.post("/elsewhere", json={"to": TEST_NUMBER, "body": "x"}).status_code == 404
        twilio = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
        assert client.post(twilio, data={"To": TEST_NUMBER}).status_code == 400
        assert client.post("/sms", content=b"x" * (MAX_BODY + 1)).status_code == 413
    assert sink.messages == []


def test_wait_for_sees_only_messages_after_the_request() -> None:
    with SmsSink("127.0.0.1", 0) as sink:
        sink.received(TEST_NUMBER, "old", "", "webhook")
        after = time.monotonic()
        assert asyncio.run(sink.wait_for(TEST_NUMBER, timeout=0.2, after=after)) is None
        sink.received(TEST_NUMBER, "new", "", "webhook")
        found = asyncio.run(sink.wait_for(TEST_NUMBER, timeout=0.2, after=after))
        assert found is not None and found.body == "new"


def test_the_sink_listens_on_loopback_only() -> None:
    assert parse_sink_address("localhost:9090", "--sms-sink") == ("127.0.0.1", 9090)
    with pytest.raises(
        SinkError, match=r"--sms-sink '0\.0\.0\.0:9090': the sink listens on loopback"
    ):
        parse_sink_address("0.0.0.0:9090", "--sms-sink")
    with (
        SmsSink("127.0.0.1", 0) as first,
        pytest.raises(SinkError, match="cannot run the SMS sink"),
    ):
        SmsSink(*first.address).start()
