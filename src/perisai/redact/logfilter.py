"""Redact log records before any handler formats or ships them."""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from perisai.redact.redactor import RedactionMode, Redactor


class RedactingFilter(logging.Filter):
    """A ``logging.Filter`` that rewrites the message and its arguments in place.

    Attach it to a handler (or logger): ``handler.addFilter(RedactingFilter())``.
    """

    def __init__(self, redactor: Redactor | None = None, name: str = "") -> None:
        super().__init__(name)
        self.redactor = redactor or Redactor(RedactionMode.MASK)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()  # the formatted message, arguments included
        record.msg = self.redactor.text(message)
        record.args = None
        return True


def structlog_processor(
    redactor: Redactor | None = None,
) -> Callable[[object, str, MutableMapping[str, Any]], MutableMapping[str, Any]]:
    """A structlog processor: every value of the event dict is redacted, keys kept."""
    active = redactor or Redactor(RedactionMode.MASK)

    def process(
        logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = active.value(value, key)
        return event_dict

    return process
