"""The ``mtls:`` server endpoint: found by strports, requiring a client
certificate, and refusing unusable files with a message that names them;
``securityOf`` on a plain connection."""

import os

from OpenSSL import SSL
from twisted.internet import endpoints
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from pacscore.testing.certificates import Authority
from pacscore.tls import securityOf, tlsFailure


class MutualTLSEndpointTests(unittest.TestCase):

    def setUp(self):
        self.authority = Authority(self.mktemp(), "hospital")
        self.server = self.authority.issue("pacs", server=True)
        self.reactor = MemoryReactor()

    def parse(self, description):
        return endpoints.serverFromString(self.reactor, description)

    def description(self, **overrides):
        keys = {"privateKey": self.server.key, "certKey": self.server.certificate,
                "caCerts": self.authority.certificate, **overrides}
        return "mtls:2762:interface=127.0.0.1:" + ":".join(f"{k}={v}" for k, v in keys.items() if v is not None)

    def test_requiresClientCertificateFromTheAuthorities(self):
        endpoint = self.parse(self.description())
        self.assertIsInstance(endpoint, endpoints.SSL4ServerEndpoint)
        context = endpoint._sslContextFactory.getContext()
        required = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        self.assertEqual(context.get_verify_mode() & required, required)
        endpoint.listen(object())
        port, factory, backlog, contextFactory, interface = self.reactor.sslServers[0]
        self.assertEqual((port, interface), (2762, "127.0.0.1"))

    def test_keyAndCertificateInOneFile(self):
        both = os.path.join(self.authority.folder, "both.pem")
        with open(both, "wb") as out:
            for path in (self.server.certificate, self.server.key):
                with open(path, "rb") as f:
                    out.write(f.read())
        self.parse(self.description(privateKey=both, certKey=None))

    def test_caCertsRequired(self):
        error = self.assertRaises(ValueError, self.parse, self.description(caCerts=None))
        self.assertIn("mtls: needs privateKey=FILE and caCerts=FILE", str(error))

    def test_missingFileNamed(self):
        error = self.assertRaises(ValueError, self.parse, self.description(caCerts="/no/such.pem"))
        self.assertEqual(str(error), "caCerts=/no/such.pem: No such file or directory")

    def test_fileWithoutCertificate(self):
        error = self.assertRaises(ValueError, self.parse, self.description(caCerts=self.server.key))
        self.assertIn("no PEM certificate in it", str(error))

    def test_keyOfAnotherCertificate(self):
        other = self.authority.issue("other", server=True)
        error = self.assertRaises(ValueError, self.parse, self.description(privateKey=other.key))
        self.assertIn(f"privateKey={other.key} does not belong to certKey={self.server.certificate}", str(error))

    def test_notPEM(self):
        garbage = os.path.join(self.authority.folder, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("not a key\n")
        error = self.assertRaises(ValueError, self.parse, self.description(privateKey=garbage))
        self.assertIn(f"privateKey={garbage}: not a readable PEM private key", str(error))


class DescriptionTests(unittest.TestCase):

    def test_plainConnection(self):
        self.assertEqual(securityOf(StringTransport()), "")

    def test_tlsFailure(self):
        refused = SSL.Error([("SSL routines", "", "certificate verify failed"), ("SSL routines", "", "second")])
        self.assertEqual(tlsFailure(Failure(refused)), "certificate verify failed; second")
        self.assertEqual(tlsFailure(Failure(SSL.Error("odd"))), "odd")
        self.assertIsNone(tlsFailure(Failure(ConnectionDone())))
