"""Turn a bounded sample of records into a :class:`DataProfile`, and redact free text.

These functions keep the foundation's signatures; the work is done by :class:`Classifier`.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from perisai.classify.engine import Classifier
from perisai.classify.match import EntityMatch
from perisai.findings import EXAMPLES_PER_ENTITY, DataProfile

DEFAULT_REGIONS: tuple[str, ...] = ("MY",)


@lru_cache(maxsize=8)
def classifier_for(regions: tuple[str, ...]) -> Classifier:
    """One compiled classifier per region set, built on first use (never at import)."""
    return Classifier(regions)


def find_entities(
    text: str, key: str | None = None, regions: tuple[str, ...] = DEFAULT_REGIONS
) -> list[EntityMatch]:
    """Every personal-data entity in ``text``; ``key`` (the field name) adds context."""
    return classifier_for(regions).scan_text(text, key)


def profile_records(
    records: Iterable[object],
    regions: tuple[str, ...] = DEFAULT_REGIONS,
    max_examples: int = EXAMPLES_PER_ENTITY,
) -> DataProfile:
    """Count personal-data entities over a sample; keep a few masked examples per type."""
    classifier = classifier_for(regions)
    profile = DataProfile()
    examples_per_type: dict[str, int] = {}
    for record in records:
        profile.records_sampled += 1
        matches = classifier.scan_record(record)
        if matches:
            profile.records_with_personal_data += 1
        for _, match in matches:
            profile.entities[match.entity] = profile.entities.get(match.entity, 0) + 1
            if examples_per_type.get(match.entity, 0) < max_examples:
                examples_per_type[match.entity] = examples_per_type.get(match.entity, 0) + 1
                profile.examples.append(f"{match.entity}: {match.masked}")
    return profile


def redact_text(text: str, regions: tuple[str, ...] = DEFAULT_REGIONS) -> str:
    """``text`` with every entity found replaced by its mask (for evidence lines)."""
    out: list[str] = []
    cursor = 0
    for match in find_entities(text, None, regions):
        if match.start < cursor or match.entity == "CRYPTO_ADDRESS":
            continue  # a payment address in a ransom note is the attacker's: shown in full
        out.append(text[cursor : match.start])
        out.append(match.masked)
        cursor = match.end
    out.append(text[cursor:])
    return "".join(out)
