"""A Twilio-compatible SMS adapter: ``POST {base}/2010-04-01/Accounts/{sid}/Messages.json``
with form fields ``To``, ``From``, ``Body`` and HTTP basic auth (SID, token)."""

from __future__ import annotations

import httpx

from perisai.guard.delivery.interface import Delivery, DeliveryError, Message

__all__ = ["TwilioSMSDelivery"]

TWILIO_API = "https://api.twilio.com"


class TwilioSMSDelivery(Delivery):
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        *,
        base_url: str = TWILIO_API,
        timeout: float = 10.0,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.from_number = from_number
        self._client = httpx.AsyncClient(auth=(account_sid, auth_token), timeout=timeout)

    async def send(self, message: Message) -> None:
        if message.channel != "sms":
            raise DeliveryError("the Twilio adapter sends SMS only")
        form = {"To": message.to, "From": self.from_number, "Body": message.body}
        try:
            response = await self._client.post(self.url, data=form)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"SMS provider: {type(exc).__name__}") from None
        if response.status_code not in (200, 201):
            raise DeliveryError(f"SMS provider: HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
