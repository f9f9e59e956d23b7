"""Sending one mail over SMTP, as ``twisted.mail.smtp.sendmail`` does (the
same ESMTP client, STARTTLS when the server offers it), but connecting
through ``hostEndpoint``, as every other connection pacs makes: the mail
server's name is resolved to its IPv6 addresses as well as its IPv4
ones, where ``sendmail``'s ``connectTCP`` looks up IPv4 only (a
``MailHost`` whose name has only an IPv6 address was "DNS lookup
failed"), and a link-local address keeps its zone (``fe80::1%eth0``)."""

from io import BytesIO

from twisted.internet import defer
from twisted.mail import smtp
from twisted.python.compat import networkString

from pacscore.hostport import hostEndpoint


class _Sender(smtp.ESMTPSender):
    """Tells its factory of the connection lost, as a connector would: a
    server that drops it before the mail went fails the send."""

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.factory.clientConnectionLost(None, reason)


class _SenderFactory(smtp.ESMTPSenderFactory):
    protocol = _Sender


def sendMail(reactor, host, sender, recipients, message, senderDomainName=None, port=25, timeout=30):
    """Send ``message`` (bytes, headers included) from ``sender`` to
    ``recipients`` through the SMTP server at ``host``, ``port``, the
    connection given ``timeout`` seconds; a Deferred firing as
    ``sendmail``'s does once the mail is sent, failing with
    ``SMTPConnectError`` when the server cannot be reached or drops the
    connection, or with the server's refusal.  Cancelled, it stops
    connecting, or drops the connection."""

    def cancel(_):
        factory.sendFinished = True
        if factory.currentProtocol is not None:
            factory.currentProtocol.transport.abortConnection()
        else:
            connecting.cancel()

    sent = defer.Deferred(cancel)
    factory = _SenderFactory(None, None, sender, recipients, BytesIO(message), sent, retries=0, heloFallback=True,
                             requireAuthentication=False, requireTransportSecurity=False, hostname=host)
    if senderDomainName is not None:
        factory.domain = networkString(senderDomainName)
    connecting = hostEndpoint(reactor, host, port, timeout).connect(factory)
    connecting.addErrback(lambda failure: None if factory.sendFinished
                          else factory.clientConnectionFailed(None, failure))
    return sent
