"""Real servers for a test module, started side by side and always stopped."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar


class _Stoppable(Protocol):
    def stop(self) -> object: ...


T = TypeVar("T", bound=_Stoppable)


@contextlib.contextmanager
def started_in_parallel(
    names: Iterable[str], start: Callable[[str], T], seed: Callable[[str, T], object]
) -> Iterator[dict[str, T]]:
    """``start(name)`` then ``seed(name, instance)`` for every name at once; yields them by
    name and stops every one that started, even when another failed to start or seed."""
    started: dict[str, T] = {}

    def bring_up(name: str) -> None:
        instance = start(name)
        started[name] = instance  # recorded before seeding, so a failed seed still stops it
        seed(name, instance)

    wanted = list(names)
    try:
        with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
            for future in [pool.submit(bring_up, name) for name in wanted]:
                future.result()
        yield started
    finally:
        for instance in started.values():
            instance.stop()
