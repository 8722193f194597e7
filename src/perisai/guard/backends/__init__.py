"""Guard state backends, one per module, opened from a URL by :func:`open_backend`."""

from __future__ import annotations

from pathlib import Path

from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.interface import Backend, BackendError

__all__ = ["DEFAULT_STATE", "open_backend"]

DEFAULT_STATE = "sqlite:///perisai-guard.db"


def open_backend(url: str, *, tag: str = "perisai") -> Backend:
    """``memory://``, ``sqlite:///PATH``, ``redis://…``/``rediss://…`` or, for a Redis
    Cluster, ``redis+cluster://HOST:PORT[,HOST:PORT…]`` (``?replicas=N``: see the Redis
    backend).

    Raises :class:`BackendError` (one line) for an unknown scheme, a file that cannot open or
    a Redis Cluster none of whose nodes answers (its slot map is read at once); a single Redis
    that is down is only noticed on first use, so the fail mode applies to it.
    """
    if url == "memory://":
        return MemoryBackend()
    if url.startswith("sqlite:///"):
        from perisai.guard.backends.sqlite import SQLiteBackend

        path = url.removeprefix("sqlite:///")
        if not path:
            raise BackendError("sqlite state URL needs a path: sqlite:///PATH")
        return SQLiteBackend(Path(path))
    if url.startswith(
        ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
    ):
        import redis
        from redis.exceptions import RedisClusterException

        from perisai.guard.backends.redis import RedisBackend

        try:
            return RedisBackend.from_url(url, tag=tag)
        except ValueError as exc:
            raise BackendError(f"bad redis URL: {exc}") from None
        except (RedisClusterException, redis.RedisError, OSError) as exc:  # reads the slot map
            raise BackendError(f"redis cluster: {str(exc).splitlines()[0]}") from None
    raise BackendError(
        f"unknown guard state {url!r}: use memory://, sqlite:///PATH, redis://… or redis+cluster://…"
    )
