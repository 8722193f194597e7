"""The library's front door (DESIGN.md's "library entry" column) works without the CLI."""

from __future__ import annotations

import pytest

import perisai


def test_classifier_and_guard_are_reachable_from_the_package() -> None:
    classifier = perisai.Classifier(("MY",))
    [match] = classifier.scan_text("write to siti@example.org")
    assert match.entity == "EMAIL" and match.masked == "s***@example.org"
    guard = perisai.Guard()
    first = guard.check("send_otp", "+60123456789", "203.0.113.7")
    assert first.verdict == "allow"
    guard.record("sent", "+60123456789", ip="203.0.113.7")
    again = guard.check("send_otp", "+60123456789", "203.0.113.7")
    assert again.verdict != "allow"  # one send per recipient per minute by default


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Scanner'"):
        _ = perisai.Scanner
