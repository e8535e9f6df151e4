"""Refuse every socket connection that is not loopback or a Unix socket.

The test suite also runs inside a network namespace with only `lo` (scripts/test.sh) where the
machine allows it; this guard makes an attempt fail loudly with the address, in any case.
"""

from __future__ import annotations

import ipaddress
import socket

_installed = False


class AirGapViolation(OSError):
    pass


def _is_loopback(address: object) -> bool:
    if isinstance(address, (str, bytes)):
        return True  # AF_UNIX path
    if not isinstance(address, tuple) or not address:
        return True
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode()
    if host in ("localhost", "", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name: it would need DNS, which is not loopback


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: object) -> None:
        if self.family != socket.AF_UNIX and not _is_loopback(address):
            raise AirGapViolation(f"air gap: connection to {address!r} refused by the test guard")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        if self.family != socket.AF_UNIX and not _is_loopback(address):
            raise AirGapViolation(f"air gap: connection to {address!r} refused by the test guard")
        return real_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
