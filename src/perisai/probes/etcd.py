"""etcd: ``GET /version``, then bounded reads through the v3 JSON gateway and the v2 keys API.

Recognised on any port by ``GET /version``, which every etcd answers without auth:
``{"etcdserver": "3.4.23", "etcdcluster": "3.4.0"}``.

v3 reads go through the gRPC gateway as ``POST <prefix>/kv/range``: a POST, because the gateway
has no GET, but a Range only reads. The gateway lives at ``/v3`` since etcd 3.4 (``/v3beta``
in 3.3, ``/v3alpha`` in 3.2); each is tried in turn. The probe asks for the key count
(``count_only``), then up to :data:`MAX_KEYS_LISTED` key names (``keys_only`` with ``limit``),
then reads ``sample`` keys one at a time (``limit: 1``), keeping at most about
``max_value_bytes`` of each answer: the value's base64 prefix is decoded from a cut answer.
With auth on, the gateway answers "user name is empty"; the vendor-default root passwords in
``defaults/etcd.txt`` are then tried once each with ``POST <prefix>/auth/authenticate``, a login
that changes no key and not the store's revision. The v2 API (off by default since 3.4, and not
covered by v3 auth) is read with one ``GET /v2/keys/?recursive=true&sorted=true``, cut at a
byte cap; from a cut answer only the complete keys are kept.

Never sent: Put, DeleteRange, Txn, Compact, Lease, Watch, or any user, role or auth change.
GETs go through :func:`perisai.probes.http.bounded_get`, the gateway's POSTs through
:func:`perisai.probes.http.bounded_post` (same byte cap and deadline), all within the probe's
deadline.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from perisai.compromise import RULE_RANSOM_NOTE, is_note_name
from perisai.findings import Auth, Evidence, Finding, Rule, Severity, Target
from perisai.probes.common import (
    auth_required_finding,
)
from perisai.probes.credentials import default_logins
from perisai.probes.http import (
    Deadline,
    HttpAnswer,
    HttpProbeError,
    bounded_get,
    bounded_post,
    clip_json,
    error_text,
    get_plain_or_tls,
    http_client,
)
from perisai.probes.interface import Fingerprint, Probe, ProbeResult, ProbeSkipped
from perisai.probes.sampling import Sampler

__all__ = ["GATEWAY_PREFIXES", "EtcdProbe"]

GATEWAY_PREFIXES = ("/v3", "/v3beta", "/v3alpha")
MAX_KEYS_LISTED = 1000  # key names fetched to choose the sample and spot ransom-note keys
MAX_LISTING_BYTES = 2 * 1024 * 1024
MAX_SMALL_ANSWER = 64 * 1024  # /version, a count, a login
MAX_PREFIXES_IN_EVIDENCE = 8
_ALL_KEYS = base64.b64encode(b"\x00").decode()  # key "\0" with range_end "\0": every key
DEFAULT_USER = "root"  # for a password-only line in the defaults file
TLS_SUFFIX = " over TLS"
_B64_FIELD = r'"{name}"\s*:\s*"([A-Za-z0-9+/=]*)'
_V2_LISTING = b'{"action":"get","node":'  # how every v2 GET answer begins
_V2_LEAF = re.compile(r'\{"key":("(?:[^"\\]|\\.)*"),"value":("(?:[^"\\]|\\.)*")')
_AUTH_ERRORS = ("user name is empty", "invalid auth token", "auth: revision", "token")

_REMEDIATION = (
    "Enable client authentication: add a `root` user with a long random password and run "
    "`etcdctl auth enable`, or better require client TLS certificates "
    "(`--client-cert-auth --trusted-ca-file`); keep `--enable-v2` off, listen on private "
    "interfaces only, and block ports 2379/2380 from the internet."
)


@dataclass
class _Session:
    """How the probe reads v3: the gateway prefix and, after a default login, its token."""

    prefix: str
    auth: Auth
    headers: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    count: int | None = None
    revision: int | None = None


@dataclass
class _V2:
    """What ``GET /v2/keys/?recursive=true`` gave: leaves, or why there are none."""

    readable: bool
    note: str
    leaves: list[tuple[str, str]] = field(default_factory=list)
    complete: bool = True
    cap: int = 0


class EtcdProbe(Probe):
    """Finds etcd clusters whose keys anyone can read: config, secrets, Kubernetes state."""

    service = "etcd"
    default_ports = (2379,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "etcdctl --endpoints=http://{host}:{port} get / --prefix --keys-only --limit=20",
    )
    fix = (  # configuration lines that close it
        "# etcd flags",
        "--client-cert-auth=true",
        "--listen-client-urls=https://10.0.0.5:2379",
        "etcdctl auth enable",
    )
    rules = (
        Rule(
            id="etcd.unauthenticated",
            name="EtcdUnauthenticated",
            description="etcd serves its keys without authentication; anyone who reaches the "
            "port can read (and overwrite or delete) every key.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/306.html",
                "https://etcd.io/docs/v3.4/op-guide/authentication/",
            ),
        ),
        Rule(
            id="etcd.default-credentials",
            name="EtcdDefaultPassword",
            description="etcd has auth enabled, but its root user has a well-known password.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/1392.html",),
        ),
        Rule(
            id="etcd.auth-required",
            name="EtcdAuthRequired",
            description="etcd is reachable and requires authentication.",
            remediation="Keep the root password long and random, prefer client TLS "
            "certificates, and restrict who can reach ports 2379/2380.",
            default_severity=Severity.INFO,
        ),
        RULE_RANSOM_NOTE,
    )

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        try:
            scheme, answer = await get_plain_or_tls(
                host, port, "/version", timeout=self.config.timeout, max_bytes=MAX_SMALL_ANSWER
            )
        except HttpProbeError:
            return None
        doc = answer.json()
        if answer.status != 200 or not isinstance(doc, dict):
            return None
        server, cluster = doc.get("etcdserver"), doc.get("etcdcluster")
        if not isinstance(server, str) or not isinstance(cluster, str):
            return None
        tls = scheme == "https"
        detail = f"etcd {server[:32]} (cluster {cluster[:32]})" + (TLS_SUFFIX if tls else "")
        return Fingerprint(self.service, detail, version=server[:32], tls=tls)

    async def probe(
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        target = Target(host, port, self.service)
        deadline = Deadline.for_probe(self.config)
        scheme = "https" if fingerprint.tls else "http"
        async with http_client(host, port, timeout=self.config.timeout, scheme=scheme) as client:
            try:
                session, v3_note = await self._v3_login(client, deadline)
                v2 = await self._v2_listing(client, deadline)
            except HttpProbeError as error:  # before anything was proven
                return ProbeSkipped(f"{error}; stopped")
            if session is None and not v2.readable:
                return ProbeResult((self._auth_required(target, v3_note, v2),))
            return await self._inspect(client, deadline, target, fingerprint, session, v3_note, v2)

    # --- auth -------------------------------------------------------------------------------

    def _defaults(self) -> tuple[tuple[str, str], ...]:
        if not self.config.try_default_credentials:
            return ()
        return default_logins(self.service, DEFAULT_USER)

    async def _v3_login(
        self, client: httpx.AsyncClient, deadline: Deadline
    ) -> tuple[_Session | None, str]:
        """A v3 session that reads (anonymous first, then the defaults), or why there is none."""
        answer: HttpAnswer | None = None
        prefix = ""
        for prefix in GATEWAY_PREFIXES:
            answer = await self._range(client, deadline, _Session(prefix, Auth.NONE), count=True)
            if answer.status != 404:
                break
        if answer is None or answer.status == 404:
            return None, "no v3 gateway (404 at " + ", ".join(GATEWAY_PREFIXES) + ")"
        if answer.truncated:
            raise HttpProbeError(_cut_short(f"POST {prefix}/kv/range", answer))
        if _range_ok(answer):
            return _with_counts(_Session(prefix, Auth.NONE), answer), ""
        note = f"v3 Range answered HTTP {answer.status}: {error_text(answer)}"
        if not _is_auth_error(answer):
            return None, note
        defaults = self._defaults()
        for user, password in defaults:
            login = await bounded_post(
                client,
                f"{prefix}/auth/authenticate",
                json_body={"name": user, "password": password},
                max_bytes=MAX_SMALL_ANSWER,
                timeout=deadline.cap(self.config.timeout),
            )
            doc = login.json()
            token = doc.get("token") if isinstance(doc, dict) else None
            if login.status != 200 or not isinstance(token, str) or not token:
                continue
            session = _Session(prefix, Auth.DEFAULT_CREDENTIALS, {"Authorization": token}, user)
            answer = await self._range(client, deadline, session, count=True)
            if _range_ok(answer):
                return _with_counts(session, answer), note
            # Logged in, but this user may not read every key: still a default login.
            return session, f"{note}; Range as {user!r}: {error_text(answer)}"
        refused = f"; {len(defaults)} vendor default root passwords refused" if defaults else ""
        return None, note + refused

    async def _v2_listing(self, client: httpx.AsyncClient, deadline: Deadline) -> _V2:
        cap = max(256 * 1024, self.config.sample * self.config.max_value_bytes * 4)
        answer = await bounded_get(
            client,
            "/v2/keys/",
            params={"recursive": "true", "sorted": "true"},
            max_bytes=cap,
            timeout=deadline.cap(self.config.timeout),
        )
        if answer.status == 404:
            return _V2(False, "v2 API off (404)")
        if answer.status != 200:
            return _V2(False, f"v2 API answered HTTP {answer.status}: {error_text(answer)}")
        doc = answer.json()
        if isinstance(doc, dict) and isinstance(doc.get("node"), dict):
            leaves: list[tuple[str, str]] = []
            _walk_v2(doc["node"], leaves)
            index = answer.headers.get("x-etcd-index", "?")[:20]
            note = f"v2 API readable without a login (index {index}): {len(leaves)} keys"
            return _V2(True, note, leaves, cap=cap)
        if answer.truncated and answer.body.startswith(_V2_LISTING):
            leaves = _v2_leaves_from_prefix(answer.body)
            note = (
                f"v2 API readable without a login: listing cut at {cap} bytes, "
                f"first {len(leaves)} keys read"
            )
            return _V2(True, note, leaves, complete=False, cap=cap)
        return _V2(False, f"v2 API answered something else: {error_text(answer)}")

    # --- reads ------------------------------------------------------------------------------

    async def _inspect(
        self,
        client: httpx.AsyncClient,
        deadline: Deadline,
        target: Target,
        fingerprint: Fingerprint,
        session: _Session | None,
        v3_note: str,
        v2: _V2,
    ) -> ProbeResult | ProbeSkipped:
        auth = Auth.NONE if session is None else session.auth
        sampler = Sampler(self, target, auth)
        sampler.read("GET /version")
        keys: list[bytes] = []
        if session is not None and session.auth is Auth.NONE:
            evidence = [Evidence(f"POST {session.prefix}/kv/range answered without any login")]
        elif session is not None:
            evidence = [
                Evidence(
                    f"{v3_note}; logged in as {session.user!r} with a vendor default password "
                    f"(POST {session.prefix}/auth/authenticate)"
                )
            ]
        else:
            evidence = [Evidence(f"{v3_note}; but the v2 API needs no login")]
        if session is not None:
            count = "?" if session.count is None else str(session.count)
            revision = "?" if session.revision is None else str(session.revision)
            evidence.append(
                Evidence(f"{fingerprint.detail}; v3: {count} keys, revision {revision}")
            )
            sampler.read(f"POST {session.prefix}/kv/range (count_only)")
            records: list[dict[str, Any]] = []
            try:
                keys = await self._list_keys(client, deadline, session)
                sampler.read(f"POST {session.prefix}/kv/range (keys_only, limit {MAX_KEYS_LISTED})")
                chosen = _choose_keys(keys, self.config.sample)
                for number, key in enumerate(chosen):
                    if deadline.expired:
                        sampler.stop(f"probe deadline reached after reading {number} keys; stopped")
                        break
                    value = await self._read_value(client, deadline, session, key)
                    if value is None:
                        continue
                    name = _text(key, 512)
                    records.append({"key": name, "value": _decoded(value)})
                    sampler.spot_note(name, value.decode("utf-8", "replace"))
                if chosen:
                    cap = _value_cap(self.config.max_value_bytes)
                    sampler.read(
                        f"{len(chosen)} x POST {session.prefix}/kv/range (one key, limit 1, "
                        f"answer cut at {cap} bytes)"
                    )
            except (HttpProbeError, ValueError) as error:
                sampler.stop(f"{error} (after reading {len(records)} keys); stopped")
            sampler.sample("v3", records, estimated=session.count)
        else:
            evidence.append(Evidence(fingerprint.detail))
        if v2.readable:
            sampler.read(f"GET /v2/keys/?recursive=true&sorted=true (cut at {v2.cap} bytes)")
            v2_records = []
            for v2_key, v2_value in _choose_v2(v2.leaves, self.config.sample):
                capped = v2_value[: self.config.max_value_bytes]
                v2_records.append(
                    {"key": v2_key, "value": _decoded(capped.encode("utf-8", "replace"))}
                )
                sampler.spot_note(f"v2:{v2_key}", capped)
            sampler.sample("v2", v2_records, estimated=len(v2.leaves) if v2.complete else None)
            if not v2.complete:  # how many keys there are is nobody's count
                sampler.stop(
                    f"GET /v2/keys cut at {v2.cap} bytes: at least {len(v2.leaves)} v2 keys, "
                    "the rest not listed"
                )
        evidence.append(Evidence(v2.note))
        prefixes = _prefix_summary([_text(k, 256) for k in keys] + [k for k, _ in v2.leaves])
        if prefixes:
            evidence.append(
                Evidence(f"keys by prefix{_listed_part(keys, session, v2)}: {prefixes}")
            )
        if any(k.startswith(b"/registry/") for k in keys):
            evidence.append(Evidence("holds Kubernetes cluster state (/registry/…, Secrets too)"))
        return sampler.result(
            evidence,
            (
                "etcd readable without authentication",
                "etcd accepts a vendor default root password",
            ),
            containers=False,
        )

    async def _list_keys(
        self, client: httpx.AsyncClient, deadline: Deadline, session: _Session
    ) -> list[bytes]:
        """Up to MAX_KEYS_LISTED key names (fewer when the answer hit its byte cap)."""
        answer = await self._range(
            client, deadline, session, keys_only=True, limit=MAX_KEYS_LISTED, cap=MAX_LISTING_BYTES
        )
        if answer.status != 200:
            raise ValueError(f"keys_only Range answered HTTP {answer.status}: {error_text(answer)}")
        doc = answer.json()
        encoded: list[object] = []
        if isinstance(doc, dict) and isinstance(doc.get("kvs"), list):
            encoded = [kv.get("key") for kv in doc["kvs"] if isinstance(kv, dict)]
        elif answer.truncated:  # cut at the cap: the complete key fields that arrived
            text = answer.body.decode("ascii", "replace")
            encoded = list(re.findall(_B64_FIELD.format(name="key") + '"', text))
        return [k for k in (_b64decode(e) for e in encoded if isinstance(e, str)) if k]

    async def _read_value(
        self, client: httpx.AsyncClient, deadline: Deadline, session: _Session, key: bytes
    ) -> bytes | None:
        """One key's value, at most ``max_value_bytes`` of it (None if it vanished)."""
        cap = _value_cap(self.config.max_value_bytes) + len(key) * 2
        answer = await self._range(client, deadline, session, key=key, limit=1, cap=cap)
        if answer.status != 200:
            return None
        doc = answer.json()
        encoded: str | None = None
        if isinstance(doc, dict):
            kvs = doc.get("kvs")
            if isinstance(kvs, list) and kvs and isinstance(kvs[0], dict):
                value = kvs[0].get("value", "")
                encoded = value if isinstance(value, str) else ""
        else:
            text = answer.body.decode("ascii", "replace")
            found = re.search(_B64_FIELD.format(name="value"), text)
            encoded = found.group(1) if found else None
        if encoded is None:
            return None
        usable = encoded[: len(encoded) - len(encoded) % 4]
        return _b64decode(usable)[: self.config.max_value_bytes]

    async def _range(
        self,
        client: httpx.AsyncClient,
        deadline: Deadline,
        session: _Session,
        *,
        key: bytes | None = None,
        count: bool = False,
        keys_only: bool = False,
        limit: int = 0,
        cap: int = MAX_SMALL_ANSWER,
    ) -> HttpAnswer:
        """``POST <prefix>/kv/range``: a Range request, the gateway's only way to read."""
        body: dict[str, Any] = (
            {"key": base64.b64encode(key).decode()}
            if key is not None
            else {"key": _ALL_KEYS, "range_end": _ALL_KEYS}
        )
        if count:
            body["count_only"] = True
        if keys_only:
            body["keys_only"] = True
        if limit:
            body["limit"] = limit
        return await bounded_post(
            client,
            f"{session.prefix}/kv/range",
            json_body=body,
            headers=session.headers,
            max_bytes=cap,
            timeout=deadline.cap(self.config.timeout),
        )

    def _auth_required(self, target: Target, v3_note: str, v2: _V2) -> Finding:
        return auth_required_finding(
            self, target, "etcd requires authentication", Evidence(v3_note), Evidence(v2.note)
        )


def _cut_short(request: str, answer: HttpAnswer) -> str:
    why = "too slow" if answer.timed_out else "too big"
    return f"{request}: the answer was cut short ({why})"


def _range_ok(answer: HttpAnswer) -> bool:
    doc = answer.json()
    return answer.status == 200 and isinstance(doc, dict) and isinstance(doc.get("header"), dict)


def _is_auth_error(answer: HttpAnswer) -> bool:
    text = error_text(answer).lower()
    return answer.status == 401 or any(marker in text for marker in _AUTH_ERRORS)


def _with_counts(session: _Session, answer: HttpAnswer) -> _Session:
    doc = answer.json()
    if isinstance(doc, dict):
        session.count = _int(doc.get("count", 0))
        header = doc.get("header")
        if isinstance(header, dict):
            session.revision = _int(header.get("revision"))
    return session


def _walk_v2(node: dict[str, Any], leaves: list[tuple[str, str]]) -> None:
    """Every leaf (key, value) of a v2 node tree, in order."""
    stack = [node]
    while stack:
        current = stack.pop()
        children = current.get("nodes")
        if isinstance(children, list):
            stack.extend(reversed([c for c in children if isinstance(c, dict)]))
        elif isinstance(current.get("value"), str) and isinstance(current.get("key"), str):
            leaves.append((current["key"], current["value"]))


def _v2_leaves_from_prefix(body: bytes) -> list[tuple[str, str]]:
    """The complete ``{"key": …, "value": …}`` leaves in a cut v2 listing."""
    leaves: list[tuple[str, str]] = []
    for match in _V2_LEAF.finditer(body.decode("utf-8", "replace")):
        try:
            key, value = json.loads(match.group(1)), json.loads(match.group(2))
        except (ValueError, RecursionError):
            continue
        if isinstance(key, str) and isinstance(value, str):
            leaves.append((key, value))
    return leaves


def _choose_keys(keys: list[bytes], count: int) -> list[bytes]:
    """Keys named like ransom notes first, then keys spread evenly over the listing, so one
    big prefix does not fill the whole sample."""
    chosen = [k for k in keys if is_note_name(_text(k, 512))][:count]
    rest = [k for k in keys if k not in chosen]
    room = count - len(chosen)
    if room > 0 and rest:
        step = max(1.0, len(rest) / room)
        picked = sorted({int(i * step) for i in range(room) if int(i * step) < len(rest)})
        chosen.extend(rest[i] for i in picked)
    return chosen


def _choose_v2(leaves: list[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    chosen = [leaf for leaf in leaves if is_note_name(leaf[0])][:count]
    for leaf in leaves:
        if len(chosen) >= count:
            break
        if leaf not in chosen:
            chosen.append(leaf)
    return chosen


def _decoded(value: bytes) -> object:
    """A value as the classifier reads it best: parsed JSON when it is JSON (clipped in depth
    and breadth), else text."""
    text = value.decode("utf-8", "replace")
    if text[:1] in ("{", "["):
        try:
            parsed: object = json.loads(text)
        except (ValueError, RecursionError):
            return text
        return clip_json(parsed, len(text))
    return text


def _prefix_summary(keys: list[str]) -> str:
    counts = Counter(_prefix(k) for k in keys)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{p} {n}" for p, n in ranked[:MAX_PREFIXES_IN_EVIDENCE])


def _prefix(key: str) -> str:
    parts = [p for p in key.split("/") if p]
    if not parts:
        return "/"
    head = parts[0][:40] + ("/" if len(parts) > 1 else "")
    return f"/{head}" if key.startswith("/") else head


def _value_cap(max_value_bytes: int) -> int:
    """Bytes of a one-key Range answer that hold ``max_value_bytes`` of value (base64) and
    the response header."""
    return max_value_bytes * 4 // 3 + 1024


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return b""


def _text(value: bytes, cap: int) -> str:
    return value[:cap].decode("utf-8", "replace")


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _listed_part(keys: list[bytes], session: _Session | None, v2: _V2) -> str:
    """`` (the first 1000 of 52,340 keys listed)`` when the per-prefix counts come from part of
    the keys; "" when every key was listed."""
    known = session.count if session is not None else None
    if known is not None and len(keys) < known:
        return f" (the first {len(keys)} of {known:,} v3 keys listed)"
    if v2.readable and not v2.complete:
        return f" (the first {len(v2.leaves)} v2 keys listed; more not)"
    return ""
