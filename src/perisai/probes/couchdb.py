"""CouchDB (and PouchDB Server, which speaks its API) over HTTP: GET only, every answer bounded.

Requests sent, and nothing else: ``GET /`` (fingerprint), ``GET /_session`` (who the server
takes us for: in an "admin party" anonymous holds the ``_admin`` role; with HTTP Basic auth,
whether a vendor default is accepted — never ``POST /_session``, which would mint a cookie),
``GET /_all_dbs``, ``GET /<db>`` (``doc_count`` and sizes) and
``GET /<db>/_all_docs?limit=N&include_docs=true`` (a bounded sample). Each answer is read
through :func:`perisai.probes.http.bounded_get`: capped in bytes, one deadline per request, all
of it within the probe's own deadline. System databases (``_users``, ``_replicator``…) are
counted, never sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

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
    clip_json,
    get_any_scheme,
    http_client,
    human_bytes,
    json_array_items,
)
from perisai.probes.interface import Access, Fingerprint, Probe, ProbeResult, ProbeSkipped
from perisai.probes.sampling import Sampler

FINGERPRINT_BYTES = 16 * 1024
SMALL_BYTES = 64 * 1024  # /, /_session, /<db>
LISTING_BYTES = 1024 * 1024  # _all_dbs: ~20 bytes a name
MAX_LISTED = 5000
DOCS_OVERHEAD_BYTES = 64 * 1024
MAX_DOCS_BYTES = 8 * 1024 * 1024
MAX_NAMES_IN_EVIDENCE = 8
DEFAULT_USER = "admin"  # for a password-only line in the defaults file

_REMEDIATION = (
    "End the admin party: create a server admin with a long random password ([admins] in "
    "local.ini, or COUCHDB_USER/COUCHDB_PASSWORD), set `require_valid_user = true`, give every "
    "database a _security object with members, bind `chttpd.bind_address` to a private "
    "interface, and block ports 5984/6984 from the internet."
)


@dataclass(frozen=True)
class _Session:
    name: str | None
    roles: tuple[str, ...]

    @property
    def admin(self) -> bool:
        return "_admin" in self.roles


@dataclass
class _Inventory:
    """What the probe learnt so far; findings are built from it even when it stops early."""

    sampler: Sampler  # the databases read, and what they held
    names: list[str] = field(default_factory=list)
    listing_complete: bool = True
    refused: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)


class CouchDBProbe(Probe):
    """Finds CouchDB servers anyone can read (admin party, open databases, vendor defaults)."""

    service = "couchdb"
    default_ports = (5984,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "curl -s http://{host}:{port}/",
        "curl -s http://{host}:{port}/_all_dbs",
    )
    fix = (  # configuration lines that close it
        "# local.ini",
        "[admins]",
        "admin = <a long random secret>",
        "[chttpd]",
        "bind_address = 127.0.0.1",
        "require_valid_user = true",
    )
    rules = (
        Rule(
            id="couchdb.unauthenticated",
            name="CouchDBUnauthenticated",
            description='CouchDB serves databases without credentials (an "admin party", or '
            "databases with no _security members); anyone who reaches the port can read them, "
            "and in an admin party also delete them and run code in design documents.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/306.html",
                "https://docs.couchdb.org/en/stable/intro/security.html",
            ),
        ),
        Rule(
            id="couchdb.default-credentials",
            name="CouchDBDefaultPassword",
            description="CouchDB accepts a user and password shipped as a vendor or image "
            "default (admin:admin, admin:password, Bitnami's admin:couchdb).",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/1392.html",),
        ),
        Rule(
            id="couchdb.auth-required",
            name="CouchDBAuthRequired",
            description="CouchDB is reachable and its databases require credentials.",
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
        product = _product(answer)
        if product is None:
            return None
        tls = scheme == "https"
        suffix = " over TLS" if tls else ""
        if answer.status == 200:
            return Fingerprint(self.service, f"{product}{suffix}", Access.OPEN, tls=tls)
        if answer.status in (401, 403):
            detail = f"auth required: {product}{suffix}"
            return Fingerprint(self.service, detail, Access.AUTH_REQUIRED, tls=tls)
        return None

    async def probe(  # ProbeSkipped: see perisai.probes.http
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        target = Target(host, port, self.service)
        deadline = Deadline.for_probe(self.config)
        try:
            scheme, root = await get_any_scheme(
                host, port, "/", timeout=deadline.cap(self.config.timeout), max_bytes=SMALL_BYTES
            )
        except HttpProbeError as error:
            return ProbeSkipped(f"{error}; stopped")
        product = _product(root)
        if product is None:
            if root.truncated:
                return ProbeSkipped(
                    "GET /: the answer was cut short (over the byte cap or too slow); stopped"
                )
            return ProbeSkipped(f"GET / answered HTTP {root.status}, not CouchDB; stopped")
        async with http_client(host, port, timeout=self.config.timeout, scheme=scheme) as client:
            try:
                return await self._examine(client, target, product, deadline)
            except HttpProbeError as error:  # before anything was proven
                return ProbeSkipped(f"{error}; stopped")

    async def _examine(
        self, client: httpx.AsyncClient, target: Target, product: str, deadline: Deadline
    ) -> ProbeResult | ProbeSkipped:
        anonymous = await self._session(client, deadline, None)
        auth: Auth | None = None
        evidence: list[Evidence] = []
        tried = 0
        if anonymous is not None and anonymous.admin:
            auth = Auth.NONE
            evidence.append(
                Evidence(
                    f"GET /_session without credentials: roles {list(anonymous.roles)} "
                    f"(admin party: anyone is server admin); {product}"
                )
            )
        elif self.config.try_default_credentials:
            for user, password in default_logins(self.service, DEFAULT_USER):
                tried += 1
                basic = httpx.BasicAuth(user, password)
                session = await self._session(client, deadline, basic)
                if session is not None and session.name == user:
                    auth, client.auth = Auth.DEFAULT_CREDENTIALS, basic
                    evidence.append(
                        Evidence(
                            f"user {session.name!r} logged in with a vendor default password "
                            f"(GET /_session with Basic auth), roles {list(session.roles)}; "
                            f"{product}"
                        )
                    )
                    break
        inventory = _Inventory(Sampler(self, target, auth or Auth.NONE), evidence=evidence)
        stopped = await self._inventory(client, deadline, inventory)
        if auth is None:  # no login got in: read what anyone may
            if not inventory.sampler.containers:
                return self._auth_required_result(target, product, inventory, tried, stopped)
            readable = len(inventory.sampler.containers)
            inventory.evidence.insert(
                0,
                Evidence(
                    f"{readable} of the {readable + len(inventory.refused)} databases tried "
                    f"readable without credentials (no _security members); {product}"
                ),
            )
        findings = self._findings(inventory)
        stopped = stopped or inventory.sampler.stopped
        if stopped:
            return ProbeSkipped(stopped, findings)
        return ProbeResult(findings)

    async def _session(
        self, client: httpx.AsyncClient, deadline: Deadline, basic: httpx.BasicAuth | None
    ) -> _Session | None:
        """Who ``GET /_session`` says we are (``None`` when it refuses or makes no sense)."""
        answer = await bounded_get(
            client,
            "/_session",
            max_bytes=SMALL_BYTES,
            timeout=deadline.cap(self.config.timeout),
            auth=basic,
        )
        document = answer.json() if answer.status == 200 else None
        context = document.get("userCtx") if isinstance(document, dict) else None
        if not isinstance(context, dict):
            return None
        roles = context.get("roles")
        name = context.get("name")
        return _Session(
            name=str(name)[:128] if name is not None else None,
            roles=tuple(str(r)[:64] for r in roles[:32]) if isinstance(roles, list) else (),
        )

    async def _inventory(
        self, client: httpx.AsyncClient, deadline: Deadline, inventory: _Inventory
    ) -> str:
        """List and sample databases into ``inventory``; why it stopped early ("" if not)."""
        try:
            listing = await bounded_get(
                client,
                "/_all_dbs",
                max_bytes=LISTING_BYTES,
                timeout=deadline.cap(self.config.timeout),
            )
        except HttpProbeError as error:
            return f"{error}; stopped before listing databases"
        if listing.status in (401, 403):
            inventory.evidence.append(Evidence(f"GET /_all_dbs answered {listing.status}"))
            return ""
        if listing.status != 200:
            return f"GET /_all_dbs answered HTTP {listing.status}; stopped"
        inventory.names = [
            name[:255]
            for name in json_array_items(listing.body, limit=MAX_LISTED)
            if isinstance(name, str)
        ]
        # complete only when the body ended and the item limit did not stop the parse
        inventory.listing_complete = not listing.truncated and len(inventory.names) < MAX_LISTED
        if listing.timed_out:
            return f"GET /_all_dbs did not finish within {self.config.timeout:.1f}s; stopped"
        if not inventory.listing_complete:  # sample what was listed; the count is a floor
            cut = (
                f"was cut at {LISTING_BYTES >> 20} MiB"
                if listing.truncated
                else f"was read up to its first {MAX_LISTED} names"
            )
            inventory.sampler.stop(
                f"GET /_all_dbs {cut}: at least {len(inventory.names)} databases, "
                "the rest not listed"
            )
        chosen = _sampling_order(inventory.names)[: self.config.max_databases]
        for number, name in enumerate(chosen):
            if deadline.expired:
                return (
                    f"probe deadline reached after reading {number} of {len(chosen)} databases; "
                    "stopped"
                )
            try:
                await self._sample_database(client, deadline, name, inventory)
            except HttpProbeError as error:
                return f"{error} (after reading {number} of {len(chosen)} databases); stopped"
        return ""

    async def _sample_database(
        self, client: httpx.AsyncClient, deadline: Deadline, name: str, inventory: _Inventory
    ) -> None:
        path = "/" + quote(name, safe="")
        info = await bounded_get(
            client, path, max_bytes=SMALL_BYTES, timeout=deadline.cap(self.config.timeout)
        )
        if info.status in (401, 403):
            inventory.refused.append(name)
            return
        document = info.json()
        if info.status != 200 or not isinstance(document, dict):
            inventory.evidence.append(Evidence(f"{name}: GET answered HTTP {info.status}"))
            return
        limit = self.config.sample
        cap = min(
            MAX_DOCS_BYTES, DOCS_OVERHEAD_BYTES + limit * (2 * self.config.max_value_bytes + 512)
        )
        docs = await bounded_get(
            client,
            f"{path}/_all_docs",
            params={"limit": limit, "include_docs": "true"},
            max_bytes=cap,
            timeout=deadline.cap(self.config.timeout),
        )
        if docs.status in (401, 403):
            inventory.refused.append(name)
            return
        records: list[dict[str, Any]] = []
        for row in json_array_items(docs.body, "rows", limit=limit):
            doc = row.get("doc") if isinstance(row, dict) else None
            if not isinstance(doc, dict) or str(doc.get("_id", "")).startswith("_design/"):
                continue
            record = clip_json({k: v for k, v in doc.items() if k != "_rev"}, self._cap)
            records.append(record)
            inventory.sampler.spot_notes(f"{name}/{str(doc.get('_id', '?'))[:64]}", [record])
        if not records and docs.truncated:
            records.append({"_doc_prefix": docs.text(self._cap)})
        count = _int(document.get("doc_count"))
        head = f"{'?' if count is None else count} docs, {human_bytes(_db_size(document))}"
        inventory.sampler.sample(name, records, estimated=count, head=head)

    @property
    def _cap(self) -> int:
        return self.config.max_value_bytes

    def _auth_required_result(
        self, target: Target, product: str, inventory: _Inventory, tried: int, stopped: str
    ) -> ProbeResult | ProbeSkipped:
        parts = [f"{product}: GET /_session gives anonymous no admin role"]
        if inventory.names:
            users = [n for n in inventory.names if not n.startswith("_")]
            parts.append(f"GET /_all_dbs lists {len(users)} databases, none readable")
        parts.append(f"{tried} vendor default credentials refused")
        finding = auth_required_finding(
            self, target, "CouchDB requires authentication", Evidence("; ".join(parts))
        )
        if stopped:
            return ProbeSkipped(stopped, (finding,))
        return ProbeResult((finding,))

    def _findings(self, inventory: _Inventory) -> tuple[Finding, ...]:
        evidence = list(inventory.evidence)
        users = [n for n in inventory.names if not n.startswith("_")]
        at_least = "" if inventory.listing_complete else "at least "
        if inventory.names:
            shown = ", ".join(users[:MAX_NAMES_IN_EVIDENCE]) or "none"
            more = "…" if len(users) > MAX_NAMES_IN_EVIDENCE else ""
            evidence.append(
                Evidence(
                    f"{at_least}{len(users)} databases besides the system ones "
                    f"(GET /_all_dbs): {shown}{more}"
                )
            )
        named = [n for n in users if is_note_name(n)]
        if named:
            shown = ", ".join(named[:MAX_NAMES_IN_EVIDENCE])
            evidence.append(Evidence(f"databases named like a ransom note: {shown}"))
        if inventory.refused:
            shown = ", ".join(inventory.refused[:MAX_NAMES_IN_EVIDENCE])
            evidence.append(Evidence(f"not readable (401/403): {shown}"))
        sampler = inventory.sampler
        sampler.reads_heading = "read-only requests used"
        sampler.read(
            "GET /, GET /_session, GET /_all_dbs, GET /<db>, "
            f"GET /<db>/_all_docs?limit={self.config.sample}&include_docs=true "
            f"({len(sampler.containers)} databases sampled)"
        )
        return sampler.findings(
            evidence,
            (
                "CouchDB readable without authentication",
                "CouchDB accepts a vendor default password",
            ),
        )


def _product(answer: HttpAnswer) -> str | None:
    """``CouchDB 3.3.3`` / ``PouchDB Server 4.2.0`` when the answer is CouchDB's API."""
    document = answer.json()
    if isinstance(document, dict):
        version = str(document.get("version", ""))[:32]
        if document.get("couchdb") == "Welcome":
            return f"CouchDB {version}".strip()
        if "express-pouchdb" in document or "pouchdb-server" in document:
            return f"PouchDB Server {version}".strip()
    server = str(answer.headers.get("server", ""))
    if server.startswith("CouchDB/") and answer.status in (401, 403):
        # require_valid_user: even GET / needs a login, but the Server header still says it.
        return "CouchDB " + server.split(" ", 1)[0].removeprefix("CouchDB/")[:32]
    return None


def _sampling_order(names: list[str]) -> list[str]:
    """Databases named like a ransom note first, then the rest; system databases never."""
    wanted = [n for n in names if not n.startswith("_")]
    return sorted(wanted, key=lambda n: (not is_note_name(n), n))


def _db_size(document: dict[str, Any]) -> int | None:
    """The on-disk size: ``sizes.file`` (CouchDB 2+), ``disk_size`` (1.x, PouchDB)."""
    sizes = document.get("sizes")
    if isinstance(sizes, dict) and _int(sizes.get("file")) is not None:
        return _int(sizes.get("file"))
    return _int(document.get("disk_size"))


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(str(value))
    except ValueError:
        return None
