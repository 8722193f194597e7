"""Kibana (and OpenSearch Dashboards): is its API open to anyone? Two GETs, both bounded.

``GET /api/status`` recognises Kibana (its ``kbn-name`` / ``kbn-license-sig`` headers, or the
status document's shape) and says whether it answers without a login. A public status page is
not proof on its own (``status.allowAnonymous`` publishes it on secured installs), so one more
read, ``GET /api/saved_objects/_find?type=index-pattern&per_page=20``, must also be answered
without credentials. No data is sampled: an open Kibana is itself the finding, since it fronts
Elasticsearch with the rights of its own service account (Discover, Dev Tools console).
"""

from __future__ import annotations

import re
from typing import Any

from perisai.findings import Auth, DataProfile, Evidence, Finding, Rule, Severity, Target
from perisai.probes.common import auth_required_finding, exposure_finding
from perisai.probes.http import (
    Deadline,
    HttpAnswer,
    HttpProbeError,
    bounded_get,
    get_any_scheme,
    http_client,
    json_array_items,
)
from perisai.probes.interface import Fingerprint, Probe, ProbeResult, ProbeSkipped

STATUS_PATH = "/api/status"
FIND_PATH = "/api/saved_objects/_find"
STATUS_BYTES = 1024 * 1024  # a full status document with plugin statuses and metrics: ~100 kB
FIND_BYTES = 256 * 1024
MAX_TITLES_IN_EVIDENCE = 5
_KIBANA_HEADERS = ("kbn-name", "kbn-license-sig", "kbn-xpack-sig")
_DASHBOARDS_HEADER = "osd-name"  # OpenSearch Dashboards, Kibana's fork

_REMEDIATION = (
    "Require a login: enable Elasticsearch security (`xpack.security.enabled: true`) so Kibana "
    "asks for credentials, or put Kibana behind an authenticating proxy or VPN; bind "
    "`server.host` to a private interface and block port 5601 from the internet."
)


class KibanaProbe(Probe):
    """Finds Kibana instances that anyone can use, and so the Elasticsearch behind them."""

    service = "kibana"
    default_ports = (5601,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "curl -s http://{host}:{port}/api/status",
    )
    fix = (  # configuration lines that close it
        "# kibana.yml",
        'server.host: "127.0.0.1"',
        'elasticsearch.username: "kibana_system"',
    )
    rules = (
        Rule(
            id="kibana.unauthenticated",
            name="KibanaUnauthenticated",
            description="Kibana answers its API without a login; anyone who reaches it can "
            "browse and query the Elasticsearch data it fronts (Discover, Dev Tools).",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/306.html",
                "https://www.elastic.co/guide/en/kibana/current/using-kibana-with-security.html",
            ),
        ),
        Rule(
            id="kibana.auth-required",
            name="KibanaAuthRequired",
            description="Kibana is reachable and requires a login.",
            remediation="Keep passwords long and random; restrict who can reach the port.",
            default_severity=Severity.INFO,
        ),
    )

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        try:
            scheme, answer = await get_any_scheme(
                host, port, STATUS_PATH, timeout=self.config.timeout, max_bytes=STATUS_BYTES
            )
        except HttpProbeError:
            return None
        product = _product(answer)
        if product is None:
            return None
        tls = scheme == "https"
        suffix = " over TLS" if tls else ""
        return Fingerprint(self.service, f"{_access(answer)}: {product}{suffix}", tls=tls)

    async def probe(  # ProbeSkipped: see perisai.probes.http
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        target = Target(host, port, self.service)
        deadline = Deadline.for_probe(self.config)
        try:
            scheme, status = await get_any_scheme(
                host,
                port,
                STATUS_PATH,
                timeout=deadline.cap(self.config.timeout),
                max_bytes=STATUS_BYTES,
            )
        except HttpProbeError as error:
            return ProbeSkipped(f"{error}; stopped")
        product = _product(status)
        if product is None:
            if status.truncated:
                return ProbeSkipped(
                    f"GET {STATUS_PATH}: the answer was cut short (over the byte cap or too "
                    "slow); stopped"
                )
            return ProbeSkipped(f"GET {STATUS_PATH} answered HTTP {status.status}, not Kibana")
        access = _access(status)
        if access == "redacted":
            why = f"GET {STATUS_PATH} shows only a redacted status without a login"
            return ProbeResult((self._auth_required(target, f"{product}: {why}"),))
        if access == "auth required":
            why = f"GET {STATUS_PATH} answered {status.status} without a login"
            return ProbeResult((self._auth_required(target, f"{product}: {why}"),))
        if access != "open":
            return ProbeSkipped(
                f"{product}: GET {STATUS_PATH} answered {access} ({status.text(60)!r}); stopped"
            )
        async with http_client(host, port, timeout=self.config.timeout, scheme=scheme) as client:
            try:
                found = await bounded_get(
                    client,
                    FIND_PATH,
                    # titles only: an index pattern's field list can be hundreds of KB
                    params={"type": "index-pattern", "per_page": 20, "fields": "title"},
                    max_bytes=FIND_BYTES,
                    timeout=deadline.cap(self.config.timeout),
                )
            except HttpProbeError as error:
                finding = self._open(target, product, status, None)
                return ProbeSkipped(f"{error}; stopped", (finding,))
        if found.status in (401, 403):
            detail = (
                f"{product}: GET {STATUS_PATH} is public (status.allowAnonymous), but "
                f"GET {FIND_PATH} answered {found.status} without a login"
            )
            return ProbeResult((self._auth_required(target, detail),))
        finding = self._open(target, product, status, found)
        if found.truncated:  # the listing was not read to its end
            return ProbeSkipped(f"GET {FIND_PATH}: answer cut at {FIND_BYTES} bytes", (finding,))
        return ProbeResult((finding,))

    def _open(
        self, target: Target, product: str, status: HttpAnswer, found: HttpAnswer | None
    ) -> Finding:
        document: dict[str, Any] = status.json() or {}
        name = str(document.get("name", "?"))[:80]
        evidence = [
            Evidence(
                f"GET {STATUS_PATH} answered 200 without credentials: {product}, "
                f"name {name!r}, overall status {_overall(document)}"
            )
        ]
        if found is not None and found.status == 200:
            titles = [
                str(item.get("attributes", {}).get("title", "?"))[:60]
                for item in json_array_items(found.body, "saved_objects", limit=20)
                if isinstance(item, dict) and isinstance(item.get("attributes", {}), dict)
            ]
            shown = ", ".join(titles[:MAX_TITLES_IN_EVIDENCE]) or "none"
            evidence.append(
                Evidence(
                    f"GET {FIND_PATH}?type=index-pattern answered 200 without credentials: "
                    f"{_pattern_count(found, len(titles))} index patterns ({shown})"
                )
            )
        elif found is not None:
            evidence.append(Evidence(f"GET {FIND_PATH} answered HTTP {found.status}"))
        evidence.append(
            Evidence(
                f"read-only requests used: GET {STATUS_PATH}, "
                f"GET {FIND_PATH}?type=index-pattern&per_page=20&fields=title; no data sampled"
            )
        )
        rule_id = "kibana.unauthenticated"
        return exposure_finding(
            rule_id=rule_id,
            title=f"{product.split(' ')[0]} usable without a login",
            target=target,
            auth=Auth.NONE,
            profile=DataProfile(),
            notes=[],
            evidence=evidence,
            remediation=self.rule(rule_id).remediation,
        )

    def _auth_required(self, target: Target, detail: str) -> Finding:
        return auth_required_finding(self, target, "Kibana requires a login", Evidence(detail))


def _product(answer: HttpAnswer) -> str | None:
    """``Kibana 8.11.0`` / ``OpenSearch Dashboards 2.11.0`` when the answer is Kibana's."""
    document = answer.json()
    version = _version(document)
    if answer.headers.get(_DASHBOARDS_HEADER) is not None:
        return f"OpenSearch Dashboards {version}".strip()
    if any(answer.headers.get(header) is not None for header in _KIBANA_HEADERS):
        return f"Kibana {version}".strip()
    if (
        answer.status == 200
        and version
        and isinstance(document, dict)
        and isinstance(document.get("status"), dict)
        and "overall" in document["status"]
        and "name" in document
    ):
        return f"Kibana {version}"
    return None


def _access(answer: HttpAnswer) -> str:
    """``open`` (full status), ``redacted`` (anonymous status page), ``auth required``, or
    ``HTTP <code>`` for anything else (e.g. 503 while Kibana starts)."""
    if answer.status in (401, 403):
        return "auth required"
    if answer.status != 200:
        return f"HTTP {answer.status}"
    return "open" if _version(answer.json()) else "redacted"


def _version(document: object) -> str:
    if isinstance(document, dict):
        version = document.get("version")
        if isinstance(version, dict) and isinstance(version.get("number"), str):
            return str(version["number"])[:32]
    return ""


def _overall(document: dict[str, Any]) -> str:
    """``available`` (8.x ``level``) or ``green`` (7.x ``state``)."""
    status = document.get("status")
    overall = status.get("overall") if isinstance(status, dict) else None
    if isinstance(overall, dict):
        return str(overall.get("level") or overall.get("state") or "?")[:40]
    return "?"


_TOTAL = re.compile(rb'"total"\s*:\s*(\d{1,12})')


def _pattern_count(found: HttpAnswer, titles: int) -> str:
    """The total Kibana states; from the head of an answer cut at its byte cap when need be
    (``total`` comes before the objects); ``at least N`` when it stated none."""
    document = found.json()
    total = document.get("total") if isinstance(document, dict) else None
    if total is None:
        stated = _TOTAL.search(found.body[:4096])
        total = int(stated.group(1)) if stated else None
    if isinstance(total, int) and total >= titles:
        return str(total)
    return f"at least {titles}"
