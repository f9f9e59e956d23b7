"""Reading the control port's endpoint: loopback or not, where dgate
connects and, over TLS, whom it trusts."""

import os

from twisted.internet import defer, endpoints, reactor
from twisted.trial import unittest

from pacscore.control.client import Reply, TLSFailed, sendCommand
from pacscore.control.endpoint import DEFAULT_ENDPOINT, clientEndpoint, fields, isLoopback, portNumber
from pacscore.control.protocol import ControlFactory
from pacscore.control.registry import CommandRegistry
from pacscore.testing.certificates import Authority
from tests.pacscore.control.test_protocol import Echo


class LoopbackTests(unittest.TestCase):

    def test_loopback(self):
        for description in (DEFAULT_ENDPOINT, "tcp:5679:interface=\\:\\:1",
                            "tcp6:port=5679:interface=\\:\\:1", "ssl:5679:interface=localhost:privateKey=k.pem",
                            "unix:/run/pacs.sock"):
            self.assertTrue(isLoopback(description), description)

    def test_notLoopback(self):
        for description in ("tcp:5679", "5679", "tcp:5679:interface=0.0.0.0", "tcp:5679:interface=127.0.0.2",
                            "tcp:5679:interface=10.0.0.1", "systemd:domain=INET:index=0"):
            self.assertFalse(isLoopback(description), description)

    def test_fieldsUnescapeColons(self):
        self.assertEqual(fields("tcp6:5679:interface=\\:\\:1"), ("tcp6", ["5679"], {"interface": "::1"}))


class ClientEndpointTests(unittest.TestCase):

    def setUp(self):
        self.reactor = reactor  # endpoints are only made, never connected

    def test_fromTheServerDescription(self):
        endpoint, label = clientEndpoint(self.reactor, DEFAULT_ENDPOINT)
        self.assertIsInstance(endpoint, endpoints.HostnameEndpoint)
        self.assertEqual(label, "127.0.0.1:5679")

    def test_wildcardMeansThisMachine(self):
        self.assertEqual(clientEndpoint(self.reactor, "tcp:port=7000")[1], "127.0.0.1:7000")
        self.assertEqual(clientEndpoint(self.reactor, "tcp6:7000:interface=\\:\\:")[1], "[::1]:7000")
        self.assertEqual(clientEndpoint(self.reactor, "tcp:7000:interface=127.0.0.2")[1], "127.0.0.2:7000")

    def test_overrides(self):
        self.assertEqual(clientEndpoint(self.reactor, DEFAULT_ENDPOINT, host="pacs.example", port=11)[1],
                         "pacs.example:11")
        self.assertEqual(clientEndpoint(self.reactor, "unix:/run/pacs.sock", port=11)[1], "127.0.0.1:11")
        self.assertEqual(clientEndpoint(self.reactor, DEFAULT_ENDPOINT, host="[::1]", port=11)[1], "[::1]:11")

    def test_unixSocket(self):
        endpoint, label = clientEndpoint(self.reactor, "unix:address=/run/pacs.sock")
        self.assertIsInstance(endpoint, endpoints.UNIXClientEndpoint)
        self.assertEqual(label, "/run/pacs.sock")

    def test_unixSocketInTheWorkingFolder(self):
        """A relative socket path is in the working folder (``folder``), as
        the files of an ssl: description are, and as ``dgate -i``/``-r``
        look for the running server: ``dgate -w DIR --command`` run
        elsewhere reaches the server that runs in DIR."""
        endpoint, label = clientEndpoint(self.reactor, "unix:control.sock", folder="/srv/pacs")
        self.assertEqual((endpoint._path, label), ("/srv/pacs/control.sock", "/srv/pacs/control.sock"))

    def test_unusableDescriptions(self):
        for description in ("tcp:abc", "tcp:port=x", "tcp:99999", "tcp:0", "tcp:\u00b2", "unix", "unix:"):
            self.assertRaises(ValueError, clientEndpoint, self.reactor, description)

    def test_tls(self):
        endpoint, label = clientEndpoint(self.reactor, "ssl:5679:interface=127.0.0.1:privateKey=k.pem")
        self.assertNotIsInstance(endpoint, endpoints.HostnameEndpoint)  # wrapped in TLS
        self.assertEqual(label, "127.0.0.1:5679")

    def test_clientCertificateNeeded(self):
        error = self.assertRaises(ValueError, clientEndpoint, self.reactor,
                                  "mtls:5679:interface=127.0.0.1:privateKey=k.pem:caCerts=ca.pem")
        self.assertIn("dgate cannot show", str(error))
        self.assertEqual(clientEndpoint(self.reactor, "mtls:5679:privateKey=k.pem", port=11)[1], "127.0.0.1:11")


class PortNumberTests(unittest.TestCase):

    def test_ports(self):
        self.assertEqual([portNumber(text) for text in ("1", "5679", "65535")], [1, 5679, 65535])

    def test_notPorts(self):
        for text in ("0", "65536", "9" * 30, "\u00b2", "\u0661", "-1", "", "abc"):
            error = self.assertRaises(ValueError, portNumber, text)
            self.assertIn("is not a number from 1 to 65535", str(error))


class TLSTests(unittest.TestCase):
    """dgate and a control port on ssl: whose certificate comes from a
    private authority, the platform's trusting none of them."""

    @defer.inlineCallbacks
    def setUp(self):
        self.authority = Authority(self.mktemp(), "private")
        self.folder = self.authority.folder
        self.server = self.authority.issue("pacs", server=True)
        names = {"privateKey": os.path.basename(self.server.key), "certKey": os.path.basename(self.server.certificate)}
        self.keys = ":".join(f"{key}={name}" for key, name in names.items())
        absolute = ":".join(f"{key}={os.path.join(self.folder, name)}" for key, name in names.items())
        listening = yield endpoints.serverFromString(reactor, f"ssl:0:interface=127.0.0.1:{absolute}").listen(
            ControlFactory(object(), reactor, commands=CommandRegistry([Echo()])))
        self.addCleanup(listening.stopListening)
        self.port = listening.getHost().port

    def send(self, keys):
        endpoint, _ = clientEndpoint(reactor, f"ssl:{self.port}:interface=127.0.0.1:{keys}", folder=self.folder)
        output = []
        return sendCommand(endpoint, "--echo:over TLS", output=output.append).addCallback(
            lambda reply: (reply, output[0]))

    @defer.inlineCallbacks
    def test_trustsTheServersOwnCertificate(self):
        """The certificate that the description (relative to the working
        folder) names, as Twisted's ssl: reads it: certKey, else privateKey."""
        self.assertEqual((yield self.send(self.keys)), (Reply(True, ""), "over TLS"))
        both = os.path.join(self.folder, "both.pem")
        with open(both, "wb") as out:
            for path in (self.server.key, self.server.certificate):
                with open(path, "rb") as f:
                    out.write(f.read())
        self.assertEqual((yield self.send("privateKey=both.pem")), (Reply(True, ""), "over TLS"))

    @defer.inlineCallbacks
    def test_anotherCertificateRefused(self):
        """A server showing another certificate than the description names
        (of another authority) fails as TLS, not as a silent server."""
        other = Authority(self.mktemp(), "other").issue("impostor", server=True)
        error = yield self.assertFailure(self.send(f"privateKey={other.key}:certKey={other.certificate}"), TLSFailed)
        self.assertTrue(str(error).startswith("TLS with the control port failed: certificate verify failed"),
                        str(error))
