"""Elasticsearch and OpenSearch over their REST API: three kinds of GET, every answer bounded.

Requests sent, and nothing else: ``GET /`` (fingerprint, version, the login check, with HTTP
Basic auth for a vendor default), ``GET /_cat/indices?format=json&bytes=b`` (indices with their
document counts and sizes) and ``GET /<index>/_search?size=N`` (a bounded sample per index). No
POST, not even a search body; no scroll or point-in-time contexts, which would leave state on
the cluster. Each answer is read through :func:`perisai.probes.http.bounded_get`: capped in
bytes, one deadline per request, all of it within the probe's own deadline.

Extortion marks: indices named like a note (``read_me``, ``README``, ``how_to_recover…``) whose
documents demand payment, and indices renamed ``<random>-meow`` by the Meow bot, which wipes
data without leaving a demand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from perisai.compromise import RULE_RANSOM_NOTE, RansomNote, is_note_name
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
    clip_json,
    get_any_scheme,
    http_client,
    human_bytes,
    json_array_items,
)
from perisai.probes.interface import Access, Fingerprint, Probe, ProbeResult, ProbeSkipped
from perisai.probes.sampling import Sampler

TAGLINE = "You Know, for Search"
FINGERPRINT_BYTES = 16 * 1024  # a root answer is under 1 kB
ROOT_BYTES = 64 * 1024
LISTING_BYTES = 2 * 1024 * 1024  # _cat/indices: ~150 bytes an index, so ~10k indices
SEARCH_OVERHEAD_BYTES = 64 * 1024
MAX_SEARCH_BYTES = 8 * 1024 * 1024
MAX_NAMES_IN_EVIDENCE = 5
DEFAULT_USER = "elastic"  # for a password-only line in the defaults file
_MEOW = re.compile(r"(?i)-meow$")
_CAT_PARAMS = {"format": "json", "bytes": "b", "h": "index,status,docs.count,store.size"}

_REMEDIATION = (
    "Turn on security (`xpack.security.enabled: true`, or the OpenSearch security plugin) with "
    "strong passwords for every built-in user, bind `network.host` to a private interface, put "
    "TLS on the HTTP layer, and block port 9200 from the internet."
)


@dataclass(frozen=True)
class _Index:
    name: str
    docs: int | None
    size: int | None
    status: str

    @property
    def note_named(self) -> bool:
        return is_note_name(self.name)

    @property
    def meow(self) -> bool:
        return bool(_MEOW.search(self.name))


@dataclass
class _Inventory:
    """What the probe learnt so far; findings are built from it even when it stops early."""

    sampler: Sampler  # the indices read, and what they held
    indices: list[_Index] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    listing_complete: bool = True


class ElasticsearchProbe(Probe):
    """Finds Elasticsearch / OpenSearch clusters anyone can read, and what their indices hold."""

    service = "elasticsearch"
    default_ports = (9200,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "curl -s http://{host}:{port}/",
        "curl -s 'http://{host}:{port}/_cat/indices?v'",
    )
    fix = (  # configuration lines that close it
        "# elasticsearch.yml",
        "xpack.security.enabled: true",
        "network.host: 10.0.0.5",
    )
    rules = (
        Rule(
            id="elasticsearch.unauthenticated",
            name="ElasticsearchUnauthenticated",
            description="Elasticsearch (or OpenSearch) answers its REST API without "
            "credentials; anyone who reaches the port can read, and delete, every index.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/306.html",
                "https://www.elastic.co/guide/en/elasticsearch/reference/current/"
                "security-minimal-setup.html",
            ),
        ),
        Rule(
            id="elasticsearch.default-credentials",
            name="ElasticsearchDefaultPassword",
            description="Elasticsearch (or OpenSearch) accepts a user and password shipped as a "
            "vendor default (elastic:changeme, OpenSearch's demo admin:admin).",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/1392.html",),
        ),
        Rule(
            id="elasticsearch.auth-required",
            name="ElasticsearchAuthRequired",
            description="Elasticsearch (or OpenSearch) is reachable and requires credentials.",
            remediation="Keep passwords long and random; restrict who can reach the port.",
            default_severity=Severity.INFO,
        ),
        RULE_RANSOM_NOTE,
    )

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        try:
            scheme, answer = await get_any_scheme(
                host, port, "/", timeout=self.config.timeout, max_bytes=FINGERPRINT_BYTES
            )
        except HttpProbeError:
            return None
        tls = scheme == "https"
        suffix = " over TLS" if tls else ""
        product = _product(answer)
        if answer.status == 200 and product:
            return Fingerprint(self.service, f"open: {product}{suffix}", Access.OPEN, tls=tls)
        realm = _security_realm(answer)
        if answer.status == 401 and realm:
            detail = f"auth required ({realm}){suffix}"
            return Fingerprint(self.service, detail, Access.AUTH_REQUIRED, tls=tls)
        return None

    async def probe(  # ProbeSkipped: see perisai.probes.http
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        target = Target(host, port, self.service)
        deadline = Deadline.for_probe(self.config)
        try:
            scheme, anonymous = await get_any_scheme(
                host, port, "/", timeout=deadline.cap(self.config.timeout), max_bytes=ROOT_BYTES
            )
        except HttpProbeError as error:
            return ProbeSkipped(f"{error}; stopped")
        if anonymous.truncated:
            return ProbeSkipped(_cut_short("GET /", anonymous, ROOT_BYTES))
        async with http_client(host, port, timeout=self.config.timeout, scheme=scheme) as client:
            return await self._examine(client, target, anonymous, deadline)

    async def _examine(
        self,
        client: httpx.AsyncClient,
        target: Target,
        anonymous: HttpAnswer,
        deadline: Deadline,
    ) -> ProbeResult | ProbeSkipped:
        if anonymous.status == 200 and _product(anonymous):
            auth, user, root = Auth.NONE, None, anonymous
        elif anonymous.status in (401, 403):
            realm = _security_realm(anonymous) or "no security realm named"
            try:
                login = await self._default_login(client, deadline)
            except HttpProbeError as error:
                return ProbeSkipped(f"{error} while trying vendor default credentials; stopped")
            if login is None:
                tried = len(self._defaults()) if self.config.try_default_credentials else 0
                detail = (
                    f"GET / answered {anonymous.status} ({realm}); "
                    f"{tried} vendor default credentials refused"
                )
                return ProbeResult((self._auth_required(target, detail),))
            auth, (user, client.auth, root) = Auth.DEFAULT_CREDENTIALS, login
        else:
            return ProbeSkipped(
                f"GET / answered HTTP {anonymous.status} ({anonymous.text(60)!r}), "
                "not an Elasticsearch root; stopped"
            )
        info = root.json() or {}
        product = _product(root) or "Elasticsearch"
        cluster = str(info.get("cluster_name", "?"))[:80]
        how = (
            "GET / answered 200 without credentials"
            if auth is Auth.NONE
            else f"user {user!r} logged in with a vendor default password (GET / with Basic auth)"
        )
        inventory = _Inventory(
            Sampler(self, target, auth),
            evidence=[Evidence(f"{how}: {product}, cluster {cluster!r}")],
        )
        stopped = await self._inventory(client, deadline, inventory)
        if stopped == "refused":
            detail = (
                f"{how}, but GET /_cat/indices was refused: the anonymous user may not read indices"
            )
            return ProbeResult((self._auth_required(target, detail),))
        findings = self._findings(inventory)
        stopped = stopped or inventory.sampler.stopped
        if stopped:
            return ProbeSkipped(stopped, findings)
        return ProbeResult(findings)

    def _defaults(self) -> tuple[tuple[str, str], ...]:
        return default_logins(self.service, DEFAULT_USER)

    async def _default_login(
        self, client: httpx.AsyncClient, deadline: Deadline
    ) -> tuple[str, httpx.BasicAuth, HttpAnswer] | None:
        """The first vendor default that GET / accepts: its user, its auth, the root answer."""
        if not self.config.try_default_credentials:
            return None
        for user, password in self._defaults():
            basic = httpx.BasicAuth(user, password)
            answer = await bounded_get(
                client,
                "/",
                max_bytes=ROOT_BYTES,
                timeout=deadline.cap(self.config.timeout),
                auth=basic,
            )
            if answer.status == 200 and _product(answer):
                return user, basic, answer
        return None

    async def _inventory(
        self, client: httpx.AsyncClient, deadline: Deadline, inventory: _Inventory
    ) -> str:
        """List and sample indices into ``inventory``; why it stopped early ("" if it did not,
        "refused" when the index listing was refused)."""
        path = "/_cat/indices?format=json&bytes=b"
        try:
            listing = await bounded_get(
                client,
                "/_cat/indices",
                params=_CAT_PARAMS,
                max_bytes=LISTING_BYTES,
                timeout=deadline.cap(self.config.timeout),
            )
        except HttpProbeError as error:
            return f"{error}; stopped before listing indices"
        if listing.status in (401, 403):
            return "refused"
        if listing.status != 200:
            return f"GET {path} answered HTTP {listing.status}; stopped before listing indices"
        inventory.indices = _parse_indices(listing.body)
        inventory.listing_complete = not listing.truncated
        if listing.timed_out:
            return f"GET {path} did not finish within {self.config.timeout:.1f}s; stopped"
        if listing.truncated:  # sample what was listed; the count is a floor, and says so
            inventory.sampler.stop(
                f"GET {path} was cut at {LISTING_BYTES >> 20} MiB: at least "
                f"{len(inventory.indices)} indices, the rest not listed"
            )
        chosen = _sampling_order(inventory.indices)[: self.config.max_tables]
        for number, index in enumerate(chosen):
            if deadline.expired:
                return (
                    f"probe deadline reached after sampling {number} of {len(chosen)} indices; "
                    "stopped"
                )
            try:
                await self._sample_index(client, deadline, index, inventory)
            except HttpProbeError as error:
                return f"{error} (after sampling {number} of {len(chosen)} indices); stopped"
        return ""

    async def _sample_index(
        self, client: httpx.AsyncClient, deadline: Deadline, index: _Index, inventory: _Inventory
    ) -> None:
        size = self.config.sample
        cap = min(
            MAX_SEARCH_BYTES,
            SEARCH_OVERHEAD_BYTES + size * (2 * self.config.max_value_bytes + 512),
        )
        answer = await bounded_get(
            client,
            f"/{quote(index.name, safe='')}/_search",
            params={"size": size},
            max_bytes=cap,
            timeout=deadline.cap(self.config.timeout),
        )
        if answer.status != 200:
            inventory.evidence.append(
                Evidence(f"{index.name}: _search answered HTTP {answer.status}, not sampled")
            )
            return
        records: list[dict[str, Any]] = []
        for hit in json_array_items(answer.body, "hits", limit=size):
            if not isinstance(hit, dict) or not isinstance(hit.get("_source"), dict):
                continue
            source = clip_json(hit["_source"], self.config.max_value_bytes)
            records.append(source)
            inventory.sampler.spot_notes(f"{index.name}/{str(hit.get('_id', '?'))[:64]}", [source])
        if not records and answer.truncated:
            # One document bigger than the cap: classify the prefix that arrived.
            records.append({"_source_prefix": answer.text(self.config.max_value_bytes)})
        head = f"{'?' if index.docs is None else index.docs} docs, {human_bytes(index.size)}"
        inventory.sampler.sample(index.name, records, estimated=index.docs, head=head)

    def _findings(self, inventory: _Inventory) -> tuple[Finding, ...]:
        indices = inventory.indices
        evidence = list(inventory.evidence)
        total_docs = sum(i.docs or 0 for i in indices)
        total_size = sum(i.size or 0 for i in indices)
        at_least = "" if inventory.listing_complete else "at least "
        evidence.append(
            Evidence(
                f"{at_least}{len(indices)} indices, {total_docs} documents, "
                f"{human_bytes(total_size)} (GET /_cat/indices?format=json&bytes=b)"
            )
        )
        sampler = inventory.sampler
        meow = [i.name for i in indices if i.meow]
        if meow:
            names = ", ".join(meow[:MAX_NAMES_IN_EVIDENCE]) + ("…" if len(meow) > 5 else "")
            sampler.notes.insert(
                0,
                RansomNote(
                    location=f"indices *-meow ({names})",
                    preview=f"{len(meow)} indices renamed '<random>-meow': the mark of the Meow "
                    "bot, which deletes data and leaves no demand",
                    payment_addresses=(),
                ),
            )
            evidence.append(Evidence(f"{len(meow)} indices renamed by the Meow bot: {names}"))
        named = [i.name for i in indices if i.note_named and not i.meow]
        if named:
            listed = ", ".join(named[:MAX_NAMES_IN_EVIDENCE])
            evidence.append(Evidence(f"indices named like a ransom note: {listed}"))
        profile = sampler.total()
        # every index listed, sampled or not; a floor when the listing was cut
        profile.counted(total_docs, at_least=bool(at_least))
        sampler.reads_heading = "read-only requests used"
        sampler.read(
            "GET /, GET /_cat/indices?format=json&bytes=b, "
            f"GET /<index>/_search?size={self.config.sample} "
            f"({len(sampler.containers)} indices sampled)"
        )
        return sampler.findings(
            evidence,
            (
                "Elasticsearch readable without authentication",
                "Elasticsearch accepts a vendor default password",
            ),
            profile,
        )

    def _auth_required(self, target: Target, detail: str) -> Finding:
        return auth_required_finding(
            self, target, "Elasticsearch requires authentication", Evidence(detail)
        )


def _product(answer: HttpAnswer) -> str | None:
    """``Elasticsearch 8.11.1`` / ``OpenSearch 2.11.0`` when the answer is a cluster's root."""
    root = answer.json()
    if not isinstance(root, dict):
        return None
    version = root.get("version")
    if not isinstance(version, dict) or not isinstance(version.get("number"), str):
        return None
    number = version["number"][:32]
    if version.get("distribution") == "opensearch":
        return f"OpenSearch {number}"
    if root.get("tagline") == TAGLINE and "cluster_name" in root:
        return f"Elasticsearch {number}"
    return None


def _security_realm(answer: HttpAnswer) -> str | None:
    """Which security layer refused us, when the refusal is Elasticsearch's or OpenSearch's."""
    challenge = " ".join(answer.headers.get_list("www-authenticate")).lower()
    if "opensearch security" in challenge or "open distro security" in challenge:
        return "OpenSearch security"
    if 'realm="security"' in challenge:
        return "Elasticsearch security"
    body = answer.json()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("type") == "security_exception":
        return "Elasticsearch security"
    if answer.headers.get("x-elastic-product") == "Elasticsearch":
        return "Elasticsearch security"
    return None


def _parse_indices(body: bytes) -> list[_Index]:
    indices: list[_Index] = []
    for row in json_array_items(body):
        if not isinstance(row, dict) or not isinstance(row.get("index"), str):
            continue
        indices.append(
            _Index(
                name=row["index"][:255],
                docs=_int(row.get("docs.count")),
                size=_int(row.get("store.size")),
                status=str(row.get("status", "open")),
            )
        )
    return indices


def _sampling_order(indices: list[_Index]) -> list[_Index]:
    """Note-named indices first, then the largest by documents; closed and hidden (``.``)
    indices are skipped unless named like a note."""
    wanted = [
        i for i in indices if i.status != "close" and (i.note_named or not i.name.startswith("."))
    ]
    return sorted(wanted, key=lambda i: (not i.note_named, -(i.docs or 0), i.name))


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _cut_short(request: str, answer: HttpAnswer, cap: int) -> str:
    if answer.timed_out:
        return f"{request}: the answer did not finish in time (a dripping server?); stopped"
    return f"{request}: the answer went past {human_bytes(cap)}; stopped"
