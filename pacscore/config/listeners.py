"""The endpoints the server listens on, as dicom.ini (``TCPPort``,
``DICOMTLSEndpoint``, ``HL7Endpoint``, ``WebEndpoint``,
``ControlEndpoint``) or the command line describe them: parsed, and their
port checked, without listening, so that start-up and the commands editing
dicom.ini refuse one the server could not listen on (an ``ssl:`` one whose
private key is encrypted too, before Twisted's parser prompts for its pass
phrase on the terminal).
"""

from twisted.internet import endpoints

from pacscore.config.errors import ConfigError
from pacscore.control.endpoint import TURNED_OFF, fields
from pacscore.tls import checkSSLKey

DISABLED = TURNED_OFF + ("",)  # and empty: no endpoint to parse (and TLS, HL7 or web off; ControlEndpoint: its default)
ENDPOINT_KEYS = ("DICOMTLSEndpoint", "HL7Endpoint", "WebEndpoint", "ControlEndpoint")
PORT_KINDS = ("tcp", "tcp6", "ssl", "mtls")
MAX_PORT = 65535


def serverEndpoint(reactor, description):
    """The server endpoint of the strports ``description`` on ``reactor``;
    ValueError saying why it is not usable."""
    kind, positional, keywords = fields(description)
    try:
        if kind == "ssl":
            checkSSLKey(positional, keywords)
        endpoint = endpoints.serverFromString(reactor, description)
    except Exception as e:  # strports parsers raise TypeError, ValueError, KeyError ...
        raise ValueError(f"{description!r} is not a usable endpoint ({e})") from e
    port = keywords.get("port") or (positional[0] if positional else None)
    if kind in PORT_KINDS and port is not None and not 0 <= int(port) <= MAX_PORT:
        raise ValueError(f"{description!r} is not a usable endpoint (port {port} is not from 0 to {MAX_PORT})")
    return endpoint


def checkEndpoints(configuration):
    """ConfigError, naming the line, for an endpoint of dicom.ini's keys
    that the server could not listen on (parsed only: not its reactor's)."""
    ini = configuration.ini
    descriptions = [("TCPPort", f"tcp:{configuration.tcpPort}")]
    descriptions += [(key, ini.get(key, "")) for key in ENDPOINT_KEYS]
    for key, description in descriptions:
        if description.strip().lower() not in DISABLED:
            try:
                serverEndpoint(None, description)
            except ValueError as e:
                raise ConfigError(configuration.iniPath, ini.lineOf(key), f"{key}: {e}") from e
