"""The lab's registration/helpdesk API twins (:mod:`perisai.lab.api_server`), declared: the
vulnerable twin is the exposed one, the fixed twin the secured one; ``perisai audit-api``
audits them, a scan does not."""

from __future__ import annotations

from pathlib import Path

from perisai.lab.api_server import ApiInstance, start_api_server
from perisai.lab.binaries import BinarySearch
from perisai.lab.spec import ServerSpec
from perisai.lab.supervisor import free_port

__all__ = ["API_SERVICE", "SPEC"]

API_SERVICE = "api"


def _start_api(name: str, base_dir: Path, *, exposed: bool, search: BinarySearch) -> ApiInstance:
    """An API twin whose helpdesk mail relays to a free loopback port: the address to give
    ``perisai audit-api --smtp-sink``, which listens there while it audits."""
    return start_api_server(
        base_dir, exposed=exposed, smtp_relay=f"127.0.0.1:{free_port()}", name=name
    )


def _nothing_to_seed(instance: object) -> None:
    """The API twins keep their state in memory; nothing to seed."""


def _always_there(search: BinarySearch) -> None:
    """The API twins run on this Python (Starlette, uvicorn): nothing to install."""


SPEC = ServerSpec(
    service=API_SERVICE,
    find=_always_there,
    start=_start_api,
    seed=_nothing_to_seed,
    personal_data=False,
    kind="api",
    twins=("vulnerable", "fixed"),
)
