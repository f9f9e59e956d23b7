"""Closing a connection within a bound: ``closeWithin`` closes it once what
was written to it has gone out and cuts it if it is still there
``CLOSE_BOUND`` s later.  A TLS close waits for the peer's close_notify (or
its close), and a peer that sends neither would else keep the connection,
and all the server holds for it, for as long as it likes."""

CLOSE_BOUND = 2  # seconds a closing connection's last bytes and close have before it is cut


def closeWithin(transport, clock):
    """Close ``transport`` once what was written to it has gone out, or cut
    it after ``CLOSE_BOUND`` s (a TLS peer that never completes the
    handshake or never answers close_notify, a peer that reads nothing);
    returns the call to cancel once the connection is lost."""
    transport.loseConnection()
    return clock.callLater(CLOSE_BOUND, transport.abortConnection)
