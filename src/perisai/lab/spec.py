"""What the lab declares about each service: one :class:`ServerSpec` per ``servers/<service>.py``.

A spec says how to find the server's binaries, start it (on a free loopback port, exposed or
secured), and seed it, and what the exposed twin carries besides (a ransom note, a planted
payload): :mod:`perisai.lab.catalog` builds the lab's twins from the specs, and the tests'
``lab_server`` fixture starts and seeds a twin exactly as the catalog does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from perisai.lab.binaries import BinarySearch

__all__ = ["ServerSpec"]


@dataclass(frozen=True)
class ServerSpec:
    """One service of the lab, declared.

    ``start(name, base_dir, *, exposed, search, …)`` returns a running instance;
    ``seed(instance, **seed_args)`` fills it, the exposed twin with ``exposed_seed`` besides
    (``ransom_note=True``, ``planted_payload=True``: the marks of a visit); ``find(search)``
    raises :class:`~perisai.lab.errors.MissingBinary` when the server is not installed.
    ``twins`` names the twins' suffixes, exposed first.
    """

    service: str  # the probe's service name, as a scan reports it
    find: Callable[[BinarySearch], object]
    start: Callable[..., Any]
    seed: Callable[..., object]
    exposed_seed: Mapping[str, object] = field(default_factory=dict)
    personal_data: bool = True  # what a scan must find in an exposed twin
    kind: str = "store"  # "store": a scan's target; "api": an audit-api target
    twins: tuple[str, str] = ("exposed", "secured")

    @property
    def compromised(self) -> bool:
        """Whether the exposed twin holds a ransom note or a planted payload."""
        return bool(self.exposed_seed)

    def name(self, exposed: bool) -> str:
        """The twin's server name in the catalog (``redis-exposed``, ``api-fixed``…)."""
        return f"{self.service}-{self.twins[0] if exposed else self.twins[1]}"

    def seed_args(self, exposed: bool) -> Mapping[str, object]:
        """What the catalog passes to :attr:`seed` for this twin."""
        return self.exposed_seed if exposed else {}
