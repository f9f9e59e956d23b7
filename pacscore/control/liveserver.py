"""Whether the working folder's server is running: something accepts a
connection at its control endpoint (``ControlEndpoint``).  The offline
``dgate`` options that drop and recreate the index tables (-i, -r) ask
first, and refuse to run under it.  No reactor runs there: a plain socket,
given ``PROBE_TIMEOUT`` seconds."""

import socket

from pacscore.control.endpoint import clientTarget, controlDescription
from pacscore.hostport import hostPort

PROBE_TIMEOUT = 2


def controlAddress(configuration):
    """``(address, label)`` of the control endpoint of ``configuration``
    (its dicom.ini; ``clientTarget`` in its working folder): a UNIX
    socket's path, else ``(host, port)``; None when it is off.
    ValueError when it gives no address (``clientTarget``: port 0, no
    socket path)."""
    description = controlDescription(configuration.ini)
    if description is None:
        return None
    target = clientTarget(description, configuration.workdir)
    if target[0] == "unix":
        return target[1], target[1]
    _, host, port = target
    return (host, port), hostPort(host, port)


def runningServer(configuration):
    """The label of the control endpoint of ``configuration`` when it
    accepts a connection (its server runs), else None; ValueError as
    ``controlAddress``."""
    address = controlAddress(configuration)
    if address is None:
        return None
    target, label = address
    try:
        if isinstance(target, str):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(PROBE_TIMEOUT)
            with probe:
                probe.connect(target)
        else:
            socket.create_connection(target, timeout=PROBE_TIMEOUT).close()
    except OSError:
        return None
    return label
