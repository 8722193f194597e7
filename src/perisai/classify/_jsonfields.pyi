from typing import Any

class Hits:
    def __call__(self, trigger: int, start: int, end: int, flags: int, context: object) -> None: ...
    def clear(self) -> None: ...
    def pairs(self) -> list[tuple[int, int]]: ...
    def __len__(self) -> int: ...

def locate(
    data: bytes,
    hits: Hits,
    first_key_id: int,
    young: dict[bytes, Any],
    old: dict[bytes, Any],
    max_cached: int,
    want_values: bool,
) -> tuple[
    list[int], list[int], list[Any], list[tuple[int, int, int, int, int, int, int]], list[int]
]: ...
def count_records(data: bytes) -> int: ...
