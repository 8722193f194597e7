"""The foundation classifier: e-mail and phone numbers found, masked, and not imagined."""

from __future__ import annotations

from perisai.classify import find_entities, mask_email, profile_records, redact_text


def test_phone_formats_found_and_masked() -> None:
    record = {
        "msisdn": "60123456789",
        "from": "+60 12-345 6789",
        "text": "call me on 012-345 6789",
    }
    profile = profile_records([record])
    assert profile.entities["PHONE"] == 3
    assert all("345" not in example for example in profile.examples)
    assert "PHONE: +60 12-*** **89" in profile.examples


def test_email_masked_keeps_first_letter_and_domain() -> None:
    assert mask_email("siti.aminah@example.org") == "s***@example.org"
    assert redact_text("from siti.aminah@example.org") == "from s***@example.org"


def test_hard_negatives_are_not_personal_data() -> None:
    negatives = [
        "123e4567-e89b-12d3-a456-426614174000",  # a UUID is not a phone number
        "1700000000000",  # epoch milliseconds
        "version=1.2.3.4",
        "order 4111111111111112",
        "d41d8cd98f00b204e9800998ecf8427e",
    ]
    for text in negatives:
        assert find_entities(text) == [], text
    assert not profile_records(negatives).has_personal_data


def test_key_context_adds_geo_and_message_bodies() -> None:
    profile = profile_records(['{"lat": "3.1390", "lon": "101.6869", "msg": "see you at 5 ok"}'])
    assert profile.entities == {"GEO_COORDINATE": 2, "MESSAGE_BODY": 1}
    # the same numbers without a lat/lon key are just decimals
    assert not profile_records([{"price": "3.1390", "weight": "101.6869"}]).has_personal_data


def test_redact_text_leaves_no_digits_of_a_number() -> None:
    redacted = redact_text("OTP for +60123456789 and +65 9123 4567")
    assert "3456" not in redacted and "9123 4567" not in redacted
    assert "+60 12-*** **89" in redacted


def test_evidence_examples_show_every_kind_of_data_first() -> None:
    """Many phone numbers early in a sample must not push the one e-mail out of the evidence."""
    records: list[object] = [{"msisdn": f"6012345{n:04d}"} for n in range(1000, 1010)]
    records.append({"email": "siti.aminah@example.org", "ip": "203.0.113.7"})
    first, second = profile_records(records[:5]), profile_records(records[5:])
    first.merge(second)
    assert sum(ex.startswith("PHONE: ") for ex in first.examples) == 3  # kept per type, merged
    shown = first.spread_examples(3)
    assert [ex.partition(":")[0] for ex in shown] == ["PHONE", "EMAIL", "IP_ADDRESS"]
    assert len(first.spread_examples(99)) == len(first.examples)
    assert first.spread_examples(0) == []
