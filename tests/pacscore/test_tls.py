"""The ``mtls:`` server endpoint: found by strports, requiring a client
certificate, and refusing unusable files with a message that names them;
``securityOf`` on a plain connection; what ``tlsFailure`` says; the
warning of a certificate out of its dates."""

import datetime
import os
import pty
import select
import signal
import sys
import time

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL, crypto
from twisted.internet import endpoints, protocol, ssl
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial import unittest
from zope.interface import implementer

from pacscore.testing.certificates import Authority
from pacscore.config.listeners import serverEndpoint
from pacscore.tls import ClientTLS, securityOf, tlsFailure, validityWarnings


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


def encrypted(key, folder):
    """A copy of the PEM private key file ``key``, in ``folder``, under the pass phrase "secret"."""
    with open(key, "rb") as f:
        plain = serialization.load_pem_private_key(f.read(), None)
    path = os.path.join(folder, "encrypted.key")
    with open(path, "wb") as f:
        f.write(plain.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(b"secret")))
    return path


def onATerminal(code, seconds=20):
    """What the Python ``code`` (in a child whose controlling terminal is a
    new pseudo-terminal, as ``twistd -n pacs`` in a shell) writes there
    until it ends, or until it asks for a pass phrase (then it is killed),
    ``seconds`` at most."""
    pid, terminal = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-c", code])
    output, deadline = b"", time.monotonic() + seconds
    try:
        while b"Enter PEM pass phrase" not in output and time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.1)[0]:
                try:
                    data = os.read(terminal, 4096)
                except OSError:  # the child ended
                    break
                if not data:
                    break
                output += data
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(terminal)
    return output.decode(errors="replace")


class EncryptedKeyTests(unittest.TestCase):
    """A private key under a pass phrase is refused, saying it is
    encrypted, at once: OpenSSL's default prompted for the pass phrase on
    the server's terminal ('Enter PEM pass phrase:'), holding start-up
    or a read_ini (its [DICOMTLSNodes]) until someone typed there, and,
    without a terminal, refused it without saying it was encrypted."""

    def setUp(self):
        self.authority = Authority(self.mktemp(), "hospital")
        self.server = self.authority.issue("pacs", server=True)
        self.key = encrypted(self.server.key, self.authority.folder)
        self.said = (f"privateKey={self.key}: the private key in {self.key} is encrypted (pass phrase protected), and "
                     f"pacs takes no pass phrase: write it out without one, readable by the server's account alone "
                     f"(openssl pkey -in {self.key} -out KEYFILE)")

    def test_refused(self):
        """An outgoing node's key ([DICOMTLSNodes]), an mtls: or ssl: endpoint's."""
        tls = f"privateKey={self.key}:certKey={self.server.certificate}"
        for refused in (lambda: ClientTLS(f"caCerts={self.authority.certificate}:{tls}"),
                        lambda: serverEndpoint(None, f"mtls:2762:caCerts={self.authority.certificate}:{tls}"),
                        lambda: serverEndpoint(None, f"ssl:2762:{tls}")):
            error = self.assertRaises(ValueError, refused)
            self.assertIn(self.said, str(error))

    def test_noPromptOnTheTerminal(self):
        tls = f"privateKey={self.key}:certKey={self.server.certificate}"
        code = ("from pacscore.config.listeners import serverEndpoint\n"
                "from pacscore.tls import ClientTLS\n"
                f"for check in (lambda: ClientTLS('caCerts={self.authority.certificate}:{tls}'),"
                f" lambda: serverEndpoint(None, 'ssl:2762:{tls}')):\n"
                "    try:\n"
                "        check()\n"
                "    except ValueError as e:\n"
                "        print(e)\n")
        said = onATerminal(code)
        self.assertNotIn("Enter PEM pass phrase", said)
        self.assertEqual(said.count("is encrypted (pass phrase protected)"), 2, said)

    def test_sslKeyWhereTwistedReadsIt(self):
        """ssl: takes privateKey and certKey as the fields after the port
        too, and loads the first key of the certificate file followed by
        privateKey's: an encrypted key given so, or in the certificate file
        before a plain privateKey, is refused too, naming the file it is
        in, without a prompt (the check read privateKey= alone, else
        server.pem); plain keys given so still load."""
        combined, plain = (os.path.join(self.authority.folder, name) for name in ("combined.pem", "plain.pem"))
        for path, keyFile in ((combined, self.key), (plain, self.server.key)):
            with open(self.server.certificate, "rb") as certificate, open(keyFile, "rb") as key, \
                    open(path, "wb") as f:
                f.write(certificate.read() + key.read())
        split = (f"the certificate file ({combined}) first, so keep the certificate apart (openssl x509 -in "
                 f"{combined} -out CERTFILE): privateKey=KEYFILE:certKey=CERTFILE")
        refused = {f"ssl:2762:{self.key}:{self.server.certificate}": self.said,
                   f"ssl:2762:privateKey={self.server.key}:certKey={combined}":
                       f"certKey={combined}: the private key in {combined} is encrypted",
                   f"ssl:2762:{self.server.key}:{combined}": f"certKey={combined}: the private key in {combined} is",
                   f"ssl:2762:{combined}": f"privateKey={combined}: the private key in {combined} is encrypted"}
        code = ("from pacscore.config.listeners import serverEndpoint\n"
                f"for description in {list(refused)!r}:\n"
                "    try:\n"
                "        serverEndpoint(None, description)\n"
                "    except ValueError as e:\n"
                "        print(e)\n")
        said = onATerminal(code)
        self.assertNotIn("Enter PEM pass phrase", said)
        for description, message in refused.items():
            self.assertIn(message, said, description)
        self.assertEqual(said.count(split), 3, said)
        serverEndpoint(None, f"ssl:2762:{self.server.key}:{self.server.certificate}")
        serverEndpoint(None, f"ssl:2762:privateKey={self.server.key}:certKey={plain}")
        serverEndpoint(None, f"ssl:2762:{plain}")


class DescriptionTests(unittest.TestCase):

    def test_plainConnection(self):
        self.assertEqual(securityOf(StringTransport()), "")

    def test_tlsFailure(self):
        refused = SSL.Error([("SSL routines", "", "certificate verify failed"), ("SSL routines", "", "second")])
        self.assertEqual(tlsFailure(Failure(refused)), "certificate verify failed; second")
        self.assertEqual(tlsFailure(Failure(SSL.Error("odd"))), "odd")
        self.assertIsNone(tlsFailure(Failure(ConnectionDone())))

    def test_peerRefusedOurCertificate(self):
        """An alert from the peer about a certificate is about ours: said so, with its subject."""
        identity = Authority(self.mktemp(), "hospital").issue("archive", server=True)
        with open(identity.certificate, "rb") as f:
            ours = crypto.load_certificate(crypto.FILETYPE_PEM, f.read())
        transport = _TLSTransport(ours)
        for alert in ("sslv3 alert certificate expired", "tlsv1 alert unknown ca", "sslv3 alert bad certificate",
                      "tls alert certificate expired"):
            self.assertEqual(tlsFailure(Failure(SSL.Error([("SSL routines", "", alert)])), transport),
                             f"{alert} (the peer refused our certificate /CN=archive)")
        self.assertEqual(tlsFailure(Failure(SSL.Error([("SSL routines", "", "unsupported protocol")])), transport),
                         "unsupported protocol")

    def test_plainDicomOnTheTLSPort(self):
        """What OpenSSL says of an A-ASSOCIATE-RQ where a ClientHello should be comes with a hint."""
        self.assertEqual(tlsFailure(Failure(SSL.Error([("SSL routines", "", "wrong version number")]))),
                         "wrong version number (the peer does not speak TLS on this port)")

    def test_plainHTTPOnTheHTTPSPort(self):
        """OpenSSL 3 tells a plain HTTP request (or proxy CONNECT) apart: the same hint."""
        for text in ("http request", "https proxy request"):
            self.assertEqual(tlsFailure(Failure(SSL.Error([("SSL routines", "", text)]))),
                             f"{text} (the peer does not speak TLS on this port)")


class OutgoingRefusalTests(unittest.TestCase):
    """What ``tlsFailure`` says when a node's certificate is refused on an
    association pacs opens (a real handshake, in memory)."""

    def setUp(self):
        self.authority = Authority(os.path.abspath(self.mktemp()), "hospital")

    def handshake(self, node, chain=()):
        """What ``tlsFailure`` says, when pacs's side of a handshake with a
        node showing ``node`` (an ``Identity``), followed by the authorities
        ``chain`` (their PEM files), is lost."""
        creator = ClientTLS(f"caCerts={self.authority.certificate}:hostname=localhost").creatorFor("127.0.0.1")
        return self.connect(node, creator, chain).failure

    def connect(self, node, creator, chain=()):
        """pacs's side (``creator``) of a handshake with a node showing
        ``node``, followed by ``chain``: its protocol, once done."""
        with open(node.key, "rb") as key, open(node.certificate, "rb") as certificate:
            identity = ssl.PrivateCertificate.loadPEM(key.read() + certificate.read())
        extra = []
        for path in chain:
            with open(path, "rb") as f:
                extra.append(crypto.load_certificate(crypto.FILETYPE_PEM, f.read()))
        serverOptions = ssl.CertificateOptions(privateKey=identity.privateKey.original,
                                               certificate=identity.original, extraCertChain=extra)
        client = _Lost()
        clientTLS = TLSMemoryBIOFactory(creator, True, protocol.Factory.forProtocol(lambda: client)).buildProtocol(None)
        serverTLS = TLSMemoryBIOFactory(serverOptions, False, protocol.Factory.forProtocol(protocol.Protocol)
                                        ).buildProtocol(None)
        iosim.connect(serverTLS, iosim.makeFakeServer(serverTLS), clientTLS, iosim.makeFakeClient(clientTLS))
        return client

    def test_aLinkLocalAddressIsCheckedWithoutItsZone(self):
        """A node at ``fe80::1%eth0`` whose certificate names the address
        ``fe80::1`` is taken (it was refused: 'certificate verify failed
        (not issued for fe80::fc:ff:fe00:1%eth0: /CN=scp)')."""
        node = self.authority.issue("scp", True, addresses=["fe80::fc:ff:fe00:1"])
        client = self.connect(node, ClientTLS(f"caCerts={self.authority.certificate}").creatorFor(
            "fe80::fc:ff:fe00:1%eth0"))
        self.assertEqual((client.connected, client.failure), (1, None))
        client = self.connect(node, ClientTLS(f"caCerts={self.authority.certificate}").creatorFor(
            "fe80::fc:ff:fe00:2%eth0"))
        self.assertEqual(client.failure, "certificate verify failed (not issued for fe80::fc:ff:fe00:2: /CN=scp)")

    def test_anotherAuthority(self):
        self.assertEqual(self.handshake(Authority(os.path.abspath(self.mktemp()), "evil").issue("evilscp", True)),
                         "certificate verify failed (unable to get the issuer's certificate: /CN=evilscp)")

    def test_aCertificateForAnotherPurpose(self):
        """A node certificate for TLS clients only (extendedKeyUsage
        clientAuth) is refused for its purpose, and said so."""
        self.assertEqual(self.handshake(self.authority.issue("scp", True, usage=ExtendedKeyUsageOID.CLIENT_AUTH)),
                         "certificate verify failed (unsupported certificate purpose: /CN=scp)")

    def test_anIssuingAuthorityForAnotherPurpose(self):
        """So is a node certificate for TLS servers whose issuing authority
        is restricted to TLS clients, naming that authority."""
        issuing = Authority(os.path.join(self.authority.folder, "issuing"), "clients", issuer=self.authority,
                            usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        self.assertEqual(self.handshake(issuing.issue("scp", True), [issuing.certificate]),
                         "certificate verify failed (unsupported certificate purpose: /CN=clients)")

    def test_anyExtendedKeyUsageAlone(self):
        """As OpenSSL refuses it for a TLS server, a node certificate, or an
        issuing authority, whose only extended key usage is
        anyExtendedKeyUsage is named as refused for its purpose."""
        self.assertEqual(self.handshake(self.authority.issue(
            "scp", True, usage=ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)),
            "certificate verify failed (unsupported certificate purpose: /CN=scp)")
        issuing = Authority(os.path.join(self.authority.folder, "issuing"), "anyica", issuer=self.authority,
                            usage=ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)
        self.assertEqual(self.handshake(issuing.issue("scp", True), [issuing.certificate]),
                         "certificate verify failed (unsupported certificate purpose: /CN=anyica)")


class _Lost(protocol.Protocol):
    """Keeps what ``tlsFailure`` says of its connection's loss (its
    transport's TLS connection is gone once ``connectionLost`` returns)."""

    failure = None

    def connectionLost(self, reason):
        self.failure = tlsFailure(reason, self.transport)


@implementer(ISSLTransport)
class _TLSTransport:
    """A TLS transport whose connection shows ``certificate`` as ours."""

    def __init__(self, certificate):
        self.connection = _Connection(certificate)

    def getHandle(self):
        return self.connection


class _Connection:

    def __init__(self, certificate):
        self.certificate = certificate

    def get_certificate(self):
        return self.certificate

    def get_peer_cert_chain(self):
        return None


class ValidityTests(unittest.TestCase):
    """``validityWarnings`` of a certificate file: its dates as seen at start-up."""

    def setUp(self):
        self.path = Authority(self.mktemp(), "hospital").issue("archive", server=True).certificate
        with open(self.path, "rb") as f:
            certificate = crypto.load_certificate(crypto.FILETYPE_PEM, f.read()).to_cryptography()
        self.notBefore, self.notAfter = certificate.not_valid_before_utc, certificate.not_valid_after_utc

    def test_valid(self):
        self.assertEqual(validityWarnings(self.path, self.notAfter - datetime.timedelta(days=31)), [])

    def test_expiresSoon(self):
        self.assertEqual(validityWarnings(self.path, self.notAfter - datetime.timedelta(days=12, hours=1)),
                         [f"certificate {self.path} (/CN=archive) expires on {self.notAfter:%Y-%m-%d %H:%M} UTC, "
                          "in 12 days"])

    def test_expired(self):
        self.assertEqual(validityWarnings(self.path, self.notAfter + datetime.timedelta(seconds=1)),
                         [f"certificate {self.path} (/CN=archive) expired on {self.notAfter:%Y-%m-%d %H:%M} UTC: "
                          "TLS peers refuse it"])

    def test_notYetValid(self):
        self.assertEqual(validityWarnings(self.path, self.notBefore - datetime.timedelta(seconds=1)),
                         [f"certificate {self.path} (/CN=archive) is not valid until "
                          f"{self.notBefore:%Y-%m-%d %H:%M} UTC: TLS peers refuse it until then"])

    def test_everyCertificateOfAChain(self):
        """A full-chain file whose issuing authority expired, its leaf
        valid: the authority is named, with its place in the file."""
        folder = self.mktemp()
        issuing = Authority(folder, "issuing", issuer=Authority(folder, "root"), expired=True)
        chain = issuing.chain(issuing.issue("leaf", server=True))
        [warning] = validityWarnings(chain)
        self.assertTrue(warning.startswith(f"certificate 2 of 2 in {chain} (/CN=issuing) expired on "), warning)
