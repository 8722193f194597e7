"""perisai's own SMS sink on loopback: the SMS provider API a staging app is pointed at, so a
finding that the app texts a number is proven by the message arriving here, not read into a
200.

It answers the requests real SMS providers are sent:

- Twilio's Messages API: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, a form
  with ``To``, ``Body`` (and ``From`` or ``MessagingServiceSid``), answered 201 with a
  Message resource, as the official SDKs expect;
- Vonage's SMS API: ``POST /sms/json``, form or JSON with ``to`` and ``text``;
- a generic JSON webhook: ``POST /sms``, ``{"to": …, "body": …}`` (``text`` or ``message``
  also read).

Nothing is forwarded anywhere; messages are kept in memory (the newest 10,000) while the
sink runs. Bodies over 64 KiB are refused.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from perisai.api_audit.sink import SinkError

__all__ = ["ReceivedSms", "SmsSink"]

MAX_BODY = 64 * 1024
MAX_KEPT = 10_000
_TWILIO = re.compile(r"/2010-04-01/Accounts/(AC[0-9A-Za-z]{1,64})/Messages\.json")


@dataclass(frozen=True)
class ReceivedSms:
    to: str
    body: str
    sender: str
    api: str  # "twilio", "vonage" or "webhook"
    received_at: float


def _form_or_json(content_type: str, raw: bytes) -> dict[str, str] | None:
    """The request's fields, or None when the body is neither a form nor a JSON object."""
    text = raw.decode("utf-8", "replace")
    if "json" in content_type:
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        return {str(k): str(v) for k, v in data.items() if isinstance(v, str | int)}
    return {key: values[-1] for key, values in parse_qs(text, keep_blank_values=True).items()}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None  # the audit's own output says what arrived

    def _answer(self, status: int, payload: dict[str, object]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._answer(413, {"error": f"body must be 0 to {MAX_BODY} bytes"})
            return
        fields = _form_or_json(self.headers.get("Content-Type", ""), self.rfile.read(length))
        if fields is None:
            self._answer(400, {"error": "body is neither a form nor a JSON object"})
            return
        path = self.path.split("?", 1)[0]
        twilio = _TWILIO.fullmatch(path)
        if twilio is not None:
            self._twilio(twilio.group(1), fields)
        elif path == "/sms/json":
            self._vonage(fields)
        elif path == "/sms":
            self._webhook(fields)
        else:
            self._answer(404, {"error": "not an SMS API this sink speaks"})

    def _twilio(self, account: str, fields: dict[str, str]) -> None:
        to, body = fields.get("To", ""), fields.get("Body", "")
        sender = fields.get("From") or fields.get("MessagingServiceSid", "")
        if not to or not body:
            self._answer(400, {"code": 21604, "message": "A 'To' and a 'Body' are required"})
            return
        self.server.sink.received(to, body, sender, "twilio")
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True)
        self._answer(
            201,
            {
                "sid": sid,
                "account_sid": account,
                "to": to,
                "from": sender,
                "body": body,
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "date_created": now,
                "date_updated": now,
                "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
            },
        )

    def _vonage(self, fields: dict[str, str]) -> None:
        to, text = fields.get("to", ""), fields.get("text", "")
        if not to or not text:
            self._answer(200, {"message-count": "1", "messages": [{"status": "2"}]})
            return
        self.server.sink.received(to, text, fields.get("from", ""), "vonage")
        message = {"to": to, "message-id": secrets.token_hex(8), "status": "0"}
        self._answer(200, {"message-count": "1", "messages": [message]})

    def _webhook(self, fields: dict[str, str]) -> None:
        to = fields.get("to", "")
        body = fields.get("body") or fields.get("text") or fields.get("message") or ""
        if not to or not body:
            self._answer(400, {"error": "give to and body"})
            return
        self.server.sink.received(to, body, fields.get("from", ""), "webhook")
        self._answer(201, {"status": "queued", "id": secrets.token_hex(8)})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sink: SmsSink) -> None:
        super().__init__(address, _Handler)
        self.sink = sink


class SmsSink:
    """The SMS provider stand-in; ``port`` 0 picks a free one (see ``address`` once started)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._messages: list[ReceivedSms] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            return self.host, self.port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        try:
            self._server = _Server((self.host, self.port), self)
        except OSError as error:
            raise SinkError(
                f"cannot run the SMS sink on {self.host}:{self.port}: {error.strerror}"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="perisai-sms-sink", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SmsSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def received(self, to: str, body: str, sender: str, api: str) -> None:
        message = ReceivedSms(to, body, sender, api, time.monotonic())
        with self._lock:
            self._messages.append(message)
            del self._messages[:-MAX_KEPT]

    @property
    def messages(self) -> list[ReceivedSms]:
        with self._lock:
            return list(self._messages)

    async def wait_for(self, to: str, timeout: float, after: float = 0.0) -> ReceivedSms | None:
        """The first message to ``to`` (digits compared, so ``+44 7700…`` matches) that
        arrived after ``after`` (``time.monotonic()``), waiting up to ``timeout`` seconds."""
        wanted = re.sub(r"\D", "", to)
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if message.received_at >= after and re.sub(r"\D", "", message.to) == wanted:
                    return message
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)
