"""Which pages of other sites may read the answers of DICOMweb and WADO
(CORS, Cross-Origin Resource Sharing): those of the origins that
``WebAllowOrigins`` in dicom.ini lists (``https://viewer.example.org``,
comma or space separated), or of every origin with ``*``.  Without it none
may: a browser then gives the answers only to pages of this server, so a
page of another site that a user opens cannot read the archive through
their browser (without ``WebUsers`` it would need no login to).

An answer to a listed origin names it in ``Access-Control-Allow-Origin``
with ``Vary: Origin`` (so that caches keep one answer per origin) and lets
its page read the ``Warning`` header (QIDO's "additional results"); an
allowed CORS preflight (OPTIONS) also gets the request headers a viewer
sends (those the preflight asks for among them) and how long to remember
them.  A preflight is answered ``preflight``: 204 with the methods of the
resource.  Pages of the web interface itself are never shared.
"""

import re
from urllib.parse import unquote_to_bytes, urlsplit

from pacscore.config.errors import ConfigError
from pacscore.web.answers import queryArgs

KEY = "WebAllowOrigins"
ANY = "*"
SHARED = (b"dicom-web", b"wado")
DEFAULT_PORTS = {"http": 80, "https": 443}
ALLOWED_HEADERS = ("Accept", "Content-Type", "Authorization")
MAX_AGE = ("Access-Control-Max-Age", "86400")
EXPOSED = ("Access-Control-Expose-Headers", "Warning")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110 5.1)


def _origin(text):
    """``text`` as a browser writes an Origin (lower case, no path, no
    default port), or None when it is not one."""
    try:
        parts = urlsplit(text.strip().lower())
        parts.port  # a port that is not a number raises
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username is not None or parts.password is not None:
        return None
    return f"{parts.scheme}://{parts.netloc.removesuffix(f':{DEFAULT_PORTS[parts.scheme]}')}"


class AllowedOrigins:
    """The origins whose pages may read shared answers: ``everyone`` or
    those of the set ``origins``."""

    def __init__(self, origins=(), everyone=False):
        self.origins = frozenset(origins)
        self.everyone = everyone

    @classmethod
    def fromIni(cls, configuration):
        """The ``WebAllowOrigins`` of ``configuration``; a ConfigError
        naming an entry that is not an origin."""
        entries = configuration.ini.get(KEY, "").replace(",", " ").split()
        if ANY in entries:
            return cls(everyone=True)
        origins = []
        for entry in entries:
            origin = _origin(entry)
            if origin is None:
                raise ConfigError(configuration.iniPath, configuration.ini.lineOf(KEY),
                                  f"{KEY}: {entry!r} is not an origin such as https://viewer.example.org "
                                  f"(or * for every one)")
            origins.append(origin)
        return cls(origins)

    def headers(self, request):
        """The CORS headers of the answer to ``request`` (None: a request
        line refused before any header was read, whose Origin is unknown:
        those of ``*`` alone, which name no origin)."""
        if not self.everyone and not self.origins:
            return []
        origin = (request.getHeader(b"origin") or b"").decode("latin-1").strip() if request is not None else ""
        headers = [] if self.everyone else [("Vary", "Origin")]
        if self.everyone or _origin(origin) in self.origins:
            headers += [("Access-Control-Allow-Origin", ANY if self.everyone else origin), EXPOSED]
            if request is not None and request.method == b"OPTIONS" \
                    and request.getHeader(b"access-control-request-method") is not None:
                headers += [("Access-Control-Allow-Headers", ", ".join(_allowedHeaders(request))), MAX_AGE]
        return headers


def isShared(uri):
    """Whether the answer for ``uri`` (a request's path and query, bytes)
    is one pages of other sites may read when ``WebAllowOrigins`` lets
    them: DICOMweb's and WADO's, not those of the web pages."""
    path = uri.partition(b"?")[0]
    first = unquote_to_bytes(path.split(b"/")[1]) if path.count(b"/") else b""
    return first in SHARED or (first == b"cgi-bin" and asksForWado(queryArgs(uri)))


def _allowedHeaders(request):
    """ALLOWED_HEADERS and those a preflight asks for (when all are header
    names: a browser asks for no other)."""
    asked = (request.getHeader(b"access-control-request-headers") or b"").decode("latin-1").split(",")
    asked = [name.strip() for name in asked if name.strip()]
    if not all(_TOKEN.fullmatch(name) for name in asked):
        return ALLOWED_HEADERS
    known = {name.lower() for name in ALLOWED_HEADERS}
    return (*ALLOWED_HEADERS, *dict.fromkeys(name for name in asked if name.lower() not in known))


def asksForWado(args):
    """Whether a request of query ``args`` (a request's ``args``) asks
    dgate for WADO-URI (``requestType=WADO``)."""
    return args.get(b"requestType", [b""])[0] == b"WADO"


def preflight(request, methods):
    """Answer a CORS preflight (OPTIONS) of a resource answering ``methods``
    (a list): 204, naming them; the CORS headers are those the site gives it (``AllowedOrigins.headers``)."""
    request.setResponseCode(204)
    for name in ("Access-Control-Allow-Methods", "Allow"):
        request.setHeader(name, ", ".join(methods))
    return b""
