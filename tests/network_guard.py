"""Block every socket connection that leaves the machine, so the suite proves the function works offline.

`install()` patches socket.socket.connect / connect_ex and socket.create_connection: a connect to anything but
loopback (127.0.0.0/8, ::1, "localhost") or a Unix socket raises BlockedConnectionError *before* the real connect
(no packet, no DNS lookup) and is recorded in ATTEMPTS, so an attempt that some library swallows still fails the test
(the autouse fixture `network_guard` checks ATTEMPTS after each test). Subprocesses are not covered.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

ATTEMPTS: list[str] = []  # "host:port" of every blocked connect since the last check
_REAL = {
    "connect": socket.socket.connect,
    "connect_ex": socket.socket.connect_ex,
    "create_connection": socket.create_connection,
}
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class BlockedConnectionError(OSError):
    """A test tried to reach the network (an OSError, as an unplugged network would give)."""


def is_loopback(host: Any) -> bool:
    if not isinstance(host, str):
        return False
    name = host.split("%", 1)[0].lower()  # drop an IPv6 zone ("fe80::1%eth0")
    if name in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False  # any other host name would need a DNS lookup: blocked without resolving it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified  # 0.0.0.0 / :: connect to this machine


def _check(family: int, address: Any) -> None:
    if family not in (socket.AF_INET, socket.AF_INET6):
        return  # AF_UNIX, AF_NETLINK...: never leave the machine
    host, port = (address[0], address[1]) if isinstance(address, tuple) and len(address) >= 2 else (address, None)
    if not is_loopback(host):
        ATTEMPTS.append(f"{host}:{port}")
        raise BlockedConnectionError(
            errno.ENETUNREACH,
            f"network access to {host}:{port} is blocked in tests (tests/network_guard.py); "
            "the function must work offline: use loopback or a mock",
        )


def _connect(self: socket.socket, address: Any) -> None:
    _check(self.family, address)
    return _REAL["connect"](self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _check(self.family, address)
    return _REAL["connect_ex"](self, address)


def _create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    host = address[0] if isinstance(address, tuple) and address else address
    family = socket.AF_INET6 if ":" in str(host) else socket.AF_INET  # only IPv6 literals hold a colon
    _check(family, address)
    return _REAL["create_connection"](address, *args, **kwargs)


def install() -> None:
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
    socket.create_connection = _create_connection  # type: ignore[assignment]


def uninstall() -> None:
    socket.socket.connect = _REAL["connect"]  # type: ignore[method-assign]
    socket.socket.connect_ex = _REAL["connect_ex"]  # type: ignore[method-assign]
    socket.create_connection = _REAL["create_connection"]  # type: ignore[assignment]


def installed() -> bool:
    return socket.socket.connect is _connect and socket.create_connection is _create_connection


@pytest.fixture(scope="session", autouse=True)
def _network_blocked_for_the_session() -> Iterator[None]:
    """Installed before any other session fixture (autouse fixtures of a scope come first), so bundle builds too."""
    install()
    yield
    uninstall()


@pytest.fixture(autouse=True)
def network_guard(_network_blocked_for_the_session: None) -> Iterator[list[str]]:
    """Every test runs offline; one that tried to reach the network fails, even if the error was swallowed."""
    install()  # a test may have uninstalled it
    ATTEMPTS.clear()
    yield ATTEMPTS
    tried = list(ATTEMPTS)
    ATTEMPTS.clear()
    install()
    if tried:
        pytest.fail(f"the test tried to reach the network: {', '.join(tried)} (blocked by tests/network_guard.py)")
