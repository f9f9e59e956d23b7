"""Requests to the web resources of a RunningArchive, answered in the test
(twisted.web's DummyRequest, taking streamed answers as a connection
does), and what they answered; ``WebTestCase``, an
archive holding a generated corpus, with its ``/cgi-bin/dgate``."""

import os
import re
from html import unescape
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

from twisted.internet import defer
from twisted.trial import unittest
from twisted.web.http import parse_qs
from twisted.web.test.requesthelper import DummyRequest

from pacscore.control.registry import CommandRegistry
from pacscore.testing.corpus import generateCorpus
from pacscore.web.scripted import ScriptedPages
from pacscore.web.site import DgateResource
from tests.pacscore.control.running import RunningArchive


class Request(DummyRequest):
    """A DummyRequest that, like a connection that keeps up, never pauses
    a push producer (DummyRequest would call resumeProducing in a loop)."""

    def registerProducer(self, producer, streaming):
        if not streaming:
            return super().registerProducer(producer, streaming)
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None
        super().unregisterProducer()


def dgate(running):
    """The ``/cgi-bin/dgate`` resource of a RunningArchive."""
    return DgateResource(running.archive, ScriptedPages(running.configuration, CommandRegistry()))


class WebTestCase(unittest.TestCase):
    """``running``: a RunningArchive (``ae``, ``ini``) that stored ``corpus``,
    generated in the ``corpusShape``; ``resource``: its dgate."""

    ae = "PACS"
    ini = None
    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 1}

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ae=self.ae, ini=self.ini)
        self.corpus = generateCorpus(os.path.abspath(self.mktemp()), **self.corpusShape)
        yield self.running.store(self.corpus)
        self.resource = dgate(self.running)


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


@defer.inlineCallbacks
def getQuery(resource, query):
    """GET with the query string ``query`` (bytes) as it came, parsed as twisted.web parses it."""
    request = Request([])
    request.method = b"GET"
    request.uri = b"/cgi-bin/dgate?" + query
    request.path = b"/cgi-bin/dgate"
    request.args = parse_qs(query, 1)
    finished = request.notifyFinish()
    resource.render(request)
    yield finished
    return Answered(request.responseCode or 200, {}, b"".join(request.written))


def post(resource, **parameters):
    """POST ``parameters`` (as a form sends them)."""
    return get(resource, method=b"POST", **parameters)


@defer.inlineCallbacks
def get(resource, target=None, method=b"GET", **parameters):
    """GET ``target`` (a URL whose query is the parameters) or ``parameters``."""
    if target is not None:
        parameters = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
    request = Request([])
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
