"""Ransom notes: found by what they demand, not by a single word."""

from __future__ import annotations

from perisai.compromise import detect_ransom_note, is_note_name

NOTE = (
    "All your data is backed up. You must pay 0.0125 BTC to "
    "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh within 48 hours to recover it. After 48 hours "
    "your data will be leaked and reported under GDPR. Contact recover@example.net"
)


def test_note_found_with_payment_address_in_full_and_contact_masked() -> None:
    note = detect_ransom_note("chatlog.public.README_TO_RECOVER_YOUR_DATA", NOTE)
    assert note is not None
    assert note.payment_addresses == ("bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",)
    assert "r***@example.net" in note.preview and "recover@example.net" not in note.preview


def test_ordinary_text_is_not_a_note() -> None:
    assert detect_ransom_note("messages", "Please restore my backup, I lost my phone") is None
    assert detect_ransom_note("README", "How to build: run make") is None
    assert detect_ransom_note("prices", "BTC price today is up") is None


def test_note_names() -> None:
    assert is_note_name("READ_ME_TO_RECOVER_YOUR_DATA")
    assert is_note_name("db0/WARNING")
    assert not is_note_name("messages")
