"""What each raw JSON field holds, remembered: the JSON-lines path classifies a field once.

A service's log repeats the same users' fields all day (``"msisdn": "6012…"`` on every line
a user touches), so the answer for a raw field, as bytes, is kept and the next time it comes
from here (the compiled step in ``jsonfields`` looks it up without calling into Python).
Bounded, and close to least-recently-used at the cost of a dict lookup: two generations,
``young`` and ``old``; a field found in ``old`` moves up to ``young``, and when ``young``
holds half of :data:`FIELD_CACHE_ENTRIES` it becomes ``old`` and the previous ``old``, holding
only fields not seen for a generation, goes. Fields that cannot recur (a one-time code) or
seldom do (longer than :data:`MAX_CACHED_FIELD_BYTES`) are not kept; a field with a one-time
code is kept by its template instead (``jsonfields.template_of``), where the rule for one holds.
"""

from __future__ import annotations

from functools import lru_cache
from operator import itemgetter
from typing import cast

from perisai.classify.match import EntityMatch, FieldMatches, MatchFields

FIELD_CACHE_ENTRIES = 262144  # raw fields remembered with what they hold, two generations
MAX_CACHED_FIELD_BYTES = 256  # longer fields (message bodies, mostly) seldom repeat
TEMPLATE_ENTRIES = 4096  # templates of fields with one-time codes (a service sends a few kinds)
_ENTITY = itemgetter(0)  # an EntityMatch's entity type


class FieldCache:
    """Raw field bytes → what the field holds (None: nothing), in two generations."""

    def __init__(self) -> None:
        self.young: dict[bytes, FieldMatches | None] = {}
        self.old: dict[bytes, FieldMatches | None] = {}
        self.templates: dict[bytes, FieldMatches | None] = {}
        self._entity_sets: dict[tuple[str, ...], tuple[str, ...]] = {}  # one object per set

    def __len__(self) -> int:
        return len(self.young) + len(self.old)

    def held(self, matches: tuple[EntityMatch, ...]) -> FieldMatches:
        """``matches`` as plain tuples (see ``MatchFields``) with their entity types, the
        types one shared object per set (so counting by them hashes a handful of tuples)."""
        entities = tuple(map(_ENTITY, matches))
        plain = cast("tuple[MatchFields, ...]", tuple(map(tuple, matches)))
        return plain, self._entity_sets.setdefault(entities, entities)

    def remember(self, field: bytes, matches: tuple[EntityMatch, ...]) -> FieldMatches | None:
        """Keep what ``field`` holds, where it may recur; returns it as :meth:`held` does."""
        result = self.held(matches) if matches else None
        if len(field) <= MAX_CACHED_FIELD_BYTES and (result is None or _RECURS(result[1])):
            self.young[field] = result
            self.settle()
        return result

    def remember_template(
        self, template: bytes, matches: tuple[EntityMatch, ...]
    ) -> FieldMatches | None:
        """Keep what every field with this template holds; returns it as :meth:`held` does.
        Full, the templates start over (only a log of many kinds of code messages fills them)."""
        result = self.held(matches) if matches else None
        if len(self.templates) >= TEMPLATE_ENTRIES:
            self.templates.clear()
        self.templates[template] = result
        return result

    def settle(self) -> None:
        """Start a new generation once ``young`` is full (lookups move fields up into it)."""
        if len(self.young) >= FIELD_CACHE_ENTRIES // 2:
            self.old, self.young = self.young, {}


def _recurs(entities: tuple[str, ...]) -> bool:
    """A field with a one-time code will not recur: remembering it would only push out
    fields that do (a log of OTP sends holds a new code on every line)."""
    return "OTP_CODE" not in entities


_RECURS = lru_cache(maxsize=None)(_recurs)  # a handful of entity sets
