"""Tests for pacscore.archive: what start-up tells of the configuration."""

from twisted.internet import reactor
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.archive import Archive
from pacscore.config.loader import loadConfiguration
from tests.interop.server import PacsServer
from tests.pacscore.codecs.test_syntaxes import withoutJpegLS


class UnencodableCodeTests(unittest.TestCase):

    def warnings(self, ini, nodes=()):
        """The lines an archive with the dicom.ini keys ``ini`` and the
        acrnema.map ``nodes`` (AE, compression) logs of codes it cannot
        encode, on an installation without a JPEG-LS encoder."""
        withoutJpegLS(self)
        server = PacsServer(self.mktemp(), ini=ini)
        for port, (ae, compression) in enumerate(nodes, start=5678):
            server.addNode(ae, port, compression=compression)
        with capturedLogs() as events:
            archive = Archive(loadConfiguration(server.workdir, server.workdir), reactor)
        self.addCleanup(archive.engine.dispose)
        return [formatEvent(e) for e in events if "cannot be encoded" in formatEvent(e)]

    def test_configuredCodesWithoutAnEncoderWarnedOf(self):
        """Start-up names each code configured that asks for JPEG-LS only,
        once, with the first setting it is in."""
        warnings = self.warnings({"IncomingCompression": "js", "DroppedFileCompression": "jk"},
                                 [("VIEWER", "j7"), ("ARCHIVE", "js"), ("OTHER", "j1")])
        self.assertEqual([line.split(":")[0] for line in warnings], ["IncomingCompression = js",
                                                                    "acrnema.map VIEWER = j7"])
        self.assertIn("objects are stored and sent in the transfer syntax they have instead", warnings[0])
        warnings = self.warnings({"DroppedFileCompression": "js", "ArchiveCompression": "j7"})
        self.assertEqual([line.split(":")[0] for line in warnings], ["DroppedFileCompression = js",
                                                                    "ArchiveCompression = j7"])
        self.assertEqual(self.warnings({"IncomingCompression": "j2"}, [("VIEWER", "jl")]), [])
