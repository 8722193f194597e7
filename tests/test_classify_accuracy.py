"""Per-entity precision and recall floors on the labeled corpus (benchmarks/corpus.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from benchmarks.classify import ALL_ENTITIES, STRUCTURED, f1, precision, score
from benchmarks.corpus import generate, hard_negatives

from perisai.classify import Classifier


@pytest.fixture(scope="module")
def counts() -> dict[str, Counter[str]]:
    return score("perisai", generate(1500, seed=11))


def test_every_entity_is_in_the_corpus(counts: dict[str, Counter[str]]) -> None:
    for entity in ALL_ENTITIES:
        assert counts[entity]["tp"] + counts[entity]["fn"] > 20, entity


def test_micro_f1_over_structured_entities(counts: dict[str, Counter[str]]) -> None:
    total = sum((counts[e] for e in STRUCTURED), Counter())
    assert (f1(total) or 0) >= 0.95


@pytest.mark.parametrize("entity", ["PHONE", "NATIONAL_ID", "CREDIT_CARD", "IBAN"])
def test_precision_where_a_false_alarm_costs_trust(
    counts: dict[str, Counter[str]], entity: str
) -> None:
    assert (precision(counts[entity]) or 0) >= 0.98


@pytest.mark.parametrize("entity", ALL_ENTITIES)
def test_per_entity_f1_floor(counts: dict[str, Counter[str]], entity: str) -> None:
    floor = 0.9
    assert (f1(counts[entity]) or 0) >= floor, dict(counts[entity])


def test_hard_negatives_stay_clean() -> None:
    classifier = Classifier(("MY",))
    for text in hard_negatives(seed=3):
        assert classifier.scan_text(text) == [], text
