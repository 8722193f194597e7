"""E-mail through an SMTP relay with ``aiosmtplib``."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from perisai.guard.delivery.interface import Delivery, DeliveryError, Message

__all__ = ["SMTPDelivery"]


class SMTPDelivery(Delivery):
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        start_tls: bool | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self._username, self._password = username, password
        self._start_tls = start_tls
        self._timeout = timeout

    async def send(self, message: Message) -> None:
        if message.channel != "email":
            raise DeliveryError("the SMTP adapter sends e-mail only")
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail.set_content(message.body)
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.host,
                port=self.port,
                username=self._username,
                password=self._password,
                start_tls=self._start_tls,
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {type(exc).__name__}") from None
