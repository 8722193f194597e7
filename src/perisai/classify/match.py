"""What the classifier reports for each entity it finds."""

from __future__ import annotations

from typing import NamedTuple


class EntityMatch(NamedTuple):
    """One entity in one text: type, span, masked form, how sure, and why.

    A named tuple rather than a dataclass: the classifier makes one per value found, and
    building tuples costs a fraction of a frozen dataclass.
    """

    entity: str
    start: int
    end: int
    masked: str
    confidence: float = 0.9
    why: str = ""


# An EntityMatch's fields as a plain tuple, in its order. The field cache keeps matches so:
# the cyclic GC stops tracking a plain tuple of strings and numbers, never a named tuple, and
# every full collection would otherwise walk each of the 10⁵ cached fields' matches.
MatchFields = tuple[str, int, int, str, float, str]

# What one field (or one line) holds: its matches and, for counting, their entity types in
# order. Cached per raw JSON field, so a recurring field is one object, counted by its types
# without walking its matches. A plain tuple: one is built for every new field.
FieldMatches = tuple[tuple[MatchFields, ...], tuple[str, ...]]
