"""Tests for pacscore.storage.attributes: index attributes read from a dataset
as received, compared with what pydicom reads from the same bytes."""

import io
import os
import random
import struct
import tempfile
import tracemalloc
import warnings
import zlib
from pathlib import Path

import pydicom
import pydicom.data
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from twisted.trial import unittest

from pacscore.storage import attributes
from pacscore.storage.attributes import DatasetError, readAttributes, walkDataset
from pacscore.testing.mutations import mutated

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
SPECIFIC_CHARACTER_SET = 0x00080005
PIXEL_DATA = 0x7FE00010

# Patient, study, series and image keys of the index and FileNameSyntax.
TAGS = frozenset({
    0x00100020, 0x00100010, 0x00100030, 0x00100040, 0x0020000D, 0x00080020,
    0x00080030, 0x00200010, 0x00081030, 0x00080050, 0x00080090, 0x00101010,
    0x00101030, 0x00080061, 0x0020000E, 0x00200011, 0x00080021, 0x00080031,
    0x0008103E, 0x00080060, 0x00081010, 0x00080080, 0x00185100, 0x00180010,
    0x00080070, 0x00081090, 0x00180015, 0x00181030, 0x00200052, 0x00080018,
    0x00080016, 0x00200013, 0x00080023, 0x00080033, 0x00180086, 0x00280008,
    0x00080022, 0x00080032, 0x00181250, 0x00200012, 0x00201041, 0x00280002,
    0x00280004, 0x00280010, 0x00280011, 0x00280101, 0x00080008, 0x00540400,
    0x00080005,
})

_TEXT_VRS = set("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT".split())
_NUMBER_VRS = set("US SS UL SL FL FD SV UV".split())
_DATA = Path(pydicom.data.__file__).parent
_ENCODINGS = {(True, True): IMPLICIT, (False, True): EXPLICIT, (False, False): BIG_ENDIAN}


def pydicomFiles(folder="test_files"):
    """Every DICOM file pydicom ships in ``folder`` (not the JSON, dumps ...)."""
    return sorted(p for p in (_DATA / folder).rglob("*")
                  if p.is_file() and p.suffix in (".dcm", ""))


def bundledFile(name, folder="test_files"):
    """The path of one of pydicom's bundled files."""
    return _DATA / folder / name


def splitFile(path):
    """(transferSyntax, datasetBytes, pydicomDataset) of a file, or None if
    pydicom cannot read it. The transfer syntax is the meta's or, without
    one, the encoding pydicom guessed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = pydicom.dcmread(path, force=True)
        except Exception:
            return None
        with open(path, "rb") as fileobj:
            read_preamble(fileobj, True)
            meta = _read_file_meta_info(fileobj)
            data = fileobj.read()
    syntax = meta.get("TransferSyntaxUID") or _ENCODINGS[dataset.original_encoding]
    return str(syntax), data, dataset


def pydicomValues(dataset, tags):
    """{tag: str} by the module's rule, from pydicom's values; tags whose
    value pydicom itself cannot convert are left out."""
    values = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tag in tags:
            if tag not in dataset:
                continue
            try:
                element = dataset[tag]
                value = element.value
            except Exception:
                continue
            if element.VR not in _TEXT_VRS | _NUMBER_VRS or value is None:
                values[tag] = ""
            elif isinstance(value, (list, MultiValue)):
                values[tag] = "\\".join(str(v) for v in value)
            else:
                values[tag] = str(value)
    return values


def encode(dataset, implicit=False, little=True):
    """A dataset's bytes as pydicom writes them."""
    fileobj = DicomBytesIO()
    fileobj.is_implicit_VR = implicit
    fileobj.is_little_endian = little
    write_dataset(fileobj, dataset)
    return fileobj.getvalue()


def decode(data, implicit=False, little=True):
    return read_dataset(io.BytesIO(data), implicit, little)


def readQuietly(source, syntax, tags, wholeDataset=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return readAttributes(source, syntax, tags, wholeDataset)


class CountingFile(io.FileIO):
    """A file that counts the bytes read from it."""

    bytesRead = 0

    def read(self, size=-1):
        data = super().read(size)
        self.bytesRead += len(data)
        return data


def studyDataset():
    """A small dataset with sequences of every kind before the index keys."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7"
    ds.StudyDate = "20240131"
    ds.Modality = "CT"
    ds.InstitutionName = "Hôpital Sainte-Anne"
    inner = Dataset()
    inner.CodeValue = "T-D0050"
    inner.CodeMeaning = "Tissue"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.9"
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds.PatientName = "Müller^Hans"
    ds.PatientID = "ID 42"
    ds.PatientBirthDate = ""
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    ds.SeriesNumber = 3
    ds.InstanceNumber = 17
    ds.SliceLocation = "-12.50"
    ds.Rows = 512
    ds.Columns = 256
    ds.ImageID = "IMG 1"
    return ds


def undefinedLengths(ds):
    """Mark every sequence and item of ``ds`` as of undefined length."""
    for element in ds.iterall():
        if element.VR == "SQ":
            element.is_undefined_length = True
            for item in element.value:
                item.is_undefined_length_sequence_item = True
    return ds


class PydicomAgreementTests(unittest.TestCase):
    """The contract: the walker gives what pydicom gives, for every file
    pydicom ships (all transfer syntaxes, odd encodings, sequences)."""

    def _compare(self, folder, tags):
        mismatches = []
        compared = 0
        for path in pydicomFiles(folder):
            split = splitFile(path)
            if split is None:
                continue
            syntax, data, dataset = split
            expected = pydicomValues(dataset, tags)
            fromBytes = readQuietly(data, syntax, tags)
            with open(path, "rb") as fileobj:
                fileobj.seek(os.path.getsize(path) - len(data))
                fromFile = readQuietly(fileobj, syntax, tags)
            for name, actual in (("bytes", fromBytes), ("file", fromFile)):
                # Tags pydicom fails to convert are compared for presence only.
                comparable = {t: v for t, v in actual.items() if t in expected}
                if comparable != expected or set(actual) - set(expected) - set(dataset.keys()):
                    mismatches.append((path.name, name, syntax, expected, actual))
            compared += 1
        return compared, mismatches

    def test_testFiles(self):
        compared, mismatches = self._compare("test_files", TAGS)
        self.assertEqual(mismatches, [])
        self.assertGreater(compared, 150)

    def test_charsetFiles(self):
        """Names and other charset-affected values decode as pydicom decodes them."""
        compared, mismatches = self._compare("charset_files", TAGS)
        self.assertEqual(mismatches, [])
        self.assertGreater(compared, 15)

    def test_charsetReadWithoutBeingAsked(self):
        """(0008,0005) is honoured even when not requested."""
        syntax, data, dataset = splitFile(bundledFile("chrH31.dcm", "charset_files"))
        self.assertEqual(readQuietly(data, syntax, {PATIENT_NAME}),
                         {PATIENT_NAME: "Yamada^Tarou=山田^太郎=やまだ^たろう"})
        syntax, data, dataset = splitFile(bundledFile("chrX2.dcm", "charset_files"))
        self.assertEqual(readQuietly(data, syntax, {PATIENT_NAME}),
                         {PATIENT_NAME: "Wang^XiaoDong=王^小东"})

    def test_iso2022IR58WithoutEscapeSequences(self):
        """GB2312 text under ISO 2022 IR 58 (PS3.5 J.2's example) reads without
        the ``ESC $ ) A`` pydicom leaves in it: escapes are no character data."""
        name = b"Zhang^XiaoDong=\x1b$)A" + "张".encode("gb2312") + b"^\x1b$)A" + "小东".encode("gb2312")
        ds = Dataset()
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 58"]
        ds[PATIENT_NAME] = RawDataElement(BaseTag(PATIENT_NAME), "PN", len(name), name, 0, False, True)
        ds[0x00081030] = RawDataElement(BaseTag(0x00081030), "LO", 6, b"\x1b$)A" + "王".encode("gb2312"), 0, False, True)
        self.assertEqual(readAttributes(encode(ds), EXPLICIT, {PATIENT_NAME, 0x00081030}),
                         {PATIENT_NAME: "Zhang^XiaoDong=张^小东", 0x00081030: "王"})

    def test_deflated(self):
        syntax, data, dataset = splitFile(bundledFile("image_dfl.dcm"))
        self.assertEqual(syntax, DEFLATED)
        self.assertEqual(readAttributes(data, syntax, TAGS), pydicomValues(dataset, TAGS))

    def test_bigEndian(self):
        syntax, data, dataset = splitFile(bundledFile("MR_small_bigendian.dcm"))
        self.assertEqual(syntax, BIG_ENDIAN)
        values = readAttributes(data, syntax, TAGS)
        self.assertEqual(values, pydicomValues(dataset, TAGS))
        self.assertEqual(values[0x00280010], "64")


class EncodingTests(unittest.TestCase):
    """Datasets written by pydicom in each encoding read back the same."""

    def test_privateTagOfAColumnInImplicitVR(self):
        """A dicom.sql column of a private tag (its DT type's VR given with
        ``tags``) holds the value an implicit VR data set gives without a
        VR, as the explicit VR one does, in the data set's character set;
        a number column's per byte order.  Without a VR for it: empty."""
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.add_new(0x00290011, "LO", "MYCREATOR")
        ds.add_new(0x00291110, "LO", "abç")
        ds.add_new(0x00291111, "US", 300)
        columns = {0x00291110: "LO", 0x00291111: "US"}
        for implicit, little, syntax in ((True, True, IMPLICIT), (False, True, EXPLICIT),
                                         (False, False, BIG_ENDIAN)):
            self.assertEqual(readAttributes(encode(ds, implicit, little), syntax, columns),
                             {0x00291110: "abç", 0x00291111: "300"}, syntax)
        self.assertEqual(readAttributes(encode(ds, True), IMPLICIT, set(columns)), dict.fromkeys(columns, ""))

    def test_privateTagOfAColumnHoldingSomethingElse(self):
        """A private tag may hold another vendor's data (PS3.5 7.8.1): a
        value of unknown VR that is not of its column's VR (6 bytes for a
        UL column, binary bytes with NULs for a text column) leaves the
        column empty and raises nothing; the other values are read."""
        ds = Dataset()
        ds.add_new(0x00100020, "LO", "ID1")
        ds.add_new(0x00290010, "LO", "OTHER VENDOR")
        ds.add_new(0x00291010, "OB", b"ABCDEF")
        ds.add_new(0x00291011, "OB", b"SV10\x04\x03\x02\x01\x00\x00\x00\x00MM\x00\x00")
        ds.add_new(0x00291012, "OB", b"UID1\x00")
        columns = {0x00100020: "LO", 0x00291010: "UL", 0x00291011: "LO", 0x00291012: "LO"}
        expected = {0x00100020: "ID1", 0x00291010: "", 0x00291011: "", 0x00291012: "UID1"}
        data = encode(ds, True)
        self.assertEqual(readAttributes(data, IMPLICIT, columns), expected)
        self.assertEqual(readAttributes(data, IMPLICIT, columns, wholeDataset=True, strict=True), expected)

    def test_usOrSSByPixelRepresentation(self):
        """A "US or SS" value (Smallest Image Pixel Value) in implicit VR is
        SS when Pixel Representation is 1 (PS3.5 Annex A), as in explicit
        VR, where the data set says SS."""
        for representation, vr, expected in ((1, "SS", "-2000"), (0, "US", "2000")):
            ds = Dataset()
            ds.PixelRepresentation = representation
            ds.add_new(0x00280106, vr, -2000 if representation else 2000)
            for implicit, little, syntax in ((True, True, IMPLICIT), (False, True, EXPLICIT),
                                             (False, False, BIG_ENDIAN)):
                self.assertEqual(readAttributes(encode(ds, implicit, little), syntax, {0x00280106}),
                                 {0x00280106: expected}, (representation, syntax))
        ds = Dataset()
        ds.add_new(0x54001010, "OW", b"\x01\x02")  # Waveform Data, "OB or OW": no string, as before
        self.assertEqual(readAttributes(encode(ds, True), IMPLICIT, {0x54001010}), {0x54001010: ""})

    def _check(self, ds, implicit, little, syntax):
        data = encode(ds, implicit, little)
        expected = pydicomValues(decode(data, implicit, little), TAGS)
        self.assertEqual(readAttributes(data, syntax, TAGS), expected)
        with tempfile.TemporaryFile() as fileobj:
            fileobj.write(b"junk")
            fileobj.write(data)
            fileobj.seek(4)
            self.assertEqual(readAttributes(fileobj, syntax, TAGS), expected)
        return expected

    def test_values(self):
        values = self._check(studyDataset(), False, True, EXPLICIT)
        self.assertEqual(values[0x00080008], "ORIGINAL\\PRIMARY\\AXIAL")
        self.assertEqual(values[PATIENT_NAME], "Müller^Hans")
        self.assertEqual(values[0x00080080], "Hôpital Sainte-Anne")
        self.assertEqual(values[PATIENT_ID], "ID 42")
        self.assertEqual(values[0x00100030], "")
        self.assertEqual(values[0x00200011], "3")
        self.assertEqual(values[0x00201041], "-12.50")
        self.assertEqual(values[0x00280010], "512")
        self.assertEqual(values[0x00540400], "IMG 1")

    def test_implicitVR(self):
        self._check(studyDataset(), True, True, IMPLICIT)

    def test_bigEndian(self):
        self._check(studyDataset(), False, False, BIG_ENDIAN)

    def test_undefinedLengthSequences(self):
        self._check(undefinedLengths(studyDataset()), False, True, EXPLICIT)
        self._check(undefinedLengths(studyDataset()), True, True, IMPLICIT)

    def test_encapsulatedSyntax(self):
        """Compressed syntaxes encode their dataset as explicit VR little endian."""
        ds = studyDataset()
        values = self._check(ds, False, True, JPEG_BASELINE)
        self.assertEqual(values[PATIENT_ID], "ID 42")

    def test_deflatedFromBytesAndFile(self):
        data = encode(studyDataset())
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        deflated = compressor.compress(data) + compressor.flush()
        expected = pydicomValues(decode(data), TAGS)
        self.assertEqual(readAttributes(deflated, DEFLATED, TAGS), expected)
        with tempfile.TemporaryFile() as fileobj:
            fileobj.write(deflated)
            fileobj.seek(0)
            self.assertEqual(readAttributes(fileobj, DEFLATED, TAGS), expected)

    def test_memoryviewAndBytearray(self):
        data = encode(studyDataset())
        expected = readAttributes(data, EXPLICIT, TAGS)
        self.assertEqual(readAttributes(bytearray(data), EXPLICIT, TAGS), expected)
        self.assertEqual(readAttributes(memoryview(data), EXPLICIT, TAGS), expected)

    def test_absentAndEmpty(self):
        values = readAttributes(encode(studyDataset()), EXPLICIT, {0x00100030, 0x00100040})
        self.assertEqual(values, {0x00100030: ""})

    def test_noTags(self):
        self.assertEqual(readAttributes(b"\x01", EXPLICIT, set()), {})

    def test_emptyDataset(self):
        self.assertEqual(readAttributes(b"", IMPLICIT, TAGS), {})

    def test_unknownTagsNotKept(self):
        """Undefined-length elements of tags no dictionary knows, in an
        Implicit VR item, are walked as UN without being remembered: a peer
        sending new ones in every object does not grow the server's memory."""
        elements = b"".join(struct.pack("<HHIHHI", 0x6101, element, 0xFFFFFFFF, 0xFFFE, 0xE0DD, 0)
                            for element in range(0x1000, 0x1000 + 500))
        item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + elements + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        sequence = struct.pack("<HHI", 0x0008, 0x1140, 0xFFFFFFFF) + item + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        patientID = struct.pack("<HHI", 0x0010, 0x0020, 6) + b"ID 42 "
        known = len(attributes._knownVRs)
        self.assertEqual(readAttributes(sequence + patientID, IMPLICIT, {PATIENT_ID}), {PATIENT_ID: "ID 42"})
        self.assertLessEqual(len(attributes._knownVRs), known + 1)

    def test_charsetOnlyIfAsked(self):
        values = readAttributes(encode(studyDataset()), EXPLICIT, {PATIENT_ID})
        self.assertEqual(values, {PATIENT_ID: "ID 42"})

    def test_sequenceAndBinaryRequested(self):
        """Values that are no index attributes (SQ, OB) read as ""."""
        ds = studyDataset()
        ds.add_new(0x00091010, "LO", "ACME")
        ds.add_new(0x00091011, "OB", b"\x00\x01")
        for implicit in (False, True):
            data = encode(undefinedLengths(ds), implicit)
            values = readAttributes(data, IMPLICIT if implicit else EXPLICIT,
                                    {0x00081140, 0x00091011, PATIENT_ID})
            self.assertEqual(values, {0x00081140: "", 0x00091011: "", PATIENT_ID: "ID 42"})

    def test_unVRReadAsDictionaryVR(self):
        """An explicit UN element of a known tag is read with its real VR, as pydicom does."""
        data = (b"\x10\x00\x10\x00UN\x00\x00\x0c\x00\x00\x00Doe^John    "
                b"\x28\x00\x10\x00UN\x00\x00\x02\x00\x00\x00\x00\x02")
        expected = {PATIENT_NAME: "Doe^John", 0x00280010: "512"}
        self.assertEqual(pydicomValues(decode(data), expected), expected)
        self.assertEqual(readAttributes(data, EXPLICIT, set(expected)), expected)

    def test_unknownVR(self):
        """A two-letter unknown VR has a 2-byte length; a non-letter VR means
        the element is implicit VR (pydicom's rules)."""
        data = (b"\x08\x00\x20\x00XX\x04\x00abcd"
                b"\x08\x00\x30\x00\x06\x00\x00\x00120000"
                b"\x10\x00\x20\x00LO\x02\x00P1")
        expected = {0x00080030: "120000", PATIENT_ID: "P1"}
        self.assertEqual(pydicomValues(decode(data), expected), expected)
        self.assertEqual(readAttributes(data, EXPLICIT, set(expected) | {0x00080020}),
                         {0x00080020: "", **expected})

    def test_implicitDatasetLabelledExplicit(self):
        """As pydicom, the first element decides between implicit and explicit VR."""
        data = encode(studyDataset(), implicit=True)
        self.assertEqual(readAttributes(data, EXPLICIT, TAGS), readAttributes(data, IMPLICIT, TAGS))

    def test_privateTagImplicit(self):
        ds = Dataset()
        ds.add_new(0x00090010, "LO", "ACME")
        ds.add_new(0x00091001, "LO", "secret")
        ds.PatientID = "P"
        values = readAttributes(encode(ds, implicit=True), IMPLICIT, {0x00091001, PATIENT_ID})
        self.assertEqual(values, {0x00091001: "", PATIENT_ID: "P"})

    def test_numbers(self):
        ds = Dataset()
        ds.add_new(0x00181310, "US", [0, 256, 256, 0])
        ds.add_new(0x00081163, "FD", [0.5, -2.25])
        ds.add_new(0x00089459, "FL", 0.1)
        ds.add_new(0x00186020, "SL", -70000)
        ds.add_new(0x00189219, "SS", -3)
        ds.add_new(0x00280106, "US", 65533)  # "US or SS": pydicom takes US
        tags = {0x00181310, 0x00081163, 0x00089459, 0x00186020, 0x00189219, 0x00280106}
        for implicit, little, syntax in ((False, True, EXPLICIT), (True, True, IMPLICIT),
                                         (False, False, BIG_ENDIAN)):
            data = encode(ds, implicit, little)
            values = readAttributes(data, syntax, tags)
            self.assertEqual(values, pydicomValues(decode(data, implicit, little), tags))
            self.assertEqual(values, {
                0x00181310: "0\\256\\256\\0", 0x00081163: "0.5\\-2.25",
                0x00089459: str(struct.unpack("<f", struct.pack("<f", 0.1))[0]),
                0x00186020: "-70000", 0x00189219: "-3", 0x00280106: "65533"})

    def test_stringsAsPydicomStripsThem(self):
        ds = Dataset()
        values = {
            0x00080008: ("CS", " ORIGINAL\\ PRIMARY "),
            0x00080054: ("AE", " AE1 \\AE2 "),
            0x00081030: ("LO", " desc \\ two "),
            0x00081010: ("SH", "\x00"),
            0x00204000: ("LT", " long\\text  "),
            0x00080018: ("UI", "1.2.3\x00"),
            0x00201041: ("DS", " 1.5\\ 2.0 "),
            0x00200013: ("IS", " 12 "),
            0x00180015: ("CS", "HEAD "),
            0x00100010: ("PN", "Doe^J==\\Roe^K "),
            0x00081190: ("UR", " http://x/ "),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for tag, (vr, value) in values.items():
                ds.add_new(tag, vr, value)
        for implicit in (False, True):
            data = encode(ds, implicit)
            expected = pydicomValues(decode(data, implicit), values)
            self.assertEqual(readQuietly(data, IMPLICIT if implicit else EXPLICIT, values), expected)
        self.assertEqual(expected[0x00080008], " ORIGINAL\\ PRIMARY")
        self.assertEqual(expected[0x00100010], "Doe^J\\Roe^K")


    def test_valuesPydicomReadsSpecially(self):
        """UIDs pydicom strips on both sides, of any white space; IS and DS
        values that are no plain numbers, which pydicom reads its own way
        (as SH, decoded with the character set, when it cannot convert)."""
        cases = [(0x0020000D, b"UI", raw) for raw in (b"1.2.3\t", b" 1.2.3", b"\x1c1.2", b"1.2\x85 ",
                                                      b"1.2\\ 1.3")]
        cases += [(0x00200013, b"IS", raw) for raw in (b"3\x1d", b"\x00\x00", b"\x0b ", b" 1a ", b".12",
                                                       b"1.0e-3", b"1.5\\.2", b" 12 ", b"-0")]
        cases += [(0x00201041, b"DS", raw) for raw in (b"\x85A4", b".12", b"1e5", b" 1.5 \\2 ", b"NaN")]
        for charset in (b"", b"ISO_IR 192"):
            for tag, vr, raw in cases + [(0x00201041, b"DS", b"1.5\x80")]:
                data = struct.pack("<HH2sH", 8, 5, b"CS", len(charset)) + charset if charset else b""
                data += struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(raw)) + raw
                self.assertEqual(readQuietly(data, EXPLICIT, {tag}),
                                 pydicomValues(decode(data), {tag}), (charset, vr, raw))

    def test_numbersPydicomCannotConvert(self):
        tag, vr, raw = 0x00280010, b"US", b"\x00\x02\x00"
        data = struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(raw)) + raw
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.assertRaises(Exception, lambda: decode(data)[tag].value)
        self.assertRaises(DatasetError, readQuietly, data, EXPLICIT, {tag})

    def test_integerStringsNoIntegerHolds(self):
        """An IS number too large for any integer (``inf``, ``1e999``), on
        which pydicom raises OverflowError, not the ValueError it retries
        as SH on, is kept as text as ``abc`` and ``nan`` are: the object is
        stored, not refused."""
        for tag, raw, expected in ((0x00200013, b"inf ", "inf"), (0x00200013, b"1e999 ", "1e999"),
                                   (0x00200013, b"-Infinity", "-Infinity"), (0x00200012, b"1E400 ", "1E400"),
                                   (0x00280008, b"1\\inf ", "1\\inf"), (0x00200011, b"nan ", "nan")):
            data = struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, b"IS", len(raw)) + raw
            for syntax, encoded in ((EXPLICIT, data), (IMPLICIT, data[:4] + struct.pack("<I", len(raw)) + raw)):
                self.assertEqual(readQuietly(encoded, syntax, {tag}), {tag: expected}, (syntax, raw))


class StopTests(unittest.TestCase):
    """The walk ends early and never touches pixel data."""

    def _bigFile(self, directory, before=b"", size=300 * 1024 * 1024):
        """A sparse file: some elements, an OW value of ``size`` bytes, then
        ``before`` (elements after the big value)."""
        ds = Dataset()
        ds.SOPInstanceUID = "1.2.3"
        ds.PatientName = "Big^File"
        head = encode(ds)
        path = os.path.join(directory, "big.dcm")
        with open(path, "wb") as fileobj:
            fileobj.write(head)
            fileobj.write(before)
            fileobj.write(b"\xe0\x7f\x10\x00OW\x00\x00" + size.to_bytes(4, "little"))
            fileobj.truncate(fileobj.tell() + size)
        return path

    def test_pixelDataNeverRead(self):
        with tempfile.TemporaryDirectory() as directory:
            path = self._bigFile(directory)
            with CountingFile(path) as fileobj:
                values = readAttributes(fileobj, EXPLICIT, TAGS | {PIXEL_DATA})
                self.assertLess(fileobj.bytesRead, 128 * 1024)
        self.assertEqual(values, {0x00080018: "1.2.3", PATIENT_NAME: "Big^File"})

    def test_bigValueSeekedPast(self):
        """A 300 MB private value before the wanted tags is skipped, not read."""
        size = 300 * 1024 * 1024
        ds = Dataset()
        ds.SOPInstanceUID = "1.2.3"
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "big.dcm")
            with open(path, "wb") as fileobj:
                fileobj.write(encode(ds))
                fileobj.write(b"\x09\x00\x10\x00LO\x04\x00ACME")
                fileobj.write(b"\x09\x00\x01\x10OB\x00\x00" + size.to_bytes(4, "little"))
                fileobj.seek(size, 1)
                fileobj.write(b"\x10\x00\x20\x00LO\x02\x00P1")
            with CountingFile(path) as fileobj:
                values = readAttributes(fileobj, EXPLICIT, {0x00080018, PATIENT_ID})
                self.assertLess(fileobj.bytesRead, 256 * 1024)
        self.assertEqual(values, {0x00080018: "1.2.3", PATIENT_ID: "P1"})

    def test_stopsAfterLargestTag(self):
        """Whatever follows the largest requested tag is not looked at."""
        data = encode(studyDataset()) + b"\xff" * 3
        self.assertEqual(readAttributes(data, EXPLICIT, {PATIENT_ID}), {PATIENT_ID: "ID 42"})
        self.assertRaises(DatasetError, readAttributes, data, EXPLICIT, {0x00540400})

    def test_encapsulatedPixelDataNotWalked(self):
        syntax, data, dataset = splitFile(bundledFile("JPEG2000.dcm"))
        pixelStart = data.index(b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff")
        values = readAttributes(data[:pixelStart + 12], syntax, TAGS | {PIXEL_DATA})
        self.assertEqual(values, pydicomValues(dataset, TAGS))


class BrokenDatasetTests(unittest.TestCase):
    """Broken input raises DatasetError, never anything else, and always ends."""

    def test_truncatedEverywhere(self):
        for name in ("MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                     "JPEG2000.dcm", "image_dfl.dcm"):
            syntax, data, dataset = splitFile(bundledFile(name))
            complete = readAttributes(data, syntax, TAGS)
            failures = 0
            for length in range(0, min(len(data), 4000), 7):
                try:
                    values = readAttributes(data[:length], syntax, TAGS)
                except DatasetError:
                    failures += 1
                else:
                    self.assertLessEqual(set(values), set(complete))
            self.assertGreater(failures, 0, name)

    def test_mutatedBytes(self):
        """Seeded random damage near the start of real data sets (where the
        index attributes are), read whole as the store reads them, from
        bytes and from a file: refused, or read as pydicom reads the
        damaged file; what pydicom cannot read at all is refused."""
        rng = random.Random(20261202)
        files = [bundledFile(name) for name in (
            "CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm", "image_dfl.dcm")]
        splits = [(path.read_bytes(), splitFile(path)) for path in files]
        refused = compared = 0
        for _ in range(3000):
            whole, (syntax, data, _) = rng.choice(splits)
            damaged = mutated(rng, data, near=2000)
            results = []
            for source in (damaged, io.BytesIO(damaged)):
                try:
                    results.append(readQuietly(source, syntax, TAGS, wholeDataset=True))
                except DatasetError:
                    results.append(None)
            self.assertEqual(results[0], results[1])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    dataset = pydicom.dcmread(io.BytesIO(whole[:len(whole) - len(data)] + damaged), force=True)
                except Exception:
                    dataset = None
            if results[0] is None or dataset is None:
                self.assertIsNone(results[0])
                refused += 1
                continue
            expected = pydicomValues(dataset, TAGS)
            self.assertEqual({tag: value for tag, value in results[0].items() if tag in expected}, expected)
            self.assertLessEqual(set(results[0]), {tag for tag in TAGS if tag in dataset})
            compared += 1
        self.assertGreater(refused, 1000)
        self.assertGreater(compared, 200)

    def test_truncatedValue(self):
        data = encode(studyDataset())
        cut = data.index(b"Hans")
        error = self.assertRaises(DatasetError, readAttributes, data[:cut], EXPLICIT, TAGS)
        self.assertIn("(0010,0010)", str(error))
        with tempfile.TemporaryFile() as fileobj:
            fileobj.write(data[:cut])
            fileobj.seek(0)
            self.assertRaises(DatasetError, readAttributes, fileobj, EXPLICIT, TAGS)

    def test_truncatedHeader(self):
        data = encode(studyDataset())
        cut = data.index(b"\x10\x00\x10\x00PN") + 5
        error = self.assertRaises(DatasetError, readAttributes, data[:cut], EXPLICIT, TAGS)
        self.assertIn(f"offset {cut - 5}", str(error))

    def test_absurdLength(self):
        for data, syntax in (
                (b"\x08\x00\x18\x00UT\x00\x00\xf0\xff\xff\xff1.2.3\x00", EXPLICIT),
                (b"\x08\x00\x18\x00\xf0\xff\xff\xff1.2.3\x00", IMPLICIT),
                (b"\x08\x00\x08\x00CS\xf0\xffORIGINAL", EXPLICIT)):
            error = self.assertRaises(DatasetError, readAttributes, data, syntax, {0x00100020})
            self.assertIn("offset 0", str(error))
            with tempfile.TemporaryFile() as fileobj:
                fileobj.write(data)
                fileobj.seek(0)
                self.assertRaises(DatasetError, readAttributes, fileobj, syntax, {0x00100020})

    def test_unterminatedSequence(self):
        data = encode(undefinedLengths(studyDataset()))
        cut = data.index(b"\xfe\xff\xdd\xe0")
        self.assertRaises(DatasetError, readAttributes, data[:cut], EXPLICIT, TAGS)

    def test_notAnItemInSequence(self):
        data = (b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff"
                b"\x10\x00\x20\x00LO\x02\x00P1")
        error = self.assertRaises(DatasetError, readAttributes, data, EXPLICIT, {PATIENT_ID})
        self.assertIn("offset 12", str(error))

    def test_notAnItemInDefinedLengthSequence(self):
        """A sequence of defined length holding anything but items (a
        (FFFE,FFFE) element; an item crossing its end), at the top level
        or in an item, explicit or implicit VR: a data set as received
        (strict) is refused, as one of undefined length always is (DCMTK
        reads on past it, "Sequence Delimitation Item missing"); good
        sequences of defined length read as before."""
        junk = b"\xfe\xff\xfe\xff\x04\x00\x00\x00abcd"
        crossing = b"\xfe\xff\x00\xe0\x0c\x00\x00\x00"  # its 12 bytes after the sequence's 8
        ui = {EXPLICIT: b"\x08\x00\x50\x11UI\x04\x001.2\x00", IMPLICIT: b"\x08\x00\x50\x11\x04\x00\x00\x001.2\x00"}
        patient = {EXPLICIT: b"\x10\x00\x20\x00LO\x02\x00P1", IMPLICIT: b"\x10\x00\x20\x00\x02\x00\x00\x00P1"}
        for content, syntax, nested in ((junk, EXPLICIT, False), (junk, IMPLICIT, False), (junk, EXPLICIT, True),
                                        (junk, IMPLICIT, True), (crossing, EXPLICIT, False), (crossing, IMPLICIT, True)):
            vr = b"SQ\x00\x00" if syntax == EXPLICIT else b""
            sequence = b"\x08\x00\x15\x11" + vr + len(content).to_bytes(4, "little") + content
            if content is crossing:
                sequence += ui[syntax]
            if nested:
                sequence = (b"\x08\x00\x40\x11" + vr + b"\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff" + sequence
                            + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00")
            data = sequence + patient[syntax]
            self.assertEqual(readAttributes(data, syntax, TAGS, wholeDataset=True), {PATIENT_ID: "P1"})
            error = self.assertRaises(DatasetError, readAttributes, data, syntax, TAGS, wholeDataset=True,
                                      strict=True)
            self.assertIn("(FFFE,FFFE)" if content is junk else "crosses the end of its sequence", str(error))
        for implicit in (False, True):
            good = encode(studyDataset(), implicit=implicit)
            syntax = IMPLICIT if implicit else EXPLICIT
            self.assertEqual(readAttributes(good, syntax, TAGS, wholeDataset=True, strict=True),
                             pydicomValues(decode(good, implicit), TAGS))

    def test_sequenceDelimiterEndingADefinedLengthSequence(self):
        """A defined-length sequence whose length takes in a closing
        (FFFE,E0DD) is read (DCMTK and pydicom read it); one before its end is not."""
        item = b"\xfe\xff\x00\xe0\x0c\x00\x00\x00" + b"\x08\x00\x50\x11\x04\x00\x00\x001.2\x00"
        delimiter = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        patient = b"\x10\x00\x20\x00\x02\x00\x00\x00P1"
        for content, ok in ((item + delimiter, True), (delimiter + item, False)):
            data = b"\x08\x00\x15\x11" + len(content).to_bytes(4, "little") + content + patient
            if ok:
                self.assertEqual(readAttributes(data, IMPLICIT, TAGS, wholeDataset=True, strict=True),
                                 {PATIENT_ID: "P1"})
            else:
                self.assertRaises(DatasetError, readAttributes, data, IMPLICIT, TAGS, wholeDataset=True, strict=True)

    def test_damagedDefinedLengthItem(self):
        """pydicom reads the items of a sequence of undefined length (and of
        an undefined-length UN or unknown private element holding items)
        as data sets, defined-length items too: an element that does not
        fit in its item is refused, as pydicom's dcmread fails on it."""
        ds = studyDataset()
        for element in ds.iterall():
            if element.VR == "SQ":
                element.is_undefined_length = True  # the items keep their lengths
        good = encode(ds)
        self.assertEqual(readAttributes(good, EXPLICIT, TAGS, wholeDataset=True),
                         pydicomValues(decode(good), TAGS))
        crossing = (b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff" b"\xfe\xff\x00\xe0\x0c\x00\x00\x00"
                    b"\x08\x00\x55\x11UI\x06\x001.2.3\x00" b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
                    b"\x10\x00\x20\x00LO\x02\x00P1")
        error = self.assertRaises(DatasetError, readAttributes, crossing, EXPLICIT, TAGS, wholeDataset=True)
        self.assertIn("(0008,1155) at offset 20 does not fit in its item, which ends at offset 32", str(error))
        garbage = b"\xfe\xff\x00\xe0\x04\x00\x00\x00\x01\x02\x03\x04\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        for header, syntax in ((b"\x11\x00\x10\x10UN\x00\x00\xff\xff\xff\xff", EXPLICIT),
                               (b"\x11\x00\x10\x10\xff\xff\xff\xff", IMPLICIT)):
            data = header + garbage + b"\x20\x00\x0d\x00" + (b"UI\x04\x00" if syntax == EXPLICIT else
                                                              b"\x04\x00\x00\x00") + b"1.2\x00"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.assertRaises(Exception, decode, data, syntax == IMPLICIT)
            self.assertRaises(DatasetError, readAttributes, data, syntax, TAGS, wholeDataset=True)

    def test_nonStandardVRRefusedWhenStrict(self):
        """A VR PS3.5 table 6.2-1 does not define (a bit flip: CS -> CR),
        at the top level or in an item, is refused in a data set as received
        (strict): pydicom reads a two-letter one with a 2-byte length and a
        non-letter one as implicit VR, DCMTK either with a 4-byte one, so
        what DCMTK reads back would not be what was indexed.  Every VR of
        the table, the recent ones too, is taken."""
        patient = b"\x10\x00\x20\x00LO\x02\x00P1"
        for vr in (b"ZZ", b"CR", b"FS", b"MS", b"CQ", b"WH", b"\x06\x00"):
            sex = b"\x10\x00\x40\x00" + vr + b"\x02\x00M "
            nested = (b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff"
                      + b"\x08\x00\x50\x11UI\x04\x001.2\x00" + b"\x08\x00\x55\x11" + vr + b"\x04\x001.3\x00"
                      + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00")
            for data, where in ((patient + sex, "(0010,0040) at offset 10"),
                                (nested + patient, "(0008,1155) at offset 32")):
                if vr.isalpha():  # read as pydicom reads it when not strict
                    self.assertEqual(readAttributes(data, EXPLICIT, {PATIENT_ID}, wholeDataset=True),
                                     {PATIENT_ID: "P1"})
                error = self.assertRaises(DatasetError, readAttributes, data, EXPLICIT, TAGS, wholeDataset=True,
                                          strict=True)
                self.assertIn(f"element {where} has VR {vr.decode('latin-1')!r}, which PS3.5 table 6.2-1 "
                              f"does not define", str(error))
        ds = Dataset()
        ds.PatientID = "P1"
        values = {"AE": "AE1", "AS": "042Y", "AT": 0x00100020, "CS": "CT", "DA": "20240101", "DS": "1.5",
                  "DT": "20240101120000", "FD": 1.5, "FL": 1.5, "IS": "7", "LO": "lo", "LT": "lt", "OB": b"\1\2",
                  "OD": b"\0" * 8, "OF": b"\0" * 4, "OL": b"\0" * 4, "OV": b"\0" * 8, "OW": b"\0" * 2,
                  "PN": "Doe^John", "SH": "sh", "SL": -1, "SS": -1, "ST": "st", "SV": -1, "TM": "120000",
                  "UC": "uc", "UI": "1.2", "UL": 1, "UN": b"\1\2", "UR": "http://x/", "US": 1, "UT": "ut",
                  "UV": 1}
        for number, (vr, value) in enumerate(sorted(values.items())):
            ds.add_new(0x00091000 + number, vr, value)
        ds.add_new(0x00091100, "SQ", Sequence([Dataset()]))
        data = encode(ds)
        self.assertEqual(readAttributes(data, EXPLICIT, {PATIENT_ID}, wholeDataset=True, strict=True),
                         {PATIENT_ID: "P1"})

    def test_definedLengthPixelDataInEncapsulatedSyntaxRefusedWhenStrict(self):
        """Native (defined-length) Pixel Data at the top level of a data set
        said to be in an encapsulated syntax is refused in a data set as
        received (strict): PS3.5 A.4 wants it of undefined length, DCMTK
        cannot read it ("Only undefined length permitted").  Read as it is
        when not strict; native syntaxes (deflated too), a vendor's private
        syntax, encapsulated Pixel Data, and a native icon in a sequence
        item still go."""
        native = splitFile(bundledFile("CT_small.dcm"))[1]
        self.assertEqual(readAttributes(native, JPEG_BASELINE, {PATIENT_ID}, wholeDataset=True),
                         {PATIENT_ID: "1CT1"})
        for syntax in (JPEG_BASELINE, "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1.98"):
            error = self.assertRaises(DatasetError, readAttributes, native, syntax, {PATIENT_ID},
                                      wholeDataset=True, strict=True)
            self.assertIn(f"(7FE0,0010) at offset {native.index(bytes.fromhex('e07f1000'))} has a defined "
                          f"length, which the encapsulated transfer syntax {syntax} does not allow (PS3.5 A.4)",
                          str(error))
        for data, syntax in ((native, EXPLICIT), (zlib.compress(native)[2:-4], DEFLATED),
                             (native, "1.3.46.670589.33.1.4.1"),  # a vendor's private syntax: as received
                             (splitFile(bundledFile("SC_rgb_jpeg_dcmtk.dcm"))[1], JPEG_BASELINE)):
            self.assertIn(PATIENT_ID, readAttributes(data, syntax, {PATIENT_ID}, wholeDataset=True, strict=True))
        icon = Dataset()
        icon.Rows = icon.Columns = 1
        icon.add_new(PIXEL_DATA, "OB", b"\0\0")
        ds = Dataset()
        ds.IconImageSequence = Sequence([icon])
        encapsulated = (bytes.fromhex("e07f1000") + b"OB\0\0\xff\xff\xff\xff" + bytes.fromhex("feff00e000000000")
                        + bytes.fromhex("feff00e002000000") + b"\xff\xd9" + bytes.fromhex("feffdde000000000"))
        self.assertEqual(readAttributes(encode(ds) + encapsulated, JPEG_BASELINE, {PATIENT_ID}, wholeDataset=True,
                                        strict=True), {})

    def test_inflatedRefusesPastItsLimitWithoutHoldingIt(self):
        """A deflate stream that inflates past the limit is refused after a
        small window of it was held at a time, not the limit's worth (128
        MB of zeros are some 128 kB deflated); within it, it is inflated
        whole."""
        deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        zeros = bytes(1 << 20)
        bomb = b"".join([deflater.compress(zeros) for _ in range(40)] + [deflater.flush()])
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        error = self.assertRaises(DatasetError, attributes.inflated, bomb, 32 << 20)
        self.assertLess(tracemalloc.get_traced_memory()[1], 4 << 20)
        self.assertIn("inflates to more than 32 MB", str(error))
        self.assertEqual(attributes.inflated(bomb, 40 << 20), bytes(40 << 20))
        self.assertEqual(attributes.inflated(bomb), bytes(40 << 20))

    def test_deepNesting(self):
        item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
        sequence = b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff"
        data = (sequence + item) * 200
        self.assertRaises(DatasetError, readAttributes, data, EXPLICIT, {PATIENT_ID})

    def test_unusableCharacterSet(self):
        """A (0008,0005) that makes pydicom's dcmread() itself fail."""
        data = encode(studyDataset())
        for old, new in ((b"\x08\x00\x05\x00CS", b"\x08\x00\x05\x00CP"),
                         (b"\x08\x00\x05\x00CS\x0a\x00", b"\x08\x00\x05\x00US\x0a\x00"),
                         (b"ISO_IR 100", b"ISO_IR\x00100")):
            self.assertEqual(data.count(old), 1)
            error = self.assertRaises(DatasetError, readQuietly, data.replace(old, new), EXPLICIT, TAGS)
            self.assertIn("(0008,0005)", str(error))

    def test_itemTagsAtTopLevel(self):
        """pydicom ends a data set at a top-level item delimiter, and reads
        a top-level item's contents as top-level elements: refused."""
        data = encode(studyDataset())
        cut = data.index(b"\x10\x00\x10\x00PN")
        for inserted in (b"\xfe\xff\x0d\xe0\x00\x00\x00\x00", b"\xfe\xff\x00\xe0\x00\x00\x00\x00"):
            error = self.assertRaises(DatasetError, readAttributes, data[:cut] + inserted + data[cut:],
                                      EXPLICIT, TAGS, wholeDataset=True)
            self.assertIn(f"(FFFE,E00{inserted[2] & 0xF:X}) at offset {cut} is an item tag at the top level",
                          str(error))

    def test_outOfOrder(self):
        """Elements must ascend: a reader that stops after the largest tag
        it wants (regen) would miss what comes later."""
        data = encode(studyDataset())
        cut = data.index(b"\x08\x00\x16\x00UI")
        for inserted in (b"\x55\x00\x10\x00LO\x02\x00XY", b"\x08\x00\x08\x00CS\x02\x00XY"):
            damaged = data[:cut] + inserted + data[cut:]
            error = self.assertRaises(DatasetError, readAttributes, damaged, EXPLICIT, TAGS, wholeDataset=True)
            self.assertIn("out of order", str(error))
            # only what is stored must ascend: a query identifier is read as pydicom reads it
            self.assertEqual(walkDataset(damaged, EXPLICIT, {0x00080016}, 0, 0xFFFFFFFF)[0],
                             {0x00080016: "1.2.840.10008.5.1.4.1.1.2"})

    def test_deflateStreamCut(self):
        """Deflated bytes that end at a flush point, before the stream's end."""
        data = encode(studyDataset())
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        cut = compressor.compress(data[:data.index(b"\x10\x00\x10\x00PN")]) + compressor.flush(zlib.Z_FULL_FLUSH)
        error = self.assertRaises(DatasetError, readAttributes, cut, DEFLATED, TAGS, wholeDataset=True)
        self.assertIn("truncated", str(error))
        whole = cut + compressor.compress(data[data.index(b"\x10\x00\x10\x00PN"):]) + compressor.flush()
        self.assertEqual(readAttributes(whole, DEFLATED, TAGS, wholeDataset=True),
                         readAttributes(data, EXPLICIT, TAGS))

    def test_corruptDeflate(self):
        self.assertRaises(DatasetError, readAttributes, b"\xff" * 64, DEFLATED, {PATIENT_ID})

    def test_garbage(self):
        generator = random.Random(20240131)
        samples = [encode(studyDataset()), encode(undefinedLengths(studyDataset()), True)]
        for _ in range(400):
            data = bytearray(generator.choice(samples))
            for _ in range(generator.randint(1, 8)):
                data[generator.randrange(len(data))] = generator.randrange(256)
            data = bytes(data[:generator.randrange(len(data) + 1)])
            for syntax in (IMPLICIT, EXPLICIT, BIG_ENDIAN, DEFLATED):
                try:
                    readQuietly(data, syntax, TAGS)
                except DatasetError:
                    pass
