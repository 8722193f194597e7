"""Delivery adapters: how a verification code reaches its recipient. Bodies are templated
by the guard; a caller never controls what is sent."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["Delivery", "DeliveryError", "Message", "render_code_message"]


class DeliveryError(Exception):
    """The message could not be handed to its provider; one line, no secrets."""


@dataclass(frozen=True, slots=True)
class Message:
    channel: str  # "sms" | "email"
    to: str
    subject: str
    body: str


def render_code_message(channel: str, to: str, code: str, ttl: float, brand: str) -> Message:
    minutes = max(1, round(ttl / 60))
    body = f"Your {brand} verification code is {code}. It expires in {minutes} minutes."
    if channel == "email":
        body += " If you did not ask for it, ignore this message."
    return Message(channel, to, f"Your {brand} verification code", body)


class Delivery(ABC):
    @abstractmethod
    async def send(self, message: Message) -> None:
        """Hand ``message`` to the provider; raise :class:`DeliveryError` when it refuses."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
