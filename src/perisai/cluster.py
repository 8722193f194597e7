"""Work on a Dask cluster the user already runs (``--cluster tcp://HOST:8786``).

Dask is an optional extra (``pip install 'perisai[cluster]'``): perisai runs on an existing
scheduler and its workers, with their retries when a worker dies, rather than a queue of
its own. This module only connects; ``classify`` and ``scan`` submit their own tasks.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["INSTALL_HINT", "ClusterError", "connect"]

INSTALL_HINT = "--cluster needs Dask: pip install 'perisai[cluster]'"
_SCHEMES = ("tcp://", "tls://", "inproc://", "ws://", "wss://")


class ClusterError(Exception):
    """The cluster cannot be used; the message says why, and the fix, in one line."""


def connect(address: str, *, timeout: float = 10.0) -> Client:
    """A client of the scheduler at ``address``; :class:`ClusterError` when Dask is not
    installed, the address is not a scheduler address or the scheduler does not answer
    within ``timeout`` seconds."""
    if not address.startswith(_SCHEMES):
        raise ClusterError(
            f"--cluster {address!r}: give the scheduler's address, e.g. tcp://127.0.0.1:8786"
        )
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError(INSTALL_HINT) from None
    _refused_at_once(address, timeout)
    try:
        return Client(address, timeout=timeout, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {reason}") from None


def _refused_at_once(address: str, timeout: float) -> None:
    """A TCP scheduler address nobody listens on is said at once, not after Dask's retries
    have used up ``timeout``."""
    if not address.startswith("tcp://"):
        return
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout, 5.0)).close()
    except ConnectionRefusedError:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address}: connection refused"
        ) from None
    except OSError:
        return  # a slow or filtered network: Dask's own timeout decides
