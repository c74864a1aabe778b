"""Where a Ray cluster answers: `HOST:PORT`, a head node's address as `ray start` takes it,
checked before anything waits on it."""

from __future__ import annotations

import socket

from ir.errors import AsicperfError


def host_and_port(address: str, what: str) -> tuple[str, int]:
    """The host and port of `address`, or a one-line error naming `what` (the option)."""
    host, colon, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:6379
    valid = bool(colon and host and port.isdigit()) and 0 < int(port) < 65536
    if not valid or any(character.isspace() for character in host):
        raise AsicperfError(f"{what} '{address}': expected HOST:PORT, like 10.0.0.5:6379")
    return host, int(port)


def check_answers(address: str, what: str, timeout_s: float) -> None:
    """Something accepts connections at `address` within `timeout_s`; a one-line error otherwise,
    so a mistyped or firewalled head fails at once instead of in Ray's long retries."""
    host, port = host_and_port(address, what)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise AsicperfError(f"{what} {address}: nothing answers there ({reason})") from None
