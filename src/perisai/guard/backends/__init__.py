"""Guard state backends, one per module, opened from a URL by :func:`open_backend`."""

from __future__ import annotations

from pathlib import Path

from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.interface import Backend, BackendError

__all__ = ["DEFAULT_STATE", "open_backend"]

DEFAULT_STATE = "sqlite:///perisai-guard.db"


def open_backend(url: str, *, tag: str = "perisai") -> Backend:
    """``memory://``, ``sqlite:///PATH`` or ``redis://…``/``rediss://…``.

    Raises :class:`BackendError` (one line) for an unknown scheme or a file that cannot open;
    a Redis that is down is only noticed on first use, so the fail mode applies to it.
    """
    if url == "memory://":
        return MemoryBackend()
    if url.startswith("sqlite:///"):
        from perisai.guard.backends.sqlite import SQLiteBackend

        path = url.removeprefix("sqlite:///")
        if not path:
            raise BackendError("sqlite state URL needs a path: sqlite:///PATH")
        return SQLiteBackend(Path(path))
    if url.startswith(("redis://", "rediss://", "unix://")):
        from perisai.guard.backends.redis import RedisBackend

        try:
            return RedisBackend.from_url(url, tag=tag)
        except ValueError as exc:
            raise BackendError(f"bad redis URL: {exc}") from None
    raise BackendError(f"unknown guard state {url!r}: use memory://, sqlite:///PATH or redis://…")
