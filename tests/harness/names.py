"""Test domains that exist only inside the test process: their names resolve to loopback or a guest."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def resolve_names(names: Mapping[str, str]) -> Iterator[None]:
    """Resolve each name (and its subdomains) to the given address, in this process only."""
    original = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else host
        for suffix, address in names.items():
            if isinstance(name, str) and (name == suffix or name.endswith("." + suffix)):
                host = address
        return original(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = original
