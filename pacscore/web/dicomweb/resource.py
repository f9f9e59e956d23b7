"""The ``/dicom-web`` resource: routes each path of PS3.18's studies /
series / instances tree to its QIDO-RS, WADO-RS or STOW-RS handler, answers
CORS preflight requests (OPTIONS) with the methods of the path's resource
(whether the page asking may use them, ``pacscore.web.sharing`` says),
refuses another method with a 405 whose ``Allow`` names them.

Handlers are coroutines ``handler(archive, request, target, base)``:
``target`` names the study, series, instance, frames or bulk data tag of
the path, ``base`` is the absolute address of ``/dicom-web`` that the
answers' RetrieveURLs start with: the host and port of the ``Host``
header as the client sent it (behind a port mapping, the port it
connected to), the port the request came in on where it names none,
and both without one.
"""

import re
from functools import partial
from typing import NamedTuple
from urllib.parse import quote

from pacscore.dicom.uids import isUID
from pacscore.hostport import bracketed
from pacscore.web.answering import AnsweringResource
from pacscore.web.answers import WebError, notAllowed
from pacscore.web.dicomweb.retrieve import (
    retrieveBulk, retrieveFrames, retrieveInstances, retrieveMetadata, retrieveRendered, retrieveThumbnail)
from pacscore.web.dicomweb.search import search
from pacscore.web.dicomweb.store import storeInstances
from pacscore.web.sharing import preflight

# A Host header's host (a name, an IPv4 address, a bracketed IPv6 one) and optional port
# (a bare ':' is no port, RFC 3986 3.2.3).
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::([0-9]{0,5}))?")


class Target(NamedTuple):
    """What a path names."""

    study: str = ""
    series: str = ""
    instance: str = ""
    frames: str = ""
    tag: str = ""

    def describe(self):
        named = [f"{name} {value}" for name, value in zip(("study", "series", "instance"), self) if value]
        return ", ".join(named) or "all studies"


INSTANCE = "studies/{study}/series/{series}/instances/{instance}"
ROUTES = {
    "studies": {"GET": partial(search, level="STUDY"), "POST": storeInstances},
    "series": {"GET": partial(search, level="SERIES")},
    "instances": {"GET": partial(search, level="IMAGE")},
    "studies/{study}": {"GET": retrieveInstances, "POST": storeInstances},
    "studies/{study}/metadata": {"GET": retrieveMetadata},
    "studies/{study}/rendered": {"GET": retrieveRendered},
    "studies/{study}/thumbnail": {"GET": retrieveThumbnail},
    "studies/{study}/series": {"GET": partial(search, level="SERIES")},
    "studies/{study}/instances": {"GET": partial(search, level="IMAGE")},
    "studies/{study}/series/{series}": {"GET": retrieveInstances},
    "studies/{study}/series/{series}/metadata": {"GET": retrieveMetadata},
    "studies/{study}/series/{series}/rendered": {"GET": retrieveRendered},
    "studies/{study}/series/{series}/thumbnail": {"GET": retrieveThumbnail},
    "studies/{study}/series/{series}/instances": {"GET": partial(search, level="IMAGE")},
    INSTANCE: {"GET": retrieveInstances},
    INSTANCE + "/metadata": {"GET": retrieveMetadata},
    INSTANCE + "/rendered": {"GET": retrieveRendered},
    INSTANCE + "/thumbnail": {"GET": retrieveThumbnail},
    INSTANCE + "/frames/{frames}": {"GET": retrieveFrames},
    INSTANCE + "/frames/{frames}/rendered": {"GET": retrieveRendered},
    INSTANCE + "/bulk/{tag}": {"GET": retrieveBulk},
}
_PATTERNS = [(pattern.split("/"), methods) for pattern, methods in ROUTES.items()]


def route(segments):
    """``(methods, Target)`` of a path's segments below ``/dicom-web``;
    WebError 404 for a path that names nothing, 400 for a bad UID."""
    for pattern, methods in _PATTERNS:
        if len(pattern) != len(segments):
            continue
        captured = {}
        for wanted, given in zip(pattern, segments):
            if wanted.startswith("{"):
                captured[wanted[1:-1]] = given
            elif wanted != given:
                break
        else:
            for name in ("study", "series", "instance"):
                if name in captured and not isUID(captured[name]):
                    raise WebError(400, f"the {name} in the path must be a UID, not {captured[name]!r}")
            return methods, Target(**captured)
    raise WebError(404, f"DICOMweb has no resource /{'/'.join(segments)}")


def allowed(methods):
    """The methods a resource with the handlers ``methods`` answers, in
    order: HEAD as GET does, and OPTIONS (a CORS preflight) as all do."""
    return sorted({*methods, "OPTIONS", *(("HEAD",) if "GET" in methods else ())})


def _segments(request):
    """The path's segments below ``/dicom-web``, without a final slash."""
    segments = [segment.decode("utf-8", "replace") for segment in request.postpath]
    while segments and not segments[-1]:
        segments.pop()
    return segments


def _authority(request):
    """The host and port the request names in its ``Host`` header, as sent
    (with the port it came in on where the Host has none, as dicomweb-client
    sends it); without Host or with an empty one, those it came in on (an
    IPv6 address in brackets, the scheme's default port left out).  WebError 400 for a
    Host that is not a host with an optional port (1-65535)."""
    address = request.getHost()
    port = "" if address.port == (443 if request.isSecure() else 80) else f":{address.port}"
    text = (request.getHeader(b"host") or b"").decode("latin-1").strip()
    if not text:  # no Host, or an empty one (RFC 9110 7.2 allows it)
        host = address.host.replace("%", "%25")  # an IPv6 zone (fe80::1%eth0) escaped, RFC 6874
        return bracketed(host) + port
    found = _HOST.fullmatch(text)
    if not found or (found.group(2) and not 0 < int(found.group(2)) < 65536):
        raise WebError(400, f"the Host header {text!r} is not a host name or address with an optional port")
    return text if found.group(2) else found.group(1) + port


def baseURL(request):
    """The absolute address of the resource ``request`` came to (its path
    up to ``/dicom-web``, as ``prePathURL`` makes it) as the client named it."""
    path = "/".join(quote(segment, safe="") for segment in request.prepath)
    return f"{'https' if request.isSecure() else 'http'}://{_authority(request)}/{path}".rstrip("/")


class DicomWebResource(AnsweringResource):
    """``/dicom-web``: QIDO-RS, WADO-RS and STOW-RS on ``archive``."""

    def __init__(self, archive):
        super().__init__()
        self.archive = archive

    def render(self, request):
        """Every method but OPTIONS goes to ``answer``, which routes it."""
        return self.render_OPTIONS(request) if request.method == b"OPTIONS" else self.render_GET(request)

    async def answer(self, request):
        methods, target = route(_segments(request))
        method = request.method.decode("ascii", "replace")
        handler = methods.get("GET" if method == "HEAD" else method)  # HEAD: GET's headers, no body
        if handler is None:
            raise notAllowed(method, allowed(methods))
        return await handler(self.archive, request, target, baseURL(request))

    def render_OPTIONS(self, request):
        try:
            methods = allowed(route(_segments(request))[0])
        except WebError:
            return self.render_GET(request)  # answers the path's 404 or 400
        return preflight(request, methods)
