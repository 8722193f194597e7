"""Redis state for many app instances: every multi-key step is one Lua script, so it is atomic.

Keys are ``{tag}:…`` with one hash tag, so a script's keys share a Redis Cluster slot.
redis-py's ``Script`` re-loads a script after ``NoScriptError`` (a restart or SCRIPT FLUSH).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import redis

from perisai.guard.interface import Admission, Backend, BackendError, Limit

__all__ = ["RedisBackend"]

_ACQUIRE = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i + 1])
  local window = tonumber(ARGV[2 * i + 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], count - limit, count - limit, 'WITHSCORES')
    return {0, tostring(tonumber(oldest[2]) + window - now), i}
  end
end
for i = 1, #KEYS do
  local window = tonumber(ARGV[2 * i + 2])
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('PEXPIRE', KEYS[i], math.ceil(window * 1000))
end
return {1, '0', 0}
"""

_ADD = """
local value = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


class RedisBackend(Backend):
    def __init__(self, client: redis.Redis, *, tag: str = "perisai") -> None:
        self._client = client
        self._prefix = "{" + tag + "}:"
        self._acquire = client.register_script(_ACQUIRE)
        self._add = client.register_script(_ADD)

    @classmethod
    def from_url(cls, url: str, *, tag: str = "perisai") -> RedisBackend:
        client = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0, retry_on_timeout=False
        )
        return cls(client, tag=tag)

    def _key(self, key: str) -> str:
        return self._prefix + key

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (redis.RedisError, OSError) as exc:
            raise BackendError(f"redis {what}: {exc}") from None

    def acquire(self, limits: Sequence[Limit], now: float) -> Admission:
        if not limits:
            return Admission(True)
        args: list[float | str] = [repr(now), secrets.token_hex(8)]
        for limit in limits:
            args += [limit.limit, limit.window]
        allowed, retry, index = self._call(
            "acquire", self._acquire, keys=[self._key(limit.key) for limit in limits], args=args
        )
        if int(allowed):
            return Admission(True)
        return Admission(False, float(retry), limits[int(index) - 1].name)

    def add(self, key: str, amount: float, ttl: float) -> float:
        value = self._call(
            "add", self._add, keys=[self._key(key)], args=[amount, max(1, int(ttl * 1000))]
        )
        return float(value)

    def add_many(self, items: Sequence[tuple[str, float, float]]) -> list[float]:
        """One pipelined round trip; each counter is still its own atomic script."""
        if not items:
            return []

        def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for key, amount, ttl in items:
                self._add(
                    keys=[self._key(key)], args=[amount, max(1, int(ttl * 1000))], client=pipe
                )
            result: list[Any] = pipe.execute()
            return result

        return [float(value) for value in self._call("add", run)]

    def get_many(self, keys: Sequence[str]) -> list[float]:
        if not keys:
            return []
        values = self._call("mget", self._client.mget, [self._key(key) for key in keys])
        return [0.0 if value is None else float(value) for value in values]

    def put(self, key: str, value: str, ttl: float) -> None:
        self._call("set", self._client.set, self._key(key), value, px=max(1, int(ttl * 1000)))

    def get(self, key: str) -> str | None:
        value = self._call("get", self._client.get, self._key(key))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def delete(self, key: str) -> None:
        self._call("del", self._client.delete, self._key(key))

    def ping(self) -> None:
        self._call("ping", self._client.ping)

    def close(self) -> None:
        self._client.close()
