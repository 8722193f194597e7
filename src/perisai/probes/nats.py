"""NATS: the INFO banner, a login, JetStream streams read by sequence, a bounded core listen.

Recognised on any port by the ``INFO {json}`` line a NATS server sends first (a JSON object with
``server_id``); no request is needed. Logins: none at all first, then the short list in
``defaults/nats.txt`` (``user:password`` lines, bare lines are tokens).

Reads, all with nats-py and each bounded by ``ScanConfig.timeout``:

- ``$JS.API.INFO`` and one page of ``$JS.API.STREAM.LIST``: streams with their message and byte
  counts (key-value buckets are streams named ``KV_<bucket>``).
- Up to ``sample`` messages per stream with ``$JS.API.STREAM.MSG.GET`` (``seq`` +
  ``next_by_subj``). This leaves the stream exactly as it was: it is a read of the stream's
  store answered by the stream itself, not a delivery. No consumer is created (the consumer count
  and every existing consumer's delivered/ack-floor/pending state stay as they were), nothing is
  acknowledged, so even work-queue and interest-retention streams, which drop a message only
  when a consumer acks it, keep every message; and nothing is published into the stream, so its
  messages, bytes, first and last sequence do not move. The one trace it leaves is the server's
  JetStream API audit advisory (``$JS.EVENT.ADVISORY.API``) that every API call emits.
- A core subscription to ``>`` for ``ScanConfig.timeout`` seconds, at most ``sample x
  max_tables`` messages: core NATS keeps nothing, so listening changes nothing.

Payloads are cut to ``max_value_bytes`` once received; the server bounds each message by its
``max_payload`` (1 MiB by default). The probe never publishes except JetStream API requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import nats
from nats.aio.client import Client as NATSClient
from nats.errors import Error as NATSError
from nats.js import JetStreamManager
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError

from perisai.compromise import RULE_RANSOM_NOTE, is_note_name
from perisai.findings import Auth, Evidence, Finding, Rule, Severity, Target
from perisai.probes.common import (
    first_line,
    human_bytes,
)
from perisai.probes.credentials import Credential, default_credentials
from perisai.probes.interface import Access, Fingerprint, Probe, ProbeResult, ProbeSkipped
from perisai.probes.sampling import Sampler

__all__ = ["NATSProbe"]

MAX_INFO_BYTES = 65536
MAX_SUBJECT_CHARS = 512
CORE_GROUP = "core subjects (>)"

_REMEDIATION = (
    "Require authentication for every client (`authorization` users with long random passwords, "
    "nkeys or JWT accounts; no `no_auth_user`), restrict subjects with permissions, enable TLS, "
    "and block port 4222 from the internet."
)


@dataclass
class _Group:
    """One stream (or the core listen): counts, the sampled records and their profile."""

    name: str
    subjects: str
    messages: int
    size: int
    consumers: int
    records: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""  # why its messages were not read
    floor: bool = False  # ``messages`` is a floor: the read stopped at a cap


class NATSProbe(Probe):
    """Finds NATS servers anyone can join, and what their streams and subjects carry."""

    service = "nats"
    default_ports = (4222,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "nats --server nats://{host}:{port} server info",
    )
    fix = (  # configuration lines that close it
        "# nats-server.conf",
        'authorization { token: "<a long random secret>" }',
        "listen: 127.0.0.1:4222",
    )
    rules = (
        Rule(
            id="nats.unauthenticated",
            name="NATSUnauthenticated",
            description="The NATS server accepts clients without credentials: anyone who "
            "reaches the port can read every subject and JetStream stream (and publish).",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/306.html",),
        ),
        Rule(
            id="nats.default-credentials",
            name="NATSDefaultCredentials",
            description="The NATS server accepts a login or token copied from NATS's official "
            "examples.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/1392.html",),
        ),
        Rule(
            id="nats.auth-required",
            name="NATSAuthRequired",
            description="The NATS server is reachable and requires credentials.",
            remediation="Keep credentials long and random (or use nkeys/JWT); restrict who can "
            "reach the port.",
            default_severity=Severity.INFO,
        ),
        RULE_RANSOM_NOTE,
    )

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        try:
            info = await _read_info(host, port, self.config.timeout)
        except (OSError, TimeoutError, EOFError):
            return None  # a NATS server speaks first: silence or a reset is someone else
        if info is None:
            return None
        version = _text(info.get("version"), 32)
        parts = [f"NATS {version}"]
        access = Access.AUTH_REQUIRED if info.get("auth_required") else Access.UNKNOWN
        if access is Access.AUTH_REQUIRED:
            parts.append("auth required")
        if info.get("jetstream"):
            parts.append("JetStream")
        return Fingerprint(self.service, ", ".join(parts), access, version)

    async def probe(
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        target = Target(host, port, self.service)
        client, credential, tried, refusal = await self._login(host, port)
        if client is None:
            rule = self.rule("nats.auth-required")
            detail = f"{fingerprint.detail}; CONNECT without credentials refused"
            if tried:
                detail += f", {tried} default logins refused"
            if refusal:
                detail += f" ({refusal})"
            return ProbeResult(
                (
                    Finding(
                        rule=rule.id,
                        severity=rule.default_severity,
                        title="NATS requires authentication",
                        target=target,
                        auth=Auth.REQUIRED,
                        evidence=(Evidence(detail),),
                        remediation=rule.remediation,
                    ),
                )
            )
        try:
            return await self._inspect(client, target, fingerprint, credential)
        finally:
            with contextlib.suppress(NATSError, OSError, TimeoutError):
                await asyncio.wait_for(client.close(), self.config.timeout)

    async def _login(
        self, host: str, port: int
    ) -> tuple[NATSClient | None, Credential | None, int, str]:
        """A connected client (None if refused), the credential used, defaults tried, refusal."""
        attempts: list[Credential | None] = [None]
        if self.config.try_default_credentials:
            attempts.extend(default_credentials(self.service))
        refusal = ""
        for credential in attempts:
            client = NATSClient()
            try:
                await asyncio.wait_for(
                    self._connect(client, host, port, credential), self.config.timeout * 2
                )
            except (NATSError, OSError, TimeoutError) as error:
                refusal = first_line(error)
                await _discard(client, self.config.timeout)
                continue
            return client, credential, attempts.index(credential), ""
        return None, None, len(attempts) - 1, refusal

    async def _connect(
        self, client: NATSClient, host: str, port: int, credential: Credential | None
    ) -> None:
        async def quiet(_: Exception) -> None:  # errors surface as exceptions where we await
            return None

        netloc = f"[{host}]" if ":" in host else host
        user = credential.user if credential else None
        secret = credential.password if credential else None
        await client.connect(
            servers=[f"nats://{netloc}:{port}"],
            name="perisai",
            user=user,
            password=secret if user is not None else None,
            token=secret if credential is not None and user is None else None,
            connect_timeout=max(1, round(self.config.timeout)),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            no_echo=True,
            error_cb=quiet,
        )

    async def _inspect(
        self,
        client: NATSClient,
        target: Target,
        fingerprint: Fingerprint,
        credential: Credential | None,
    ) -> ProbeResult | ProbeSkipped:
        auth = Auth.NONE if credential is None else Auth.DEFAULT_CREDENTIALS
        evidence = [
            Evidence(
                "CONNECT without credentials accepted"
                if credential is None
                else f"CONNECT with {credential.describe()} accepted"
            )
        ]
        groups: list[_Group] = []
        stopped = ""
        jsm = client.jsm(timeout=self.config.timeout)
        try:
            streams, summary, unlisted = await self._streams(jsm)
            evidence.append(Evidence(f"{fingerprint.detail}; {summary}"))
            for number, stream in enumerate(streams):
                if number < self.config.max_tables:
                    groups.append(await self._sample_stream(jsm, stream))
                else:  # past the sample's limit: counted by the server, not read
                    unread = f"not sampled (the {self.config.max_tables} largest were)"
                    groups.append(replace(_group_of(stream), note=unread))
            if unlisted:  # how much they hold is nobody's count: the total is a floor
                groups.append(
                    _Group(
                        f"{unlisted} more streams",
                        "-",
                        0,
                        0,
                        0,
                        note="not listed (past one page of $JS.API.STREAM.LIST)",
                        floor=True,
                    )
                )
        except (NATSError, OSError, TimeoutError) as error:
            stopped = f"JetStream reads stopped: {type(error).__name__}: {first_line(error)}"
        try:
            groups.append(await self._listen(client))
        except (NATSError, OSError, TimeoutError) as error:
            stopped = f"core listen stopped: {type(error).__name__}: {first_line(error)}"
        sampler = Sampler(self, target, auth)
        for group in groups:
            if group.name == CORE_GROUP:
                label = f"{CORE_GROUP} for {self.config.timeout:g}s"
                head = (
                    f"at least {group.messages} messages (the listen stopped at its cap)"
                    if group.floor
                    else f"{group.messages} messages heard"
                )
            elif group.floor:
                label, head = group.name, ""
            else:
                label = f"stream {group.name} ({group.subjects})"
                head = (
                    f"{group.messages} messages, {human_bytes(group.size)}, "
                    f"{group.consumers} consumers"
                )
            if group.note:
                estimate = None if group.floor else group.messages
                sampler.listed(label, estimated=estimate, head=head, unread=group.note)
                continue
            sampler.sample(label, group.records, estimated=group.messages, head=head)
            self._spot_notes(group, sampler)
        if any(g.name != CORE_GROUP for g in groups):
            evidence.append(
                Evidence(
                    "stream messages read with $JS.API.STREAM.MSG.GET (seq, next_by_subj): no "
                    "consumer created, nothing acknowledged, stream state unchanged"
                )
            )
        if stopped:
            evidence.append(Evidence(stopped))
            sampler.stop(stopped)
        return sampler.result(
            evidence,
            (
                "NATS readable without credentials",
                "NATS accepts a default login from its examples",
            ),
        )

    async def _streams(self, jsm: JetStreamManager) -> tuple[list[js_api.StreamInfo], str, int]:
        """The streams listed (note-like names first, then the largest), a summary, and how
        many streams the account has that the one page of the listing did not hold."""
        try:
            account = await jsm.account_info()
        except (APIError, NATSError) as error:
            return [], f"JetStream not available to this client ({first_line(error)})", 0
        streams = await jsm.streams_info()  # one page of $JS.API.STREAM.LIST (256 at most)
        total_messages = sum(s.state.messages for s in streams)
        total_bytes = sum(s.state.bytes for s in streams)
        unlisted = max(account.streams - len(streams), 0)
        part = f" in the {len(streams)} listed (at least)" if unlisted else ""
        summary = (
            f"JetStream: {account.streams} streams, {account.consumers} consumers, "
            f"{total_messages} messages, {human_bytes(total_bytes)}{part}"
        )
        streams.sort(key=lambda s: (not is_note_name(s.config.name or ""), -s.state.messages))
        return streams, summary, unlisted

    async def _sample_stream(self, jsm: JetStreamManager, stream: js_api.StreamInfo) -> _Group:
        name = stream.config.name or "?"
        state = stream.state
        group = _group_of(stream)
        seq = max(1, state.first_seq)
        misses = 0
        while len(group.records) < self.config.sample and seq <= state.last_seq:
            try:
                message = await jsm.get_msg(name, seq=seq, subject=">", next=True)
            except NotFoundError:
                break  # nothing at or after seq
            except APIError as error:
                # A server without next_by_subj: ask for exact sequences, skipping deleted ones.
                if misses > self.config.sample:
                    group.note = f"not read ({first_line(error)})"
                    break
                misses += 1
                try:
                    message = await jsm.get_msg(name, seq=seq)
                except NotFoundError:
                    seq += 1
                    continue
            group.records.append(self._record(message.subject, message.data))
            seq = (message.seq or seq) + 1
        return group

    async def _listen(self, client: NATSClient) -> _Group:
        """Core messages on ``>`` for at most ``timeout`` seconds and ``sample x max_tables``."""
        budget = max(1, self.config.sample * self.config.max_tables)
        cap = self.config.max_value_bytes
        group = _Group(name=CORE_GROUP, subjects=">", messages=0, size=0, consumers=0)
        subscription = await client.subscribe(
            ">", pending_msgs_limit=budget, pending_bytes_limit=budget * max(cap, 1024)
        )
        subjects: set[str] = set()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.config.timeout
            while group.messages < budget:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    message = await subscription.next_msg(timeout=remaining)
                except (TimeoutError, nats.errors.TimeoutError):
                    break
                group.messages += 1
                group.size += len(message.data)
                subjects.add(message.subject)
                if len(group.records) < self.config.sample * 4:
                    group.records.append(self._record(message.subject, message.data))
            group.floor = group.messages >= budget
        finally:
            with contextlib.suppress(NATSError, OSError, TimeoutError):
                await subscription.unsubscribe()
        group.subjects = f"{len(subjects)} subjects"
        return group

    def _record(self, subject: str | None, data: bytes | None) -> dict[str, Any]:
        text = (data or b"")[: self.config.max_value_bytes].decode("utf-8", "replace")
        payload: object = text
        if text[:1] in ("{", "["):
            with contextlib.suppress(ValueError):
                payload = json.loads(text)
        return {"subject": (subject or "")[:MAX_SUBJECT_CHARS], "payload": payload}

    def _spot_notes(self, group: _Group, sampler: Sampler) -> None:
        where = f"stream {group.name}" if group.name != CORE_GROUP else "subject"
        for record in group.records:
            payload = record["payload"]
            text = payload if isinstance(payload, str) else json.dumps(payload)
            sampler.spot_note(f"{where} {record['subject']}", text)


async def _discard(client: NATSClient, timeout: float) -> None:
    """Close a client whose connect failed: nats-py leaves its socket open otherwise."""
    with contextlib.suppress(NATSError, OSError, TimeoutError, AttributeError):
        await asyncio.wait_for(client.close(), timeout)
    transport = getattr(client, "_transport", None)
    if transport is not None:
        with contextlib.suppress(OSError, AttributeError):
            transport.close()
            await asyncio.wait_for(transport.wait_closed(), timeout)


async def _read_info(host: str, port: int, timeout: float) -> dict[str, Any] | None:
    """The server's INFO object, or None when the first line is not a NATS INFO."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, limit=MAX_INFO_BYTES), timeout
    )
    try:
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    if not line.startswith(b"INFO "):
        return None
    try:
        info = json.loads(line[5:])
    except ValueError:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("server_id"), str):
        return None
    return info


def _text(value: object, cap: int) -> str:
    return "?" if value is None else str(value)[:cap]


def _group_of(stream: js_api.StreamInfo) -> _Group:
    """A stream as the server counts it (messages, bytes, consumers), nothing read yet."""
    state = stream.state
    return _Group(
        name=stream.config.name or "?",
        subjects=", ".join(stream.config.subjects or [])[:120] or "-",
        messages=state.messages,
        size=state.bytes,
        consumers=state.consumer_count,
    )
