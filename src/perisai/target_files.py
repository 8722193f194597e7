"""Targets from the tools people already run: nmap XML, masscan's JSON or list output, and
the JSON-lines export of a device search engine (Shodan's ``ip_str``/``port`` records).

Each open TCP port becomes one ``host:port`` target. What the other tool said about the
service (nmap's service name, Shodan's ``product``) is kept as a hint only: perisai still
recognises every service by its own answer, and the report notes where the hint and the
answer disagree. Files are read bounded (a regular file, at most 256 MiB once uncompressed),
and XML without DTDs or entity expansion.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from perisai.bounded import not_a_regular_file
from perisai.findings import ScanReport
from perisai.targets import TargetError

__all__ = [
    "ImportedTarget",
    "hint_notes",
    "read_masscan",
    "read_nmap",
    "read_shodan",
    "target_text",
]

MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ImportedTarget:
    """One open port another tool reported, and what it thought runs there."""

    host: str
    port: int
    hint: str = ""  # the other tool's service or product name, never trusted

    @property
    def text(self) -> str:
        return target_text(self.host, self.port)


def target_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _read(path: Path, what: str) -> bytes:
    """The file's bytes (gunzipped when it is gzip), bounded; TargetError with the fix."""
    if (why := not_a_regular_file(path)) is not None or path.is_dir():
        raise TargetError(f"cannot read {what} file {path}: {why or 'a directory'}")
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as handle:
            data: bytes = handle.read(MAX_FILE_BYTES + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise TargetError(f"cannot read {what} file {path}: {error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise TargetError(f"{what} file {path} is over {MAX_FILE_BYTES >> 20} MiB; split it")
    return data


def _address(text: object, path: Path, what: str) -> str:
    try:
        return str(ipaddress.ip_address(str(text).strip()))
    except ValueError:
        raise TargetError(f"{what} file {path}: {str(text)[:60]!r} is not an IP address") from None


def _port(value: object, path: Path, what: str) -> int:
    try:
        port = int(str(value))
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise TargetError(f"{what} file {path}: {str(value)[:20]!r} is not a port")
    return port


def read_nmap(path: Path) -> list[ImportedTarget]:
    """Open TCP ports of an ``nmap -oX`` file, with nmap's service name as the hint."""
    try:
        root = ElementTree.fromstring(_read(path, "nmap"))
    except (ElementTree.ParseError, DefusedXmlException) as error:
        raise TargetError(f"nmap file {path} is not nmap XML (-oX): {error}") from None
    if root.tag != "nmaprun":
        raise TargetError(f"nmap file {path} is not nmap XML (-oX): root is <{root.tag}>")
    found: list[ImportedTarget] = []
    for host in root.iter("host"):
        address = _host_address(host)
        if address is None:
            continue
        for port in host.iter("port"):
            state = port.find("state")
            if port.get("protocol") != "tcp" or state is None or state.get("state") != "open":
                continue
            service = port.find("service")
            hint = "" if service is None else service.get("product") or service.get("name") or ""
            found.append(
                ImportedTarget(
                    _address(address, path, "nmap"), _port(port.get("portid"), path, "nmap"), hint
                )
            )
    return _unique(found)


def _host_address(host: Element) -> str | None:
    for address in host.iter("address"):
        if address.get("addrtype") in ("ipv4", "ipv6"):
            return address.get("addr")
    return None


def read_masscan(path: Path) -> list[ImportedTarget]:
    """Open TCP ports of masscan's ``-oJ`` (JSON, its trailing commas tolerated) or ``-oL``
    (``open tcp PORT ADDRESS TIME`` lines) output; masscan names no services."""
    text = _read(path, "masscan").decode("utf-8", "replace")
    if text.lstrip().startswith(("[", "{")):
        return _unique(_masscan_json(text, path))
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) < 4 or words[0] not in ("open", "closed"):
            raise TargetError(f"masscan file {path}, line {number}: not -oL output: {line[:60]!r}")
        if words[0] == "open" and words[1] == "tcp":
            port = _port(words[2], path, "masscan")
            found.append(ImportedTarget(_address(words[3], path, "masscan"), port))
    return _unique(found)


def _masscan_json(text: str, path: Path) -> Iterator[ImportedTarget]:
    """masscan writes one object per line, each followed by a comma, inside ``[`` … ``]``
    (some versions leave a comma before the ``]``): read it object by object."""
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip().rstrip(",")
        if line in ("", "[", "]") or not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise TargetError(f"masscan file {path}, line {number}: not -oJ output") from None
        if not isinstance(record, dict) or "ip" not in record:
            continue
        for entry in record.get("ports") or ():
            if not isinstance(entry, dict):
                continue
            if entry.get("proto", "tcp") == "tcp" and entry.get("status", "open") == "open":
                port = _port(entry.get("port"), path, "masscan")
                yield ImportedTarget(_address(record["ip"], path, "masscan"), port)


def read_shodan(path: Path) -> list[ImportedTarget]:
    """TCP services of a device search engine's JSON-lines export (optionally gzipped):
    ``ip_str``, ``port``, ``transport``, with ``product`` (else ``_shodan.module``) as hint."""
    found = []
    for number, line in enumerate(_read(path, "shodan").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise TargetError(
                f"shodan file {path}, line {number}: not JSON lines (one banner per line)"
            ) from None
        if not isinstance(record, dict) or "ip_str" not in record or "port" not in record:
            raise TargetError(f"shodan file {path}, line {number}: no ip_str and port")
        if record.get("transport", "tcp") != "tcp":
            continue
        shodan = record.get("_shodan")
        module = shodan.get("module") if isinstance(shodan, dict) else None
        hint = str(record.get("product") or module or "")[:80]
        port = _port(record["port"], path, "shodan")
        found.append(ImportedTarget(_address(record["ip_str"], path, "shodan"), port, hint))
    return _unique(found)


def _unique(targets: Iterable[ImportedTarget]) -> list[ImportedTarget]:
    """Each host:port once (the first hint kept), in the file's order."""
    seen: dict[tuple[str, int], ImportedTarget] = {}
    for target in targets:
        seen.setdefault((target.host, target.port), target)
    return list(seen.values())


def hint_notes(report: ScanReport, imported: Iterable[ImportedTarget]) -> list[str]:
    """Report notes where another tool's hint and perisai's identification disagree: the
    hint is shown, never used as the answer."""
    services = {(f.target.host, f.target.port): f.target.service for f in report.findings}
    notes = []
    for target in imported:
        found = services.get((target.host, target.port))
        if target.hint and found is not None and not _agrees(target.hint, found):
            notes.append(
                f"{target.text}: the imported file said {target.hint[:60]!r}; "
                f"perisai identified {found} by its answer"
            )
    return notes


_SAME = {"mysql": ("mariadb",), "postgres": ("postgresql",), "mqtt": ("mosquitto",)}


def _agrees(hint: str, service: str) -> bool:
    words = hint.lower()
    return service in words or any(alias in words for alias in _SAME.get(service, ()))
