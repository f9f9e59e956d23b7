"""Reading the control port's endpoint: loopback or not, and where dgate connects."""

from twisted.internet import endpoints, reactor
from twisted.trial import unittest

from pacscore.control.endpoint import DEFAULT_ENDPOINT, clientEndpoint, fields, isLoopback, portNumber


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
        self.assertEqual(clientEndpoint(self.reactor, "tcp6:7000:interface=\\:\\:")[1], "::1:7000")
        self.assertEqual(clientEndpoint(self.reactor, "tcp:7000:interface=127.0.0.2")[1], "127.0.0.2:7000")

    def test_overrides(self):
        self.assertEqual(clientEndpoint(self.reactor, DEFAULT_ENDPOINT, host="pacs.example", port=11)[1],
                         "pacs.example:11")
        self.assertEqual(clientEndpoint(self.reactor, "unix:/run/pacs.sock", port=11)[1], "127.0.0.1:11")

    def test_unixSocket(self):
        endpoint, label = clientEndpoint(self.reactor, "unix:address=/run/pacs.sock")
        self.assertIsInstance(endpoint, endpoints.UNIXClientEndpoint)
        self.assertEqual(label, "/run/pacs.sock")

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
