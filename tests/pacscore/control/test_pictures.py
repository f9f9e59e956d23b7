"""Tests for pacscore.control.pictures on a real Archive: the picture
conversions take their turn with the web's pictures (WebMaxRenders)."""

import io
import os

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from pacscore.codecs.syntaxes import UNCOMPRESSED
from pacscore.control import pictures
from pacscore.control.context import CommandError
from pacscore.testing.corpus import generateCorpus
from tests.pacscore.control.running import RunningArchive


class RenderTurnTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self, ini={"WebMaxRenders": "1"})
        self.image, = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=1, imagesPerSeries=1)

    @defer.inlineCallbacks
    def test_waitsForWebTurn(self):
        """With the only turn taken (by a web picture), each conversion waits
        for it, then makes its picture."""
        turns = self.running.archive.webRenders
        for command, start in ((pictures.ConvertToGif(), b"GIF8"), (pictures.ConvertToBmp(), b"BM"),
                               (pictures.ConvertToJpg(), b"\xff\xd8")):
            yield turns.acquire()
            made = self.running.run(command, f"{self.image.path},64")
            for _ in range(1000):
                if turns.waiting:
                    break
                yield task.deferLater(reactor, 0.01, lambda: None)
            self.assertEqual((len(turns.waiting), made.called), (1, False), command.name)
            turns.release()
            picture = yield made
            self.assertTrue(picture.startswith(start), command.name)
        self.assertEqual(turns.tokens, 1)


class ConvertToDicomTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)

    @defer.inlineCallbacks
    def test_aCompressionTheImageCannotTakeIsLeftOut(self):
        """A 32-bit RT Dose asked for in lossless JPEG is written in its own
        syntax (as the web's dicom page sends it), not refused."""
        source = get_testdata_file("rtdose.dcm")
        made = yield self.running.run(pictures.ConvertToDicom(), f"{source},0,j2")
        written = pydicom.dcmread(io.BytesIO(made))
        self.assertIn(written.file_meta.TransferSyntaxUID, UNCOMPRESSED)
        self.assertEqual(written.PixelData, pydicom.dcmread(source).PixelData)


class DamagedPixelsTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)

    @defer.inlineCallbacks
    def test_aRowsOfTwoValuesIsACommandError(self):
        """``convert_to_jpg`` of an object stored with Rows 128\\128 ended
        'int() argument must be ... not 'list'' with a critical 'raised an
        unexpected error' traceback; it is a CommandError naming Rows."""
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds[0x00280010] = DataElement(0x00280010, "US", [128, 128])
        path = os.path.abspath(self.mktemp())
        ds.save_as(path)
        with self.assertRaisesRegex(CommandError, r"^convert_to_jpg: .*: its Rows 128\\128 holds 2 values, not one$"):
            yield self.running.run(pictures.ConvertToJpg(), f"{path},64")
