"""``Pacer``: a producer that a coroutine producing data awaits, paused
and resumed by what consumes the data: a client's HTTP connection (a
streamed answer), or a ``Spool`` whose writes to disk fall behind (it takes
the Pacer for the transport it would pause)."""

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class Pacer:
    """``resumed()`` waits while the consumer asks to pause."""

    connected = True  # as a transport to a Spool: always there to resume

    def __init__(self):
        self._paused = None
        self.stopped = False

    def pauseProducing(self):
        if self._paused is None:
            self._paused = defer.Deferred()

    def resumeProducing(self):
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self):
        self.stopped = True
        self.resumeProducing()

    def resumed(self):
        return defer.succeed(None) if self._paused is None else self._paused
