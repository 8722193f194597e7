"""The client's IP: the peer, unless the peer is a trusted proxy; then the right-most
``X-Forwarded-For`` hop that is not itself a trusted proxy. Never blindly the header's first hop."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["TrustedProxies", "ip_prefix"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# a dotted quad exactly as ``ipaddress`` accepts it (0-255, no leading zeros, ASCII digits)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"({_OCTET}\.{_OCTET}\.{_OCTET})\.{_OCTET}")


class TrustedProxies:
    def __init__(self, networks: Sequence[str]) -> None:
        self._networks: list[IPNetwork] = [
            ipaddress.ip_network(net, strict=False) for net in networks
        ]

    def trusted(self, ip: str) -> bool:
        if not self._networks:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self._networks)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        if forwarded_for is None or not self.trusted(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return peer  # a garbled header from behind a trusted proxy: use the proxy
            if not self.trusted(hop):
                return hop
        return hops[0] if hops else peer


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
