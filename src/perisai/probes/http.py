"""Shared helpers for probes that speak HTTP (Elasticsearch, Kibana, CouchDB, etcd, ClickHouse…).

Every request goes through :func:`bounded_get` (or :func:`bounded_post`, for the few APIs that
read only by POST): one request, streamed and stopped at a byte cap, with one deadline for the
whole exchange (headers *and* body), so a server that announces an endless body or drips a byte
a second costs at most that deadline and that many bytes. :func:`http_client`
builds the client those requests share: no proxies, certificates or netrc from the environment
(``trust_env=False``), no automatic redirects (:func:`bounded_get` follows a few on request, to
the same origin only), no compression (a gzip bomb cannot inflate past the cap), and TLS
certificates not verified (scanned services mostly use self-signed ones; a probe sends nothing
secret, only vendor-default credentials).

The API, small on purpose:

* :func:`http_client` — the ``httpx.AsyncClient`` factory (use it as an async context manager);
* :func:`bounded_get` — one bounded GET → :class:`HttpAnswer` (status, headers, body, truncated);
* :func:`bounded_post` — the same for one POST (etcd's gateway, ClickHouse queries), no redirects;
* :func:`get_any_scheme` — the first GET of a probe: plain HTTP, then TLS if the server dropped it;
* :func:`get_plain_or_tls` — the same for Go servers (etcd, InfluxDB), which answer plain HTTP
  on a TLS port with a 400 saying so;
* :class:`HttpProbeError` — no usable answer (an ``OSError``: the scanner treats it as silence);
* :class:`Deadline` — one probe's time budget, shared by all its requests (from
  :mod:`perisai.probes.common`, re-exported here);
* :func:`json_array_items`, :func:`clip_json`, :func:`json_strings` — reading JSON documents
  from bounded (possibly cut-off) bodies;
* :func:`error_text`, :func:`one_line` — a server's error, any text, as one short line;
* :func:`human_bytes` — ``208 kB`` for evidence lines (from :mod:`perisai.probes.common`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from perisai import __version__
from perisai.probes.common import Deadline, human_bytes

__all__ = [
    "USER_AGENT",
    "Deadline",
    "HttpAnswer",
    "HttpProbeError",
    "bounded_get",
    "bounded_post",
    "clip_json",
    "error_text",
    "get_any_scheme",
    "get_plain_or_tls",
    "http_client",
    "human_bytes",
    "json_array_items",
    "json_strings",
    "one_line",
]

USER_AGENT = f"perisai/{__version__} (read-only exposure check)"
MAX_KEY_CHARS = 256  # characters kept of a JSON object key
MAX_JSON_ITEMS = 200  # list items / object members kept per level by clip_json
MAX_JSON_DEPTH = 12  # nesting kept by clip_json and walked by json_strings
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HTTPS_ONLY = b"Client sent an HTTP request to an HTTPS server"  # Go's net/http, on a TLS port
_CLOSE_TIMEOUT = 1.0


class HttpProbeError(OSError):
    """A request that got no usable HTTP answer; ``str()`` is one line for a ``ProbeSkipped``.

    ``timed_out`` is true when nothing (not even the status line) came back before the deadline.
    It subclasses ``OSError`` so the scanner's fingerprint step treats it as "not this service".
    """

    def __init__(self, message: str, *, timed_out: bool = False, dropped: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.dropped = dropped  # the server hung up without a byte of answer (TLS wanted?)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no answer"


@dataclass(frozen=True)
class HttpAnswer:
    """What a bounded GET got back.

    ``body`` holds at most the requested number of bytes. ``truncated`` is true when the body was
    cut short: the byte cap was reached, the deadline passed mid-body (then ``timed_out`` too),
    or the connection broke. A truncated body is never parsed by :meth:`json`.
    """

    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool = False
    timed_out: bool = False

    def json(self) -> Any:
        """The body parsed as JSON, or ``None`` when it is truncated or not JSON."""
        if self.truncated or not self.body:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None

    def text(self, limit: int = 200) -> str:
        """The first ``limit`` characters of the body, for evidence and error lines."""
        return self.body[: limit * 4].decode("utf-8", "replace")[:limit]


def http_client(
    host: str,
    port: int,
    *,
    timeout: float,
    scheme: str = "http",
    auth: httpx.Auth | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for ``scheme://host:port`` that never leaves that origin.

    ``timeout`` bounds each connect, read and write; :func:`bounded_get` adds the deadline for a
    whole exchange. Close the client (``async with``) when the probe is done.
    """
    netloc = f"[{host}]" if ":" in host else host
    return httpx.AsyncClient(
        base_url=f"{scheme}://{netloc}:{port}",
        auth=auth,
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,  # no proxies, CA bundles or netrc credentials from the environment
        verify=False,  # noqa: S501 - scanned services use self-signed certificates; we send no secret
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
    )


async def bounded_get(
    client: httpx.AsyncClient,
    path: str,
    *,
    max_bytes: int,
    timeout: float,
    params: Mapping[str, str | int] | None = None,
    auth: httpx.Auth | None = None,
    max_redirects: int = 0,
) -> HttpAnswer:
    """GET ``path``, reading at most ``max_bytes`` of body, all within ``timeout`` seconds.

    ``auth`` overrides the client's credentials for this request. Up to ``max_redirects``
    redirects are followed when they stay on the client's origin; any other redirect is
    returned as the answer. Raises :class:`HttpProbeError` when no status line arrives in time,
    the connection fails, or the server does not speak HTTP. Once the status line is in, it
    always returns: a body cut short by the cap or the deadline comes back ``truncated``.
    """
    end = _end_of(timeout)
    url = _on_origin(client, "GET", path)
    query = dict(params) if params else None
    for hop in range(max_redirects + 1):
        request = client.build_request("GET", url, params=query)
        answer = await _send_once(
            client, request, _shown(request.url), auth, max_bytes, end, timeout
        )
        location = answer.headers.get("location")
        if answer.status not in _REDIRECTS or not location or hop == max_redirects:
            return answer
        try:
            following = url.join(location)
        except httpx.InvalidURL:
            return answer
        if not _same_origin(client.base_url, following):
            return answer  # never to another host, port or scheme
        url, query = following, None
    raise AssertionError("unreachable")  # pragma: no cover


async def bounded_post(
    client: httpx.AsyncClient,
    path: str,
    *,
    max_bytes: int,
    timeout: float,
    params: Mapping[str, str | int] | None = None,
    json_body: Any = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | None = None,
) -> HttpAnswer:
    """POST ``path`` (a ``json_body`` or raw ``content``), with :func:`bounded_get`'s bounds.

    Only for requests that read (an etcd Range or login, a ClickHouse query sent with
    ``readonly=1``). The same origin rule, byte cap and deadline as :func:`bounded_get`; no
    redirect is followed. Error lines name the path without its query string (for ClickHouse
    that holds settings and a query id, not the resource).
    """
    end = _end_of(timeout)
    url = _on_origin(client, "POST", path)
    request = client.build_request(
        "POST",
        url,
        params=dict(params) if params else None,
        json=json_body,
        content=content,
        headers=headers,
    )
    return await _send_once(client, request, _shown(url), auth, max_bytes, end, timeout)


def _end_of(timeout: float) -> float:
    """The event-loop time at which an exchange allowed ``timeout`` seconds must be over."""
    return asyncio.get_running_loop().time() + max(0.0, timeout)


def _on_origin(client: httpx.AsyncClient, method: str, path: str) -> httpx.URL:
    """``path`` on the client's origin; :class:`HttpProbeError` for a path that would leave it
    (e.g. ``//host/…`` built from a server's answer) or is no URL at all."""
    try:
        url = client.base_url.join(path)
    except httpx.InvalidURL as error:
        raise HttpProbeError(f"{method} {path[:120]}: {error}") from None
    if not _same_origin(client.base_url, url):
        leaves = _origin(client.base_url)
        raise HttpProbeError(f"{method} {path[:120]}: refused, it leaves {leaves}")
    return url


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _same_origin(base: httpx.URL, url: httpx.URL) -> bool:
    return _origin(base) == _origin(url)


async def _send_once(
    client: httpx.AsyncClient,
    request: httpx.Request,
    shown: str,
    auth: httpx.Auth | None,
    max_bytes: int,
    end: float,
    timeout: float,
) -> HttpAnswer:
    """Send ``request`` and read at most ``max_bytes`` of its answer by ``end``; ``shown`` is
    how error lines name it, after the method."""
    what = f"{request.method} {shown}"
    try:
        async with asyncio.timeout_at(end):
            response = await client.send(
                request, stream=True, auth=httpx.USE_CLIENT_DEFAULT if auth is None else auth
            )
    except TimeoutError:
        raise HttpProbeError(f"{what}: no answer within {timeout:.1f}s", timed_out=True) from None
    except httpx.TimeoutException:
        raise HttpProbeError(f"{what}: timed out", timed_out=True) from None
    except httpx.HTTPError as error:
        dropped = isinstance(error, httpx.ReadError) or (
            isinstance(error, httpx.RemoteProtocolError) and "without sending" in str(error)
        )
        raise HttpProbeError(f"{what}: {_describe(error)}", dropped=dropped) from None
    body = bytearray()
    truncated = timed_out = False
    decode = _decoder(response.headers.get("content-encoding", ""))
    try:
        async with asyncio.timeout_at(end):
            async for chunk in response.aiter_raw():
                body += decode(chunk, max_bytes + 1 - len(body))
                if len(body) > max_bytes:
                    truncated = True
                    break
    except TimeoutError:
        truncated = timed_out = True
    except (httpx.HTTPError, zlib.error):
        truncated = True  # the body broke off: keep what came
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(response.aclose(), _CLOSE_TIMEOUT)
    return HttpAnswer(
        status=response.status_code,
        headers=response.headers,
        body=bytes(body[:max_bytes]),
        truncated=truncated,
        timed_out=timed_out,
    )


def _decoder(encoding: str) -> Callable[[bytes, int], bytes]:
    """A chunk decoder that never inflates past the bytes still wanted (gzip bombs stop there).

    We ask for ``identity``; a server that compresses anyway gets gzip/deflate decoded, and any
    other coding is kept as raw bytes (which then fail to parse, as they should).
    """
    coding = encoding.strip().lower()
    if coding not in ("gzip", "x-gzip", "deflate"):
        return lambda chunk, _: chunk
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, auto-detected

    def decode(chunk: bytes, wanted: int) -> bytes:
        return inflater.decompress(chunk, max(1, wanted))

    return decode


def _shown(url: httpx.URL) -> str:
    """The path and query of ``url`` as evidence shows it (never any credentials)."""
    target = url.raw_path.decode("ascii", "replace")
    return target if len(target) <= 120 else target[:117] + "…"


def _describe(error: httpx.HTTPError) -> str:
    return one_line(str(error), 160) or type(error).__name__[:160]


async def get_any_scheme(
    host: str,
    port: int,
    path: str,
    *,
    timeout: float,
    max_bytes: int,
    auth: httpx.Auth | None = None,
) -> tuple[str, HttpAnswer]:
    """GET ``path`` over plain HTTP, then over TLS if the server dropped the plain request.

    Returns the scheme that answered (``"http"`` or ``"https"``) and its answer. Only a server
    that hung up without answering is asked again over TLS: one that stays silent, or answers
    in another protocol (Redis' ``-ERR``), is not, which keeps a TLS handshake off every port
    that is not HTTP. Raises :class:`HttpProbeError` when neither works.
    """
    failure: HttpProbeError | None = None
    for scheme in ("http", "https"):
        async with http_client(host, port, timeout=timeout, scheme=scheme) as client:
            try:
                answer = await bounded_get(
                    client, path, max_bytes=max_bytes, timeout=timeout, auth=auth
                )
            except HttpProbeError as error:
                if error.timed_out or not error.dropped:
                    raise
                if scheme == "http" and not await speaks_tls(host, port, timeout):
                    raise
                failure = failure or error
                continue
            return scheme, answer
    assert failure is not None
    raise failure


async def get_plain_or_tls(
    host: str, port: int, path: str, *, timeout: float, max_bytes: int
) -> tuple[str, HttpAnswer]:
    """GET over plain HTTP; over TLS only when the server (Go's net/http, as etcd and InfluxDB
    are) says the port wants it. Cheaper than trying TLS on every port that is not HTTP."""
    async with http_client(host, port, timeout=timeout) as client:
        answer = await bounded_get(client, path, max_bytes=max_bytes, timeout=timeout)
    if answer.status != 400 or _HTTPS_ONLY not in answer.body:
        return "http", answer
    async with http_client(host, port, timeout=timeout, scheme="https") as client:
        return "https", await bounded_get(client, path, max_bytes=max_bytes, timeout=timeout)


async def speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Whether a TLS handshake completes on ``host:port`` (certificates not checked).

    Asked on a plain socket before any TLS request, so that a service which just hangs up on
    HTTP (Redis does, on a ``Host:`` line) costs one clean failed handshake, not a half-open
    TLS connection inside an HTTP client.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we only ask whether it speaks TLS at all
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, ssl_handshake_timeout=timeout),
            timeout + 0.5,
        )
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), _CLOSE_TIMEOUT)
    return True


_ARRAY_START = re.compile(r"\s*\[")


def json_array_items(body: bytes, key: str | None = None, limit: int = 10_000) -> list[Any]:
    """The complete items of a JSON array in a body that may be cut off mid-way.

    With ``key``, the array is the first ``"key": [`` in the body (e.g. ``"hits"`` in an
    Elasticsearch search answer, ``"rows"`` in CouchDB's ``_all_docs``); without it, the body
    itself must be an array. Items are decoded one by one, so a body truncated at the byte cap
    still yields every item that arrived whole. At most ``limit`` items.
    """
    text = body.decode("utf-8", "replace")
    if key is None:
        start = _ARRAY_START.match(text)
        position = start.end() if start else -1
    else:
        found = re.search(r'"' + re.escape(key) + r'"\s*:\s*\[', text)
        position = found.end() if found else -1
    if position < 0:
        return []
    decoder = json.JSONDecoder()
    items: list[Any] = []
    size = len(text)
    while len(items) < limit:
        while position < size and text[position] in " \t\r\n,":
            position += 1
        if position >= size or text[position] == "]":
            break
        try:
            item, position = decoder.raw_decode(text, position)
        except (ValueError, RecursionError):
            break
        items.append(item)
    return items


def clip_json(value: Any, max_chars: int, _depth: int = 0) -> Any:
    """A copy of a parsed JSON value with every string cut to ``max_chars`` characters and every
    list/object to :data:`MAX_JSON_ITEMS` members, nested at most :data:`MAX_JSON_DEPTH` deep."""
    if isinstance(value, str):
        return value[:max_chars]
    if value is None or isinstance(value, bool | int | float):
        return value
    if _depth >= MAX_JSON_DEPTH:
        return json.dumps(value, default=str)[:max_chars]
    if isinstance(value, list):
        return [clip_json(item, max_chars, _depth + 1) for item in value[:MAX_JSON_ITEMS]]
    if isinstance(value, dict):
        members = list(value.items())[:MAX_JSON_ITEMS]
        return {str(k)[:MAX_KEY_CHARS]: clip_json(v, max_chars, _depth + 1) for k, v in members}
    return str(value)[:max_chars]


def json_strings(value: Any, _depth: int = 0) -> Iterator[str]:
    """Every string value in a parsed JSON document (keys excluded), depth first."""
    if isinstance(value, str):
        yield value
    elif _depth < MAX_JSON_DEPTH and isinstance(value, list):
        for item in value:
            yield from json_strings(item, _depth + 1)
    elif _depth < MAX_JSON_DEPTH and isinstance(value, dict):
        for item in value.values():
            yield from json_strings(item, _depth + 1)


def one_line(text: str, limit: int = 200) -> str:
    """``text`` with its white space folded into single spaces, at most ``limit`` characters."""
    return " ".join(text.split())[:limit]


def error_text(answer: HttpAnswer) -> str:
    """The server's error in one short line: a JSON ``error`` or ``message`` string, else the
    start of the body, else the status."""
    doc = answer.json()
    if isinstance(doc, dict):
        for key in ("error", "message"):
            if isinstance(doc.get(key), str):
                return one_line(doc[key])
    return one_line(answer.text(200)) or f"HTTP {answer.status}"
