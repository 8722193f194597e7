"""A generic HTTP webhook: POST ``{"channel","to","subject","body"}`` as JSON."""

from __future__ import annotations

from dataclasses import asdict

import httpx

from perisai.guard.delivery.interface import Delivery, DeliveryError, Message

__all__ = ["WebhookDelivery"]


class WebhookDelivery(Delivery):
    def __init__(
        self, url: str, *, headers: dict[str, str] | None = None, timeout: float = 10.0
    ) -> None:
        self.url = url
        self._client = httpx.AsyncClient(headers=headers or {}, timeout=timeout)

    async def send(self, message: Message) -> None:
        try:
            response = await self._client.post(self.url, json=asdict(message))
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {self.url}: {type(exc).__name__}") from None
        if not response.is_success:
            raise DeliveryError(f"webhook {self.url}: HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
