"""What each raw JSON field holds, remembered: the JSON-lines path classifies a field once.

A service's log repeats the same users' fields all day (``"msisdn": "6012…"`` on every line
a user touches), so the answer for a raw field, as bytes, is kept and the next time it comes
from here (the compiled step in ``jsonfields`` looks it up without calling into Python).
Bounded: past :data:`FIELD_CACHE_ENTRIES` the oldest quarter goes. Fields that cannot recur
(a one-time code) or seldom do (longer than :data:`MAX_CACHED_FIELD_BYTES`) are not kept.
"""

from __future__ import annotations

import itertools
from operator import itemgetter

from perisai.classify.match import EntityMatch, FieldMatches

FIELD_CACHE_ENTRIES = 65536  # raw fields remembered with what they hold (oldest go first)
MAX_CACHED_FIELD_BYTES = 256  # longer fields (message bodies, mostly) seldom repeat
_ENTITY = itemgetter(0)  # an EntityMatch's entity type


class FieldCache:
    """Raw field bytes → what the field holds (None: nothing)."""

    def __init__(self) -> None:
        self.fields: dict[bytes, FieldMatches | None] = {}
        self._entity_sets: dict[tuple[str, ...], tuple[str, ...]] = {}  # one object per set

    def held(self, matches: tuple[EntityMatch, ...]) -> FieldMatches:
        """``matches`` with their entity types, the types one shared object per set (so
        counting by them hashes a handful of distinct tuples)."""
        entities = tuple(map(_ENTITY, matches))
        return matches, self._entity_sets.setdefault(entities, entities)

    def remember(self, field: bytes, matches: tuple[EntityMatch, ...]) -> FieldMatches | None:
        """Keep what ``field`` holds, where it may recur; returns it as :meth:`held` does."""
        result = self.held(matches) if matches else None
        if len(field) <= MAX_CACHED_FIELD_BYTES and not _one_time(matches):
            fields = self.fields
            if len(fields) >= FIELD_CACHE_ENTRIES:  # bounded: the oldest quarter goes
                for old in list(itertools.islice(fields, FIELD_CACHE_ENTRIES // 4)):
                    del fields[old]
            fields[field] = result
        return result


def _one_time(matches: tuple[EntityMatch, ...]) -> bool:
    """A field with a one-time code will not recur: remembering it would only push out
    fields that do (a log of OTP sends holds a new code on every line)."""
    return any(match.entity == "OTP_CODE" for match in matches)
