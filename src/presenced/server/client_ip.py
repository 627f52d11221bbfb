"""Which address a client connects from, for the logs: the socket's peer, or what a trusted
proxy says in ``X-Forwarded-For``.

``X-Forwarded-For`` is written by whoever sends the request, so it is believed only from a
peer in ``trusted_proxies``: the header is read from the right (each proxy appends the address
it got the request from) and the first address that is not itself a trusted proxy is the
client's. From any other peer the header is ignored and the peer address is the client's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

__all__ = ["ClientAddress", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses and CIDR blocks (``10.0.0.0/8``, ``::1``) as networks; ValueError names the
    first bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR block") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAddress:
    """Resolves the client address of a connect request against the trusted proxies."""

    __slots__ = ("_trusted",)

    def __init__(self, trusted_proxies: Iterable[str] | None) -> None:
        self._trusted = parse_networks(trusted_proxies or ())

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self._trusted)

    def of(self, peer: str, headers: Mapping[str, str]) -> str:
        """The client's address ('' when the peer is unknown)."""
        address = _address(peer) if peer else None
        if address is None:
            return peer
        forwarded = headers.get("x-forwarded-for") if self._trusted else None
        if not forwarded or not self._is_trusted(address):
            return str(address)
        for hop in reversed(forwarded.split(",")):
            hop_address = _address(hop)
            if hop_address is None:
                break  # garbage from here on: keep the last address we could trust
            address = hop_address
            if not self._is_trusted(hop_address):
                break
        return str(address)
