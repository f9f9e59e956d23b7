"""Hosts as configuration files and log lines write them: an IPv6 address
may be written in brackets, as URLs write it (RFC 3986: ``[::1]``), and is
read without them, as connecting takes it; ``host:port`` is read so too,
and written so (``bracketed``, ``hostPort``) in log lines, answers and
URLs; a host is
connected to through ``hostEndpoint``, which keeps an IPv6 address's
zone."""

import ipaddress
import re

from twisted.internet.endpoints import HostnameEndpoint, TCP6ClientEndpoint


def bracketed(host):
    """``host`` as a URL or ``host:port`` writes it: an IPv6 address in
    brackets (``[::1]``), any other host as it is."""
    return f"[{host}]" if ":" in str(host) else str(host)


def hostPort(host, port):
    """``host:port``, an IPv6 address in brackets (``[::1]:104``), so that
    its port is not read as a group of the address."""
    return f"{bracketed(host)}:{port}"


def hostEndpoint(reactor, host, port, connectTimeout=30):
    """The TCP client endpoint of ``host``, ``port``: a ``HostnameEndpoint``
    (a name, an IPv4 or IPv6 address), but for an IPv6 address with a zone
    (``fe80::1%eth0``, link-local) a ``TCP6ClientEndpoint``, which keeps
    the zone: ``HostnameEndpoint`` takes the address getaddrinfo gives
    without its scope and connects to no interface (EINVAL)."""
    if "%" in host:
        return TCP6ClientEndpoint(reactor, host, port, timeout=connectTimeout)
    return HostnameEndpoint(reactor, host, port, timeout=connectTimeout)


def unbracketed(host):
    """``host`` without the brackets around an IP address (``[::1]``:
    ``::1``); any other host as it is."""
    if not (host.startswith("[") and host.endswith("]")):
        return host
    try:
        ipaddress.ip_address(host[1:-1])
    except ValueError:
        return host
    return host[1:-1]


ZONE = r"[\w.\-]+"  # an IPv6 address's zone after its %: an interface's name or number (eth0, br-lan.5, 2)
# 10.0.0.5:104, [fd00::5]:104, [fe80::5%eth0]:104 (an IPv6 address with its zone)
_HOST_PORT = re.compile(rf"([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+(?:%{ZONE})?\]):([0-9]{{1,5}})")


def splitHostPort(text):
    """``(host, port)`` of ``text`` written ``host:port`` (a name or IPv4
    address) or ``[host]:port`` (an IPv6 address, perhaps with its zone:
    ``[fe80::1%eth0]:104``), the brackets taken off; None for any other
    text."""
    match = _HOST_PORT.fullmatch(text.strip())
    if match is None or unbracketed(match.group(1)).startswith("["):
        return None
    return unbracketed(match.group(1)), match.group(2)


def bareIPv6Problem(text):
    """Why ``text``, an IPv6 address and a port without brackets
    (``::1:104``, where the port reads as a group of the address), is no
    ``host:port``; None for any other text."""
    host, colon, port = text.strip().rpartition(":")
    if not (colon and port.isdigit() and ":" in host):
        return None
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return None
    return f"{text.strip()!r} is no host:port: write an IPv6 address in brackets, [{host}]:{port}"
