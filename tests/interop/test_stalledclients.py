"""Web clients that stop reading a download (WADO-RS, WADO-URI, a zip) midway,
against the running server: each is cut off once it has taken nothing for
TCPIPTimeOut seconds, with a log line naming it and the URI, its
connection and the files of its answer closed.  An HL7 sender reading
its ACKs slowly is not cut off."""

import os
import re
import socket
import threading
import time

from twisted.trial import unittest

from tests.interop.server import PacsServer, waitFor
from tests.interop.test_storage import writeLargeMultiframe

STUDY, SERIES, SOP = "1.2.3.4.5", "1.2.3.4.5.6", "1.2.3.4.5.6.7"
TIMEOUT = 3
REQUESTS = {
    f"/dicom-web/studies/{STUDY}": 'Accept: multipart/related; type="application/dicom"\r\n',
    f"/wado?requestType=WADO&studyUID={STUDY}&seriesUID={SERIES}&objectUID={SOP}&contentType=application/dicom": "",
    f"/cgi-bin/dgate?mode=zipstudy&study=:{STUDY}&dum=.zip": "",
}


class StalledDownloadTests(unittest.TestCase):

    def setUp(self):
        self.server = PacsServer(self.mktemp(), ini={"TCPIPTimeOut": str(TIMEOUT)})
        self.server.start()
        self.addCleanup(self.server.stop)
        path = os.path.join(self.server.workdir, "big.dcm")
        writeLargeMultiframe(path, SOP, frames=40)  # 20 MB: far more than the sockets' buffers hold
        result = self.server.store(path)
        self.assertEqual(result.returncode, 0, result.stderr)

    def openFiles(self):
        """How many sockets and files of the data folder but the index the server has open."""
        folder = f"/proc/{self.server.process.pid}/fd"
        links = [os.readlink(os.path.join(folder, fd)) for fd in os.listdir(folder)]
        data = os.path.join(self.server.dataDir, "")
        return sum(link.startswith("socket:") or link.startswith(data) and "/dbase" not in link for link in links)

    def stalled(self, uri, headers):
        """A connection asking for ``uri`` that never reads (a 4 kB receive buffer)."""
        client = socket.socket()
        self.addCleanup(client.close)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", self.server.webPort))
        client.sendall(f"GET {uri} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
        return client

    def test_cutOff(self):
        before = self.openFiles()
        started = time.monotonic()
        clients = {uri: self.stalled(uri, headers) for uri, headers in REQUESTS.items()}
        for uri in clients:
            line = re.compile(rf"web: 127\.0\.0\.1 {re.escape(uri)}: the client took nothing of the answer for "
                              rf"{TIMEOUT} s \(TCPIPTimeOut\), cut off")
            waitFor(lambda: line.search(self.server.log()), timeout=30, message=f"{uri} cut off")
        self.assertGreaterEqual(time.monotonic() - started, TIMEOUT)
        waitFor(lambda: self.openFiles() <= before, timeout=10, message="the connections and files closed")
        for uri, client in clients.items():
            client.settimeout(10)
            received = 0
            try:
                while chunk := client.recv(1 << 20):
                    received += len(chunk)
            except ConnectionResetError:
                pass
            self.assertLess(received, 20 << 20, uri)  # cut short, never all sent


class SlowHL7ReaderTests(unittest.TestCase):

    def setUp(self):
        self.server = PacsServer(self.mktemp(), ini={"TCPIPTimeOut": str(TIMEOUT)})
        self.server.start()
        self.addCleanup(self.server.stop)

    def test_aSenderReadingItsAcksSlowlyIsNotCutOff(self):
        """A sender flooding frames that reads its ACKs, but far slower
        than they are made (4000 bytes a second: the server's write buffer
        does not drain within TCPIPTimeOut), is served on, not cut off as
        one that takes none; once it stops reading, it is."""
        client = socket.socket()
        self.addCleanup(client.close)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", self.server.hl7Port))
        client.settimeout(10)
        flooding = threading.Event()
        flooding.set()

        def flood():
            try:
                while flooding.is_set():
                    client.sendall(b"\x0bX\x1c\r" * 16384)
            except OSError:  # cut off, or closed at the end of the test
                pass

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        self.addCleanup(sender.join, 10)
        self.addCleanup(flooding.clear)
        read = 0
        for _ in range(4 * TIMEOUT):
            time.sleep(1)
            data = client.recv(4000)
            self.assertNotEqual(data, b"", f"cut off after {read} bytes of ACKs")
            read += len(data)
        self.assertNotIn("of its HL7 ACKs", self.server.log())
        line = re.compile(rf"127\.0\.0\.1:\d+: the peer took nothing of its HL7 ACKs for {TIMEOUT} s "
                          r"\(\d+ bytes of them waiting\), cutting the connection")
        waitFor(lambda: line.search(self.server.log()), timeout=4 * TIMEOUT, message="the sender cut off once idle")
