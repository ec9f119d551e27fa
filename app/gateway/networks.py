"""Where the gateway may send: the allowed networks policy, checked before any socket is opened.

Production: public (globally routable, unicast) addresses, plus the networks listed in
`PYLON_GATEWAY_ALLOWED_NETWORKS` (the only way to reach private, link-local or reserved ones).
`PYLON_NETWORK=local`: loopback only (the listed networks, which settings require to be loopback, narrow
it further). An axon that is not an IP literal (a host name) is refused: resolving it would let DNS pick
the address after the check.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class AllowedNetworks:
    """`allows(ip)` says whether the gateway may call an axon at `ip`."""

    def __init__(self, listed: Iterable[str], *, loopback_only: bool) -> None:
        self.listed = tuple(ipaddress.ip_network(entry, strict=False) for entry in listed)
        self.loopback_only = loopback_only
        # An axon's verdict never changes for a given policy; the metagraph repeats the same few addresses.
        self.allows = lru_cache(maxsize=4096)(self._allows)

    @classmethod
    def for_network(cls, chain_network: str, listed: Iterable[str]) -> AllowedNetworks:
        return cls(listed, loopback_only=chain_network == "local")

    def _allows(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if address.is_unspecified:
            return False
        if self.loopback_only:
            in_loopback = any(address in network for network in LOOPBACK)
            return in_loopback and (not self.listed or any(address in net for net in self.listed))
        if any(address in network for network in self.listed):
            return True
        # `is_global` excludes private, loopback, link-local, shared (100.64/10), documentation and reserved
        # ranges; multicast addresses can be "global", so they are refused on their own.
        return address.is_global and not address.is_multicast

    def describe(self) -> str:
        listed = ", ".join(str(network) for network in self.listed)
        if self.loopback_only:
            return f"loopback only ({listed})" if listed else "loopback only"
        return f"public addresses and {listed}" if listed else "public addresses only"
