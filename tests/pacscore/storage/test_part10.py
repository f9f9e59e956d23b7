"""Tests for pacscore.storage.part10: the Part-10 header written before a
received dataset, and read back for regeneration."""

import io
import os
import struct
import tempfile

import pydicom
from pydicom.filereader import read_file_meta_info
from twisted.trial import unittest

from pacscore.storage.attributes import DatasetError
from pacscore.storage.part10 import (
    MEDIA_STORAGE_SOP_CLASS_UID, MEDIA_STORAGE_SOP_INSTANCE_UID, TRANSFER_SYNTAX_UID, Damaged, checkFile, checkWhole,
    encodeFileMeta, quickFileMeta, readFileAttributes, readFileMeta, sendsAsItIs)
from tests.pacscore.storage.test_attributes import (
    BIG_ENDIAN, EXPLICIT, IMPLICIT, PATIENT_ID, PATIENT_NAME, TAGS, encode,
    pydicomFiles, pydicomValues, splitFile, studyDataset, bundledFile)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SOP_INSTANCE = "1.2.826.0.1.3680043.8.498.12345"  # odd length: padded
IMPLEMENTATION = "1.2.826.0.1.3680043.9.7433.1.1"
VERSION = "PACS_010"


def writeFile(directory, data, name="object.dcm"):
    path = os.path.join(directory, name)
    with open(path, "wb") as fileobj:
        fileobj.write(data)
    return path


class EncodeFileMetaTests(unittest.TestCase):

    def test_pydicomReadsTheFile(self):
        """Header + received bytes is a file pydicom reads back unchanged."""
        dataset = studyDataset()
        data = encode(dataset)
        header = encodeFileMeta(CT_IMAGE, SOP_INSTANCE, EXPLICIT, IMPLEMENTATION, VERSION, "STORESCU")
        with tempfile.TemporaryDirectory() as directory:
            path = writeFile(directory, header + data)
            read = pydicom.dcmread(path)
            meta = read_file_meta_info(path)
        self.assertEqual(read, dataset)
        self.assertEqual(meta.FileMetaInformationVersion, b"\x00\x01")
        self.assertEqual(meta.MediaStorageSOPClassUID, CT_IMAGE)
        self.assertEqual(meta.MediaStorageSOPInstanceUID, SOP_INSTANCE)
        self.assertEqual(meta.TransferSyntaxUID, EXPLICIT)
        self.assertEqual(meta.ImplementationClassUID, IMPLEMENTATION)
        self.assertEqual(meta.ImplementationVersionName, VERSION)
        self.assertEqual(meta.SourceApplicationEntityTitle, "STORESCU")
        self.assertEqual(meta.FileMetaInformationGroupLength, len(header) - 132 - 12)

    def test_layout(self):
        header = encodeFileMeta(CT_IMAGE, SOP_INSTANCE, IMPLICIT, IMPLEMENTATION, "V1X")
        self.assertEqual(header[:128], bytes(128))
        self.assertEqual(header[128:132], b"DICM")
        self.assertEqual(header[132:140], b"\x02\x00\x00\x00UL\x04\x00")
        self.assertEqual(struct.unpack_from("<L", header, 140)[0], len(header) - 144)
        self.assertIn(SOP_INSTANCE.encode() + b"\x00\x02\x00\x10\x00UI", header)
        self.assertTrue(header.endswith(b"\x02\x00\x13\x00SH\x04\x00V1X "))
        self.assertNotIn(b"\x02\x00\x16\x00", header)

    def test_withoutVersionName(self):
        header = encodeFileMeta(CT_IMAGE, SOP_INSTANCE, IMPLICIT, IMPLEMENTATION, "")
        self.assertNotIn(b"\x02\x00\x13\x00", header)
        transferSyntax, meta, offset = readFileMeta(io.BytesIO(header))
        self.assertNotIn(0x00020013, meta)

    def test_everySyntaxReadsBack(self):
        for name in ("MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                     "JPEG2000.dcm", "image_dfl.dcm"):
            syntax, data, original = splitFile(bundledFile(name))
            header = encodeFileMeta(original.SOPClassUID, original.SOPInstanceUID, syntax,
                                    IMPLEMENTATION, VERSION)
            with tempfile.TemporaryDirectory() as directory:
                path = writeFile(directory, header + data)
                read = pydicom.dcmread(path)
                self.assertEqual(readFileAttributes(path, TAGS), (syntax, pydicomValues(read, TAGS)))
            self.assertEqual(read, original)
            self.assertEqual(read.file_meta.TransferSyntaxUID, syntax)


class ReadFileMetaTests(unittest.TestCase):

    def test_roundTrip(self):
        header = encodeFileMeta(CT_IMAGE, SOP_INSTANCE, EXPLICIT, IMPLEMENTATION, VERSION, "AE1")
        fileobj = io.BytesIO(header + encode(studyDataset()))
        transferSyntax, meta, offset = readFileMeta(fileobj)
        self.assertEqual(transferSyntax, EXPLICIT)
        self.assertEqual(offset, len(header))
        self.assertEqual(fileobj.tell(), len(header))
        self.assertEqual(meta, {
            0x00020000: str(len(header) - 144), 0x00020001: "",
            MEDIA_STORAGE_SOP_CLASS_UID: CT_IMAGE, MEDIA_STORAGE_SOP_INSTANCE_UID: SOP_INSTANCE,
            TRANSFER_SYNTAX_UID: EXPLICIT,
            0x00020012: IMPLEMENTATION, 0x00020013: VERSION, 0x00020016: "AE1"})

    def test_conquestV2(self):
        """A ".v2" is a bare implicit VR little endian dataset."""
        data = encode(studyDataset(), implicit=True)
        self.assertEqual(readFileMeta(io.BytesIO(data)), (IMPLICIT, {}, 0))
        with tempfile.TemporaryDirectory() as directory:
            path = writeFile(directory, data, "0001_002000_892665661.v2")
            transferSyntax, values = readFileAttributes(path, {PATIENT_ID, PATIENT_NAME})
        self.assertEqual(transferSyntax, IMPLICIT)
        self.assertEqual(values, {PATIENT_ID: "ID 42", PATIENT_NAME: "Müller^Hans"})

    def test_bareExplicitGuessedAsPydicomDoes(self):
        self.assertEqual(readFileMeta(io.BytesIO(encode(studyDataset())))[0], EXPLICIT)
        self.assertEqual(readFileMeta(io.BytesIO(encode(studyDataset(), False, False)))[0], BIG_ENDIAN)

    def test_metaWithoutPreamble(self):
        header = encodeFileMeta(CT_IMAGE, SOP_INSTANCE, IMPLICIT, IMPLEMENTATION, VERSION)[132:]
        data = encode(studyDataset(), implicit=True)
        fileobj = io.BytesIO(header + data)
        transferSyntax, meta, offset = readFileMeta(fileobj)
        self.assertEqual((transferSyntax, offset), (IMPLICIT, len(header)))
        self.assertFalse(sendsAsItIs(fileobj, transferSyntax, meta))  # PS3.10 7.1: a preamble and DICM
        self.assertEqual(fileobj.tell(), offset)

    def test_dataSetInTheOtherLittleEndianSyntax(self):
        """A meta that names one little endian syntax over a data set in the
        other gives the one the data set is in, as pydicom reads it; only a
        file whose meta names its data set's is sent as it is."""
        for declared, actual in ((EXPLICIT, IMPLICIT), (IMPLICIT, EXPLICIT), (EXPLICIT, EXPLICIT)):
            header = encodeFileMeta(CT_IMAGE, SOP_INSTANCE, declared, IMPLEMENTATION, VERSION)
            fileobj = io.BytesIO(header + encode(studyDataset(), implicit=actual == IMPLICIT))
            transferSyntax, meta, offset = readFileMeta(fileobj)
            self.assertEqual((transferSyntax, meta[TRANSFER_SYNTAX_UID], offset), (actual, declared, len(header)))
            self.assertEqual(sendsAsItIs(fileobj, transferSyntax, meta), declared == actual)
        self.assertEqual(readFileMeta(io.BytesIO(encodeFileMeta(CT_IMAGE, SOP_INSTANCE, EXPLICIT, IMPLEMENTATION,
                                                                VERSION)))[0], EXPLICIT)  # no data set

    def test_brokenMeta(self):
        header = encodeFileMeta(CT_IMAGE, SOP_INSTANCE, EXPLICIT, IMPLEMENTATION, VERSION)
        for cut in (140, 150, len(header) - 3):
            self.assertRaises(DatasetError, readFileMeta, io.BytesIO(header[:cut]))

    def test_pydicomFiles(self):
        """Transfer syntax and dataset offset agree with pydicom on all its files."""
        disagreements = []
        for path in pydicomFiles():
            split = splitFile(path)
            if split is None:
                continue
            syntax, data, dataset = split
            with open(path, "rb") as fileobj:
                transferSyntax, meta, offset = readFileMeta(fileobj)
            if (transferSyntax, offset) != (syntax, os.path.getsize(path) - len(data)):
                disagreements.append((path.name, transferSyntax, offset))
            for element in dataset.file_meta:
                if element.VR in ("UI", "SH", "AE", "UL") and meta.get(element.tag) != str(element.value):
                    disagreements.append((path.name, element.tag, meta.get(element.tag)))
        self.assertEqual(disagreements, [])


class QuickFileMetaTests(unittest.TestCase):
    """``quickFileMeta``: what ``readFileMeta`` gives, from a file's first
    bytes, for a plain meta; None for anything it would read otherwise."""

    def assertAgrees(self, data, head=4096):
        quick = quickFileMeta(data[:head])
        try:
            transferSyntax, _, offset = readFileMeta(io.BytesIO(data))
        except DatasetError:
            self.assertIsNone(quick)
            return None
        if quick is not None:
            self.assertEqual(quick, (transferSyntax, offset))
        return quick

    def test_plainMeta(self):
        header = encodeFileMeta(CT_IMAGE, SOP_INSTANCE, EXPLICIT, IMPLEMENTATION, VERSION, "AE1")
        self.assertEqual(self.assertAgrees(header + encode(studyDataset())), (EXPLICIT, len(header)))

    def test_dataSetInTheOtherLittleEndianSyntax(self):
        for declared, actual in ((EXPLICIT, IMPLICIT), (IMPLICIT, EXPLICIT), (BIG_ENDIAN, BIG_ENDIAN)):
            header = encodeFileMeta(CT_IMAGE, SOP_INSTANCE, declared, IMPLEMENTATION, VERSION)
            data = header + encode(studyDataset(), implicit=actual == IMPLICIT, little=actual != BIG_ENDIAN)
            self.assertEqual(self.assertAgrees(data), (actual, len(header)))

    def test_othersLeftToReadFileMeta(self):
        """No preamble, no meta (.v2), no group length, a meta longer than
        the bytes read or not ending where its group length says, no data
        set, a syntax with a leading space or listing two: None."""
        data = encode(studyDataset())
        header = encodeFileMeta(CT_IMAGE, SOP_INSTANCE, EXPLICIT, IMPLEMENTATION, VERSION)
        withoutLength = header[:132] + header[144:]
        longer = header[:140] + struct.pack("<L", len(header) - 144 + 4) + header[144:]
        shorter = header[:140] + struct.pack("<L", len(header) - 144 - 10) + header[144:]
        syntaxAt = header.index(EXPLICIT.encode())
        padded = header.replace(EXPLICIT.encode() + b"\x00", b" " + EXPLICIT.encode())
        listed = header[:syntaxAt] + b"1.2\\1.3" + bytes(len(EXPLICIT) + 1 - 7) + header[syntaxAt + len(EXPLICIT) + 1:]
        for name, whole, head in (("no preamble", header[132:] + data, 4096), (".v2", data, 4096),
                                  ("no group length", withoutLength + data, 4096),
                                  ("meta beyond the head", header + data, len(header) + 2),
                                  ("longer group length", longer + data, 4096),
                                  ("shorter group length", shorter + data, 4096),
                                  ("no data set", header, 4096), ("padded", padded + data, 4096),
                                  ("two syntaxes", listed + data, 4096)):
            self.assertIsNone(self.assertAgrees(whole, head), name)

    def test_pydicomFiles(self):
        """Wherever it answers, it agrees with readFileMeta on all pydicom's files."""
        answered = 0
        for path in pydicomFiles():
            with open(path, "rb") as fileobj:
                data = fileobj.read()
            answered += self.assertAgrees(data) is not None
        self.assertGreater(answered, 100)


class CheckWholeTests(unittest.TestCase):
    """``checkWhole``: a data set cut short is Damaged, a whole one is not,
    also when the bytes of the Pixel Data tag come earlier, in a value (the
    quick walk from there fails: the whole walk decides)."""

    def dataset(self, before=b""):
        ds = studyDataset()
        ds.ImageComments = (before + b"\x00").decode("latin-1") if before else "PLAIN"
        ds.PixelData = bytes(range(256)) * 8
        ds["PixelData"].VR = "OW"
        return ds

    def test_cutShort(self):
        for syntax, implicit, little in ((EXPLICIT, False, True), (IMPLICIT, True, True), (BIG_ENDIAN, False, False)):
            for before in (b"", struct.pack("<HH", 0x7FE0, 0x0010), struct.pack(">HH", 0x7FE0, 0x0010)):
                data = encode(self.dataset(before), implicit, little)
                checkWhole(data, syntax)
                with self.assertRaises(Damaged) as raised:
                    checkWhole(data[:-10], syntax)
                self.assertIn("(7FE0,0010)", str(raised.exception))
                self.assertRaises(Damaged, checkWhole, io.BytesIO(data[:-10]), syntax)
                self.assertRaises(Damaged, checkWhole, data[:-len(data) // 2], syntax)


class CheckFileTests(unittest.TestCase):
    """``checkFile``: a file without a data set (empty, or only its
    header) holds no object: Damaged, as one cut short is; so is an empty
    data set read for sending (``checkWhole``)."""

    def test_noDataSet(self):
        directory = self.mktemp()
        os.makedirs(directory)
        meta = encodeFileMeta(CT_IMAGE, SOP_INSTANCE, EXPLICIT, IMPLEMENTATION, VERSION)
        checkFile(writeFile(directory, meta + encode(studyDataset(), False, True)))
        for content in (b"", meta):
            with self.assertRaises(Damaged) as raised:
                checkFile(writeFile(directory, content))
            self.assertIn("no data set: the file is empty or ends with its header", str(raised.exception))
        self.assertRaises(Damaged, checkWhole, b"", EXPLICIT)
