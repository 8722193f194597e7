"""perisai's own SMTP sink (aiosmtpd) on loopback: where a target's test relay delivers mail,
so a mail-relay finding is proven end to end by a unique marker arriving here."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

__all__ = ["ReceivedMail", "SinkError", "SmtpSink", "parse_sink_address"]


class SinkError(ValueError):
    """The sink cannot run where asked; one line."""


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    text: str  # subject and decoded body parts
    received_at: float


def parse_sink_address(spec: str, flag: str = "--smtp-sink") -> tuple[str, int]:
    """``HOST:PORT`` on loopback (a sink never listens on a routable address); ``flag``
    names the option in the one-line error."""
    host, sep, port_text = spec.rpartition(":")
    host = host.strip("[]")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SinkError(f"{flag} {spec!r}: write HOST:PORT, e.g. 127.0.0.1:2525")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise SinkError(f"{flag} {spec!r}: HOST must be a loopback address") from None
    if not address.is_loopback:
        raise SinkError(f"{flag} {spec!r}: the sink listens on loopback only (127.0.0.1)")
    return host, int(port_text)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "replace")
        self.sink.add(str(envelope.mail_from), tuple(str(r) for r in envelope.rcpt_tos), raw)
        return "250 OK"


class SmtpSink:
    """An SMTP server that keeps every message it is given, in memory, while it runs."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._mails: list[ReceivedMail] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        try:
            controller.start()
        except (OSError, RuntimeError) as error:
            raise SinkError(
                f"cannot run the SMTP sink on {self.host}:{self.port}: {error}"
            ) from None
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, mail_from: str, rcpt_tos: tuple[str, ...], raw: bytes) -> None:
        message = message_from_bytes(raw, policy=policy.default)
        subject = str(message.get("Subject") or "")
        parts = [subject]
        if isinstance(message, EmailMessage):
            for part in message.walk():
                if part.get_content_maintype() == "text":
                    try:
                        parts.append(str(part.get_content()))
                    except (LookupError, ValueError):
                        parts.append(raw.decode("utf-8", "replace"))
        with self._lock:
            self._mails.append(
                ReceivedMail(mail_from, rcpt_tos, subject, "\n".join(parts), time.monotonic())
            )

    @property
    def mails(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._mails)

    async def wait_for(self, marker: str, timeout: float) -> ReceivedMail | None:
        """The first message holding ``marker``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for mail in self.mails:
                if marker in mail.text:
                    return mail
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)
