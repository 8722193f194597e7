"""Parse what the user asked to scan, and refuse what they may not be authorised to scan.

Targets: ``host``, ``host:port``, ``[v6]:port``, ``CIDR`` and ``@file`` (one per line, ``#``
comments). Anything outside loopback and the private ranges needs ``--authorized``: scanning
someone else's network is the user's legal risk, so the tool makes them say it is theirs.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from perisai.bounded import not_a_regular_file

MAX_ADDRESSES_PER_TARGET = 65536  # a /16: larger ranges are split by the user, on purpose
MAX_ADDRESSES_ON_CLUSTER = 1 << 24  # a /8: discovery is fed to the workers in chunks

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


class TargetError(ValueError):
    """A target or port spec the user must fix; the message is one line that says how."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AddressCap:
    """The most addresses one target may hold, and what to tell a user whose range is larger."""

    limit: int
    hint: str = ""


def address_cap(cluster: bool, authorized: bool) -> AddressCap:
    """A /8 on a Dask cluster for a user who says they are authorised; else a /16, with the
    way to go beyond it."""
    if cluster and authorized:
        return AddressCap(MAX_ADDRESSES_ON_CLUSTER)
    if cluster:
        return AddressCap(MAX_ADDRESSES_PER_TARGET, "; with --cluster, add --authorized for a /8")
    return AddressCap(
        MAX_ADDRESSES_PER_TARGET,
        "; --cluster (a Dask scheduler) with --authorized takes up to a /8",
    )


LOCAL_CAP = address_cap(cluster=False, authorized=False)


@dataclass(frozen=True)
class TargetSpec:
    """One parsed target: a network (a single address is a /32 or /128) and maybe a port."""

    text: str  # as the user wrote it, normalised
    network: IPNetwork
    port: int | None = None
    hostname: str | None = None  # when given by name, for display

    def addresses(self) -> Iterator[str]:
        if self.network.num_addresses == 1:
            yield str(self.network.network_address)
            return
        for address in self.network.hosts():
            yield str(address)


def parse_ports(spec: str) -> tuple[int, ...]:
    """``"6379,15000-15100"`` → sorted unique ports; anything malformed is a TargetError."""
    ports: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        low_text, dash, high_text = part.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if dash else low
        except ValueError:
            raise TargetError(
                f"bad port spec {part!r}: use numbers and ranges like 6379,15000-15100"
            ) from None
        if not (1 <= low <= high <= 65535):
            raise TargetError(f"bad port range {part!r}: ports run from 1 to 65535, low to high")
        ports.update(range(low, high + 1))
    if not ports:
        raise TargetError(f"no ports in {spec!r}")
    return tuple(sorted(ports))


def parse_targets(
    specs: Iterable[str],
    resolve: bool = True,
    *,
    in_file: bool = False,
    cap: AddressCap = LOCAL_CAP,
) -> list[TargetSpec]:
    """Parse every spec (expanding ``@file``, one level), each range within ``cap``; the
    first bad one raises a TargetError."""
    parsed: list[TargetSpec] = []
    for spec in specs:
        spec = spec.strip()
        if spec.startswith("@") and in_file:
            raise TargetError(f"{spec!r}: a target file cannot name another target file")
        if spec.startswith("@"):
            parsed.extend(
                parse_targets(_read_target_file(spec[1:]), resolve, in_file=True, cap=cap)
            )
        elif spec:
            parsed.append(parse_target(spec, resolve, cap))
    if not parsed:
        raise TargetError("no targets given")
    return parsed


MAX_TARGET_FILE_BYTES = 16 << 20  # a million targets fit; a device or a log does not


def _read_target_file(path_text: str) -> list[str]:
    """A target file's specs, read bounded: a regular file of at most 16 MiB."""
    path = Path(path_text)
    if (why := not_a_regular_file(path)) is not None or path.is_dir():
        raise TargetError(f"cannot read target file {path_text}: {why or 'a directory'}")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_TARGET_FILE_BYTES + 1)
        if len(data) > MAX_TARGET_FILE_BYTES:
            raise TargetError(
                f"target file {path_text} is over {MAX_TARGET_FILE_BYTES >> 20} MiB; split it"
            )
        lines = data.decode("utf-8").splitlines()
    except OSError as error:
        raise TargetError(
            f"cannot read target file {path_text}: {error.strerror or error}"
        ) from None
    except UnicodeDecodeError:
        raise TargetError(f"target file {path_text} is not UTF-8 text") from None
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def parse_target(spec: str, resolve: bool = True, cap: AddressCap = LOCAL_CAP) -> TargetSpec:
    """One target spec → TargetSpec, or a TargetError that says what is wrong with it."""
    host, port = _split_port(spec)
    if "/" in host:
        try:
            network = ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise TargetError(f"{spec!r} is not a valid CIDR range (e.g. 10.0.0.0/24)") from None
        if network.num_addresses > cap.limit:
            prefix = network.max_prefixlen - (cap.limit.bit_length() - 1)
            raise TargetError(
                f"{spec!r} has {network.num_addresses} addresses; split it into ranges of at most "
                f"{cap.limit} (a /{prefix}){cap.hint}"
            )
        return TargetSpec(str(network) + (f":{port}" if port else ""), network, port)
    try:
        address: IPAddress = ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise TargetError(
                f"{spec!r} is not a target: use host, host:port, CIDR or @file"
            ) from None
        if not resolve:
            raise TargetError(f"{spec!r}: host names are not resolved here") from None
        address = _resolve(host, spec)
        return TargetSpec(spec, ipaddress.ip_network(address), port, hostname=host)
    text = (f"[{address}]" if address.version == 6 and port else str(address)) + (
        f":{port}" if port else ""
    )
    return TargetSpec(text, ipaddress.ip_network(address), port)


def _split_port(spec: str) -> tuple[str, int | None]:
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise TargetError(f"{spec!r} is not a target: write IPv6 with a port as [::1]:6379")
        return host, _port(rest[1:], spec)
    if spec.count(":") == 1:
        host, _, port_text = spec.partition(":")
        return host, _port(port_text, spec)
    return spec, None


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not (1 <= int(text) <= 65535):
        raise TargetError(f"{spec!r} has a bad port: ports run from 1 to 65535")
    return int(text)


def _resolve(host: str, spec: str) -> IPAddress:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise TargetError(f"cannot resolve host name {host!r} in {spec!r}") from None
    return ipaddress.ip_address(str(infos[0][4][0]))


def is_in_default_scope(network: IPNetwork) -> bool:
    """Loopback and private ranges may be scanned without ``--authorized``."""
    return network.is_loopback or (network.is_private and not network.is_global)


def check_scope(targets: Iterable[TargetSpec], authorized: bool) -> None:
    """Refuse public addresses unless the user states they are authorised to scan them."""
    if authorized:
        return
    for target in targets:
        if not is_in_default_scope(target.network):
            raise TargetError(
                f"{target.text} is outside loopback and private ranges; scan only systems you are "
                "authorised to test, and say so with --authorized"
            )
