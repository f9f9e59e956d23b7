"""The host names the web interface answers for when it has no logins
(no ``WebUsers``), against DNS rebinding: a page of another site whose
host name its owner points at this server's address (``evil.example`` ->
10.1.2.3) is of the same origin as the answers, so the browser would let
it read them and post forms, with the ``Host`` header still naming that
site.  A request is answered when its ``Host`` is an IP address,
``localhost``, this machine's host name or fully qualified name, or one
that ``WebHostNames`` in dicom.ini lists (comma or space separated: the
names users type, those of a proxy or of Apache in front); any other is
refused with 421 Misdirected Request and a log line.  A request without
``Host`` (HTTP/1.0, which no current browser speaks) is answered.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from pacscore.web.answering import AnsweringResource
from pacscore.web.answers import WebError

KEY = "WebHostNames"
MISDIRECTED = 421


def _hostName(text):
    """The host name of a ``Host`` header's ``text``: lower case, without
    the port, the brackets of an IPv6 address or a final dot."""
    try:
        name = urlsplit("//" + text.strip()).hostname or ""
    except ValueError:  # an unclosed bracket
        return ""
    return name.rstrip(".")


def _isAddress(name):
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostNames:
    """The host names (lower case) requests may name besides IP addresses."""

    def __init__(self, names):
        self.names = frozenset(_hostName(name) for name in names)

    @classmethod
    def fromIni(cls, configuration):
        """``localhost``, this machine's names and those of ``WebHostNames``."""
        listed = configuration.ini.get(KEY, "").replace(",", " ").split()
        return cls(["localhost", socket.gethostname(), socket.getfqdn(), *listed])

    def accepts(self, request):
        """Whether ``request`` names a host this server answers for."""
        host = request.getHeader(b"host")
        if host is None:
            return True
        name = _hostName(host.decode("latin-1"))
        return name in self.names or _isAddress(name)


class Misdirected(AnsweringResource):
    """The answer to a request for a host name this server does not
    answer for: 421 whatever the method, and the log line of every refusal."""

    def render(self, request):
        return self._answerWith(self.answer, request)

    async def answer(self, request):
        host = request.getHeader(b"host").decode("latin-1")
        raise WebError(MISDIRECTED, f"this server does not answer for the host name {host!r} "
                                    f"(without WebUsers, only for those {KEY} in dicom.ini lists)")
