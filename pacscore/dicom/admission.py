"""How many DICOM connections the server holds at once: at most
``MaxAssociations`` in all and ``MaxAssociationsPerPeer`` from one
address (0: no limit).  Without limits a peer opening connections it never
uses (each held until ARTIM expires) could use up the server's open files,
and then nobody could associate or use the web interface.  A connection
over either limit is closed as soon as it is accepted, with a log line:
one for each address until a connection ends, so that a flood of
connections is no flood of log lines; it is first answered (on the DICOM
service with an A-ASSOCIATE-RJ, its A-ASSOCIATE-RQ left unread) and its
close bounded (``pacscore.closing``).  The web
interface, the HL7 listener and the control port count their connections so
too, against keys of their own (``LimitedFactory``)."""

from collections import Counter

from twisted.internet import protocol
from twisted.logger import Logger

from pacscore.closing import closeWithin
from pacscore.filelimit import openFileLimit

DEFAULT_TOTAL = 1000
DEFAULT_PER_PEER = 64
KEYS = ("MaxAssociations", "MaxAssociationsPerPeer")


class AssociationLimits:
    """The connections open (``open``, and ``byPeer`` host) against the
    limits ``total`` and ``perPeer`` (0: none), set by the dicom.ini
    ``keys`` (total, per peer) the log names."""

    log = Logger()

    def __init__(self, total=0, perPeer=0, keys=KEYS):
        self.total = total
        self.perPeer = perPeer
        self.keys = keys
        self.open = 0
        self.byPeer = Counter()
        self._logged = set()  # hosts refused since a connection last ended

    @classmethod
    def fromIni(cls, ini, fileLimit, keys=KEYS, share=2, perPeer=DEFAULT_PER_PEER, total=DEFAULT_TOTAL):
        """The limits of dicom.ini's ``keys``: ``MaxAssociations`` no more
        than ``fileLimit`` (the open files the process may have) / ``share``,
        so that stored files and the web interface have theirs; ``total``
        and ``perPeer`` without the keys."""
        total = ini.getint(keys[0], total)
        return cls(min(total, fileLimit // share) if total > 0 else fileLimit // share,
                   max(ini.getint(keys[1], perPeer), 0), keys)

    def admits(self, host):
        """Whether a new connection from ``host`` may be held; when not,
        the first refusal since a connection ended is logged."""
        if self.total and self.open >= self.total:
            why = f"{self.open} connections are open ({self.keys[0]} {self.total})"
        elif self.perPeer and self.byPeer[host] >= self.perPeer:
            why = f"it has {self.byPeer[host]} connections open ({self.keys[1]} {self.perPeer})"
        else:
            return True
        if host not in self._logged:
            self._logged.add(host)
            self.log.warn("{host}: connection closed at once: {why}; more are closed unlogged until one ends",
                          host=host, why=why)
        return False

    def opened(self, host):
        self.open += 1
        self.byPeer[host] += 1

    def closed(self, host):
        self.open -= 1
        self.byPeer[host] -= 1
        if not self.byPeer[host]:
            del self.byPeer[host]
        self._logged.clear()


class Refused(protocol.Protocol):
    """A connection over the limits: sent ``answer`` (bytes), its own bytes
    left unread, and closed: at once on TCP, within ``CLOSE_BOUND`` s of
    ``clock`` on TLS (a TLS close waits for the peer's close_notify)."""

    def __init__(self, answer, clock):
        self.answer = answer
        self.clock = clock
        self._closing = None

    def connectionMade(self):
        if self.answer:
            self.transport.write(self.answer)
        self._closing = closeWithin(self.transport, self.clock)

    def connectionLost(self, reason):
        if self._closing is not None and self._closing.active():
            self._closing.cancel()


class LimitedFactory:
    """A protocol factory mixin (before the factory class) holding at most
    ``limits`` (an AssociationLimits) connections: one over them gets
    ``refusal`` and is closed (``Refused``, on the factory's ``clock``, or
    its ``reactor`` where it has no clock); the factory's protocols call
    ``opened`` and ``closed`` with their transport.  ``buildProtocol`` never
    gives None, which a TLS endpoint's wrapping factory would wrap."""

    refusal = b""
    limitKeys = KEYS            # the dicom.ini keys of the limits (total, per peer)
    fileShare = 2               # the total is at most the open-file limit / fileShare
    perPeer = DEFAULT_PER_PEER  # the limit per peer without its key
    defaultTotal = DEFAULT_TOTAL  # the total without its key

    @classmethod
    def limitsFromIni(cls, ini):
        """The AssociationLimits dicom.ini ``ini`` sets for this factory's connections."""
        return AssociationLimits.fromIni(ini, openFileLimit(), cls.limitKeys, cls.fileShare, cls.perPeer,
                                         cls.defaultTotal)

    def limitsText(self):
        """The limits of this factory's connections, as start-up logs them."""
        return (f"at most {self.limits.total} connections at once, {self.limits.perPeer or 'any number'} "
                "from one address")

    def limitsOrNone(self, limits):
        """``limits``, or when None no limits (under this factory's keys)."""
        return limits if limits is not None else AssociationLimits(keys=self.limitKeys)

    def buildProtocol(self, addr):
        if not self.limits.admits(getattr(addr, "host", None)):
            return Refused(self.refusal, getattr(self, "clock", None) or self.reactor)
        return super().buildProtocol(addr)

    def opened(self, transport):
        self.limits.opened(getattr(transport.getPeer(), "host", None))

    def closed(self, transport):
        self.limits.closed(getattr(transport.getPeer(), "host", None))
