"""Connection floods against the running server: connections that never
send an A-ASSOCIATE-RQ (or an HL7 message, or a control request), more
than its open-file limit (1024, set with prlimit), from one address and
from many; DCMTK's echoscu, the web interface, the HL7 listener and the
control port go on working (pacscore.dicom.admission, pacscore.filelimit)."""

import resource
import socket
import time
import urllib.request

from twisted.trial import unittest

from pacscore.hl7.mllp import frame
from tests.interop.server import PacsServer, dcmtk

FLOOD = 1100


class FloodTests(unittest.TestCase):

    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # this process holds the flood's sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        self.server = PacsServer(self.mktemp())
        command = self.server.command
        self.server.command = lambda *extra: ["prlimit", "--nofile=256:1024", "--", *command(*extra)]
        self.server.start()
        self.addCleanup(self.server.stop)
        self.sockets = []
        self.addCleanup(self.closeFlood)

    def closeFlood(self):
        for s in self.sockets:
            s.close()
        self.sockets = []

    def flood(self, sources, port=None):
        """Open FLOOD idle connections to ``port`` (the DICOM port), from ``sources`` in turn."""
        for number in range(FLOOD):
            s = socket.socket()
            self.sockets.append(s)
            s.bind((sources[number % len(sources)], 0))
            try:
                s.connect(("127.0.0.1", port or self.server.port))
            except ConnectionResetError:  # closed by the server before connect() returned
                pass
        time.sleep(1)

    def echo(self):
        return dcmtk("echoscu", "-to", "10", "-aec", "PACS", "127.0.0.1", str(self.server.port)).returncode

    def webAnswers(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.server.webPort}/cgi-bin/dgate?mode=top",
                                    timeout=10) as answer:
            return answer.status

    def hl7Answer(self):
        """The ACK of an ADT^A08 (an AR: not an order) sent to the HL7 listener."""
        with socket.create_connection(("127.0.0.1", self.server.hl7Port), timeout=10) as connection:
            connection.sendall(frame(b"MSH|^~\\&|RIS|H|PACS|H|20261202||ADT^A08|FLOOD1|P|2.5\r"))
            answer = b""
            while not answer.endswith(b"\x1c\r"):
                data = connection.recv(65536)
                if not data:
                    break
                answer += data
        return answer

    def test_limitsLogged(self):
        log = self.server.log()
        self.assertIn("open files: at most 1024 (raised from 256)", log)
        self.assertIn("DICOM service: at most 512 connections at once, 64 from one address", log)
        self.assertIn("HL7 MLLP service: at most 64 connections at once, 32 from one address; unfinished messages "
                      "of at most 64 MB in all", log)  # a sixteenth of the open-file limit
        self.assertIn("control port: at most 64 connections at once, any number from one address", log)
        self.assertIn("web interface: at most 256 connections at once, any number from one address", log)

    def test_floodFromOneAddress(self):
        """Its 65th connection on are closed at once; others associate as ever."""
        self.flood(["127.0.0.2"])
        self.assertEqual(self.echo(), 0)
        self.assertEqual(self.webAnswers(), 200)
        log = self.server.log()
        self.assertEqual(log.count("127.0.0.2: connection closed at once: it has 64 connections open "
                                   "(MaxAssociationsPerPeer 64)"), 1)
        self.assertNotIn("Too many open files", log)

    def test_floodFromManyAddresses(self):
        """At most half the open files are connections: the web interface
        answers during the flood, and DICOM once it is over."""
        self.flood([f"127.0.0.{host}" for host in range(2, 42)])
        self.assertEqual(self.webAnswers(), 200)
        self.assertIn("connections are open (MaxAssociations 512)", self.server.log())
        self.closeFlood()
        time.sleep(1)
        self.assertEqual(self.echo(), 0)
        self.assertNotIn("Too many open files", self.server.log())

    def test_hl7FloodFromOneAddress(self):
        """Its 33rd HL7 connection on are closed at once; other senders,
        DICOM and the web are served as ever."""
        self.flood(["127.0.0.2"], self.server.hl7Port)
        self.assertIn(b"MSA|AR|FLOOD1", self.hl7Answer())
        self.assertEqual(self.echo(), 0)
        self.assertEqual(self.webAnswers(), 200)
        log = self.server.log()
        self.assertEqual(log.count("127.0.0.2: connection closed at once: it has 32 connections open "
                                   "(HL7MaxConnectionsPerPeer 32)"), 1)
        self.assertNotIn("Too many open files", log)

    def test_hl7AndControlFloodsFromManyAddresses(self):
        """At most a sixteenth of the open files are HL7 connections, and
        as many control connections: DICOM and the web answer during the
        floods, HL7 and dgate once they are over."""
        sources = [f"127.0.0.{host}" for host in range(2, 42)]
        self.flood(sources, self.server.hl7Port)
        self.flood(sources, self.server.controlPort)
        self.assertEqual(self.echo(), 0)
        self.assertEqual(self.webAnswers(), 200)
        refused = self.server.dgate("--display_status:")
        self.assertIn("too many connections to the control port, try again later", refused.stdout + refused.stderr)
        log = self.server.log()
        self.assertIn("connections are open (HL7MaxConnections 64)", log)
        self.assertIn("connections are open (ControlMaxConnections 64)", log)
        self.closeFlood()
        time.sleep(1)
        self.assertIn(b"MSA|AR|FLOOD1", self.hl7Answer())
        self.assertEqual(self.server.dgate("--display_status:").returncode, 0)
        self.assertNotIn("Too many open files", self.server.log())
