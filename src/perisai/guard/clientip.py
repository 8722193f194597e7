"""The client's IP: the peer, unless the peer is a trusted proxy; then the right-most
``X-Forwarded-For`` hop that is not itself a trusted proxy. Never blindly the header's first hop.

Every address has one canonical spelling (:func:`canonical_ip`), so that no counter can be
dodged by respelling it: an IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) is its IPv4 address,
a zone id (``fe80::1%eth0``) is dropped, and any other IPv6 spelling (upper case, leading
zeros, uncompressed) becomes the compressed lower-case form. 6to4 and Teredo addresses stay
IPv6: they are tunnels, not another spelling of one IPv4 address.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["TrustedProxies", "canonical_ip", "ip_prefix", "ip_prefix48"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# a dotted quad exactly as ``ipaddress`` accepts it (0-255, no leading zeros, ASCII digits)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"({_OCTET}\.{_OCTET}\.{_OCTET})\.{_OCTET}")


def _address(ip: str) -> IPAddress | None:
    """``ip`` parsed to its canonical address (IPv4-mapped IPv6 as IPv4, zone id dropped),
    or None when it is not an IP."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(int(address))
    return address


def _network(net: str) -> IPNetwork:
    """A configured network; an IPv4-mapped IPv6 one (``::ffff:10.0.0.0/104``) as the IPv4
    network it maps, since the addresses it is compared with are canonical."""
    network = ipaddress.ip_network(net, strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


@lru_cache(maxsize=65536)
def canonical_ip(ip: str) -> str:
    """The one spelling of an address that every counter is keyed by (see the module's
    docstring); anything that is not an IP (a middleware's ``testclient``, "") unchanged."""
    if _IPV4.fullmatch(ip) is not None:  # the common case: already canonical
        return ip
    address = _address(ip)
    return ip if address is None else str(address)


class TrustedProxies:
    def __init__(self, networks: Sequence[str]) -> None:
        self._networks: list[IPNetwork] = [_network(net) for net in networks]

    def trusted(self, ip: str) -> bool:
        if not self._networks:
            return False
        address = _address(ip)
        if address is None:
            return False
        return any(address in net for net in self._networks)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address, canonical (:func:`canonical_ip`)."""
        if forwarded_for is None or not self.trusted(peer):
            return canonical_ip(peer)
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if _address(hop) is None:
                # a garbled header from behind a trusted proxy: use the proxy
                return canonical_ip(peer)
            if not self.trusted(hop):
                return canonical_ip(hop)
        return canonical_ip(hops[0] if hops else peer)


@lru_cache(maxsize=65536)
def ip_prefix(ip: str) -> str | None:
    """The /24 (IPv4) or /64 (IPv6) network an address belongs to, or None when not an IP."""
    v4 = _IPV4.fullmatch(ip)
    if v4 is not None:  # the common case, without building two ipaddress objects
        return f"{v4.group(1)}.0/24"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    bits = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


@lru_cache(maxsize=65536)
def ip_prefix48(ip: str) -> str | None:
    """The /48 an IPv6 address belongs to (one site, where a /64 is one LAN), or None for
    IPv4 and for what is not an IP: IPv4 is limited per /24 only. Expects a canonical
    address (:func:`canonical_ip`)."""
    if ":" not in ip:
        return None
    try:
        address = ipaddress.IPv6Address(ip)
    except ValueError:
        return None
    return str(ipaddress.IPv6Network((int(address) >> 80 << 80, 48)))
