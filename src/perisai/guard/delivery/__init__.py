"""Delivery adapters, one per module, and :func:`build_delivery` from a config section."""

from __future__ import annotations

from pathlib import Path

from perisai.guard.config import DeliveryConfig, GuardConfigError
from perisai.guard.delivery.interface import Delivery, DeliveryError, Message, render_code_message

__all__ = ["Delivery", "DeliveryError", "Message", "build_delivery", "render_code_message"]


def build_delivery(section: DeliveryConfig) -> Delivery:
    """The adapter a ``delivery.sms`` / ``delivery.email`` config section names."""
    kind = section.type
    if kind == "console":
        from perisai.guard.delivery.sink import SinkDelivery

        return SinkDelivery(None)
    if kind == "file":
        from perisai.guard.delivery.sink import SinkDelivery

        return SinkDelivery(Path(_need(section.path, "path", kind)))
    if kind == "webhook":
        from perisai.guard.delivery.webhook import WebhookDelivery

        return WebhookDelivery(_need(section.url, "url", kind), headers=dict(section.headers))
    if kind == "twilio":
        from perisai.guard.delivery.twilio import TWILIO_API, TwilioSMSDelivery

        return TwilioSMSDelivery(
            _need(section.account_sid, "account_sid", kind),
            _need(section.auth_token, "auth_token", kind),
            _need(section.sender, "sender", kind),
            base_url=section.url or TWILIO_API,
        )
    from perisai.guard.delivery.smtp import SMTPDelivery

    return SMTPDelivery(
        _need(section.host, "host", kind),
        section.port,
        _need(section.sender, "sender", kind),
        username=section.username,
        password=section.auth_token,
        start_tls=section.start_tls,
    )


def _need(value: str | None, field: str, kind: str) -> str:
    if not value:
        raise GuardConfigError(f"bad guard config: delivery of type {kind} needs {field}")
    return value
