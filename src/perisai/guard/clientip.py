"""The client's IP: the peer, unless the peer is a trusted proxy; then the right-most
``X-Forwarded-For`` hop that is not itself a trusted proxy. Never blindly the header's first hop."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["TrustedProxies", "ip_prefix"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, networks: Sequence[str]) -> None:
        self._networks: list[IPNetwork] = [
            ipaddress.ip_network(net, strict=False) for net in networks
        ]

    def trusted(self, ip: str) -> bool:
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
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    bits = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))
