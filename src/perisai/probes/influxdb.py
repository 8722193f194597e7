"""InfluxDB: ``GET /ping`` for the version; 1.x read with ``GET /query``; 2.x's unclaimed setup.

Recognised on any port by ``GET /ping``: every InfluxDB answers it with an
``X-Influxdb-Version`` header (1.x ``1.6.7~rc0``, 2.x ``v2.7.4``), whether auth is on or not.

1.x (and 2.x's v1-compatible ``/query``): ``SHOW DATABASES`` with no credentials, then the short
list in ``defaults/influxdb.txt`` as HTTP Basic auth (never ``u=``/``p=`` in the URL). Every
query is a GET. InfluxDB 1.x still runs a write statement sent by GET (1.6 only logs "deprecated
use … in a read only context"), so safety rests on the probe building every statement itself:
``SHOW DATABASES``, ``SHOW MEASUREMENTS ON "db" LIMIT n``, ``SHOW SERIES CARDINALITY ON "db"``
and ``SELECT * FROM "m" LIMIT n`` (never ``INTO``, never a second statement). Names that come
from the server go in double-quoted identifiers with ``\\`` and ``"`` escaped, and a name with
control characters is skipped. Answers come in chunks (``chunked=true``) and are cut at a byte
cap; the complete chunks of a cut answer are kept.

2.x: ``GET /api/v2/setup`` answers ``{"allowed": true}`` while nobody has claimed the instance:
the first visitor can create the operator user, organisation and an all-access token, then read
whatever the owner's apps write to it. The probe only reads that flag; it never POSTs it.

Every request goes through :func:`perisai.probes.http.bounded_get`, within the probe's deadline.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
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
    clip_json,
    error_text,
    get_plain_or_tls,
    http_client,
    one_line,
)
from perisai.probes.interface import Fingerprint, Probe, ProbeResult, ProbeSkipped
from perisai.probes.sampling import Sampler

__all__ = ["InfluxDBProbe"]

MAX_SMALL_ANSWER = 64 * 1024
MAX_LIST_ANSWER = 2 * 1024 * 1024
MAX_COLUMNS = 64
INTERNAL_DATABASE = "_internal"  # the server's own monitoring data: counted, not sampled
_VERSION = re.compile(r"(\d+)\.(\d+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
DEFAULT_USER = "admin"  # for a password-only line in the defaults file
TLS_SUFFIX = " over TLS"

_REMEDIATION = (
    "Set `auth-enabled = true` in the [http] section and create an admin user with a long "
    "random password (then per-application users with READ/WRITE grants), bind the HTTP API "
    "to private interfaces, and block port 8086 from the internet."
)
_SETUP_REMEDIATION = (
    "Claim the instance now (`influx setup` with a strong password) or stop it; until then "
    "anyone who reaches port 8086 can become its operator. Block port 8086 from the internet."
)


@dataclass(frozen=True)
class _Login:
    user: str | None
    password: str | None
    auth: Auth

    @property
    def basic(self) -> httpx.BasicAuth | None:
        if self.user is None or self.password is None:
            return None
        return httpx.BasicAuth(self.user, self.password)


@dataclass
class _Measurement:
    database: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.database}.{self.name}"


class InfluxDBProbe(Probe):
    """Finds InfluxDB servers anyone can query or claim, and the personal data in them."""

    service = "influxdb"
    default_ports = (8086,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "curl -s 'http://{host}:{port}/query?q=SHOW%20DATABASES'",
    )
    fix = (  # configuration lines that close it
        "# influxdb.conf [http]",
        "auth-enabled = true",
        'bind-address = "127.0.0.1:8086"',
    )
    rules = (
        Rule(
            id="influxdb.unauthenticated",
            name="InfluxDBUnauthenticated",
            description="InfluxDB answers queries without authentication; anyone who reaches "
            "the port can read (and write or drop) every database.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/306.html",
                "https://docs.influxdata.com/influxdb/v1/administration/authentication_and_authorization/",
            ),
        ),
        Rule(
            id="influxdb.default-credentials",
            name="InfluxDBDefaultPassword",
            description="InfluxDB accepts a login that compose files and tutorials ship.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/1392.html",),
        ),
        Rule(
            id="influxdb.auth-required",
            name="InfluxDBAuthRequired",
            description="InfluxDB is reachable and requires authentication.",
            remediation="Keep passwords and tokens long and random; restrict who can reach "
            "port 8086.",
            default_severity=Severity.INFO,
        ),
        Rule(
            id="influxdb.unclaimed-setup",
            name="InfluxDBUnclaimedSetup",
            description="An InfluxDB 2.x instance has never been set up: anyone who reaches it "
            "can create its operator user and an all-access token and take it over.",
            remediation=_SETUP_REMEDIATION,
            default_severity=Severity.CRITICAL,
            references=(
                "https://cwe.mitre.org/data/definitions/1188.html",
                "https://docs.influxdata.com/influxdb/v2/install/#set-up-influxdb",
            ),
        ),
        RULE_RANSOM_NOTE,
    )

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        try:
            scheme, answer = await get_plain_or_tls(
                host, port, "/ping", timeout=self.config.timeout, max_bytes=4096
            )
        except HttpProbeError:
            return None
        version = answer.headers.get("x-influxdb-version")
        if not version:
            return None
        build = answer.headers.get("x-influxdb-build", "")
        version = one_line(version)[:32]
        tls = scheme == "https"
        detail = f"InfluxDB {version}" + (f" {build[:16]}" if build else "")
        return Fingerprint(
            self.service, detail + (TLS_SUFFIX if tls else ""), version=version, tls=tls
        )

    async def probe(
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        target = Target(host, port, self.service)
        deadline = Deadline.for_probe(self.config)
        scheme = "https" if fingerprint.tls else "http"
        async with http_client(host, port, timeout=self.config.timeout, scheme=scheme) as client:
            try:
                if _major(fingerprint.version) >= 2:
                    setup = await bounded_get(
                        client,
                        "/api/v2/setup",
                        max_bytes=MAX_SMALL_ANSWER,
                        timeout=deadline.cap(self.config.timeout),
                    )
                    doc = setup.json()
                    if setup.status == 200 and isinstance(doc, dict) and doc.get("allowed") is True:
                        return ProbeResult((self._unclaimed(target, fingerprint),))
                login, first, tried = await self._login(client, deadline)
            except HttpProbeError as error:  # before anything was proven
                return ProbeSkipped(f"{error}; stopped")
            if login is None:
                return ProbeResult((self._auth_required(target, fingerprint, first, tried),))
            return await self._inspect(client, deadline, target, fingerprint, login, first)

    # --- auth -------------------------------------------------------------------------------

    def _defaults(self) -> tuple[tuple[str, str], ...]:
        if not self.config.try_default_credentials:
            return ()
        return default_logins(self.service, DEFAULT_USER)

    async def _login(
        self, client: httpx.AsyncClient, deadline: Deadline
    ) -> tuple[_Login | None, HttpAnswer, int]:
        """The first login that runs ``SHOW DATABASES`` (none, then the defaults file), its
        answer (the refusal, when none did) and how many defaults were tried."""
        anonymous = _Login(None, None, Auth.NONE)
        first = await self._query(
            client, deadline, anonymous, "SHOW DATABASES", cap=MAX_LIST_ANSWER
        )
        if first.truncated:
            why = "too slow" if first.timed_out else "too big"
            raise HttpProbeError(f"GET /query SHOW DATABASES: the answer was cut short ({why})")
        if _query_ok(first):
            return anonymous, first, 0
        if first.status not in (401, 403):
            raise HttpProbeError(
                f"GET /query SHOW DATABASES answered HTTP {first.status}: {error_text(first)}"
            )
        defaults = self._defaults()
        for tried, (user, password) in enumerate(defaults, start=1):
            login = _Login(user, password, Auth.DEFAULT_CREDENTIALS)
            answer = await self._query(
                client, deadline, login, "SHOW DATABASES", cap=MAX_LIST_ANSWER
            )
            if _query_ok(answer):
                return login, answer, tried
        return None, first, len(defaults)

    # --- reads ------------------------------------------------------------------------------

    async def _inspect(
        self,
        client: httpx.AsyncClient,
        deadline: Deadline,
        target: Target,
        fingerprint: Fingerprint,
        login: _Login,
        listing: HttpAnswer,
    ) -> ProbeResult | ProbeSkipped:
        how = (
            "without credentials"
            if login.auth is Auth.NONE
            else f"as {login.user!r} with a vendor default password (HTTP Basic auth)"
        )
        every = _first_column(listing)
        databases = every[: self.config.max_databases]
        read = "" if len(every) == len(databases) else f" (the first {len(databases)} read)"
        evidence = [
            Evidence(f"GET /query ran SHOW DATABASES {how}"),
            Evidence(f"{fingerprint.detail}; {len(every)} databases{read}: {', '.join(databases)}"),
        ]
        sampler = Sampler(self, target, login.auth)
        if len(every) > len(databases):  # what they hold is nobody's count
            sampler.listed(
                f"{len(every) - len(databases)} more databases",
                unread=f"not read (the first {len(databases)} were)",
            )
        sampler.reads_heading = "queries (all GET /query, chunked, cut at a byte cap)"
        sampler.read("SHOW DATABASES")
        measurements: list[_Measurement] = []
        series_counts: list[str] = []
        cut: list[str] = []  # databases with more measurements than the listing's limit
        try:
            for database in sorted(databases, key=lambda d: not is_note_name(d)):
                if _CONTROL.search(database):
                    continue
                names = _first_column(
                    await self._query(
                        client,
                        deadline,
                        login,
                        # one more than is read: whether the listing stopped at its limit
                        f"SHOW MEASUREMENTS ON {_ident(database)} "
                        f"LIMIT {self.config.max_tables + 1}",
                        cap=MAX_LIST_ANSWER,
                    )
                )
                if len(names) > self.config.max_tables:
                    names = names[: self.config.max_tables]
                    cut.append(database)
                    sampler.listed(
                        f"{database}: more measurements",
                        unread=f"not listed (the first {len(names)} were)",
                    )
                cardinality = _first_column(
                    await self._query(
                        client, deadline, login, f"SHOW SERIES CARDINALITY ON {_ident(database)}"
                    )
                )
                if cardinality:
                    series_counts.append(f"{database}: {cardinality[0]} series")
                measurements.extend(
                    _Measurement(database, n) for n in names if not _CONTROL.search(n)
                )
            sampler.read("SHOW MEASUREMENTS ON <db> LIMIT n")
            sampler.read("SHOW SERIES CARDINALITY ON <db>")
            order = sorted(
                (m for m in measurements if m.database != INTERNAL_DATABASE),
                key=lambda m: (not (is_note_name(m.name) or is_note_name(m.database)), m.label),
            )
            for number, measurement in enumerate(order):
                if deadline.expired:
                    sampler.stop(f"probe deadline reached after sampling {number} measurements")
                    break
                records = await self._sample(client, deadline, login, measurement)
                sampler.sample(measurement.label, records)
                sampler.spot_notes(measurement.label, records)
        except HttpProbeError as error:
            sampler.stop(f"{error}; stopped")
        if sampler.containers:
            sampler.read(
                f'{len(sampler.containers)} x SELECT * FROM "<measurement>" '
                f"LIMIT {self.config.sample}"
            )
        floor = f"at least {len(measurements)} measurements (listing cut in {', '.join(cut)})"
        counted = floor if cut else f"{len(measurements)} measurements"
        evidence.append(Evidence(f"{counted}; " + ", ".join(series_counts)))
        return sampler.result(
            evidence,
            (
                "InfluxDB readable without authentication",
                "InfluxDB accepts a vendor default login",
            ),
        )

    async def _sample(
        self,
        client: httpx.AsyncClient,
        deadline: Deadline,
        login: _Login,
        measurement: _Measurement,
    ) -> list[dict[str, Any]]:
        cap = max(256 * 1024, self.config.sample * self.config.max_value_bytes * 8)
        answer = await self._query(
            client,
            deadline,
            login,
            f"SELECT * FROM {_ident(measurement.name)} LIMIT {self.config.sample}",
            database=measurement.database,
            cap=cap,
        )
        series, _ = _series(answer)
        records: list[dict[str, Any]] = []
        for one in series:
            columns = [str(c)[:256] for c in one.get("columns") or []][:MAX_COLUMNS]
            for values in one.get("values") or []:
                if len(records) >= self.config.sample or not isinstance(values, list):
                    break
                row = dict(zip(columns, values, strict=False))
                records.append(clip_json(row, self.config.max_value_bytes))
        return records

    async def _query(
        self,
        client: httpx.AsyncClient,
        deadline: Deadline,
        login: _Login,
        statement: str,
        *,
        database: str | None = None,
        cap: int = MAX_SMALL_ANSWER,
    ) -> HttpAnswer:
        """``GET /query`` with one statement this probe built (SHOW or SELECT, never INTO)."""
        if not statement.startswith(("SHOW ", "SELECT ")) or " INTO " in statement.upper():
            raise ValueError(f"refusing to send a statement that is not a read: {statement!r}")
        params = {"q": statement, "chunked": "true", "chunk_size": str(self.config.sample)}
        if database is not None:
            params["db"] = database
        return await bounded_get(
            client,
            "/query",
            params=params,
            max_bytes=cap,
            timeout=deadline.cap(self.config.timeout),
            auth=login.basic,
        )

    # --- findings without data --------------------------------------------------------------

    def _auth_required(
        self, target: Target, fingerprint: Fingerprint, answer: HttpAnswer, tried: int
    ) -> Finding:
        refused = f"; {tried} vendor default logins refused" if tried else ""
        return auth_required_finding(
            self,
            target,
            "InfluxDB requires authentication",
            Evidence(fingerprint.detail),
            Evidence(
                f"GET /query SHOW DATABASES answered HTTP {answer.status}: "
                f"{error_text(answer)}{refused}"
            ),
        )

    def _unclaimed(self, target: Target, fingerprint: Fingerprint) -> Finding:
        rule = self.rule("influxdb.unclaimed-setup")
        return Finding(
            rule=rule.id,
            severity=rule.default_severity,
            title="InfluxDB 2.x was never set up: anyone can claim it",
            target=target,
            auth=Auth.NONE,
            evidence=(
                Evidence(fingerprint.detail),
                Evidence(
                    'GET /api/v2/setup answered {"allowed": true}: no operator user, '
                    "organisation or token exists yet"
                ),
                Evidence("only the flag was read; the setup was not performed (no POST)"),
            ),
            remediation=rule.remediation,
        )


def _series(answer: HttpAnswer) -> tuple[list[dict[str, Any]], str]:
    """Every series of every complete chunk of a ``chunked=true`` answer, and the first
    statement error ("" when there is none; "no results" when no chunk had any)."""
    lines = answer.body.split(b"\n")
    if answer.truncated:
        lines = lines[:-1]
    found: list[dict[str, Any]] = []
    error = ""
    answered = False
    for line in lines:
        if not line.strip():
            continue
        with contextlib.suppress(ValueError, RecursionError):
            chunk = json.loads(line)
            if not isinstance(chunk, dict):
                continue
            if isinstance(chunk.get("error"), str):
                error = error or chunk["error"]
            for result in chunk.get("results") or []:
                if not isinstance(result, dict):
                    continue
                answered = True
                if isinstance(result.get("error"), str):
                    error = error or result["error"]
                found.extend(s for s in result.get("series") or [] if isinstance(s, dict))
    if not answered and not error:
        error = "no results"
    return found, one_line(error)


def _query_ok(answer: HttpAnswer) -> bool:
    if answer.status != 200:
        return False
    _, error = _series(answer)
    return not error


def _first_column(answer: HttpAnswer) -> list[str]:
    """The first column of every row of every series (names of databases, measurements…)."""
    series, _ = _series(answer)
    values: list[str] = []
    for one in series:
        for row in one.get("values") or []:
            if isinstance(row, list) and row:
                values.append(str(row[0])[:256])
    return values


def _major(version: str) -> int:
    found = _VERSION.search(version)
    return int(found.group(1)) if found else 1


def _ident(name: str) -> str:
    """An InfluxQL identifier in double quotes, so no name can end the statement."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
