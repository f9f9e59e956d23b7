"""NKI pixel data inside data sets: (7FE0,0010) to (7FDF,0010) and back,
in implicit and explicit VR little endian, the other elements kept."""

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from twisted.trial import unittest

from pacscore.codecs import nki, nkipixels
from pacscore.codecs.syntaxes import EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN

SYNTAXES = {IMPLICIT_VR_LITTLE_ENDIAN: True, EXPLICIT_VR_LITTLE_ENDIAN: False}


def encode(ds, syntax):
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, SYNTAXES[syntax]
    write_dataset(out, ds)
    return out.getvalue()


def decode(data, syntax):
    return pydicom.filereader.read_dataset(DicomBytesIO(data), SYNTAXES[syntax], True)


def sample():
    """CT_small (which ends with (FFFC,FFFC) padding) with a private element between the two pixel tags."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.file_meta
    ds.add_new(0x7FDF1001, "LO", "between")
    return ds


class DatasetTests(unittest.TestCase):

    def test_roundTrip(self):
        for syntax in SYNTAXES:
            ds = sample()
            data = encode(ds, syntax)
            compressed = nkipixels.compressDataset(data, syntax, 4)
            self.assertTrue(nkipixels.holdsNKI(compressed, syntax))
            self.assertFalse(nkipixels.holdsNKI(data, syntax))
            read = decode(compressed, syntax)
            self.assertNotIn("PixelData", read)
            raw = read.get_item(0x7FDF0010).value  # pydicom would take it for a private creator (LO)
            self.assertEqual(nki.decompress(raw), ds.PixelData)
            self.assertEqual(read.get_item(0x7FDF1001).value, b"between ")
            self.assertEqual(read.PatientName, ds.PatientName)
            self.assertEqual(nkipixels.nkiValue(compressed, syntax), raw)
            self.assertEqual(nkipixels.decompressDataset(compressed, syntax), data, "in order, byte for byte")
            self.assertLess(len(compressed), len(data))

    def test_nothingToDo(self):
        """No Pixel Data, encapsulated or big endian data, a (7FDF,0010)
        already there: compressDataset gives None; a data set without NKI
        pixel data: decompressDataset gives None."""
        plain = Dataset()
        plain.PatientID = "X"
        for syntax in SYNTAXES:
            self.assertIsNone(nkipixels.compressDataset(encode(plain, syntax), syntax, 1))
            data = encode(sample(), syntax)
            self.assertIsNone(nkipixels.decompressDataset(data, syntax))
            twice = nkipixels.compressDataset(data, syntax, 1)
            self.assertIsNone(nkipixels.compressDataset(twice, syntax, 2))
        self.assertIsNone(nkipixels.compressDataset(b"\x08\x00", EXPLICIT_VR_BIG_ENDIAN, 1))

    def test_notOurs(self):
        """(7FDF,0010) beside a (7FE0,0010), or holding Acuson's data, is left alone."""
        for syntax in SYNTAXES:
            ds = sample()
            ds.add_new(0x7FDF0010, "OB", nki.compress(ds.PixelData, 1))
            self.assertIsNone(nkipixels.decompressDataset(encode(ds, syntax), syntax))
            del ds.PixelData
            ds[0x7FDF0010].value = b"ACUSON" + bytes(30)
            self.assertIsNone(nkipixels.decompressDataset(encode(ds, syntax), syntax))

    def test_damaged(self):
        syntax = EXPLICIT_VR_LITTLE_ENDIAN
        data = bytearray(nkipixels.compressDataset(encode(sample(), syntax), syntax, 2))
        data[len(data) // 2] ^= 0xFF  # within the compressed pixels, the bulk of the data set
        self.assertRaises(nki.NKIError, nkipixels.decompressDataset, bytes(data), syntax)

    def test_decompressDecodedFoundStream(self):
        """decompressDecoded given the stream already found (``nkiStream``)
        does not look for it again."""
        syntax = EXPLICIT_VR_LITTLE_ENDIAN
        ds = sample()
        read = decode(nkipixels.compressDataset(encode(ds, syntax), syntax, 2), syntax)
        stream = nkipixels.nkiStream(read)
        self.patch(nkipixels, "nkiStream", lambda dataset: self.fail("looked for again"))
        nkipixels.decompressDecoded(read, stream)
        self.assertEqual((read.PixelData, 0x7FDF0010 in read), (ds.PixelData, False))
