"""Whether an address lies inside a network, for the preflight of several hosts on one private network.

ansible-core has no address filters (they are in the `ansible.utils` collection, which the gateway does
not install); Python's `ipaddress` answers it.
"""

from __future__ import annotations

import ipaddress


def in_network(address: str, network: str) -> bool:
    """True when `address` (an IPv4 or IPv6 address) lies inside `network` (a CIDR); False when either is
    not one (the preflight names a malformed value with its own message)."""
    try:
        return ipaddress.ip_address(str(address).strip()) in ipaddress.ip_network(str(network).strip(), strict=False)
    except ValueError:
        return False


class FilterModule:
    def filters(self) -> dict:
        return {"gateway_in_network": in_network}
