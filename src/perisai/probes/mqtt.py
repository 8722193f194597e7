"""MQTT: an anonymous CONNECT, then a bounded listen on ``#`` and ``$SYS/#``.

Recognised on any port by a valid CONNACK to a clean-session MQTT 3.1.1 CONNECT. The probe
then connects with aiomqtt (MQTT 5, clean start, no session kept, a Maximum Packet Size so an
honest broker sends nothing huge; MQTT 3.1.1 when the broker refuses version 5), anonymously
first, then with the short vendor list in ``defaults/mqtt.txt``.

Reading is one SUBSCRIBE to ``#`` (every topic) and ``$SYS/#`` (the broker's own statistics)
at QoS 0: the broker replays its retained messages, then forwards live ones, for at most
``ScanConfig.timeout`` seconds and at most ``sample x max_tables`` messages, payloads cut to
``max_value_bytes``. A subscription stores nothing (no session outlives the connection) and
QoS 0 needs no acknowledgement; the probe never publishes and sets no will message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from perisai.compromise import RULE_RANSOM_NOTE, RansomNote, detect_ransom_note, is_note_name
from perisai.findings import Auth, Evidence, Finding, Rule, Severity, Target
from perisai.probes.common import (
    auth_required_finding,
    exchange,
    first_line,
    human_bytes,
)
from perisai.probes.credentials import Credential, default_credentials
from perisai.probes.interface import Access, Fingerprint, Probe, ProbeResult, ProbeSkipped
from perisai.probes.sampling import Sampler

__all__ = ["MQTTProbe"]

MAX_PACKET_BYTES = 256 * 1024  # MQTT 5 Maximum Packet Size we announce: bigger ones never come
MAX_SYS_TOPICS = 400
MAX_TOPIC_CHARS = 512
# CONNACK return codes (3.1.1) and reason codes (5) that mean "who are you?"
_AUTH_CODES = frozenset({4, 5, 0x86, 0x87, 0x8C})
_VERSION_CODES = frozenset({1, 0x84})  # unacceptable protocol version
_LOGGER = logging.getLogger("perisai.probes.mqtt")

_REMEDIATION = (
    "Set `allow_anonymous false` (Mosquitto; the equivalent elsewhere), give every client its "
    "own user with a long random password or a client certificate, restrict topics with ACLs, "
    "listen on TLS (8883) only, and block port 1883 from the internet."
)


@dataclass
class _TopicGroup:
    """Messages under one first topic level (``chat/#``), the unit samples are counted in."""

    root: str
    messages: int = 0
    retained: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Capture:
    """What one bounded listen saw."""

    granted: list[str] = field(default_factory=list)
    groups: dict[str, _TopicGroup] = field(default_factory=dict)
    system: dict[str, str] = field(default_factory=dict)
    topics: set[str] = field(default_factory=set)
    messages: int = 0
    retained: int = 0
    bytes: int = 0
    notes: list[RansomNote] = field(default_factory=list)
    stopped: str = ""
    capped: str = ""  # the listen hit its message or byte cap: more was there to hear
    listened: float = 0.0  # seconds


class _Refused(Exception):
    """The broker answered CONNACK with a non-zero code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"CONNACK {code}")
        self.code = code


class MQTTProbe(Probe):
    """Finds MQTT brokers anyone can subscribe to, and what flows through their topics."""

    service = "mqtt"
    default_ports = (1883,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "mosquitto_sub -h {host} -p {port} -t '#' -v -C 10 -W 5",
    )
    fix = (  # configuration lines that close it
        "# mosquitto.conf",
        "allow_anonymous false",
        "password_file /etc/mosquitto/passwd",
        "listener 1883 127.0.0.1",
    )
    rules = (
        Rule(
            id="mqtt.unauthenticated",
            name="MQTTAnonymousAccess",
            description="The MQTT broker accepts clients without credentials: anyone who "
            "reaches the port can subscribe to every topic (and publish to them).",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/306.html",),
        ),
        Rule(
            id="mqtt.default-credentials",
            name="MQTTDefaultCredentials",
            description="The MQTT broker accepts a login shipped with popular brokers/images.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/1392.html",),
        ),
        Rule(
            id="mqtt.auth-required",
            name="MQTTAuthRequired",
            description="The MQTT broker is reachable and refuses anonymous and default logins.",
            remediation="Keep passwords long and random, prefer TLS client certificates, and "
            "restrict who can reach the port.",
            default_severity=Severity.INFO,
        ),
        RULE_RANSOM_NOTE,
    )

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        client_id = f"perisai-{secrets.token_hex(4)}"
        # CONNECT alone: a DISCONNECT sent behind it would be unread when a broker closes on a
        # refusal, and the kernel's reset would then discard the CONNACK before we read it.
        try:
            answer = await exchange(host, port, _connect_packet(client_id), self.config.timeout, 16)
        except (OSError, TimeoutError, EOFError):
            return None  # silent (e.g. waiting for a line end), closed or reset: not a broker
        if len(answer) < 4 or answer[0] != 0x20 or answer[1] != 0x02:
            return None
        session_present, code = answer[2], answer[3]
        if session_present > 1 or code > 5 or (code and session_present):
            return None
        if code == 0:
            return Fingerprint(self.service, "anonymous CONNECT accepted", Access.OPEN)
        if code in _AUTH_CODES:
            return Fingerprint(
                self.service, f"auth required (CONNACK {code})", Access.AUTH_REQUIRED
            )
        return Fingerprint(self.service, f"CONNECT refused (CONNACK {code})", Access.REFUSED)

    async def probe(
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        target = Target(host, port, self.service)
        attempts: list[Credential | None] = [None]
        if self.config.try_default_credentials:
            # user:password lines only: MQTT sends no password without a user name.
            attempts.extend(c for c in default_credentials(self.service) if c.user is not None)
        refusals: list[int] = []
        for credential in attempts:
            try:
                capture, version = await self._session(host, port, credential)
            except _Refused as refused:
                if refused.code not in _AUTH_CODES:
                    return ProbeResult(
                        (self._auth_required(target, f"CONNECT refused: {refused}"),)
                    )
                refusals.append(refused.code)
                continue
            auth = Auth.NONE if credential is None else Auth.DEFAULT_CREDENTIALS
            return self._report(target, auth, credential, capture, version)
        detail = (
            f"anonymous CONNECT refused (CONNACK {refusals[0] if refusals else '?'}); "
            f"{len(attempts) - 1} vendor default logins refused"
        )
        return ProbeResult((self._auth_required(target, detail),))

    async def _session(
        self, host: str, port: int, credential: Credential | None
    ) -> tuple[_Capture, str]:
        """Log in (MQTT 5, else 3.1.1), listen, disconnect; ``_Refused`` on a negative CONNACK."""
        try:
            return await self._listen(host, port, credential, aiomqtt.ProtocolVersion.V5), "5"
        except _Refused as refused:
            if refused.code not in _VERSION_CODES:
                raise
        return await self._listen(host, port, credential, aiomqtt.ProtocolVersion.V311), "3.1.1"

    async def _listen(
        self,
        host: str,
        port: int,
        credential: Credential | None,
        version: aiomqtt.ProtocolVersion,
    ) -> _Capture:
        budget = max(1, self.config.sample * self.config.max_tables)
        v5 = version is aiomqtt.ProtocolVersion.V5
        properties: Properties | None = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.MaximumPacketSize = MAX_PACKET_BYTES
            properties.SessionExpiryInterval = 0  # the broker forgets us on disconnect
        client = aiomqtt.Client(
            host,
            port,
            username=None if credential is None else credential.user,
            password=None if credential is None else credential.password,
            identifier=f"perisai-{secrets.token_hex(6)}",
            protocol=version,
            clean_session=None if v5 else True,
            timeout=self.config.timeout,
            keepalive=max(10, int(self.config.timeout * 4)),
            max_queued_incoming_messages=budget + MAX_SYS_TOPICS,
            properties=properties,
            logger=_LOGGER,
        )
        capture = _Capture()
        try:
            await asyncio.wait_for(client.__aenter__(), self.config.timeout * 2)
        except aiomqtt.MqttCodeError as error:
            raise _Refused(_code(error.rc)) from None
        # Logged in: from here on a failure ends the listen, not the finding.
        try:
            filters = ["#", "$SYS/#"]
            topics: Any = (
                [(topic, SubscribeOptions(qos=0)) for topic in filters]
                if v5
                else [(topic, 0) for topic in filters]
            )
            granted = await asyncio.wait_for(client.subscribe(topics), self.config.timeout * 2)
            capture.granted = [
                f"{topic} {'granted' if _code(code) < 0x80 else 'refused'}"
                for topic, code in zip(filters, granted, strict=False)
            ]
            await self._collect(client, capture, budget)
        except (aiomqtt.MqttError, OSError, TimeoutError) as error:
            capture.stopped = f"listening stopped: {type(error).__name__}: {first_line(error)}"
        finally:
            with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
                await asyncio.wait_for(client.__aexit__(None, None, None), self.config.timeout)
        return capture

    async def _collect(self, client: aiomqtt.Client, capture: _Capture, budget: int) -> None:
        """Retained messages, then live ones, until time, count or bytes run out; a cap that
        ends the listen is recorded, so no count reads as the broker's whole content."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + self.config.timeout
        byte_budget = budget * self.config.max_value_bytes
        messages = client.messages.__aiter__()
        try:
            await self._drain(capture, messages, budget, byte_budget, deadline)
        finally:
            capture.listened = loop.time() - began
        if capture.messages >= budget or capture.bytes >= byte_budget:
            cap = f"{budget} messages" if capture.messages >= budget else human_bytes(byte_budget)
            capture.capped = (
                f"listening stopped at its cap of {cap} after {capture.listened:.1f}s: "
                "the broker had more to say"
            )

    async def _drain(
        self,
        capture: _Capture,
        messages: Any,
        budget: int,
        byte_budget: int,
        deadline: float,
    ) -> None:
        """Take messages until the deadline, the count or the byte budget runs out."""
        loop = asyncio.get_running_loop()
        while capture.messages < budget and capture.bytes < byte_budget:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                message = await asyncio.wait_for(messages.__anext__(), remaining)
            except TimeoutError:
                break
            except aiomqtt.MqttError as error:
                capture.stopped = f"broker closed the subscription: {error}"
                break
            self._take(capture, message)

    def _take(self, capture: _Capture, message: aiomqtt.Message) -> None:
        topic = message.topic.value[:MAX_TOPIC_CHARS]
        cap = self.config.max_value_bytes
        text = _payload_text(message.payload, cap)
        if topic.startswith("$SYS/"):
            if len(capture.system) < MAX_SYS_TOPICS:
                capture.system[topic] = text[:200]
            return
        capture.messages += 1
        capture.bytes += min(len(text.encode("utf-8", "replace")), cap)
        capture.retained += bool(message.retain)
        capture.topics.add(topic)
        root = topic.split("/", 1)[0] or "/"
        group = capture.groups.get(root)
        if group is None:
            if len(capture.groups) >= self.config.max_tables:
                return  # counted, not sampled: enough topic trees for one broker
            group = capture.groups[root] = _TopicGroup(root)
        group.messages += 1
        group.retained += bool(message.retain)
        if len(group.records) < self.config.sample:
            group.records.append({"topic": topic, "payload": _decoded(text)})
        if is_note_name(topic) or len(text) >= 80:
            note = detect_ransom_note(f"topic {topic}", text)
            if note and all(n.location != note.location for n in capture.notes):
                capture.notes.append(note)

    def _report(
        self,
        target: Target,
        auth: Auth,
        credential: Credential | None,
        capture: _Capture,
        version: str,
    ) -> ProbeResult | ProbeSkipped:
        sampler = Sampler(self, target, auth)
        sampler.notes.extend(capture.notes)
        floor = "at least " if capture.capped else ""
        for group in capture.groups.values():
            head = f"{floor}{group.messages} messages heard ({group.retained} retained)"
            sampler.sample(f"{group.root}/#", group.records, estimated=group.messages, head=head)
        profile = sampler.total()
        system = capture.system
        # $SYS is refreshed every sys_interval (10 s in Mosquitto): it may lag what we saw.
        stored = _int(system.get("$SYS/broker/retained messages/count")) or 0
        profile.counted(max(stored, capture.messages), at_least=not stored or bool(capture.capped))
        how = (
            f"MQTT {version} CONNECT without username accepted (CONNACK 0)"
            if credential is None
            else f"MQTT {version} CONNECT as {credential.describe()} accepted"
        )
        evidence = [Evidence(how)]
        if system:
            evidence.append(
                Evidence(
                    f"{system.get('$SYS/broker/version', 'broker version not published')}; "
                    f"retained messages: {system.get('$SYS/broker/retained messages/count', '?')}"
                    f", clients connected: {system.get('$SYS/broker/clients/connected', '?')}"
                    f", subscriptions: {system.get('$SYS/broker/subscriptions/count', '?')}"
                )
            )
        evidence.append(
            Evidence(
                f"SUBSCRIBE QoS 0 ({', '.join(capture.granted)}); listened "
                f"{capture.listened:.1f}s: {floor}{capture.messages} messages "
                f"({capture.retained} retained, {capture.messages - capture.retained} live) on "
                f"{floor}{len(capture.topics)} topics; nothing published"
            )
        )
        if capture.stopped:
            evidence.append(Evidence(capture.stopped))
        if capture.capped:
            sampler.stop(capture.capped)
        return sampler.result(
            evidence,
            (
                "MQTT broker readable without credentials",
                "MQTT broker accepts a vendor default login",
            ),
            profile,
        )

    def _auth_required(self, target: Target, detail: str) -> Finding:
        return auth_required_finding(
            self, target, "MQTT broker requires authentication", Evidence(detail)
        )


def _connect_packet(client_id: str) -> bytes:
    """A minimal MQTT 3.1.1 CONNECT: clean session, no credentials, no will, keepalive 10 s."""
    ident = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"
    payload = len(ident).to_bytes(2, "big") + ident
    remaining = len(variable) + len(payload)  # < 128: one length byte
    return bytes((0x10, remaining)) + variable + payload


def _code(rc: object) -> int:
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else 0x80


def _payload_text(payload: object, cap: int) -> str:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload[:cap]).decode("utf-8", "replace")
    if payload is None:
        return ""
    return str(payload)[:cap]


def _decoded(text: str) -> object:
    """JSON payloads as structures (so field names help the classifier), others as text."""
    if text[:1] in ("{", "["):
        with contextlib.suppress(ValueError):
            decoded: object = json.loads(text)
            return decoded
    return text


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None
