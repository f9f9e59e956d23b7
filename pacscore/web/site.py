"""The web service's resources: ``/cgi-bin/dgate`` (also ``dgate.exe``, as
Conquest's links name it) answers Conquest's CGI modes and WADO-URI
(``requestType=WADO``), ``/wado`` answers WADO-URI alone, ``/dicom-web``
DICOMweb (``pacscore.web.dicomweb``), ``/metrics`` the status for
Prometheus (``pacscore.web.metrics``), and ``/`` leads to the top page;
with ``WebUsers`` set, all of it only for the users of that htpasswd file
(``pacscore.web.logins``), without it only for the host names of ``pacscore.web.hostnames``
(against DNS rebinding); which pages of other sites may read DICOMweb and WADO answers,
``WebAllowOrigins`` says (``pacscore.web.sharing``; WADO answers their CORS preflights
as DICOMweb does).  Parameters without a value in the request take the
``[webdefaults]`` of dicom.ini (``size``, ``dsize``, ``compress``,
``iconsize``, ``graphic``, ``viewer``), read for each request, as are the scripted
pages' sections: ``--read_ini:`` changes them for the next request.

Pages are made by coroutines ``mode(archive, parameters) -> Answer`` (see
``browse``, ``images``, ``wado``) and by ``scripted`` dicom.ini sections;
index reads and file work run in the archive's pools, never on the
reactor; a POST from a page of another site is refused
(``pacscore.web.crossorigin``), and no page of another site may frame the
pages (``X-Frame-Options: SAMEORIGIN``, ``Content-Security-Policy:
frame-ancestors 'self'``), which would let it make a user click their
buttons (clickjacking: "Delete study" under its own); a scripted page may
send a ``Content-Security-Policy`` of its own header lines instead, and
DICOMweb and WADO answers, which viewers may embed, are framed by any site.
A bad request gets a 4xx page and a log line; an unexpected
failure a 500 page and the traceback in the log.  The site holds at most
``WebMaxConnections`` connections at once (no more than a quarter of the
open-file limit) and ``WebMaxConnectionsPerPeer`` from one address (by
default any number): one more is answered 503 and closed at once, with a log line, as the DICOM
service's ``MaxAssociations`` are (``pacscore.dicom.admission``).
"""

from functools import partial

from twisted.internet import threads
from twisted.logger import Logger
from twisted.web import server, util

from pacscore.dicom.admission import LimitedFactory
from pacscore.web import browse, documents, downloads, edits, imagelists, images, procedures, remote, wado, worklist
from pacscore.web.answering import RETRY_AFTER, AnsweringResource, Folder
from pacscore.web.answers import Parameters, WebError, queryArgs
from pacscore.web.channel import PacsChannel
from pacscore.web.crossorigin import refuseCrossOrigin
from pacscore.web.dicomweb.resource import DicomWebResource, allowed
from pacscore.web.hostnames import HostNames, Misdirected
from pacscore.web.html import SCRIPT
from pacscore.web.forms import readPostedForm
from pacscore.web.logins import accessLogLine, guarded, passwordFile, webWriters
from pacscore.web.metrics import MetricsResource
from pacscore.web.requestbodies import CountedRequest, admittedBody, bodyLimit, uploadLimit
from pacscore.web.scripted import ScriptedPages
from pacscore.web.sharing import AllowedOrigins, asksForWado, isShared, preflight

MODES = {**browse.MODES, **images.MODES, **documents.MODES, **remote.MODES, **downloads.MODES, **edits.MODES,
         **worklist.MODES, **procedures.MODES}
# these also get the request (its method, whether its client is still there)
REQUEST_MODES = {**images.REQUEST_MODES, **imagelists.REQUEST_MODES, **remote.REQUEST_MODES, **edits.REQUEST_MODES,
                 **worklist.REQUEST_MODES}
DEFAULTS_SECTION = "webdefaults"
TOP = SCRIPT.encode() + b"?mode=top"
DICOMWEB = b"dicom-web"
FRAMED_HERE = (("X-Frame-Options", "SAMEORIGIN"), ("Content-Security-Policy", "frame-ancestors 'self'"))  # the pages

log = Logger()


class DgateResource(AnsweringResource):
    """Conquest's CGI script: the pages by ``mode`` and WADO; with
    ``wadoOnly`` WADO alone."""

    def __init__(self, archive, scripts, wadoOnly=False):
        super().__init__()
        self.archive = archive
        self.scripts = scripts
        self.wadoOnly = wadoOnly

    def render(self, request):
        """A CORS preflight (OPTIONS) of WADO is answered as DICOMweb's
        are (that of a page refused as other methods are)."""
        if request.method == b"OPTIONS" and (self.wadoOnly or asksForWado(request.args)):
            return preflight(request, allowed(("GET",)))
        return super().render(request)

    async def answer(self, request):
        refuseCrossOrigin(request)  # before a posted form is read
        defaults = {}
        for key, value in self.archive.configuration.ini.items(DEFAULTS_SECTION):
            defaults.setdefault(key.lower(), value)  # the first of equal keys, as everywhere in dicom.ini
        await readPostedForm(self.archive, request)
        parameters = Parameters(request.args, defaults, user=getattr(request, "webUser", None))
        if self.wadoOnly or parameters.get("requestType") == "WADO":
            return await wado.answer(self.archive, parameters, request)
        mode = parameters.get("mode").strip() or "top"
        handler, withRequest = MODES.get(mode.lower()), mode.lower() in REQUEST_MODES
        section = self.scripts.sectionFor(mode, builtIn=handler is not None or withRequest)
        if section is not None:
            return await self.scripts.render(self.archive, parameters, request, section, mode)
        if withRequest:
            return await REQUEST_MODES[mode.lower()](self.archive, parameters, request)
        if handler is None:
            raise WebError(404, f"there is no page {mode!r}")
        return await handler(self.archive, parameters)


class PacsRequest(CountedRequest):
    """A request of the site, its parameters (``args``) those of its query
    split at ``&`` alone (``queryArgs``) before any resource, a CORS
    preflight's too, reads them.  A request whose client left before a
    resource renders it (while the guard checked its login in a thread)
    is not rendered: nobody would see its answer, which twisted.web
    refuses to finish, nor learns the resource that the client left."""

    log = Logger()

    def process(self):
        self.args = queryArgs(self.uri)
        super().process()

    def render(self, resrc):
        if self.channel is None:  # its connection lost (connectionLost)
            self.log.info("web: {peer} {uri}: the client left before it was answered",
                          peer=getattr(self.getClientAddress(), "host", "?"), uri=self.uri.decode("utf-8", "replace"))
            return
        super().render(resrc)


class PacsSite(LimitedFactory, server.Site):
    """The web interface's site, on PacsChannel (a 414 for a request line
    too long): every answer, before any resource (the login too) sees its
    request, and those the channel writes itself (401, 413, 414 ...) get
    ``answerHeaders``, the CORS headers ``origins`` (an AllowedOrigins)
    give them, or, those for the pages, ``FRAMED_HERE``; a request for a
    host name ``hosts`` (a HostNames, None: any name) does not accept is
    refused.  ``guard`` (a LoginGuard, None: no login)
    checks the login of a request with a body before the body is read, and
    an upload may have ``uploads`` bytes (0: any number) where the
    ``configuration`` (read when used) lets its user send it; ``limits`` (an
    AssociationLimits; None: none) caps the connections held at once."""

    protocol = PacsChannel
    refusal = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %s\r\nContent-Length: 0\r\n"
               b"Connection: close\r\n\r\n" % RETRY_AFTER.encode())  # a connection over the limits
    limitKeys = ("WebMaxConnections", "WebMaxConnectionsPerPeer")
    fileShare = 4  # WebMaxConnections is at most the open-file limit / fileShare
    perPeer = 0  # WebMaxConnectionsPerPeer: none, as Apache (behind a reverse proxy or NAT all browsers share an address)

    def __init__(self, root, origins, hosts, configuration, guard=None, uploads=0, limits=None, **kwargs):
        super().__init__(root, requestFactory=PacsRequest, **kwargs)
        self.origins = origins
        self.hosts = hosts
        self.configuration = configuration
        self.guard = guard
        self.uploads = uploads
        self.limits = self.limitsOrNone(limits)

    def connectionOpened(self, channel):
        self.opened(channel.transport)

    def connectionClosed(self, channel):
        self.closed(channel.transport)

    def bodyLimit(self, method, uri):
        """The most bytes a ``method`` request for ``uri`` may send (0: any number)."""
        return bodyLimit(method, uri, self.uploads)

    def admittedBody(self, method, uri, request):
        """``bodyLimit`` for the user ``request`` logged in as; a WebError when it can only be refused."""
        return admittedBody(method, uri, self.uploads, self.configuration.ini, getattr(request, "webUser", None))

    def checkLogin(self, method, request):
        """None when ``request`` (by ``method``, its headers read) needs no
        login, else a Deferred: whether its headers log a user in."""
        if self.guard is None or method == b"OPTIONS":  # a CORS preflight passes unguarded
            return None
        return self.guard.loggedIn(request)

    def answerHeaders(self, request, uri):
        """The headers of every answer for ``uri`` (a request's path and
        query, bytes): a DICOMweb or WADO answer's CORS headers for
        ``request`` (None: a request line refused before its headers, only
        ``WebAllowOrigins = *``'s, as its Origin is unknown; the channel
        reads the Origin of a head too long when ``namesOrigin``), a page's
        ``FRAMED_HERE``."""
        if not isShared(uri):
            return FRAMED_HERE
        return self.origins.headers(request)

    def namesOrigin(self, uri):
        """Whether the answers for ``uri`` name the Origin of their request
        (``WebAllowOrigins`` lists origins, the answer is shared)."""
        return bool(self.origins.origins) and isShared(uri)

    def getResourceFor(self, request):
        for name, value in self.answerHeaders(request, request.uri):
            request.setHeader(name, value)
        if self.hosts is not None and not self.hosts.accepts(request):
            return Misdirected()
        return super().getResourceFor(request)


def webSite(archive):
    """The ``server.Site`` of the web interface of ``archive``; ConfigError
    when its ``WebUsers`` file or ``WebAllowOrigins`` cannot be used."""
    scripts = ScriptedPages(archive.configuration, archive.controlCommands, luaSlots=max(archive.workers.size // 2, 1))
    dgate = DgateResource(archive, scripts)
    root = Folder()
    root.putChild(b"", util.Redirect(TOP))
    cgi = Folder()
    cgi.putChild(b"dgate", dgate)
    cgi.putChild(b"dgate.exe", dgate)
    root.putChild(b"cgi-bin", cgi)
    root.putChild(b"wado", DgateResource(archive, scripts, wadoOnly=True))
    root.putChild(DICOMWEB, DicomWebResource(archive))
    root.putChild(b"metrics", MetricsResource(archive))
    guardedRoot = _withLogins(root, archive)
    hosts = HostNames.fromIni(archive.configuration) if guardedRoot is root else None  # a login stops rebinding
    site = PacsSite(guardedRoot, AllowedOrigins.fromIni(archive.configuration), hosts, archive.configuration,
                    guard=None if guardedRoot is root else guardedRoot, uploads=uploadLimit(archive.configuration.ini),
                    limits=PacsSite.limitsFromIni(archive.configuration.ini),
                    timeout=archive.idleTimeout, logFormatter=accessLogLine,
                    parsePOSTFormSubmission=False)  # pacscore.web.forms reads forms
    site.displayTracebacks = False
    site.sendTimeout = archive.configuration.tcpipTimeout  # pacscore.web.answering: a stalled download is cut off
    return site


def _withLogins(root, archive):
    """``root`` guarded by the ``WebUsers`` file of dicom.ini, or as it is without one."""
    configuration = archive.configuration
    passwords = passwordFile(configuration)
    if passwords is None:
        if webWriters(configuration.ini):
            log.warn("WebWriters lists users but WebUsers is not set: nobody logs in, so the web pages change "
                     "nothing")
        return root
    # bcrypt in the reactor's thread pool: a flood of bad logins must not hold up the I/O pool's stores
    checkInThread = partial(threads.deferToThreadPool, archive.reactor, archive.reactor.getThreadPool())
    return guarded(root, passwords, checkInThread, f"pacs {archive.aeTitle}")
