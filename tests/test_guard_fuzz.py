"""Hostile input against every route of the Verify API, on every backend: random JSON of any
shape, control characters, lone surrogates, invalid UTF-8, huge numbers, deep nesting, with
and without a token. Never a 5xx, and every 4xx is a JSON object whose reason is one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from httpx import ASGITransport, AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from perisai.guard import GuardConfig
from perisai.guard.api import create_app
from perisai.guard.backends.memory import MemoryBackend
from perisai.guard.backends.redis import RedisBackend
from perisai.guard.backends.sqlite import SQLiteBackend
from perisai.guard.delivery import Message
from perisai.guard.delivery.interface import Delivery
from perisai.guard.interface import Action, Backend, Event
from perisai.lab import Instance, start_redis

TOKEN = "fuzz-token-0123456789abcdef"
ROTATED = "fuzz-token-rotated-fedcba9876543210"
BOUNDARY = "request could not be processed"  # the API's catch-all for engine exceptions
EXAMPLES = 200


class Sink(Delivery):
    """Delivery that always succeeds: a 502 is then never the right answer."""

    async def send(self, message: Message) -> None:
        return None


@pytest.fixture(scope="module")
def fuzz_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    instance = start_redis("guard-fuzz-redis", tmp_path_factory.mktemp("fuzz"), exposed=True)
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(
    scope="module",
    params=[
        "memory",
        "memory-monitor",  # monitor mode lets refused requests on into the engine
        "sqlite",
        pytest.param("redis", marks=pytest.mark.servers),
    ],
)
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Starlette]:
    backend: Backend
    if request.param.startswith("memory"):
        backend = MemoryBackend()
    elif request.param == "sqlite":
        backend = SQLiteBackend(tmp_path_factory.mktemp("fuzz-sqlite") / "guard.db")
    else:
        instance: Instance = request.getfixturevalue("fuzz_redis")
        url = instance.url_for(5)
        assert url.startswith("redis://127.0.0.1:") or "@127.0.0.1:" in url
        redis.Redis.from_url(url).flushdb()
        backend = RedisBackend.from_url(url)
    mode = "monitor" if request.param.endswith("monitor") else "enforce"
    config = GuardConfig.from_mapping({"mode": mode, "api": {"tokens": [TOKEN, ROTATED]}})
    yield create_app(config, backend=backend, sms=Sink(), email=Sink())
    backend.close()


# ---------------------------------------------------------------- strategies
# lone surrogates and control characters on top of hypothesis' usual unicode
CHARS = st.one_of(
    st.characters(exclude_categories=["Cc", "Cs"]),
    st.characters(exclude_categories=["Cc", "Cs"]),
    st.sampled_from("+0123456789@.-_ ０１٣۴"),
    st.sampled_from("+0123456789@.-_ ０１٣۴"),
    st.characters(categories=["Cc", "Cs"]),
)
TEXT = st.text(CHARS, max_size=40)  # one text in three or so has a control or surrogate
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN and ±Infinity included: json.dumps writes them, json.loads reads them
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)
PHONE = st.one_of(
    st.from_regex(r"\+601[0-9]{8}", fullmatch=True),  # valid Malaysian mobiles
    st.from_regex(r"\+[0-9]{1,18}", fullmatch=True),
    st.builds("+{}".format, TEXT),  # whatever phonenumbers makes of it
    st.sampled_from(
        [
            "+445612345678",
            "+19005550123",
            "+1" + "9" * 300,
            "+",
            "+6 01-23",
            "+６０１２３４５６７８９",
        ]
    ),
)
EMAIL = st.emails() | st.builds("{}@{}".format, TEXT, TEXT)
IPS = st.ip_addresses().map(str) | st.sampled_from(["fe80::1%eth0", "::ffff:1.2.3.4", "1.2.3"])
CODE = st.from_regex(r"[0-9]{1,10}", fullmatch=True) | st.sampled_from(["١٢٣٤٥٦", "²³"])
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "to": PHONE | EMAIL,
    "channel": st.sampled_from(["sms", "email"]),
    "ip": IPS,
    "device": TEXT,
    "account": TEXT,
    "code": CODE,
    "action": st.sampled_from([action.value for action in Action]),
    "type": st.sampled_from([event.value for event in Event]),
}
OPTIONAL = {"device", "account"}
ROUTE_FIELDS = {
    "/v1/verifications": ("to", "channel", "ip", "device", "account"),
    "/v1/verifications/check": ("to", "code", "ip"),
    "/v1/decisions": ("action", "to", "ip", "device", "account"),
    "/v1/events": ("type", "to", "ip", "account"),
}
RAW = st.sampled_from(
    [
        b"[" * 10240,
        b"{" * 10240,
        b'{"to": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"to": ' + b"9" * 5000 + b"}",  # past int's 4300 digits
        b'{"to": 1e400, "ip": -1e400}',
        b'{"to": "\\ud800", "ip": "\\udfff"}',
        b'{"to": "+6\\u0000", "channel": "sms", "ip": "1.2.3.4"}',
        b"\xff\xfe\x00",
        b"",
        b"null",
    ]
) | st.binary(max_size=64)
# mostly requests that get past the token and the content type, to reach the engine
AUTH = st.sampled_from(["good"] * 6 + ["rotated"] * 2 + ["none", "wrong", "basic", "empty"])
CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 4 + ["application/json; charset=utf-8", "", "text/plain", None]
)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    auth: str
    content_type: str | None
    body: bytes


@st.composite
def calls(draw: st.DrawFn) -> Call:
    auth = draw(AUTH)
    path = draw(st.sampled_from([*ROUTE_FIELDS, "/metrics", "/healthz"]))
    if path in ("/metrics", "/healthz"):
        return Call("GET", path, auth, None, b"")
    shape = draw(st.sampled_from(["fields", "fields", "fields", "json", "raw"]))
    if shape == "raw":
        body = draw(RAW)
    else:
        data: Any
        if shape == "json":
            data = draw(JSON)
        else:
            names = ROUTE_FIELDS[path]
            data = {
                name: draw(PLAUSIBLE[name])
                for name in names
                if name not in OPTIONAL or draw(st.booleans())
            }
            # then at most one thing wrong: a hostile value, a missing field or an extra one
            harm = draw(st.sampled_from(["none", "none", "value", "value", "drop", "extra"]))
            if harm == "value":
                data[draw(st.sampled_from(names))] = draw(TEXT | JSON)
            elif harm == "drop":
                data.pop(draw(st.sampled_from(names)), None)
            elif harm == "extra":
                data.update(draw(st.dictionaries(TEXT, JSON, min_size=1, max_size=1)))
        text = json.dumps(data, ensure_ascii=draw(st.booleans()))
        body = text.encode("utf-8", "surrogatepass")  # raw surrogates: invalid UTF-8
    return Call("POST", path, auth, draw(CONTENT_TYPES), body)


def headers_for(call: Call) -> dict[str, str]:
    headers = {
        "good": {"Authorization": f"Bearer {TOKEN}"},
        "rotated": {"Authorization": f"Bearer {ROTATED}"},
        "none": {},
        "wrong": {"Authorization": f"Bearer {TOKEN[:-1]}x"},
        "basic": {"Authorization": f"Basic {TOKEN}"},
        "empty": {"Authorization": ""},
    }[call.auth]
    if call.content_type is not None:
        headers["content-type"] = call.content_type
    return headers


async def send(app: Starlette, call: Call) -> tuple[int, bytes, dict[str, str]]:
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.request(
            call.method, call.path, content=call.body or None, headers=headers_for(call)
        )
    return response.status_code, response.content, dict(response.headers)


def check_response(call: Call, status: int, content: bytes) -> None:
    assert status < 500, (status, content)
    authed = call.auth in ("good", "rotated")
    if authed or call.path == "/healthz":
        assert status != 401, content
    else:
        assert status == 401, (status, content)
    if status >= 400 and call.path != "/healthz":
        body = json.loads(content)
        assert isinstance(body, dict) and isinstance(body.get("status"), str), body
        reason = body.get("reason")
        if body["status"] == "error" or reason is not None:
            assert isinstance(reason, str) and reason.isprintable() and reason, body
            assert len(reason) < 200, body
        assert reason != BOUNDARY, f"the engine raised on validated input: {call!r}"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(call=calls())
async def test_no_5xx_and_one_line_reasons(app: Starlette, call: Call) -> None:
    status, content, _ = await send(app, call)
    check_response(call, status, content)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 10240,
        b'{"to": "+6\\u0000", "channel": "sms", "ip": "1.2.3.4"}',
        b'{"to": "+1' + b"9" * 300 + b'", "channel": "sms", "ip": "1.2.3.4"}',
        b'{"to": ' + b"9" * 400 + b', "channel": "sms", "ip": "1.2.3.4"}',
        b'{"to": "\\ud800", "channel": "sms", "ip": "1.2.3.4"}',
    ],
)
@pytest.mark.parametrize("path", list(ROUTE_FIELDS))
async def test_known_hostile_bodies_on_every_backend(
    app: Starlette, path: str, body: bytes
) -> None:
    call = Call("POST", path, "good", "application/json", body)
    status, content, _ = await send(app, call)
    check_response(call, status, content)
    assert 400 <= status < 500
