"""One evidence path: what a server said, made safe before a finding carries it anywhere.

Key, table, queue, topic, index and database names, banners, values and error messages come
from whoever wrote into the scanned store: a Redis key is often named for its user
(``inbox:siti.aminah@example.org:+60198765432``) and a ransom note's key for its victim. Every
finding the scanner returns passes :func:`safe_findings` once, so reporters and the findings
stores never see raw server text: personal data masked (the classifier's masks, the same as
for sampled values; an attacker's payment address is kept, it is no one's personal data), and
terminal control and bidi characters written as escapes (``\\x1b``), which could otherwise
rewrite a screen or hide text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from perisai.classify import redact_text
from perisai.findings import Evidence, Finding

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with control and bidi characters written as escapes (``\\x1b``)."""
    return _UNSAFE.sub(lambda m: _escape(m.group()), text)


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def server_text(text: str, regions: tuple[str, ...]) -> str:
    """``text`` as a report may show it: personal data masked, control characters escaped.
    Safe to apply twice (a mask read again is no new value)."""
    return printable(redact_text(text, regions)) if text else text


def safe_findings(findings: Iterable[Finding], regions: tuple[str, ...]) -> list[Finding]:
    """Each finding with its title, object and evidence lines made :func:`server_text`.

    A finding's id comes from its object; two objects that differ only in personal data
    mask alike (``README:s***@example.org``), so such twins get ``#2``, ``#3`` after the
    masked object to stay apart."""
    safe = [
        replace(
            finding,
            title=server_text(finding.title, regions),
            object=server_text(finding.object, regions),
            evidence=tuple(Evidence(server_text(e.text, regions)) for e in finding.evidence),
        )
        for finding in findings
    ]
    seen: Counter[str] = Counter()
    for n, finding in enumerate(safe):
        seen[finding.id] += 1
        if seen[finding.id] > 1:
            safe[n] = replace(finding, object=f"{finding.object} #{seen[finding.id]}")
    return safe
