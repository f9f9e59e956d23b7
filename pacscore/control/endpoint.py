"""Where the control port is: the server's strports description read both ways.

The server listens on ``ControlEndpoint`` (``--control``); whether that is
bound to loopback decides whether clients must give ``ControlSecret``, and
``dgate`` derives from the same description where to connect (and, for
``ssl:``, which certificate to trust: ``pacscore.control.tlstrust``).
"""

import os
import re

from twisted.internet import endpoints

from pacscore.control.tlstrust import connectionCreator, serverCertificates
from pacscore.hostport import hostPort, unbracketed

DEFAULT_ENDPOINT = "tcp:5679:interface=127.0.0.1"
DEFAULT_PORT = 5679
LOOPBACK = ("127.0.0.1", "::1", "localhost")
_WILDCARD = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
NETWORK_KINDS = ("tcp", "tcp6", "ssl")
TURNED_OFF = ("off", "none")  # an endpoint key's values that turn its service off (empty ControlEndpoint: default)


def fields(description):
    """``(kind, positional, keywords)`` of a strports server description
    (``\\:`` escapes a colon); a bare number is a TCP port."""
    parts = [part.replace("\\:", ":") for part in re.split(r"(?<!\\):", description.strip())]
    if parts[0].isdigit():
        parts.insert(0, "tcp")
    positional, keywords = [], {}
    for part in parts[1:]:
        key, equals, value = part.partition("=")
        if equals:
            keywords[key.strip().lower()] = value.strip()
        else:
            positional.append(part.strip())
    return parts[0].strip().lower(), positional, keywords


def portNumber(text):
    """``text`` as a TCP port: ASCII digits, 1 to 65535; ValueError otherwise."""
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):
        raise ValueError(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


def isLoopback(description):
    """Whether only this machine can reach the endpoint: a TCP/TLS port bound
    to 127.0.0.1, ::1 or localhost, or a UNIX socket."""
    kind, _, keywords = fields(description)
    if kind == "unix":
        return True
    return kind in NETWORK_KINDS and keywords.get("interface", "").lower() in LOOPBACK


def secretProblem(description, secret):
    """Why a control port listening on ``description`` cannot be served
    with ``secret`` (ControlSecret; "" or None: none): it is not bound to
    loopback (``isLoopback``) and has none; None when it can."""
    if secret or isLoopback(description):
        return None
    return (f"the control port {description} is not bound to 127.0.0.1, ::1 or localhost: "
            "set ControlSecret, or bind it to loopback")


def hostAndPort(description, defaultPort, host=None, port=None):
    """``(secure, host, port)`` at which a client reaches a server listening
    on the tcp: or ssl: ``description`` (a wildcard interface: loopback;
    another kind: TCP on ``defaultPort``); ``host``/``port`` override it
    (an IPv6 ``host`` may be written in brackets, ``[::1]``).
    ValueError for a bad port."""
    kind, positional, keywords = fields(description)
    if kind not in NETWORK_KINDS:
        kind, positional, keywords = "tcp", [], {}
    if port is None:
        port = portNumber(keywords.get("port") or (positional[0] if positional else str(defaultPort)))
    if host is None:
        interface = keywords.get("interface", "")
        host = _WILDCARD.get(interface, interface)
    return kind == "ssl", unbracketed(host), port


def socketPath(description):
    """The path of the UNIX socket of a ``unix:`` description ("" for none)."""
    _, positional, keywords = fields(description)
    return keywords.get("address") or (positional[0] if positional else "")


def controlDescription(ini):
    """The ``ControlEndpoint`` of ``ini`` (a dicom.ini; ``DEFAULT_ENDPOINT``
    when it names none), or None when it turns the control port off."""
    description = ini.get("ControlEndpoint", "") or DEFAULT_ENDPOINT
    return None if description.strip().lower() in TURNED_OFF else description


def clientTarget(description, folder, host=None, port=None):
    """Where a client reaches a server listening on ``description``:
    ``("unix", path)`` of its UNIX socket, a relative path in ``folder``
    (the working folder, where the server runs), else ``(secure, host,
    port)`` (``hostAndPort``; an mtls: address is an ssl: one's);
    ``host``/``port`` (dgate's -q/-p) override it and imply TCP.
    ValueError for no socket path or a bad port."""
    kind = fields(description)[0]
    if kind == "unix" and host is None and port is None:
        path = socketPath(description)
        if not path:
            raise ValueError("no UNIX socket path")
        return "unix", os.path.normpath(os.path.join(folder, path))
    if kind == "mtls":
        description = "ssl" + description.strip()[len(kind):]
    return hostAndPort(description, DEFAULT_PORT, host, port)


def clientEndpoint(reactor, description, host=None, port=None, timeout=10, folder="."):
    """``(endpoint, label)`` to reach a server listening on ``description``
    (its files relative to ``folder``; ``clientTarget``).  ``label`` names
    the address in messages (``HOST:PORT`` or the socket's path).
    ValueError when the description gives no usable address (a bad port,
    no socket path, TLS with a client certificate)."""
    if fields(description)[0] == "mtls" and host is None and port is None:
        raise ValueError("the control port requires a client certificate (mtls:), which dgate cannot show; "
                         "give it an ssl: or tcp: endpoint")
    target = clientTarget(description, folder, host, port)
    if target[0] == "unix":
        return endpoints.UNIXClientEndpoint(reactor, target[1], timeout=timeout), target[1]
    secure, host, port = target
    endpoint = endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)
    if secure:
        keywords = fields(description)[2]
        endpoint = endpoints.wrapClientTLS(connectionCreator(host, serverCertificates(keywords, folder)), endpoint)
    return endpoint, hostPort(host, port)
