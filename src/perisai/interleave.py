"""Take items from several groups in turn, so a short pick shows every group before a second
item of any (a sample of key kinds, evidence of entity types)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice, zip_longest
from typing import TypeVar

T = TypeVar("T")
_GAP = object()  # what zip_longest fills a short group with; never an item


def round_robin(groups: Iterable[Sequence[T]], count: int) -> list[T]:
    """Up to ``count`` items, one from each group in turn, groups in the order given."""
    turns = (item for layer in zip_longest(*groups, fillvalue=_GAP) for item in layer)
    return list(islice((item for item in turns if item is not _GAP), count))  # type: ignore[misc]
