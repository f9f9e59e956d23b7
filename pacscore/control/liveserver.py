"""Whether the working folder's server is running: something accepts a
connection at its control endpoint (``ControlEndpoint``).  The offline
``dgate`` options that drop and recreate the index tables (-i, -r) ask
first, and refuse to run under it.  No reactor runs there: a plain socket,
given ``PROBE_TIMEOUT`` seconds."""

import socket

from pacscore.control.endpoint import DEFAULT_ENDPOINT, DEFAULT_PORT, DISABLED, fields, hostAndPort, socketPath

PROBE_TIMEOUT = 2


def controlAddress(configuration):
    """``(family, address, label)`` of the control endpoint of
    ``configuration`` (its dicom.ini), or None when it is off."""
    description = configuration.ini.get("ControlEndpoint", "") or DEFAULT_ENDPOINT
    if description.strip().lower() in DISABLED:
        return None
    kind = fields(description)[0]
    if kind == "unix":
        path = socketPath(description)
        return socket.AF_UNIX, configuration.resolvePath(path), path
    if kind == "mtls":  # its address is written as an ssl: one's
        description = "ssl" + description.strip()[len(kind):]
    _, host, port = hostAndPort(description, DEFAULT_PORT)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, port), f"{host}:{port}"


def runningServer(configuration):
    """The label of the control endpoint of ``configuration`` when it
    accepts a connection (its server runs), else None."""
    address = controlAddress(configuration)
    if address is None:
        return None
    family, target, label = address
    try:
        if family == socket.AF_UNIX:
            probe = socket.socket(family, socket.SOCK_STREAM)
            probe.settimeout(PROBE_TIMEOUT)
            with probe:
                probe.connect(target)
        else:
            socket.create_connection(target, timeout=PROBE_TIMEOUT).close()
    except OSError:
        return None
    return label
