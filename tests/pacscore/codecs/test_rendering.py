"""Tests for pacscore.codecs.rendering: a frame as 8-bit pixels to show."""

import tracemalloc

import numpy as np
from pydicom.dataset import Dataset
from twisted.trial import unittest

from pacscore.codecs import jpeglossless as jpegll
from pacscore.codecs import jpeglossy, nkipixels, rendering
from pacscore.codecs.rendering import (
    LINEAR, LINEAR_EXACT, SIGMOID, FrameOutOfRange, RegionOutsideFrame, SourceRegion, _grey, renderFile,
    renderFrame)
from pacscore.codecs.syntaxes import (
    EXPLICIT_VR_LITTLE_ENDIAN, JPEG_2000_LOSSLESS, JPEG_BASELINE, JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS)
from pacscore.codecs.transcode import LARGEST_FRAME, FrameTooLarge, TranscodeError, transcode
from pacscore.dicom.datasets import encodeDataset
from pacscore.dicom.negotiation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from pacscore.storage.part10 import encodeFileMeta
from tests.pacscore.codecs.test_codestreamheader import BOMB_CODESTREAMS, bombDataset
from tests.pacscore.codecs.test_jpeglossless import dataset
from tests.pacscore.codecs.test_transcode import DATA, overlaid, pixels, quietly, reframed, split

EXPLICIT = EXPLICIT_VR_LITTLE_ENDIAN


def render(ds, **kw):
    return renderFrame(encodeDataset(ds, EXPLICIT), EXPLICIT, **kw)


def ramp(rows=4, columns=256, frames=1, high=4095):
    return np.broadcast_to(np.linspace(0, high, columns).round().astype(np.int64), (frames, rows, columns)).copy()


class WindowTests(unittest.TestCase):

    def test_stretchedWithoutAWindow(self):
        grey = render(dataset(ramp(high=3900) + 100, 12))
        self.assertEqual((grey.dtype, grey.min(), grey.max()), (np.uint8, 0, 255))
        self.assertTrue(np.all(np.diff(grey[0].astype(int)) >= 0))

    def test_eightBitsAsTheyAre(self):
        array = ramp(high=200)
        self.assertEqual(render(dataset(array, 8)).tolist(), array[0].tolist())

    def test_levelAndWidth(self):
        """In modality units: the Rescale Intercept applied first."""
        ds = dataset(ramp(), 12)
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        grey = render(ds, level=0, window=200)
        values = ramp()[0, 0] - 1024
        self.assertTrue(np.all(grey[0][values <= -100] == 0))
        self.assertTrue(np.all(grey[0][values >= 100] == 255))
        middle = np.abs(values) < 90
        self.assertTrue(np.all(np.abs(grey[0][middle] - (values[middle] + 100) * 255 / 200) <= 1))

    def test_windowFunctions(self):
        """PS3.3 C.11.2.1.2.1 and C.11.2.1.3: LINEAR, LINEAR_EXACT and SIGMOID
        of a center and width that need not be whole numbers."""
        ds = dataset(ramp(columns=4096, high=4095), 12)
        x = ramp(columns=4096, high=4095)[0, 0].astype(float)
        center, width = 2000.25, 1000.5
        expected = {
            LINEAR: np.clip(((x - (center - 0.5)) / (width - 1) + 0.5) * 255, 0, 255),
            LINEAR_EXACT: np.clip(((x - center) / width + 0.5) * 255, 0, 255),
            SIGMOID: 255 / (1 + np.exp(-4 * (x - center) / width))}
        for function, values in expected.items():
            grey = render(ds, level=center, window=width, function=function)[0]
            self.assertLessEqual(np.abs(grey - values).max(), 0.5 + 1e-3, function)
        self.assertEqual(render(ds, level=center, window=width).tolist(),
                         render(ds, level=center, window=width, function=LINEAR_EXACT).tolist())
        threshold = render(ds, level=2000, window=1, function=LINEAR)[0]
        self.assertEqual((threshold[x <= 1999.5].max(), threshold[x > 1999.5].min()), (0, 255))

    def test_theObjectsWindowWhenNoneIsGiven(self):
        ds = dataset(ramp(), 12)
        ds.WindowCenter, ds.WindowWidth = ["1000", "40"], ["500", "80"]
        self.assertEqual(render(ds).tolist(), render(ds, level=1000, window=500).tolist())
        self.assertEqual(render(ds, level=7).tolist(), render(ds, level=1000, window=500).tolist())

    def test_theObjectsVOILUT(self):
        """PS3.3 C.11.2: the Modality LUT (here the rescale), then the
        object's first VOI LUT when no window is asked for, preferred to
        its window; entries of 10 bits scaled to 0..255, of 8 bits as they
        are however many there are; a window asked for
        is used instead; a damaged LUT is as if there were none. In the
        file of an implicit syntax (LUT Data read as OW) the same."""
        ds = dataset(ramp(), 12)
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        item = Dataset()
        item.LUTDescriptor = [4096, -1024, 10]
        item["LUTDescriptor"].VR = "SS"
        item.LUTData = [1023 - value // 4 for value in range(4096)]  # inverting
        item["LUTData"].VR = "US"
        ds.VOILUTSequence = [item]
        expected = np.rint((1023 - ramp()[0, 0] // 4) * 255 / 1023)
        self.assertEqual(render(ds)[0].tolist(), expected.tolist())
        ds.WindowCenter, ds.WindowWidth = "0", "200"
        self.assertEqual(render(ds)[0].tolist(), expected.tolist())
        windowed = render(ds, level=0, window=200)
        del ds.VOILUTSequence
        self.assertEqual(windowed.tolist(), render(ds, level=0, window=200).tolist())
        ds.VOILUTSequence = [item]
        syntax, data, original = split("MR_small_implicit.dcm")
        original.VOILUTSequence = [item]
        path = self.mktemp()
        original.save_as(path, enforce_file_format=True)
        greys = renderFile(path).astype(int)
        values = pixels(original).astype(int)
        self.assertEqual(greys.tolist(), np.rint((1023 - np.clip(values + 1024, 0, 4095) // 4) * 255 / 1023).tolist())
        item.LUTDescriptor, item.LUTData = [4096, -1024, 8], [255 - value // 16 for value in range(4096)]
        self.assertEqual(render(ds)[0].tolist(), (255 - ramp()[0, 0] // 16).tolist(), "8 bits, 4096 entries")
        item.LUTDescriptor = [4096, -1024, 0]  # damaged
        self.assertEqual(render(ds).tolist(), render(ds, level=0, window=200).tolist())

    def test_aNegativeFirstValueWrittenUnsigned(self):
        """A VOI LUT from -1024 written as US 64512 (PS3.3 C.11.2.1.1, as
        DCMTK reads it) is the LUT from -1024 written as SS, in CT_small
        (Pixel Representation 1) and in a CT of Pixel Representation 0 whose
        rescale gives values below 0 (both black before); of values that
        cannot be negative it is 64512, as DCMTK has it."""
        def voiLUT(ds, vr):
            item = Dataset()
            item.add_new(0x00283002, vr, [4096, -1024 if vr == "SS" else 64512, 12])
            item.add_new(0x00283006, "US", list(range(4096)))
            ds.VOILUTSequence = [item]
        _, _, original = split("CT_small.dcm")
        expected = np.rint(np.clip(pixels(original).astype(int), 0, 4095) * 255 / 4095)  # at (pixel - 1024) - -1024
        for vr in ("SS", "US"):
            voiLUT(original, vr)
            path = self.mktemp()
            original.save_as(path, enforce_file_format=True)
            self.assertTrue(np.array_equal(renderFile(path), expected), vr)
        ds = dataset(ramp(), 12)
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        for vr in ("SS", "US"):
            voiLUT(ds, vr)
            self.assertEqual(render(ds)[0].tolist(), np.rint(ramp()[0, 0] * 255 / 4095).tolist(), vr)
        del ds.RescaleIntercept, ds.RescaleSlope
        self.assertEqual(render(ds).max(), 0)

    def test_theModalityLUT(self):
        """PS3.3 C.11.1.1.1: the Modality LUT's entries are the modality
        values (here 12 bits, which pydicom cannot look up), 0 entries are
        65536, and a first value mapped written as US 63488 is -2048 of
        signed pixels."""
        ds = dataset(ramp() - 2048, 16, signed=True)
        item = Dataset()
        item.add_new(0x00283002, "US", [0, 63488, 12])
        item.add_new(0x00283006, "OW", (np.arange(65536) // 16).astype("<u2").tobytes())
        ds.ModalityLUTSequence = [item]
        self.assertEqual(render(ds)[0].tolist(), (ramp()[0, 0] // 16).tolist())  # 0..255, stretched as it is
        self.assertEqual(render(ds, level=128, window=256)[0].tolist(), np.rint(ramp()[0, 0] // 16 * 255 / 256).tolist())

    def test_oneBitScaledUp(self):
        """A 1-bit segmentation (BitsStored 1, values 0 and 1) shown black
        and white, not black and nearly black."""
        syntax, data, original = split("liver_1frame.dcm")
        mask = pixels(original)
        self.assertEqual((renderFrame(data, syntax) == 255).tolist(), (mask == 1).tolist())
        self.assertEqual(renderFrame(data, syntax).max(), 255)

    def test_monochrome1Inverted(self):
        ds = dataset(ramp(high=255), 8)
        ds.PhotometricInterpretation = "MONOCHROME1"
        self.assertEqual(render(ds)[0].tolist(), (255 - ramp(high=255)[0, 0]).tolist())

    def test_signed(self):
        grey = render(dataset(ramp() - 2048, 16, signed=True))
        self.assertEqual((grey[0, 0], grey[0, -1]), (0, 255))


    def test_windowingMemory(self):
        """A 4096 x 3328 16-bit frame (26 MB) with a rescale is windowed
        holding at most three times its bytes besides the picture made
        (float64 copies took 12 times)."""
        frame = np.random.default_rng(5).integers(0, 4096, (3328, 4096), dtype=np.uint16)
        ds = Dataset()
        ds.RescaleSlope, ds.RescaleIntercept, ds.BitsStored = "1", "-1024", 12
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        grey = _grey(ds, frame, 40, 400)
        peak = tracemalloc.get_traced_memory()[1]
        self.assertLessEqual(peak, 3 * frame.nbytes + grey.nbytes)
        values = frame[:4, :512].astype(np.float64) - 1024
        expected = np.clip(np.rint((values - 40 + 200) * 255 / 400), 0, 255)
        self.assertLessEqual(np.abs(grey[:4, :512] - expected).max(), 1)

    def test_aRegionKeepsTheFramesRange(self):
        """Without a window, a region (DICOMweb's in pixels, WADO-URI's in
        fractions) or a smaller picture is stretched on the whole frame's
        range, not its own: zooming keeps the brightness."""
        array = ramp(rows=8, high=3900) + 100
        whole = render(dataset(array, 12))
        self.assertEqual(render(dataset(array, 12), region=SourceRegion(10, 2, 20, 4)).tolist(),
                         whole[2:6, 10:30].tolist())
        self.assertEqual(render(dataset(array, 12), region=(0.5, 0, 1, 1)).tolist(), whole[:, 128:].tolist())
        self.assertEqual(render(dataset(array, 12), size=128).tolist(), whole[::2, ::2].tolist())
        signed = dataset(array - 2000, 12)
        signed.PixelRepresentation = 1
        self.assertEqual(render(signed, region=SourceRegion(200, 0, 56, 8)).tolist(),
                         render(signed)[:, 200:].tolist(), "a region of values all above 0 of a frame with negatives")


class GeometryTests(unittest.TestCase):

    def test_regionToTheEdgeAndOutside(self):
        """A SourceRegion without a width or height goes to the frame's
        edge; one that starts beyond the frame is RegionOutsideFrame."""
        array = ramp(rows=6, columns=10, high=200)
        ds = dataset(array, 8)
        self.assertEqual(render(ds, region=SourceRegion(7, 2)).tolist(), array[0, 2:, 7:].tolist())
        self.assertEqual(render(ds, region=SourceRegion(9, 5, 3, 3)).tolist(), array[0, 5:, 9:].tolist())
        for region in (SourceRegion(10, 0, 5, 5), SourceRegion(0, 6), SourceRegion(100, 100, 5, 5)):
            error = self.assertRaises(RegionOutsideFrame, render, ds, region=region)
            self.assertIn("lies outside the frame of 10 x 6 pixels", str(error))

    def test_shrunkByAWholeFactor(self):
        array = ramp(rows=300, columns=200)
        ds = dataset(array, 12)
        self.assertEqual(render(ds, size=256).shape, (150, 100))
        self.assertEqual(render(ds, size=100).shape, (100, 66))
        self.assertEqual(render(ds, size=400).shape, (300, 200), "never enlarged")
        self.assertEqual(render(ds, size=0).shape, (300, 200))
        self.assertEqual(render(ds, size=1).shape, (1, 1))

    def test_frames(self):
        array = np.stack([np.full((6, 6), value) for value in (10, 20, 30)])
        ds = dataset(array, 8)
        self.assertEqual([int(render(ds, frame=n)[0, 0]) for n in range(3)], [10, 20, 30])
        error = self.assertRaises(TranscodeError, render, ds, frame=3)
        self.assertIn("numbered from 0", str(error))


class SourceTests(unittest.TestCase):

    def test_compressedAndColour(self):
        for name in ("JPEG2000.dcm", "SC_rgb_rle.dcm", "examples_ybr_color.dcm", "examples_palette.dcm"):
            syntax, data, original = split(name)
            picture = renderFrame(data, syntax)
            self.assertEqual(picture.dtype, np.uint8, name)
            self.assertEqual(picture.shape[:2], (original.Rows, original.Columns), name)
        syntax, data, original = split("SC_rgb_rle.dcm")
        self.assertEqual(renderFrame(data, syntax).tolist(), pixels(original).tolist(), "RGB as it is")
        syntax, data, original = split("examples_palette.dcm")
        self.assertEqual(renderFrame(data, syntax).shape, (original.Rows, original.Columns, 3))

    def test_deflatedAndNKI(self):
        syntax, data, original = split("CT_small.dcm")
        expected = renderFrame(data, syntax)
        deflated = "1.2.840.10008.1.2.1.99"
        self.assertEqual(renderFrame(transcode(data, syntax, deflated), deflated).tolist(), expected.tolist())
        self.assertEqual(renderFrame(nkipixels.compressDataset(data, syntax, 2), syntax).tolist(),
                         expected.tolist())

    def test_bitsAboveHighBitNotShown(self):
        """An image with an embedded overlay above High Bit, unsigned and
        signed, shows as its native form does whatever lossless code holds
        it: its samples at Bits Stored (JPEG-LS and JPEG 2000 streams coded
        at 16 bits decode to all 16)."""
        for signed in (False, True):
            ds = overlaid(signed)
            data = encodeDataset(ds, EXPLICIT)
            for kw in ({}, {"level": 2048, "window": 4096}):
                expected = renderFrame(data, EXPLICIT, **kw).tolist()
                for via in (JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS, JPEG_2000_LOSSLESS):
                    compressed = quietly(transcode, data, EXPLICIT, via, 95)
                    path = FileTests.asFile(self, compressed, via, ds)
                    self.assertEqual(renderFrame(compressed, via, **kw).tolist(), expected, (signed, via, kw))
                    self.assertEqual(renderFile(path, **kw).tolist(), expected, (signed, via, kw))

    def test_noPixelData(self):
        syntax, data, _ = split("rtplan.dcm")
        error = self.assertRaises(TranscodeError, renderFrame, data, syntax)
        self.assertIn("no Pixel Data", str(error))
        self.assertRaises(TranscodeError, renderFrame, b"\x08\x00\x05\x00garbage", EXPLICIT)


class SizeTests(unittest.TestCase):
    """A frame whose Rows x Columns x Samples per Pixel is over LARGEST_FRAME
    is refused before its pixel data is decoded (a 1 kB JPEG declaring
    30000 x 30000 took 5 GB and minutes)."""

    def bomb(self):
        ds = dataset(np.zeros((1, 16, 16), np.uint8), 8)
        jpeglossy.encodeDataset(ds, JPEG_BASELINE)
        codestream = bytearray(ds.PixelData)
        sof = codestream.index(b"\xff\xc0", codestream.index(b"\xff\xd8"))
        codestream[sof + 5:sof + 9] = (30000).to_bytes(2, "big") * 2
        ds.PixelData = bytes(codestream)
        ds.Rows = ds.Columns = 30000
        return ds

    def test_refusedUndecoded(self):
        decoders = []
        self.patch(rendering, "get_decoder", lambda syntax: decoders.append(syntax))
        ds = self.bomb()
        data = encodeDataset(ds, EXPLICIT)
        path = FileTests.asFile(self, data, JPEG_BASELINE, ds)
        for render in (lambda: renderFrame(data, JPEG_BASELINE), lambda: renderFile(path)):
            error = self.assertRaises(FrameTooLarge, render)
            self.assertIn("30000 x 30000", str(error))
            self.assertIsInstance(error, TranscodeError)  # a 422 on the web
        self.assertEqual(decoders, [])

    def test_codestreamLargerThanObjectRefusedUndecoded(self):
        """A 64 x 64 object whose frame is a 2000 x 2000 codestream is not
        decoded: a TranscodeError (a 422 on the web), from bytes or from a
        file."""
        decoders = []
        self.patch(rendering, "get_decoder", lambda syntax: decoders.append(syntax))
        for syntax in BOMB_CODESTREAMS:
            ds = bombDataset(syntax, 2000)
            data = encodeDataset(ds, EXPLICIT)
            path = FileTests.asFile(self, data, syntax, ds)
            for render in (lambda: renderFrame(data, syntax), lambda: renderFile(path)):
                error = self.assertRaises(TranscodeError, render)
                self.assertIn("codestream is of 2000 x 2000 pixels", str(error))
        self.assertEqual(decoders, [])

    def test_boundCountsSamples(self):
        ds = dataset(np.zeros((1, 2, 2, 3), np.uint8), 8)
        ds.Rows = 65535
        ds.Columns = LARGEST_FRAME // 3 // ds.Rows + 1  # one column fewer would be allowed
        self.assertRaises(FrameTooLarge, renderFrame, encodeDataset(ds, EXPLICIT), EXPLICIT)


class FileTests(unittest.TestCase):
    """renderFile reads a frame from the file as renderFrame does from its bytes."""

    def asFile(self, data, syntax, original):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(encodeFileMeta(original.SOPClassUID, original.SOPInstanceUID, syntax, IMPLEMENTATION_CLASS_UID,
                                   IMPLEMENTATION_VERSION) + data)
        return path

    def assertSame(self, path, data, syntax, **kw):
        self.assertEqual(renderFile(path, **kw).tolist(), renderFrame(data, syntax, **kw).tolist(), (path, kw))

    def test_storedSyntaxes(self):
        for name in ("CT_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm",
                     "examples_ybr_color.dcm", "examples_palette.dcm", "MR_small_jpeg_ls_lossless.dcm",
                     "SC_rgb_small_odd_big_endian.dcm", "rtdose.dcm"):
            syntax, data, original = split(name)
            for frame in range(int(original.get("NumberOfFrames") or 1)):
                self.assertSame(DATA / name, data, syntax, frame=frame, size=32, level=100, window=300)
        syntax, data, original = split("CT_small.dcm")
        deflated = "1.2.840.10008.1.2.1.99"
        inflated = transcode(data, syntax, deflated)
        self.assertSame(self.asFile(inflated, deflated, original), inflated, deflated)
        nki = nkipixels.compressDataset(data, syntax, 2)
        self.assertSame(self.asFile(nki, syntax, original), nki, syntax)
        bare = self.mktemp()
        with open(bare, "wb") as f:
            f.write(data)
        self.assertSame(bare, data, syntax, region=(0.25, 0.25, 0.75, 0.5))

    def test_missingFrameAndPixels(self):
        syntax, data, original = split("SC_rgb_rle_2frame.dcm")
        error = self.assertRaises(FrameOutOfRange, renderFile, DATA / "SC_rgb_rle_2frame.dcm", frame=2)
        self.assertEqual((error.frames, error.frame), (2, 2))
        error = self.assertRaises(TranscodeError, renderFile, DATA / "rtplan.dcm")
        self.assertIn("no Pixel Data", str(error))
        cut = self.asFile(data[:len(data) // 2], syntax, original)
        self.assertRaises(TranscodeError, renderFile, cut, frame=1)

    def test_cutStreamRefused(self):
        """A JPEG or JPEG-LS frame cut before its end of image marker is not
        shown (a 422 on the web), from bytes or from a file; the other
        frames of the object are."""
        for name in ("SC_rgb_jpeg_gdcm.dcm", "MR_small_jpeg_ls_lossless.dcm"):
            original = split(name)[2]
            syntax, data = reframed(name, lambda frames: [frames[0], frames[0][:len(frames[0]) // 3]], number=2)
            path = self.asFile(data, syntax, original)
            for render in (lambda: renderFrame(data, syntax, frame=1), lambda: renderFile(path, frame=1)):
                error = self.assertRaises(TranscodeError, render)
                self.assertIn("frame 2 of its Pixel Data is cut short (no end of image marker)", str(error))
            self.assertSame(path, data, syntax, frame=0)

    def test_oneFrameRead(self):
        """Of a 40-frame object, native or lossless JPEG, renderFile holds
        little more than the frame asked for (it held the file's bytes
        twice)."""
        array = np.random.default_rng(8).integers(0, 4096, (40, 256, 256))
        ds = dataset(array, 12)
        frame = array[27].astype(np.uint16)
        native = self.asFile(encodeDataset(ds, EXPLICIT), EXPLICIT, ds)
        jpegll.encodeDataset(ds, JPEG_LOSSLESS_SV1)
        lossless = self.asFile(encodeDataset(ds, EXPLICIT), JPEG_LOSSLESS_SV1, ds)
        for path in (native, lossless):
            tracemalloc.start()
            picture = renderFile(path, frame=27, level=2048, window=4096)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            self.assertLessEqual(peak, 6 * frame.nbytes, path)
            self.assertEqual(picture.tolist(), _grey(Dataset(), frame, 2048, 4096).tolist(), path)
