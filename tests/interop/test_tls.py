"""DICOM over TLS with DCMTK's storescu and echoscu against ``twistd -n
pacs``: ``DICOMTLSEndpoint`` beside the plain port, ``mtls:`` admitting only
clients whose certificate the configured authority signed (refusing the
others with a log line, and serving on), ``ssl:`` admitting any client;
pacs as a TLS client of ``[DICOMTLSNodes]`` (forwards and C-MOVEs to
storescp over TLS; never in plain TCP to a node a line names)."""

import os
import socket
import ssl
import subprocess

from twisted.trial import unittest

from pacscore.closing import CLOSE_BOUND
from pacscore.testing.certificates import Authority
from pacscore.testing.corpus import generateCorpus
from tests.interop.index import column
from tests.interop.peers import StorescpServer
from tests.interop.server import PacsServer, dcmtk, freePort, waitFor
from tests.interop.test_storage import storedFiles


class TLSTests(unittest.TestCase):

    def setUp(self):
        folder = os.path.abspath(self.mktemp())
        self.authority = Authority(os.path.join(folder, "hospital"), "hospital")
        self.serverIdentity = self.authority.issue("pacs", server=True)
        self.modality = self.authority.issue("ct1")
        self.stranger = Authority(os.path.join(folder, "elsewhere"), "elsewhere").issue("intruder")
        self.expired = self.authority.issue("old", expired=True)
        self.images = generateCorpus(os.path.join(folder, "corpus"), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=1, imagesPerSeries=3)

    def startServer(self, kind, certKey=None, caCerts=None, **ini):
        self.tlsPort = freePort()
        identity = self.serverIdentity
        endpoint = (f"{kind}:{self.tlsPort}:interface=127.0.0.1:privateKey={identity.key}:"
                    f"certKey={certKey or identity.certificate}")
        if kind == "mtls":
            endpoint += f":caCerts={caCerts or self.authority.certificate}"
        self.server = PacsServer(self.mktemp(), ini={"DICOMTLSEndpoint": endpoint, **ini})
        self.addCleanup(self.server.stop)
        self.server.start()

    def overTLS(self, tool, client, *files):
        """Run ``tool`` over TLS as ``client`` (an Identity, or None for
        anonymous TLS), checking the server's certificate against the
        hospital's authority."""
        security = ("+tls", client.key, client.certificate) if client else ("+tla",)
        return dcmtk(tool, "-v", *security, "+cf", self.authority.certificate, "-aec", self.server.ae,
                     "127.0.0.1", self.tlsPort, *files)

    def storeOverTLS(self, client):
        return self.overTLS("storescu", client, *[image.path for image in self.images])

    def assertStored(self):
        expected = sorted(image.sopUID for image in self.images)
        self.assertEqual(sorted(storedFiles(self.server.dataDir)), expected)
        self.assertEqual(column(self.server.database, "DICOMImages", "SOPInstanceUID"), expected)

    def test_mutualTLSBesideThePlainPort(self):
        self.startServer("mtls")
        result = self.storeOverTLS(self.modality)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual((result.stdout + result.stderr).count("Received Store Response (Success)"), 3)
        self.assertStored()
        self.assertRegex(self.server.log(), r"accepted, \d+ of the proposed contexts, over TLS, certificate /CN=ct1")
        plain = dcmtk("echoscu", "-aec", self.server.ae, "127.0.0.1", self.server.port)
        self.assertEqual(plain.returncode, 0, plain.stderr)

    def test_mutualTLSRefusesStrangersAndServesOn(self):
        self.startServer("mtls")
        for client in (self.stranger, self.expired, None):
            result = self.storeOverTLS(client)
            self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertEqual(storedFiles(self.server.dataDir), {})
        # The server may log the last refusal after the client has gone.
        waitFor(lambda: "TLS failed: peer did not return a certificate" in self.server.log(), timeout=10,
                message="the refusal of a client without a certificate")
        log = self.server.log()
        self.assertIn("TLS failed: certificate verify failed (unable to get the issuer's certificate: /CN=intruder)",
                      log)
        self.assertIn("TLS failed: certificate verify failed (certificate has expired: /CN=old)", log)
        plainClient = dcmtk("echoscu", "-aec", self.server.ae, "127.0.0.1", self.tlsPort)
        self.assertNotEqual(plainClient.returncode, 0)
        echo = self.overTLS("echoscu", self.modality)
        self.assertEqual(echo.returncode, 0, echo.stdout + echo.stderr)

    def test_stalledHandshakeClosedAtARTIMAndSaidSo(self):
        """A client that connects to the TLS port and never completes the
        handshake is closed at ARTIM with a line saying so; others are served."""
        self.startServer("mtls", ARTIMTimeOut="2")
        with socket.create_connection(("127.0.0.1", self.tlsPort)) as silent:
            echo = self.overTLS("echoscu", self.modality)
            self.assertEqual(echo.returncode, 0, echo.stdout + echo.stderr)
            silent.settimeout(10)
            try:
                received = silent.recv(1)
            except ConnectionResetError:  # ARTIM aborts the connection
                received = b""
            self.assertEqual(received, b"", "closed by the server")
        self.assertIn("no completed TLS handshake within 2 s (ARTIM), closing", self.server.log())

    def test_chainInCertKeySent(self):
        """A certKey of the server's certificate and its issuing authority
        sends both, as DCMTK's storescp does: a client that trusts only the
        root accepts it."""
        issuing = Authority(os.path.join(self.authority.folder, "issuing"), "issuing", issuer=self.authority)
        self.serverIdentity = issuing.issue("pacs", server=True)
        self.startServer("mtls", certKey=issuing.chain(self.serverIdentity))
        echo = self.overTLS("echoscu", self.modality)
        self.assertEqual(echo.returncode, 0, echo.stdout + echo.stderr)

    def test_wrongPortHinted(self):
        """A plain DICOM client on the TLS port, and a TLS client on the
        plain port, are refused as before, with a hint in the log."""
        self.startServer("mtls")
        plainClient = dcmtk("echoscu", "-aec", self.server.ae, "127.0.0.1", self.tlsPort)
        self.assertNotEqual(plainClient.returncode, 0)
        tlsClient = dcmtk("echoscu", "+tls", self.modality.key, self.modality.certificate, "+cf",
                          self.authority.certificate, "-aec", self.server.ae, "127.0.0.1", self.server.port)
        self.assertNotEqual(tlsClient.returncode, 0)
        waitFor(lambda: "the peer uses TLS" in self.server.log(), timeout=10, message="the hint of a TLS client")
        log = self.server.log()
        self.assertIn("TLS failed: wrong version number (the peer does not speak TLS on this port)", log)
        self.assertIn("malformed PDU, aborting: unknown PDU type 0x16 (a TLS handshake on the plain DICOM port: "
                      "the peer uses TLS)", log)

    def test_caCertsWithoutTheRootSaidSo(self):
        """caCerts holding an issuing authority but not its root refuses the
        clients it issued (as OpenSSL and DCMTK do), saying what caCerts lacks."""
        issuing = Authority(os.path.join(self.authority.folder, "issuing"), "issuing", issuer=self.authority)
        client = issuing.issue("ct2")
        self.startServer("mtls", caCerts=issuing.certificate)
        echo = dcmtk("echoscu", "+tls", client.key, issuing.chain(client), "+cf", self.authority.certificate,
                     "-aec", self.server.ae, "127.0.0.1", self.tlsPort)
        self.assertNotEqual(echo.returncode, 0, echo.stdout)
        waitFor(lambda: "TLS failed: certificate verify failed" in self.server.log(), timeout=10,
                message="the refusal")
        self.assertIn("TLS failed: certificate verify failed (caCerts has this issuing authority but not the root "
                      "above it: /CN=issuing)", self.server.log())

    def test_sslAdmitsAnyClient(self):
        self.startServer("ssl")
        result = self.storeOverTLS(self.stranger)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertStored()
        self.assertRegex(self.server.log(), r"accepted, \d+ of the proposed contexts, over TLS\n")  # no certificate asked

    def test_hl7AndWebTLSFailuresSaid(self):
        """The HL7 and web endpoints over ``ssl:`` log a failed handshake
        as the DICOM service does: a plain MLLP sender on the TLS port with
        the hint, a client that refuses the server's certificate naming it."""
        identity = self.serverIdentity
        keys = f"interface=127.0.0.1:privateKey={identity.key}:certKey={identity.certificate}"
        self.server = PacsServer(self.mktemp())
        self.addCleanup(self.server.stop)
        self.server.setIni(HL7Endpoint=f"ssl:{self.server.hl7Port}:{keys}",
                           WebEndpoint=f"ssl:{self.server.webPort}:{keys}")
        self.server.start()
        with socket.create_connection(("127.0.0.1", self.server.hl7Port), timeout=10) as plain:
            plain.sendall(b"\x0bMSH|^~\\&|RIS|H|PACS|H|2026||ORM^O01|PLAIN1|P|2.5\r\x1c\r")
            self.assertEqual(plain.recv(100), b"")
        distrusting = ssl.create_default_context(cafile=self.stranger.certificate)
        for port in (self.server.hl7Port, self.server.webPort):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                self.assertRaises(ssl.SSLError, distrusting.wrap_socket, raw, server_hostname="localhost")
        waitFor(lambda: "web: 127.0.0.1 TLS failed:" in self.server.log(), timeout=10,
                message="the web's refused handshake")
        log = self.server.log()
        self.assertRegex(log, r"127\.0\.0\.1:\d+: HL7 TLS failed: wrong version number \(the peer does not speak TLS "
                              r"on this port\)")
        self.assertRegex(log, r"127\.0\.0\.1:\d+: HL7 TLS failed: tlsv1 alert unknown ca \(the peer refused our "
                              r"certificate /CN=pacs\)")
        self.assertIn("web: 127.0.0.1 TLS failed: tlsv1 alert unknown ca (the peer refused our certificate /CN=pacs)",
                      log)


    def test_hl7ConnectionClosedForIdlenessIsCutWithinABound(self):
        """A TLS peer that sent part of a frame and then neither answers
        the close_notify of the idle timeout nor closes is cut
        ``CLOSE_BOUND`` s later: its connection slot and its bytes are
        released (a sender after it has its message handled, not the
        HL7MaxBufferedMB AR)."""
        identity = self.serverIdentity
        self.server = PacsServer(self.mktemp())
        self.addCleanup(self.server.stop)
        self.server.setIni(HL7Endpoint=f"ssl:{self.server.hl7Port}:interface=127.0.0.1:privateKey={identity.key}:"
                                       f"certKey={identity.certificate}",
                           TCPIPTimeOut="2", HL7MaxBufferedMB="1", HL7MaxMessageSize="1000000")
        self.server.start()
        anyServer = ssl.create_default_context()
        anyServer.check_hostname, anyServer.verify_mode = False, ssl.CERT_NONE
        held = anyServer.wrap_socket(socket.create_connection(("127.0.0.1", self.server.hl7Port), timeout=10))
        self.addCleanup(held.close)
        held.sendall(b"\x0bMSH|^~\\&|RIS|H|PACS|H|2026||ORM^O01|HELD|P|2.5\rNTE|" + b"x" * 900000)
        waitFor(lambda: "no data for 2 s in the middle of an MLLP frame, closing the HL7 connection" in self.server.log(),
                timeout=20,
                message="the idle timeout")
        waitFor(lambda: "HL7 connection closed" in self.server.log(), timeout=4 + CLOSE_BOUND,
                message="the held connection cut")
        with anyServer.wrap_socket(socket.create_connection(("127.0.0.1", self.server.hl7Port), timeout=10)) as s:
            s.sendall(b"\x0bMSH|^~\\&|RIS|H|PACS|H|2026||ORM^O01|LATER|P|2.5\rNTE|" + b"y" * 200000 + b"\x1c\r")
            answer = s.recv(10000)
        self.assertIn(b"MSA|AE|LATER|ORM\\S\\O01 without ORC or OBR segment", answer)  # handled


class PlainNodeTests(unittest.TestCase):
    """A node that ``[DICOMTLSNodes]`` names by a wildcard, or names only
    once ``dgate --read_ini:`` read it, is never called in plain TCP: a
    plain storescp standing in for it gets nothing of a C-MOVE."""

    def setUp(self):
        folder = os.path.abspath(self.mktemp())
        self.authority = Authority(os.path.join(folder, "hospital"), "hospital")
        self.storescp = StorescpServer(os.path.join(folder, "storescp"), aet="SECURE1")
        self.addCleanup(self.storescp.stop)
        self.storescp.start()
        self.images = generateCorpus(os.path.join(folder, "corpus"), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=1, imagesPerSeries=1)
        self.server = PacsServer(self.mktemp())
        self.server.addNode("SECURE*", self.storescp.port)
        self.addCleanup(self.server.stop)

    def start(self):
        self.server.start()
        self.assertEqual(self.server.store(*[image.path for image in self.images]).returncode, 0)

    def assertRefused(self):
        moved = self.server.dgate(f"--movestudy:(local),SECURE1,:{self.images[0].studyUID}")
        self.assertNotEqual(moved.returncode, 0)
        self.assertIn("SECURE1 closed the connection during the TLS handshake", moved.stdout + moved.stderr)
        self.assertEqual(self.storescp.files(), [])

    def test_aWildcardLine(self):
        self.server.setIni(section="DICOMTLSNodes", **{"SECURE*": f"caCerts={self.authority.certificate}"})
        self.start()
        self.assertRefused()

    def test_aLineReadByReadIni(self):
        self.start()
        self.server.setIni(section="DICOMTLSNodes", SECURE1=f"caCerts={self.authority.certificate}")
        read = self.server.dgate("--read_ini:")
        self.assertEqual(read.returncode, 0, read.stdout + read.stderr)
        self.assertIn("applied at once: [DICOMTLSNodes] SECURE1", read.stdout)
        self.assertRefused()


class OutgoingTLSTests(unittest.TestCase):
    """pacs as the TLS client of a node of ``[DICOMTLSNodes]``: DCMTK's
    storescp over TLS, requiring a client certificate from the hospital's
    authority, gets a forwarded study and C-MOVE sub-operations; against
    an authority it does not know, pacs refuses the connection."""

    def setUp(self):
        folder = os.path.abspath(self.mktemp())
        self.authority = Authority(os.path.join(folder, "hospital"), "hospital")
        archive = self.authority.issue("archive", server=True)
        self.pacsClient = self.authority.issue("pacs")
        self.storescp = StorescpServer(os.path.join(folder, "storescp"), aet="SECURESCP", options=(
            "+tls", archive.key, archive.certificate, "+cf", self.authority.certificate))
        self.addCleanup(self.storescp.stop)
        self.storescp.start()
        self.images = generateCorpus(os.path.join(folder, "corpus"), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=1, imagesPerSeries=3)

    def startPacs(self, caCerts, hostname=None, certKey=None):
        server = PacsServer(self.mktemp())
        server.addNode("SECURESCP", self.storescp.port)
        server.setIni(section="DICOMTLSNodes", SECURESCP=f"caCerts={caCerts}:privateKey={self.pacsClient.key}:"
                                                         f"certKey={certKey or self.pacsClient.certificate}"
                                                         + (f":hostname={hostname}" if hostname else ""))
        self.addCleanup(server.stop)
        server.start()
        self.assertEqual(server.store(*[image.path for image in self.images]).returncode, 0)
        return server

    def test_forwardAndMoveOverTLS(self):
        server = self.startPacs(self.authority.certificate)
        study = self.images[0].studyUID
        moved = server.dgate(f"--movestudy:(local),SECURESCP,:{study}")
        self.assertEqual(moved.returncode, 0, moved.stdout + moved.stderr)
        self.assertEqual(sorted(ds.SOPInstanceUID for ds in self.storescp.datasets()),
                         sorted(image.sopUID for image in self.images))
        self.storescp.reset()
        result = dcmtk("movescu", "-S", "-aec", server.ae, "-aem", "SECURESCP", "-k", "QueryRetrieveLevel=STUDY",
                       "-k", f"StudyInstanceUID={study}", "127.0.0.1", server.port)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(len(self.storescp.files()), 3)

    def test_chainInCertKeySent(self):
        """A node's certKey of our certificate and its issuing authority
        sends both, as DCMTK does: storescp, trusting only the root, takes
        the C-MOVE sub-operations."""
        issuing = Authority(os.path.join(self.authority.folder, "issuing"), "issuing", issuer=self.authority)
        self.pacsClient = issuing.issue("pacs")
        server = self.startPacs(self.authority.certificate, certKey=issuing.chain(self.pacsClient))
        moved = server.dgate(f"--movestudy:(local),SECURESCP,:{self.images[0].studyUID}")
        self.assertEqual(moved.returncode, 0, moved.stdout + moved.stderr)
        self.assertEqual(len(self.storescp.files()), 3)

    def test_unknownAuthorityRefused(self):
        stranger = Authority(os.path.join(os.path.abspath(self.mktemp()), "elsewhere"), "elsewhere")
        server = self.startPacs(stranger.certificate)
        moved = server.dgate(f"--movestudy:(local),SECURESCP,:{self.images[0].studyUID}")
        self.assertNotEqual(moved.returncode, 0)
        self.assertIn("cannot associate with SECURESCP", moved.stdout + moved.stderr)
        self.assertEqual(self.storescp.files(), [])
        # storescp shows its certificate with the hospital's, which pacs does not know
        self.assertIn("TLS failed: certificate verify failed (self-signed certificate in the chain: /CN=hospital)",
                      server.log())

    def test_expiredNodeCertificateRefusedAndSaidSo(self):
        self.storescp.stop()
        archive = self.authority.issue("archive", server=True, expired=True)
        self.storescp = StorescpServer(os.path.join(os.path.abspath(self.mktemp()), "storescp"), aet="SECURESCP",
                                       options=("+tls", archive.key, archive.certificate,
                                                "+cf", self.authority.certificate))
        self.addCleanup(self.storescp.stop)
        self.storescp.start()
        server = self.startPacs(self.authority.certificate)
        moved = server.dgate(f"--movestudy:(local),SECURESCP,:{self.images[0].studyUID}")
        self.assertNotEqual(moved.returncode, 0)
        self.assertEqual(self.storescp.files(), [])
        self.assertIn("TLS failed: certificate verify failed (certificate has expired: /CN=archive)", server.log())

    def test_nodeCertificateForAnotherHostRefusedAndSaidSo(self):
        server = self.startPacs(self.authority.certificate, hostname="archive.elsewhere.example")
        moved = server.dgate(f"--movestudy:(local),SECURESCP,:{self.images[0].studyUID}")
        self.assertNotEqual(moved.returncode, 0)
        self.assertEqual(self.storescp.files(), [])
        self.assertIn("TLS with SECURESCP failed: certificate verify failed (not issued for "
                      "archive.elsewhere.example: /CN=archive)", moved.stdout + moved.stderr)
        self.assertIn("TLS failed: certificate verify failed (not issued for archive.elsewhere.example: /CN=archive)",
                      server.log())

    def test_badConfigurationStopsStartUp(self):
        server = PacsServer(self.mktemp())
        server.setIni(section="DICOMTLSNodes", SECURESCP="privateKey=nothing.key")
        result = subprocess.run(server.command(), cwd=server.workdir, capture_output=True, text=True, timeout=120)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("[DICOMTLSNodes] SECURESCP: caCerts=FILE (the authorities of the node's certificate) is "
                      "required", result.stdout + result.stderr)
