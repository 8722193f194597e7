"""Scanner benchmark: perisai vs ``nmap -sV`` with its NSE scripts, on the whole lab, one run.

Brings up the lab (every service, exposed and secured twins), scans all its ports with both
tools, and scores each against what the lab holds: services identified, open access proven on
exposed twins, secured twins wrongly called open, personal data surfaced, ransom notes and
planted payloads surfaced; plus wall time and peak RSS. nmap gets every NSE script that speaks
to one of these services and needs no credentials.

    python benchmarks/scan.py            # writes the table to docs/benchmarks.md

Everything runs on 127.0.0.1; the lab is brought down at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from benchmarks.procstat import wait_with_peak_rss  # noqa: E402
from perisai.classify import find_entities  # noqa: E402
from perisai.lab import CATALOG, Lab, LabInstance, LabServer, scan_ports  # noqa: E402
from perisai.lab.seed import PLANTED_CRON_LINE, RANSOM_BTC_ADDRESS  # noqa: E402

BEGIN, END = "<!-- benchmark:scan:begin -->", "<!-- benchmark:scan:end -->"
NSE_SCRIPTS = (
    "redis-info,mysql-info,mysql-empty-password,mysql-databases,memcached-info,"
    "couchdb-databases,couchdb-stats,amqp-info,mqtt-subscribe,mongodb-info,mongodb-databases,"
    "http-title"
)
# What nmap calls each service (its service name, product or extra info, lower-cased).
NMAP_NAMES = {
    "redis": ("redis",),
    "postgres": ("postgresql",),
    "mysql": ("mysql", "mariadb"),
    "couchdb": ("couchdb", "pouchdb"),
    "rabbitmq": ("amqp", "rabbitmq"),
    "mqtt": ("mqtt", "mosquitto"),
    "nats": ("nats",),
    "memcached": ("memcached",),
    "zookeeper": ("zookeeper",),
    "etcd": ("etcd",),
    "clickhouse": ("clickhouse",),
    "influxdb": ("influxdb",),
}
# Script output that can only come from a server that let nmap in without credentials.
NMAP_ACCESS = {
    "redis-info": re.compile(r"Version|Operating System"),
    "mysql-empty-password": re.compile(r"has empty password"),
    "mysql-databases": re.compile(r"\w"),
    "memcached-info": re.compile(r"Process ID|Uptime"),
    "couchdb-databases": re.compile(r"\w"),
    "couchdb-stats": re.compile(r"\w"),
    "mqtt-subscribe": re.compile(r"Topics and their most recent payloads"),
    "mongodb-databases": re.compile(r"\w"),
}
OPEN_AUTH = ("none", "default-credentials")
MARKS = ("compromise.ransom-note", "compromise.planted-payload")


@dataclass
class Score:
    """One tool's results against the lab."""

    seconds: float = 0.0
    rss_mb: float | None = None
    identified: int = 0
    proven_open: int = 0
    secured_called_open: int = 0
    personal_data: int = 0
    marks: int = 0
    missed: list[str] = field(default_factory=list)


def run_perisai(
    ports: list[int], workdir: Path
) -> tuple[dict[int, list[dict[str, Any]]], float, float]:
    """Findings by port, wall seconds and peak RSS (MB) of one ``perisai scan``."""
    out = workdir / "perisai.json"
    command = [
        sys.executable, "-m", "perisai", "scan", "127.0.0.1", "--ports",
        ",".join(map(str, ports)), "--format", "json", "--no-store", "--fail-on", "never",
        "--deep",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    began = time.monotonic()
    with out.open("wb") as stdout:
        process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL, env=env)
        ended, rss_mb = wait_with_peak_rss(process, began + 1800)
    seconds = time.monotonic() - began
    if not ended:
        sys.exit("perisai scan did not finish within 30 minutes")
    by_port: dict[int, list[dict[str, Any]]] = {}
    for finding in json.loads(out.read_text())["findings"]:
        by_port.setdefault(finding["target"]["port"], []).append(finding)
    return by_port, seconds, rss_mb


def run_nmap(ports: list[int]) -> tuple[dict[int, dict[str, str]], float]:
    """For each port: nmap's service words and each script's output; and wall seconds."""
    command = [
        "nmap", "-sV", "-Pn", "-n", "--script", NSE_SCRIPTS, "-p",
        ",".join(map(str, ports)), "-oX", "-", "127.0.0.1",
    ]  # fmt: skip
    began = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=3600)
    seconds = time.monotonic() - began
    by_port: dict[int, dict[str, str]] = {}
    # nmap's own XML; what servers said inside it is escaped by nmap (and expat limits
    # entity expansion), so the standard parser is safe here.
    document = ET.fromstring(result.stdout)  # noqa: S314
    for port in document.iter("port"):
        service = port.find("service")
        words = (
            " ".join((service.get(key) or "") for key in ("name", "product", "extrainfo"))
            if service is not None
            else ""
        )
        entry = {"service": words.lower()}
        for script in port.iter("script"):
            entry[script.get("id", "")] = script.get("output", "")
        by_port[int(port.get("portid", "0"))] = entry
    return by_port, seconds


def score_perisai(
    lab: list[tuple[LabServer, LabInstance]], by_port: dict[int, list[dict[str, Any]]]
) -> Score:
    score = Score()
    for server, instance in lab:
        findings = [f for p in scan_ports(instance) for f in by_port.get(p, [])]
        services = {f["target"]["service"] for f in by_port.get(instance.port, [])}
        if services == {server.service}:
            score.identified += 1
        else:
            score.missed.append(f"{server.name}: identified as {sorted(services)}")
        is_open = any(f["auth"] in OPEN_AUTH for f in findings)
        if server.exposed and is_open:
            score.proven_open += 1
        if not server.exposed and is_open:
            score.secured_called_open += 1
        if server.exposed and server.personal_data:
            score.personal_data += any(f["data"]["entities"] for f in findings)
        if server.compromised:
            score.marks += any(f["rule"] in MARKS for f in findings)
    return score


def score_nmap(
    lab: list[tuple[LabServer, LabInstance]], by_port: dict[int, dict[str, str]]
) -> Score:
    score = Score()
    for server, instance in lab:
        entry = by_port.get(instance.port, {"service": ""})
        if any(name in entry["service"] for name in NMAP_NAMES[server.service]):
            score.identified += 1
        outputs = {k: v for k, v in entry.items() if k != "service"}
        is_open = any(
            pattern.search(outputs[script]) for script, pattern in NMAP_ACCESS.items()
            if script in outputs
        )  # fmt: skip
        if server.exposed and is_open:
            score.proven_open += 1
        if not server.exposed and is_open:
            score.secured_called_open += 1
        text = "\n".join(outputs.values())
        if server.exposed and server.personal_data:
            score.personal_data += bool(find_entities(text))
        if server.compromised:
            score.marks += RANSOM_BTC_ADDRESS in text or PLANTED_CRON_LINE in text
    return score


def table(lab: list[tuple[LabServer, LabInstance]], scores: dict[str, Score]) -> str:
    exposed = sum(s.exposed for s, _ in lab)
    with_data = sum(s.exposed and s.personal_data for s, _ in lab)
    secured = sum(not s.exposed for s, _ in lab)
    marked = sum(s.compromised for s, _ in lab)
    lines = [
        BEGIN,
        "",
        f"`python benchmarks/scan.py` on {platform.machine()}, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}: the lab's {len(lab)} "
        f"servers ({len({s.service for s, _ in lab})} services; {exposed} exposed, {secured} "
        "secured), every port scanned by both tools in the same run. nmap: "
        f"`nmap -sV -Pn -n --script {NSE_SCRIPTS}`. perisai: `perisai scan --deep`.",
        "",
        "| tool | wall time s | services identified | open access proven (exposed) | "
        "secured called open | personal data surfaced | ransom notes / planted payloads | "
        "peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tool, s in scores.items():
        rss = "—" if s.rss_mb is None else f"{s.rss_mb:.0f}"
        lines.append(
            f"| {tool} | {s.seconds:.1f} | {s.identified}/{len(lab)} | "
            f"{s.proven_open}/{exposed} | {s.secured_called_open}/{secured} | "
            f"{s.personal_data}/{with_data} | {s.marks}/{marked} | {rss} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def write(out: Path, text: str) -> None:
    previous = out.read_text(encoding="utf-8") if out.exists() else "# Benchmarks\n"
    if BEGIN in previous and END in previous:
        head, rest = previous.split(BEGIN, 1)
        updated = head + text + rest.split(END, 1)[1]
    else:
        updated = previous.rstrip() + "\n\n## Scanner\n\n" + text + "\n"
    out.write_text(updated, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if shutil.which("nmap") is None:
        sys.exit("nmap not found: install Debian's nmap package (apt-get install nmap)")
    workdir = Path(tempfile.mkdtemp(prefix="perisai-bench-scan-"))
    the_lab = Lab(workdir / "lab")
    print("bringing up the lab…", file=sys.stderr)
    instances = the_lab.up()
    try:
        servers = {server.name: server for server in CATALOG}
        # the stores; the lab's API twins are audit-api's targets, not a scanner's
        lab = [(servers[i.name], i) for i in instances if servers[i.name].kind == "store"]
        ports = [port for _, instance in lab for port in scan_ports(instance)]
        print(f"perisai on {len(ports)} ports…", file=sys.stderr)
        found, seconds, rss = run_perisai(ports, workdir)
        perisai = score_perisai(lab, found)
        perisai.seconds, perisai.rss_mb = seconds, rss
        print(f"nmap on {len(ports)} ports…", file=sys.stderr)
        answers, nmap_seconds = run_nmap(ports)
        nmap = score_nmap(lab, answers)
        nmap.seconds = nmap_seconds
    finally:
        the_lab.down()
        shutil.rmtree(workdir, ignore_errors=True)
    text = table(lab, {"perisai": perisai, "nmap -sV + NSE": nmap})
    print(text)
    for miss in perisai.missed:
        print(f"perisai: {miss}", file=sys.stderr)
    write(args.out, text)


if __name__ == "__main__":
    main()
