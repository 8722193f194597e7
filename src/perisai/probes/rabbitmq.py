"""RabbitMQ: the AMQP 0-9-1 port and the management HTTP API, logins, queue counts, peeks.

Recognised on any port by its answer to a harmless request: the AMQP protocol header
(``AMQP\\x00\\x00\\x09\\x01``) draws the server's ``Connection.Start`` (product and version, no
login needed); the management API answers ``GET /api/overview`` with 401 and a
``RabbitMQ Management`` realm, or with its JSON when it is open.

Logins: the management API without credentials first (an auth-injecting proxy makes it
open), then the short vendor list in ``defaults/rabbitmq.txt``. Over AMQP a login is one
``Connection.Open`` that is closed at once: no channel is opened, nothing is declared.

Reads are management ``GET`` requests only (``/api/overview``, ``/api/queues`` with a column
list and one bounded page), each capped in bytes and seconds. Message bodies are read only with
``deep`` sampling: ``POST /api/queues/{vhost}/{queue}/get`` with ``ackmode=ack_requeue_true``
and a ``truncate`` cap, on classic queues only. That fetch takes up to ``sample`` ready messages
and puts every one of them back in its place, so the queue holds the same messages afterwards,
but it is not invisible: the re-queued messages carry ``redelivered=true`` for the next
consumer, and the queue's ``get``/``redeliver`` counters rise. Quorum queues are never peeked
(a requeue counts against their ``delivery-limit`` and can dead-letter the message), nor are
streams (the endpoint does not read them). Nothing is ever consumed, acknowledged or published.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiormq
import httpx
from aiormq import exceptions as amqp_errors
from pamqp import commands, frame
from pamqp import exceptions as pamqp_errors
from pamqp.header import ProtocolHeader
from yarl import URL

from perisai.compromise import RULE_RANSOM_NOTE, is_note_name
from perisai.findings import Auth, DataProfile, Evidence, Finding, Rule, Severity, Target
from perisai.probes.common import (
    auth_required_finding,
    exposure_finding,
    first_line,
    human_bytes,
)
from perisai.probes.credentials import Credential, default_credentials
from perisai.probes.interface import (
    Access,
    Fingerprint,
    Probe,
    ProbeResult,
    ProbeSkipped,
    ScanConfig,
)
from perisai.probes.sampling import Sampler

__all__ = ["RabbitMQProbe"]

AMQP_DETAIL = "amqp"
MANAGEMENT_DETAIL = "management"
DEFAULT_USER = "guest"  # RabbitMQ's built-in user: whose password a bare line of the defaults is
MAX_FRAME_BYTES = 65536  # a Connection.Start is ~600 bytes; anything bigger is not one
MAX_API_BYTES = 4 * 1024 * 1024  # one management API answer
_QUEUE_COLUMNS = (
    "name,vhost,type,durable,messages,messages_ready,messages_unacknowledged,message_bytes,"
    "consumers"
)
_USER_AGENT = "perisai (read-only scan)"
_READ_ERRORS = (httpx.HTTPError, OSError, TimeoutError, ValueError)

_REMEDIATION = (
    "Delete the `guest` user or give it a long random password (and keep `loopback_users.guest "
    "= true`), create per-application users with least-privilege vhost permissions, bind the "
    "AMQP listener and the management plugin to private interfaces, and block ports 5672 and "
    "15672 from the internet."
)


@dataclass
class _Queue:
    vhost: str
    name: str
    kind: str
    messages: int
    message_bytes: int
    consumers: int
    peeked: int = 0
    skipped: str = ""

    @property
    def label(self) -> str:
        return self.name if self.vhost == "/" else f"{self.vhost}/{self.name}"


@dataclass(frozen=True)
class AmqpFingerprint(Fingerprint):
    """The AMQP port's ``Connection.Start``: who the server says it is, what logins it offers."""

    server: str = ""  # product, version and mechanisms, as evidence shows them
    mechanisms: tuple[str, ...] = ()  # SASL mechanisms offered, e.g. ("PLAIN", "AMQPLAIN")


class RabbitMQProbe(Probe):
    """Finds RabbitMQ brokers that let anyone in, and what their queues hold.

    ``deep`` (default off; ``ScanConfig.deep``, ``perisai scan --deep``) allows peeking
    at message bodies with the management API's re-queueing get; without it the probe reads
    counts and sizes only.
    """

    service = "rabbitmq"
    default_ports = (5672, 15672)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "curl -s -u guest:guest http://{host}:{port}/api/overview",
        "curl -s -u guest:guest http://{host}:{port}/api/queues",
    )
    fix = (  # configuration lines that close it
        "# rabbitmq.conf",
        "loopback_users.guest = true",
        "# and delete the guest user where it is not needed:",
        "rabbitmqctl delete_user guest",
    )
    rules = (
        Rule(
            id="rabbitmq.unauthenticated",
            name="RabbitMQUnauthenticated",
            description="The RabbitMQ management API answers without credentials (typically a "
            "proxy in front of it adds them): anyone who reaches it lists every queue and can "
            "read, purge or publish messages.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/306.html",),
        ),
        Rule(
            id="rabbitmq.default-credentials",
            name="RabbitMQDefaultCredentials",
            description="RabbitMQ accepts a vendor default login such as guest/guest.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/1392.html",
                "https://www.rabbitmq.com/docs/access-control#default-state",
            ),
        ),
        Rule(
            id="rabbitmq.auth-required",
            name="RabbitMQAuthRequired",
            description="RabbitMQ is reachable and refuses the vendor default logins.",
            remediation="Keep passwords long and random; restrict who can reach the ports.",
            default_severity=Severity.INFO,
        ),
        RULE_RANSOM_NOTE,
    )

    def __init__(self, config: ScanConfig, *, deep: bool | None = None) -> None:
        super().__init__(config)
        self.deep = config.deep if deep is None else deep

    # --- fingerprint -----------------------------------------------------------------------

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        timeout = self.config.timeout * 0.9  # two attempts share the scanner's 2 x timeout
        try:
            start, first = await _connection_start(host, port, timeout)
        except (OSError, TimeoutError):
            start, first = None, b""
        if start is not None:
            product = _text(start.server_properties.get("product"), 64)
            if "rabbitmq" not in product.lower():
                return None  # another AMQP 0-9-1 broker: not ours to name
            version = _text(start.server_properties.get("version"), 32)
            server = f"{product} {version} ({start.mechanisms})"
            return AmqpFingerprint(
                self.service,
                f"{AMQP_DETAIL}: {server}",
                version=version,
                interface=AMQP_DETAIL,
                identity=_identity(start.server_properties),
                server=server,
                mechanisms=tuple(str(start.mechanisms).split()),
            )
        if first and not first.startswith(b"HTTP/"):
            return None  # it said something, and neither AMQP nor HTTP
        return await self._management_fingerprint(host, port, timeout)

    async def _management_fingerprint(
        self, host: str, port: int, timeout: float
    ) -> Fingerprint | None:
        try:
            async with self._http(host, port, timeout) as client:
                status, headers, body = await asyncio.wait_for(
                    _get(client, "/api/overview", None, 64 * 1024), timeout
                )
        except (httpx.HTTPError, OSError, TimeoutError, ValueError):
            return None
        if status == 401 and "rabbitmq" in headers.get("www-authenticate", "").lower():
            return Fingerprint(
                self.service,
                f"{MANAGEMENT_DETAIL}: auth required",
                Access.AUTH_REQUIRED,
                interface=MANAGEMENT_DETAIL,
            )
        if status == 200 and isinstance(body, dict) and "rabbitmq_version" in body:
            version = _text(body.get("rabbitmq_version"), 32)
            detail = f"{MANAGEMENT_DETAIL}: open, RabbitMQ {version}"
            return Fingerprint(
                self.service,
                detail,
                Access.OPEN,
                version,
                interface=MANAGEMENT_DETAIL,
                identity=_identity(body),
            )
        return None

    # --- probe -----------------------------------------------------------------------------

    async def probe(
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        target = Target(host, port, self.service)
        if not isinstance(fingerprint, AmqpFingerprint):
            return await self._probe_management(host, port, target)
        return await self._probe_amqp(host, port, target, fingerprint)

    def _defaults(self) -> tuple[Credential, ...]:
        if not self.config.try_default_credentials:
            return ()
        return default_credentials(self.service)

    async def _probe_amqp(
        self, host: str, port: int, target: Target, fingerprint: AmqpFingerprint
    ) -> ProbeResult:
        server = fingerprint.server
        credentials = self._defaults()
        refusal = ""
        for credential in credentials:
            accepted, refusal = await self._amqp_login(host, port, credential)
            if accepted:
                evidence = [
                    Evidence(
                        f"AMQP login {credential.describe(DEFAULT_USER)} "
                        "accepted on vhost '/' (Connection.Open, then closed: no channel opened)"
                    ),
                    Evidence(f"server: {server}"),
                    Evidence(
                        "AMQP cannot list queues: scan the management port (15672) for counts"
                    ),
                ]
                return ProbeResult(
                    (
                        exposure_finding(
                            rule_id="rabbitmq.default-credentials",
                            title="RabbitMQ AMQP accepts a vendor default login",
                            target=target,
                            auth=Auth.DEFAULT_CREDENTIALS,
                            profile=DataProfile(),
                            notes=[],
                            evidence=evidence,
                            remediation=self.rule("rabbitmq.default-credentials").remediation,
                        ),
                    )
                )
        detail = f"AMQP server {server}; {len(credentials)} vendor default logins refused"
        if refusal:
            detail += f" (last answer: {refusal})"
        if "ANONYMOUS" in fingerprint.mechanisms:
            detail += "; it offers SASL ANONYMOUS, which this probe does not try"
        return ProbeResult((self._auth_required(target, detail),))

    async def _amqp_login(self, host: str, port: int, credential: Credential) -> tuple[bool, str]:
        """Whether ``credential`` opens a connection on vhost ``/``; the refusal otherwise."""
        # aiormq, not aio_pika: a refused aio_pika connection schedules its close from __del__,
        # which warns "coroutine never awaited" on the user's terminal.
        url = URL.build(
            scheme="amqp",
            host=host,
            port=port,
            user=credential.user_or(DEFAULT_USER),
            password=credential.password,
            path="/",
        )
        try:
            connection = await asyncio.wait_for(
                aiormq.connect(url, client_properties={"connection_name": _USER_AGENT}),
                self.config.timeout * 2,
            )
        except (amqp_errors.AMQPError, OSError, TimeoutError, ConnectionError) as error:
            return False, first_line(error)
        with contextlib.suppress(amqp_errors.AMQPError, OSError, TimeoutError):
            await asyncio.wait_for(connection.close(), self.config.timeout)
        return True, ""

    async def _probe_management(
        self, host: str, port: int, target: Target
    ) -> ProbeResult | ProbeSkipped:
        async with self._http(host, port, self.config.timeout) as client:
            auth, credential, tried = await self._management_login(client)
            if auth is Auth.REQUIRED:
                detail = (
                    f"management API answered 401 to GET /api/overview; {tried} vendor default "
                    "logins refused"
                )
                return ProbeResult((self._auth_required(target, detail),))
            basic = _basic(credential) if credential else None
            return await self._inspect(client, basic, target, auth, credential)

    async def _management_login(
        self, client: httpx.AsyncClient
    ) -> tuple[Auth, Credential | None, int]:
        status, _, _ = await self._api(client, "/api/overview", None)
        if status == 200:
            return Auth.NONE, None, 0
        defaults = self._defaults()
        for tried, credential in enumerate(defaults, start=1):
            status, _, _ = await self._api(client, "/api/overview", _basic(credential))
            if status == 200:
                return Auth.DEFAULT_CREDENTIALS, credential, tried
        return Auth.REQUIRED, None, len(defaults)

    async def _inspect(
        self,
        client: httpx.AsyncClient,
        basic: httpx.BasicAuth | None,
        target: Target,
        auth: Auth,
        credential: Credential | None,
    ) -> ProbeResult | ProbeSkipped:
        stopped = ""
        overview: Any = None
        queues: list[_Queue] = []
        queue_count = 0
        try:
            _, _, overview = await self._api(client, "/api/overview", basic)
            queues, queue_count = await self._queues(client, basic)
        except _READ_ERRORS as error:  # logged in: a failing read ends the listing, not the finding
            stopped = f"listing stopped: {type(error).__name__}: {first_line(error)}"
        overview = overview if isinstance(overview, dict) else {}
        queue_totals = overview.get("queue_totals") or {}
        object_totals = overview.get("object_totals") or {}
        # a figure the overview did not give (a failed read, an older broker) is unknown, not 0
        total_messages = _known(queue_totals, "messages")
        how = (
            "GET /api/overview answered 200 without credentials"
            if credential is None
            else f"management API accepted {credential.describe(DEFAULT_USER)}"
        )
        evidence = [
            Evidence(how),
            Evidence(
                f"RabbitMQ {_text(overview.get('rabbitmq_version'), 32) or '?'}, cluster "
                f"{_text(overview.get('cluster_name'), 64)!r}: "
                f"{_shown(_known(object_totals, 'queues'))} queues, "
                f"{_shown(_known(object_totals, 'connections'))} connections, "
                f"{_shown(total_messages)} messages queued"
            ),
        ]
        sampler = Sampler(self, target, auth)
        if self.deep and not stopped:
            try:
                await self._peek_all(client, basic, queues, sampler)
            except _READ_ERRORS as error:
                stopped = f"peeking stopped: {type(error).__name__}: {first_line(error)}"
        peeked = {container.label for container in sampler.containers}
        for queue in queues:
            if _container(queue) not in peeked:
                unread = f"not peeked ({queue.skipped})" if queue.skipped else "not peeked"
                sampler.listed(
                    _container(queue), estimated=queue.messages, head=_head(queue), unread=unread
                )
        evidence.append(
            Evidence(
                f"GET /api/queues (columns, one page of {self.config.max_tables}, largest first): "
                f"{'?' if stopped and not queues else queue_count} queues"
            )
        )
        if self.deep:
            evidence.append(
                Evidence(
                    f"peeked {sum(q.peeked for q in queues)} messages with POST "
                    f"/api/queues/<vhost>/<queue>/get ackmode=ack_requeue_true, truncate="
                    f"{self.config.max_value_bytes}: every message re-queued in place (now "
                    "flagged redelivered)"
                )
            )
        else:
            evidence.append(
                Evidence("message bodies not read (deep sampling off): counts and sizes only")
            )
            suspicious = [q.label for q in queues if is_note_name(q.name)]
            if suspicious:
                evidence.append(
                    Evidence(f"queues named like an extortion note: {', '.join(suspicious[:4])}")
                )
        if stopped:  # what the broker holds was not read to the end
            evidence.append(Evidence(stopped))
            sampler.stop(stopped)
        profile = sampler.total()
        if total_messages is not None:
            profile.counted(total_messages)  # the broker's own count, every queue
        return sampler.result(
            evidence,
            (
                "RabbitMQ management API open without credentials",
                "RabbitMQ management API accepts a vendor default login",
            ),
            profile,
            identity=_identity(overview),
        )

    async def _queues(
        self, client: httpx.AsyncClient, basic: httpx.BasicAuth | None
    ) -> tuple[list[_Queue], int]:
        """One page of queues, largest backlog first, and how many queues there are."""
        params = {
            "page": "1",
            "page_size": str(max(1, min(self.config.max_tables, 500))),
            "sort": "messages",
            "sort_reverse": "true",
            "columns": _QUEUE_COLUMNS,
        }
        status, _, body = await self._api(client, "/api/queues", basic, params)
        if status != 200:
            return [], 0
        items: list[Any]
        total: int
        if isinstance(body, dict):  # the paginated shape
            items = body.get("items") or []
            total = _int(body.get("total_count"), len(items))
        elif isinstance(body, list):
            items, total = body, len(body)
        else:
            return [], 0
        queues = [
            _Queue(
                vhost=_text(item.get("vhost"), 256),
                name=_text(item.get("name"), 256),
                kind=_text(item.get("type") or "classic", 16),
                messages=_int(item.get("messages")),
                message_bytes=_int(item.get("message_bytes")),
                consumers=_int(item.get("consumers")),
            )
            for item in items[: self.config.max_tables]
            if isinstance(item, dict)
        ]
        return queues, total

    async def _peek_all(
        self,
        client: httpx.AsyncClient,
        basic: httpx.BasicAuth | None,
        queues: list[_Queue],
        sampler: Sampler,
    ) -> None:
        """Peek every classic queue with messages into ``sampler``."""
        # Queues named like an extortion note first: the one place a note is worth reading.
        for queue in sorted(queues, key=lambda q: not is_note_name(q.name)):
            if queue.messages <= 0:
                continue
            if queue.kind != "classic":
                queue.skipped = f"{queue.kind} queue: a requeue would count as a delivery"
                continue
            records = await self._peek(client, basic, queue)
            if queue.skipped:
                continue
            queue.peeked = len(records)
            label = _container(queue)
            sampler.sample(label, records, estimated=queue.messages, head=_head(queue))
            for record in records:
                payload = record.get("payload")
                text = payload if isinstance(payload, str) else json.dumps(payload)
                if sampler.spot_note(f"queue {queue.label}", text):
                    break

    async def _peek(
        self, client: httpx.AsyncClient, basic: httpx.BasicAuth | None, queue: _Queue
    ) -> list[dict[str, Any]]:
        """Up to ``sample`` ready messages of one classic queue, each re-queued by the broker."""
        path = f"/api/queues/{quote(queue.vhost, safe='')}/{quote(queue.name, safe='')}/get"
        request = {
            "count": self.config.sample,
            "ackmode": "ack_requeue_true",  # the broker puts every fetched message back
            "encoding": "auto",
            "truncate": self.config.max_value_bytes,
        }
        cap = self.config.sample * (self.config.max_value_bytes * 2 + 4096) + 65536
        status, _, body = await self._api(client, path, basic, None, request, cap)
        if status != 200 or not isinstance(body, list):
            queue.skipped = f"get answered {status}"
            return []
        records: list[dict[str, Any]] = []
        for message in body[: self.config.sample]:
            if not isinstance(message, dict):
                continue
            payload = _payload(message, self.config.max_value_bytes)
            records.append(
                {"routing_key": _text(message.get("routing_key"), 256), "payload": payload}
            )
        return records

    # --- plumbing --------------------------------------------------------------------------

    def _http(self, host: str, port: int, timeout: float) -> httpx.AsyncClient:
        netloc = f"[{host}]" if ":" in host else host
        return httpx.AsyncClient(
            base_url=f"http://{netloc}:{port}",
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,  # never route a scan through the user's proxy settings
            headers={"user-agent": _USER_AGENT},
        )

    async def _api(
        self,
        client: httpx.AsyncClient,
        path: str,
        basic: httpx.BasicAuth | None,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        cap: int = MAX_API_BYTES,
    ) -> tuple[int, dict[str, str], Any]:
        """One management API call (GET, or the re-queueing POST …/get), bounded."""
        if body is None:
            call = _get(client, path, basic, cap, params)
        else:
            call = _post(client, path, basic, cap, body)
        return await asyncio.wait_for(call, self.config.timeout * 2)

    def _auth_required(self, target: Target, detail: str) -> Finding:
        return auth_required_finding(
            self, target, "RabbitMQ requires authentication", Evidence(detail)
        )


async def _connection_start(
    host: str, port: int, timeout: float
) -> tuple[commands.Connection.Start | None, bytes]:
    """The server's ``Connection.Start`` for our protocol header, or None and what it said."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(ProtocolHeader().marshal())
        await asyncio.wait_for(writer.drain(), timeout)
        try:
            head = await asyncio.wait_for(reader.readexactly(7), timeout)
        except asyncio.IncompleteReadError as partial:
            return None, partial.partial
        if head[0] != 1 or head[1:3] != b"\x00\x00":
            return None, head  # not a method frame on channel 0 (maybe "AMQP" + other version)
        size = int.from_bytes(head[3:7], "big")
        if not 0 < size <= MAX_FRAME_BYTES:
            return None, head
        try:
            rest = await asyncio.wait_for(reader.readexactly(size + 1), timeout)
        except asyncio.IncompleteReadError:
            return None, head
        try:
            _, _, decoded = frame.unmarshal(head + rest)
        except (pamqp_errors.UnmarshalingException, ValueError, KeyError, IndexError):
            return None, head
        if isinstance(decoded, commands.Connection.Start):
            return decoded, head
        return None, head
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _get(
    client: httpx.AsyncClient,
    path: str,
    basic: httpx.BasicAuth | None,
    cap: int,
    params: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    request = client.build_request("GET", path, params=params)
    return await _send(client, request, basic, cap)


async def _post(
    client: httpx.AsyncClient,
    path: str,
    basic: httpx.BasicAuth | None,
    cap: int,
    body: dict[str, Any],
) -> tuple[int, dict[str, str], Any]:
    request = client.build_request("POST", path, json=body)
    return await _send(client, request, basic, cap)


async def _send(
    client: httpx.AsyncClient, request: httpx.Request, basic: httpx.BasicAuth | None, cap: int
) -> tuple[int, dict[str, str], Any]:
    """Status, headers and parsed JSON (None if not JSON); ValueError past ``cap`` bytes."""
    response = await client.send(request, auth=basic, stream=True)
    try:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise ValueError(f"answer larger than {cap} bytes")
            chunks.append(chunk)
    finally:
        await response.aclose()
    headers = {key.lower(): value for key, value in response.headers.items()}
    try:
        parsed: Any = json.loads(b"".join(chunks)) if chunks else None
    except ValueError:
        parsed = None
    return response.status_code, headers, parsed


def _payload(message: dict[str, Any], cap: int) -> object:
    """A fetched message's body as text (JSON decoded when it is JSON), at most ``cap`` bytes."""
    raw = message.get("payload")
    if not isinstance(raw, str):
        return ""
    if message.get("payload_encoding") == "base64":
        try:
            data = base64.b64decode(raw, validate=False)[:cap]
        except (binascii.Error, ValueError):
            return ""
        text = data.decode("utf-8", "replace")
    else:
        text = raw[:cap]
    with contextlib.suppress(ValueError):
        decoded: object = json.loads(text)
        if isinstance(decoded, dict | list):
            return decoded
    return text


def _identity(properties: Any) -> str:
    """The broker's cluster name, which its AMQP ``Connection.Start`` and its management
    ``/api/overview`` both state: how a scan knows the two ports are one server."""
    name = properties.get("cluster_name") if isinstance(properties, dict) else None
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return f"cluster {name}" if isinstance(name, str) and name else ""


def _known(totals: Any, name: str) -> int | None:
    """A count the broker stated (None when it did not state it)."""
    value = totals.get(name) if isinstance(totals, dict) else None
    return _int(value) if value is not None else None


def _shown(count: int | None) -> str:
    return "?" if count is None else str(count)


def _basic(credential: Credential) -> httpx.BasicAuth:
    return httpx.BasicAuth(credential.user_or(DEFAULT_USER), credential.password)


def _int(value: object, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float):
        return int(value)
    return default


def _text(value: object, cap: int) -> str:
    if isinstance(value, bytes):
        return value[:cap].decode("utf-8", "replace")
    if value is None:
        return "?"
    return str(value)[:cap]


def _container(queue: _Queue) -> str:
    """How evidence names a queue: ``queue <vhost>/<name> (classic)``."""
    return f"queue {queue.label} ({queue.kind})"


def _head(queue: _Queue) -> str:
    """What the listing said of a queue: backlog, its size, who consumes it."""
    return (
        f"{queue.messages} messages, {human_bytes(queue.message_bytes)}, "
        f"{queue.consumers} consumers"
    )
