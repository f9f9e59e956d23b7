"""The base of the web service's resources: a leaf resource answering each
request with what a coroutine makes of it (``answers.Answer`` or
``StreamAnswer``), a ``WebError`` as an error page, a failure of the
index database as a 503 (``Retry-After``) with one log line, and
anything else as a 500 with its traceback in the log; a method it has no
``render_`` method for (PUT, DELETE ...) is a 405 error page naming those
it answers (``Allow``), rather than twisted.web's unlogged ``501 Huh?``.
``Folder`` holds other resources, and answers what none of them is for so
too: a 404 error page. ``clientLeft`` tells an answer still being made
that nobody waits for it."""

import sys
from html import escape
from http import HTTPStatus

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, resource, server

from pacscore.db.errors import DATABASE_FAILURES, databaseMessage
from pacscore.web.answers import HTML, Answer, StreamAnswer, WebError, notAllowed
from pacscore.web.html import Markup, page
from pacscore.pacing import Pacer

RETRY_AFTER = "5"  # seconds a client waits before asking again: the index database down, the web connections capped


class AnsweringResource(resource.Resource):
    """A leaf resource answering each request with what the coroutine
    ``answer(request)`` returns (an Answer or StreamAnswer); a
    WebError it raises is an error page, a failure of the index database
    a 503, anything else a 500."""

    isLeaf = True
    log = Logger()

    def render(self, request):
        """``render_METHOD`` of the request's method; without one a 405 error answer."""
        if getattr(self, f"render_{request.method.decode('ascii', 'replace')}", None) is None:
            return self._answerWith(self._notAllowed, request)
        return super().render(request)

    def render_GET(self, request):
        return self._answerWith(self.answer, request)

    render_POST = render_GET

    def _answerWith(self, answer, request):
        """Answer ``request`` with what the coroutine ``answer(request)`` makes of it."""
        finished = request.answerEnded = []  # sent, or the client gone: see clientLeft
        request.notifyFinish().addBoth(finished.append)
        d = defer.ensureDeferred(answer(request))
        d.addCallbacks(self._write, self._failed, callbackArgs=(request, finished),
                       errbackArgs=(request, finished))
        d.addErrback(lambda failure: self.log.failure("web: answering {uri} failed", failure, uri=_uri(request)))
        return server.NOT_DONE_YET

    async def answer(self, request):
        raise NotImplementedError

    async def _notAllowed(self, request):
        methods = sorted(name.removeprefix("render_") for name in dir(self) if name.startswith("render_"))
        raise notAllowed(request.method.decode("ascii", "replace"), methods)

    def _write(self, answer, request, finished):
        if finished:
            if isinstance(answer, StreamAnswer):
                return defer.ensureDeferred(_doneWith(answer))
            return
        if answer.contentType is not None:
            request.setHeader(b"Content-Type", answer.contentType.encode("utf-8"))
        for name, value in answer.headers:
            request.setHeader(name.encode("utf-8"), value.encode("utf-8"))
        request.setResponseCode(answer.status, reason(answer.status))
        if isinstance(answer, StreamAnswer):
            return defer.ensureDeferred(self._stream(answer, request, finished))
        if answer.status not in http.NO_BODY_CODES:  # a 204 or 304 has no body, nor a length (RFC 9110 8.6)
            request.setHeader(b"Content-Length", str(len(answer.body)).encode())
            request.write(answer.body)
        request.finish()

    async def _stream(self, answer, request, finished):
        """Send the chunks of a StreamAnswer (chunked), each made once the
        client took the last; no more once the client left (logged, as
        twisted.web writes no access line then) or was cut off (``_taken``),
        and only the first (for the headers) to a HEAD. A failure before the first chunk
        is answered as any other; one midway breaks the connection, so that
        the client sees the answer cut short."""
        flow = Pacer()
        started = False
        try:
            async for chunk in answer.chunks:
                if finished or flow.stopped:
                    break
                if not started:
                    request.registerProducer(flow, True)
                    started = True
                request.write(chunk)
                if request.method == b"HEAD":  # the first write sent the headers, all HEAD answers
                    break
                if not await self._taken(flow, request):
                    return
        except Exception:
            if not started:
                return self._failed(Failure(), request, finished)
            if isinstance(sys.exc_info()[1], WebError):
                self.log.warn("web: {peer} {uri}: the answer broke off: {error}", peer=_peer(request),
                              uri=_uri(request), error=sys.exc_info()[1].message)
            else:
                self.log.failure("web: {peer} {uri}: the answer broke off", peer=_peer(request), uri=_uri(request))
            if not finished:
                request.unregisterProducer()
                request.loseConnection()
            return
        finally:
            await _doneWith(answer)
        if finished:  # the connection is gone, and its producer with it: no access line says so
            self.log.info("web: {peer} {uri}: the client left after {sent} bytes of the answer", peer=_peer(request),
                          uri=_uri(request), sent=request.sentLength)
            return
        if started:
            request.unregisterProducer()
        request.finish()

    async def _taken(self, flow, request):
        """Whether the client of ``request`` took what was written to it
        (``flow`` resumed) within the site's ``sendTimeout`` seconds (none:
        no limit); one that did not is cut off (its connection aborted: a
        closed one would keep what it could not send) and logged."""
        taken = flow.resumed()
        timeout = None if taken.called else getattr(request.site, "sendTimeout", None)  # twisted.web's Site: none
        if timeout:
            taken.addTimeout(timeout, request.site.reactor)
        try:
            await taken
        except defer.TimeoutError:
            self.log.warn("web: {peer} {uri}: the client took nothing of the answer for {timeout} s (TCPIPTimeOut), "
                          "cut off", peer=_peer(request), uri=_uri(request), timeout=timeout)
            request.unregisterProducer()
            request.channel.transport.abortConnection()
            return False
        return True

    def _failed(self, failure, request, finished):
        if failure.check(defer.FirstError):  # of a gatherResults: what failed in it
            failure = failure.value.subFailure
        if failure.check(WebError):
            error = failure.value
            self.log.info("web: {peer} {uri}: {code} {message}", peer=_peer(request), uri=_uri(request),
                          code=error.code, message=error.message)
        elif failure.check(*DATABASE_FAILURES):  # not a bug of ours: the service is unavailable for now
            message = databaseMessage(failure.value)
            self.log.error("web: {peer} {uri} failed: the index database: {error}", peer=_peer(request),
                           uri=_uri(request), error=message)
            error = WebError(503, f"the index database failed: {message}", [("Retry-After", RETRY_AFTER)])
        else:
            self.log.failure("web: {peer} {uri} failed", failure, peer=_peer(request), uri=_uri(request))
            error = WebError(500, "the server failed to answer this request; its log says why")
        if not finished:
            self._write(errorPage(error), request, finished)


def errorPage(error):
    """The Answer of a WebError: a page saying its message."""
    body = page(f"error {error.code}", Markup(f"<p id=\"error\">{escape(error.message)}</p>"))
    return Answer(body.encode("utf-8"), HTML, error.headers, status=error.code)


async def _doneWith(answer):
    """Close a StreamAnswer's chunks and await its ``release``."""
    try:
        await answer.chunks.aclose()
    finally:
        if answer.release is not None:
            await answer.release()


class Folder(AnsweringResource):
    """A resource holding others (``putChild``): a path naming none of them,
    or the folder itself, is a 404 error page (another method a 405)."""

    isLeaf = False

    def getChild(self, path, request):
        return self

    async def answer(self, request):
        raise WebError(404, f"there is nothing at {request.path.decode('utf-8', 'replace')}")


def clientLeft(request):
    """Whether the client of ``request``, which an AnsweringResource is
    still answering, has left (its connection lost): whatever the answer
    would be is thrown away."""
    return bool(request.answerEnded)


def reason(status):
    """The reason phrase of ``status``: twisted.web's, or Python's for
    those twisted.web does not know (421, 422)."""
    return http.RESPONSES.get(status) or HTTPStatus(status).phrase.encode("ascii")


def _uri(request):
    return request.uri.decode("utf-8", "replace")


def _peer(request):
    address = request.getClientAddress()
    return f"{getattr(address, 'host', address)}"
