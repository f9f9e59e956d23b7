"""The acrnema.map control commands on a real Archive: the map C-MOVE uses
is the one edited; write_amap and read_amap move it to and from disk."""

import os
from pathlib import Path

from twisted.internet import defer
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.acrnema import AcrNemaMap
from pacscore.control.context import CommandError
from pacscore.dicom import commands as dimse
from pacscore.dicom.models import STUDY_ROOT_MOVE
from plugins import pacs_control_configuration as commands
from tests.pacscore.control.running import RunningArchive


class AcrNemaMapCommandTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)
        self.archive = self.running.archive
        self.map = self.archive.configuration.acrNemaMap
        self.path = os.path.join(self.running.workdir, "acrnema.map")

    @defer.inlineCallbacks
    def test_getAmaps(self):
        yield self.running.run(commands.putAmap, "3,PEER?,127.0.0.1,104")
        yield self.running.run(commands.putAmap, "4,PEER,127.0.0.1,104,j2")
        lines = (yield self.running.run(commands.getAmaps, "")).split("\n")
        self.assertEqual([line.split() for line in lines],
                         [["CONQUESTSRV1", "127.0.0.1", "5678", "un"], ["PEER", "127.0.0.1", "104", "j2"]])
        self.assertEqual((yield self.running.run(commands.getAmaps, "%s:%s")),
                         "CONQUESTSRV1:127.0.0.1\nPEER:127.0.0.1")
        self.assertEqual((yield self.running.run(commands.getAmaps, "<option value='%s'>%0.0s%0.0s%0.0s%s</option>")),
                         "<option value='CONQUESTSRV1'>CONQUESTSRV1</option>\n<option value='PEER'>PEER</option>")

    @defer.inlineCallbacks
    def test_getAmap(self):
        self.assertEqual((yield self.running.run(commands.getAmap, "1,%s|%s|%s|%s")), "V*|*|1234|un")
        self.assertEqual((yield self.running.run(commands.getAmap, "3")), "")
        yield self.assertFailure(self.running.run(commands.getAmap, "first"), CommandError)

    @defer.inlineCallbacks
    def test_putAmapIsLiveForMoveButNotOnDisk(self):
        before = Path(self.path).read_text()
        yield self.running.run(commands.putAmap, "3,LIVEDEST,127.0.0.1,11113,j2")
        move = self.archive.dicomServerFactory.services[dimse.C_MOVE_RQ].services[STUDY_ROOT_MOVE]
        node = move.acrNemaMap.lookup("LIVEDEST")
        self.assertEqual((node.host, node.port, node.compression), ("127.0.0.1", "11113", "j2"))
        self.assertEqual(Path(self.path).read_text(), before)
        self.assertEqual((yield self.running.run(commands.getAmap, "3,%s %s")), "LIVEDEST 127.0.0.1")

    @defer.inlineCallbacks
    def test_putAmapReplacesAndDefaultsCompression(self):
        yield self.running.run(commands.putAmap, "1,OTHER,10.0.0.1,104")
        self.assertEqual([n.ae for n in self.map.nodes], ["CONQUESTSRV1", "OTHER", "S*"])
        self.assertEqual(self.map.lookup("OTHER").compression, "un")

    @defer.inlineCallbacks
    def test_putAmapRefusals(self):
        for arguments in ("0,BAD,127.0.0.1,port", "0,ONLYAE", "x,A,h,1",
                          "3,AE#1,127.0.0.1,104,un", "\u00b2,A,h,1", "3,M\udcfc,127.0.0.1,104",
                          "3,A,h\udcfc,104"):
            yield self.assertFailure(self.running.run(commands.putAmap, arguments), CommandError)
        self.assertEqual(len(self.map.nodes), 3)

    @defer.inlineCallbacks
    def test_putAmapPastTheEndAppends(self):
        """An index past the last entry adds the node after it, as Conquest's
        scripts rely on (put_amap:99,testserver,...); it was refused."""
        yield self.running.run(commands.putAmap, "99,TESTSERVER,127.0.0.1,4433")
        yield self.running.run(commands.putAmap, "4,FAR,127.0.0.1,104")
        self.assertEqual(len(self.map.nodes), 5)
        self.assertEqual([n.ae for n in self.map.nodes][-2:], ["TESTSERVER", "FAR"])
        self.assertEqual(self.map.nodes[-2].port, "4433")

    @defer.inlineCallbacks
    def test_deleteAmap(self):
        yield self.running.run(commands.deleteAmap, "0")
        self.assertIsNone(self.map.lookup("CONQUESTSRV1"))
        yield self.assertFailure(self.running.run(commands.deleteAmap, "2"), CommandError)

    @defer.inlineCallbacks
    def test_writeAmapKeepsHeaderComments(self):
        header = Path(self.path).read_text().split("*/")[0]
        yield self.running.run(commands.putAmap, "3,LIVEDEST,127.0.0.1,11113")
        yield self.running.run(commands.deleteAmap, "1")
        self.assertEqual((yield self.running.run(commands.writeAmap, "")), "")
        text = Path(self.path).read_text()
        self.assertTrue(text.startswith(header))
        self.assertEqual([n.ae for n in AcrNemaMap.fromFile(self.path).nodes], ["CONQUESTSRV1", "S*", "LIVEDEST"])

    @defer.inlineCallbacks
    def test_readAmapInPlace(self):
        yield self.running.run(commands.putAmap, "3,UNSAVED,127.0.0.1,11113")
        with open(self.path, "a") as f:
            f.write("ADDED            127.0.0.2        104       un\n")
        output = yield self.running.run(commands.readAmap, "")
        self.assertIn("4 entries", output)
        self.assertIs(self.archive.configuration.acrNemaMap, self.map)
        self.assertIsNone(self.map.lookup("UNSAVED"))
        self.assertEqual(self.map.lookup("ADDED").host, "127.0.0.2")

    @defer.inlineCallbacks
    def test_readAmapOfBrokenFileKeepsMemory(self):
        """... and is warned of: the server runs with another map than the file's."""
        with open(self.path, "a") as f:
            f.write("ONLYONEFIELD\n")
        with capturedLogs() as events:
            yield self.assertFailure(self.running.run(commands.readAmap, ""), CommandError)
        self.assertEqual(len(self.map.nodes), 3)
        warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn(f"{self.path} not read again, the server keeps the one it read before", warnings[0])
        self.assertIn("ONLYONEFIELD", warnings[0])

    @defer.inlineCallbacks
    def test_putAmapSaysWhy(self):
        """put_amap names the entry and why it cannot be put: a bad port, an
        AE title over 16 characters, an unknown compression code."""
        for arguments, reason in (("3,BADPORT,127.0.0.1,notaport,un", "port 'notaport' of BADPORT is neither"),
                                  ("3,WAYTOOLONGAETITLE_XX,127.0.0.1,104,un", "the AE title WAYTOOLONGAETITLE_XX is longer than 16"),
                                  ("3,BADC,127.0.0.1,104,zz", "'zz' is no compression code")):
            error = yield self.assertFailure(self.running.run(commands.putAmap, arguments), CommandError)
            self.assertIn(f"{arguments.split(',')[1]} not put in {self.path}: {reason}", str(error))
            self.assertNotIn("Node(", str(error))
        self.assertEqual(len(self.map.nodes), 3)
        yield self.running.run(commands.putAmap, "3,SIXTEENCHARS_AE,127.0.0.1,104,j250")
