"""Requests to the web resources of a RunningArchive, answered in the test
(twisted.web's DummyRequest), and what they answered."""

import re
from html import unescape
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

from twisted.internet import defer
from twisted.web.test.requesthelper import DummyRequest


class Answered(NamedTuple):
    code: int
    headers: dict
    body: bytes

    @property
    def text(self):
        return self.body.decode("utf-8")

    def links(self):
        """The href targets of the page, unescaped, in order."""
        return [unescape(href) for href in re.findall(r'href="([^"]*)"', self.text)]

    def images(self):
        return [unescape(src) for src in re.findall(r'src="([^"]*)"', self.text)]


def post(resource, **parameters):
    """POST ``parameters`` (as a form sends them)."""
    return get(resource, method=b"POST", **parameters)


@defer.inlineCallbacks
def get(resource, target=None, method=b"GET", **parameters):
    """GET ``target`` (a URL whose query is the parameters) or ``parameters``."""
    if target is not None:
        parameters = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
    request = DummyRequest([])
    request.method = method
    request.uri = b"/cgi-bin/dgate?" + urlencode({n: v for n, v in parameters.items() if isinstance(v, str)}).encode()
    request.path = b"/cgi-bin/dgate"
    request.args = {name.encode(): [value if isinstance(value, bytes) else value.encode()]
                    for name, value in parameters.items()}
    finished = request.notifyFinish()
    resource.render(request)
    yield finished
    headers = {name.decode().lower(): values[0].decode() for name, values in request.responseHeaders.getAllRawHeaders()}
    return Answered(request.responseCode or 200, headers, b"".join(request.written))
