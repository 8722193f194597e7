"""Redact personal data before it is stored: masks, keyed tokens, or type tags.

``Redactor`` is the library entry; ``RedactingFilter`` (stdlib logging) and
``structlog_processor`` plug it into an application's logging; ``redact_lines`` streams text or
JSON lines with constant memory (JSON stays valid JSON).
"""

from perisai.redact.logfilter import RedactingFilter, structlog_processor
from perisai.redact.redactor import RedactionMode, Redactor, RedactorError
from perisai.redact.stream import redact_lines, redact_stream

__all__ = [
    "RedactingFilter",
    "RedactionMode",
    "Redactor",
    "RedactorError",
    "redact_lines",
    "redact_stream",
    "structlog_processor",
]
