"""Conquest's PadAEWithZeros and SendUpperCaseAE on the wire: the
A-ASSOCIATE-RQ pacs sends (caught by a listener that keeps its bytes) and
the -AC it answers have their AE titles padded with NULs, the called AE
title in upper case; DCMTK's tools work with both."""

import os
import socket
import tempfile
import threading

import pydicom
from pydicom.data import get_testdata_file
from twisted.trial import unittest

from tests.interop.peers import StorescpServer
from tests.interop.server import PacsServer, freePort
from tests.interop.test_retrieve import movescu

CT = get_testdata_file("CT_small.dcm")


class RequestCatcher:
    """Listens on a free port, keeps the first PDU of each connection and
    closes it (the requestor sees the association fail)."""

    def __init__(self):
        self.port = freePort()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.requests = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _receive(self, connection, count):
        data = b""
        while len(data) < count:
            chunk = connection.recv(count - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def _serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                header = self._receive(connection, 6)
                if len(header) == 6:
                    self.requests.append(header + self._receive(connection, int.from_bytes(header[2:], "big")))

    def close(self):
        self.listener.close()


class TitleStyleTests(unittest.TestCase):

    def setUp(self):
        folder = tempfile.mkdtemp(prefix="pacs-aetitles-")
        self.viewer = StorescpServer(os.path.join(folder, "viewer"), aet="VIEWER", options=("-d",)).start()
        self.addCleanup(self.viewer.stop)
        self.catcher = RequestCatcher()
        self.addCleanup(self.catcher.close)
        self.server = PacsServer(os.path.join(folder, "pacs"), ini={"PadAEWithZeros": "1", "SendUpperCaseAE": "1"})
        self.server.addNode("viewer", self.viewer.port)
        self.server.addNode("catcher", self.catcher.port)
        self.server.start()
        self.addCleanup(self.server.stop)
        result = self.server.store(CT)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.ct = pydicom.dcmread(CT, stop_before_pixels=True)

    def test_request(self):
        result = movescu(self.server, "catcher", "STUDY", {"StudyInstanceUID": self.ct.StudyInstanceUID})
        self.assertNotEqual(result.returncode, 0)  # the catcher hangs up
        [request] = self.catcher.requests
        self.assertEqual(request[0], 0x01)
        self.assertEqual(request[10:42], b"CATCHER" + b"\0" * 9 + b"PACS" + b"\0" * 12)

    def test_dcmtkTakesThem(self):
        """storescp takes our request (called VIEWER, not viewer); echoscu our acceptance."""
        moved = self.server.dgate(f"--movestudy:(local),viewer,:{self.ct.StudyInstanceUID}")
        self.assertEqual(moved.returncode, 0, moved.stdout + moved.stderr)
        self.assertEqual(len(self.viewer.files()), 1)
        self.assertIn("Called Application Name:     VIEWER\n", self.viewer.log(400))
        echo = self.server.echo()
        self.assertEqual(echo.returncode, 0, echo.stderr)
