"""Unit tests of pacscore.errormail: which events are collected, when the
mail goes, what it says, and the Mail* keys of dicom.ini."""

import email
from email import policy

from twisted.internet import defer, task
from twisted.internet.address import IPv6Address
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.logger import LogLevel, LogPublisher, Logger, capturedLogs, formatEvent
from twisted.trial import unittest
from zope.interface import implementer

from pacscore.config.errors import ConfigError
from pacscore.config.ini import DicomIni
from pacscore.errormail import MOST_LINES, ErrorMail, recipientsFrom


class ClockReactor(task.Clock):
    """A Clock whose callFromThread runs at once (the tests' one thread)."""

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class ErrorMailTests(unittest.TestCase):

    def setUp(self):
        self.clock = ClockReactor()
        self.publisher = LogPublisher()
        self.sent = []
        self.answer = defer.succeed
        self.mail = ErrorMail(self.clock, "smtp.example", ["ops@example", "pacs-admin@example"], port=2525,
                              signon="pacs.example", sender="pacs@example", collectMinutes=1, waitSeconds=10,
                              name="pacs PACS", publisher=self.publisher, send=self.send)
        self.mail.startService()
        self.log = Logger(namespace="pacscore.storage.store", observer=self.publisher)

    def send(self, host, sender, recipients, message, senderDomainName, port):
        mail = email.message_from_bytes(message, policy=policy.default)
        self.sent.append((host, sender, recipients, mail, senderDomainName, port))
        return self.answer(None)

    def test_errorsCollectedForMailCollectTime(self):
        self.log.info("stored {n}", n=1)
        self.log.warn("slow disk")
        self.log.error("disk full: {path} not stored", path="/data/1.dcm")
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("export failed")
        self.clock.advance(59)
        self.assertEqual(self.sent, [])
        self.clock.advance(1)
        [(host, sender, recipients, message, signon, port)] = self.sent
        self.assertEqual((host, sender, recipients, signon, port),
                         ("smtp.example", "pacs@example", ["ops@example", "pacs-admin@example"], "pacs.example",
                          2525))
        self.assertEqual(message["Subject"], "pacs PACS: 2 error messages")
        self.assertEqual(message["To"], "ops@example, pacs-admin@example")
        lines = message.get_content().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertTrue(lines[0].endswith("[pacscore.storage.store] disk full: /data/1.dcm not stored"), lines)
        self.assertTrue(lines[1].endswith("export failed: division by zero"), lines)
        self.log.error("again")
        self.clock.advance(60)
        self.assertEqual(len(self.sent), 2)

    def test_aFloodIsCapped(self):
        for number in range(MOST_LINES + 5):
            self.log.error("error {n}", n=number)
        self.clock.advance(60)
        [(_, _, _, message, _, _)] = self.sent
        self.assertEqual(message["Subject"], f"pacs PACS: {MOST_LINES + 5} error messages")
        self.assertTrue(message.get_content().rstrip().endswith("... and 5 more (see the server log)"))

    def test_stoppingSendsWhatWasCollected(self):
        self.log.error("last words")
        stopping = self.mail.stopService()
        self.clock.advance(0)
        self.successResultOf(stopping)
        self.assertEqual(len(self.sent), 1)
        self.log.error("after the end")
        self.clock.advance(120)
        self.assertEqual(len(self.sent), 1)

    def test_aFailedMailIsLoggedAsAWarningNotMailed(self):
        self.answer = lambda _: defer.fail(OSError("connection refused"))
        self.log.error("broken")
        with capturedLogs() as events:
            self.clock.advance(60)
        self.assertEqual([(e["log_level"], formatEvent(e)) for e in events],
                         [(LogLevel.warn, "error messages could not be mailed through smtp.example:2525: "
                                          "connection refused")])
        self.clock.advance(120)
        self.assertEqual(len(self.sent), 1)

    def test_aMailServerThatHangsTimesOut(self):
        self.answer = lambda _: defer.Deferred()
        self.log.error("broken")
        with capturedLogs() as events:
            self.clock.advance(60)
            self.assertEqual(events, [])
            self.clock.advance(10)
        self.assertEqual([e["log_level"] for e in events], [LogLevel.warn])
        self.assertIn("could not be mailed", formatEvent(events[0]))


@implementer(IHostResolution)
class Resolution:
    def __init__(self, name):
        self.name = name

    def cancel(self):
        pass


@implementer(IHostnameResolver)
class IPv6OnlyResolver:
    """Resolves every name to one IPv6 address only, as DNS does for a
    host that has no IPv4 address."""

    def __init__(self, address):
        self.address = address
        self.asked = []

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"):
        self.asked.append(hostName)
        receiver.resolutionBegan(Resolution(hostName))
        receiver.addressResolved(IPv6Address("TCP", self.address, portNumber))
        receiver.resolutionComplete()
        return receiver


class ThreadlessMemoryReactor(MemoryReactorClock):
    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class IPv6MailHostTests(unittest.TestCase):
    """The mail goes through a connection to the mail server's IPv6 address
    when its name has no other (``twisted.mail.smtp.sendmail`` looked up
    IPv4 only: "DNS lookup failed")."""

    def setUp(self):
        self.reactor = ThreadlessMemoryReactor()
        self.reactor.nameResolver = IPv6OnlyResolver("fd00::2")
        self.publisher = LogPublisher()
        self.mail = ErrorMail(self.reactor, "v6only.test", ["ops@test"], port=21525, signon="pacs.example",
                              sender="pacs@example", collectMinutes=0, name="pacs PACS", publisher=self.publisher)
        self.mail.startService()
        self.events = []
        self.mail.log = Logger(observer=self.events.append)

    def server(self):
        """The SMTP connection pacs opened, as the mail server sees it."""
        self.reactor.advance(0)  # the error collected, the mail sent, the name resolved
        self.assertEqual(self.reactor.nameResolver.asked, ["v6only.test"])
        [(host, port, factory, _, _)] = self.reactor.tcpClients
        self.assertEqual((host, port), ("fd00::2", 21525))
        transport = StringTransport(peerAddress=IPv6Address("TCP", "fd00::2", 21525))
        protocol = factory.buildProtocol(IPv6Address("TCP", "fd00::2", 21525))
        protocol.makeConnection(transport)
        return protocol, transport

    def exchange(self, protocol, transport, line):
        transport.clear()
        protocol.dataReceived(line + b"\r\n")
        return transport.value()

    def test_anIPv6OnlyMailHostGetsTheMail(self):
        Logger(namespace="pacscore.storage.store", observer=self.publisher).error("boom")
        protocol, transport = self.server()
        self.assertEqual(self.exchange(protocol, transport, b"220 sink ESMTP"), b"EHLO pacs.example\r\n")
        self.assertEqual(self.exchange(protocol, transport, b"250 sink"), b"MAIL FROM:<pacs@example>\r\n")
        self.assertEqual(self.exchange(protocol, transport, b"250 ok"), b"RCPT TO:<ops@test>\r\n")
        self.assertEqual(self.exchange(protocol, transport, b"250 ok"), b"DATA\r\n")
        self.exchange(protocol, transport, b"354 go on")
        while transport.producer is not None:  # the message file, as the connection would pull it
            transport.producer.resumeProducing()
        mail = transport.value()
        self.assertIn(b"Subject: pacs PACS: 1 error message", mail)
        self.assertIn(b"boom", mail)
        self.assertTrue(mail.endswith(b"\r\n.\r\n"))
        self.assertEqual(self.exchange(protocol, transport, b"250 queued"), b"RSET\r\n")
        self.assertEqual([formatEvent(e) for e in self.events], ["1 error message(s) mailed to ops@test"])

    def test_aMailServerThatDropsTheConnectionFailsTheMail(self):
        Logger(namespace="pacscore.storage.store", observer=self.publisher).error("boom")
        protocol, transport = self.server()
        protocol.connectionLost(Failure(ConnectionLost("gone")))
        self.assertEqual([(e["log_level"], formatEvent(e)) for e in self.events],
                         [(LogLevel.warn, "error messages could not be mailed through v6only.test:21525: "
                                          "Unable to connect to SMTP server: Connection to the other side was "
                                          "lost in a non-clean fashion: gone.")])

    def test_aLinkLocalMailHostKeepsItsZone(self):
        """MailHost = fe80::...%eth0 is connected to with its zone, which
        names the interface (a HostnameEndpoint dropped it: 'Unable to
        connect to SMTP server: An error occurred while connecting: 22:
        Invalid argument.')."""
        reactor = ThreadlessMemoryReactor()
        publisher = LogPublisher()
        ErrorMail(reactor, "fe80::fc:ff:fe00:1%eth0", ["ops@test"], port=21725, collectMinutes=0,
                  publisher=publisher).startService()
        Logger(namespace="pacscore.storage.store", observer=publisher).error("boom")
        reactor.advance(0)
        self.assertEqual([(host, port) for host, port, *_ in reactor.tcpClients],
                         [("fe80::fc:ff:fe00:1%eth0", 21725)])


class ConfigurationTests(unittest.TestCase):

    def test_fromIni(self):
        ini = DicomIni.fromString("MailHost = 127.0.0.1\nMailPort = 2525\nMailSignon = pacs.local\n"
                                  "MailFromName = pacs@local\nMailRcptName2 = b@x\nMailRcptName1 = a@x\n"
                                  "MailRcptName3 =\nMailCollectTime = 0\nMailWaitTime = 5\n")
        mail = ErrorMail.fromIni(ini, ClockReactor(), "pacs PACS")
        self.assertEqual((mail.host, mail.port, mail.signon, mail.sender, mail.recipients, mail.collectSeconds,
                          mail.waitSeconds), ("127.0.0.1", 2525, "pacs.local", "pacs@local", ["a@x", "b@x"], 0, 5))
        self.assertEqual(recipientsFrom(ini), ["a@x", "b@x"])

    def test_mailPortByServiceName(self):
        """MailPort = smtp, as Conquest's dicom.ini files have it, is the
        service's port; a name no service has stops start-up naming the line."""
        def port(value):
            ini = DicomIni.fromString(f"MailHost = mail\nMailRcptName1 = a@x\nMailPort = {value}\n", "dicom.ini")
            return ErrorMail.fromIni(ini, ClockReactor(), "pacs").port
        self.assertEqual([port(value) for value in ("smtp", "submission", "2525", "")], [25, 587, 2525, 25])
        error = self.assertRaises(ConfigError, port, "nosuchservice")
        self.assertEqual(str(error), "dicom.ini:3: MailPort = nosuchservice: no TCP service of that name, give a "
                                     "port number")

    def test_offWithoutHostOrRecipient(self):
        self.assertIsNone(ErrorMail.fromIni(DicomIni.fromString("MailHost =\nMailRcptName1 = a@x\n"),
                                            ClockReactor(), "pacs"))
        self.assertIsNone(ErrorMail.fromIni(DicomIni.fromString("MailHost = smtp\nMailRcptName1 =\n"),
                                            ClockReactor(), "pacs"))
        self.assertIsNone(ErrorMail.fromIni(DicomIni.fromString(open("etc/dicom.ini").read()), ClockReactor(),
                                            "pacs"))
