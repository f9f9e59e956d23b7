"""Tests for pacscore.dicom.textbytes: a change to a decoded data set keeps
the bytes of the text it does not change, text not valid in its
declared character set reads as Latin-1, not as U+FFFD, and a multi-byte
set named as value 1 of (0008,0005) reads as the code extension it is."""

import struct
from io import BytesIO

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import generate_uid
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

from pacscore.converters.elements import assign
from pacscore.dicom.datasets import IdentifierError, decodeDataset, decodePeerDataset, encodeDataset
from pacscore.testing.corpus import makeDataset

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
BAD_NAME = b"Ung\xfcltig^Namen"  # Latin-1, in an object that says ISO_IR 192
JIS_NAME = b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"  # Yamada^Tarou=山田^太郎 in ISO 2022 JP
JIS_X_0212_NAME = b"Doe^John=\x1b$(D0!\x1b(B^\x1b$(D0\"\x1b(B"  # Doe^John=丂^丄 (ISO 2022 IR 159)


def encoded(syntax=EXPLICIT, charset="ISO_IR 192", name=BAD_NAME):
    """An object declaring ``charset`` whose Patient Name, an item's Patient
    Name and Study Description hold ``name`` as bytes."""
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.SOPInstanceUID = "1.2.3.4"
    ds.InstitutionName = "X"
    ds.add(DataElement(0x00100010, "PN", name))
    ds.add(DataElement(0x00081030, "LO", name + b"\\" + name))
    item = Dataset()
    item.add(DataElement(0x00100010, "PN", name))
    ds.ReferencedPatientSequence = [item]
    return encodeDataset(ds, syntax)


def writeInvalidTextObject(path):
    """A CT object at ``path`` declaring ISO_IR 192 whose Patient Name holds ``BAD_NAME``; its SOP Instance UID."""
    ds = makeDataset("BAD192", "", generate_uid(), generate_uid(), generate_uid(), 1, 1, charset="ISO_IR 192")
    ds.add(DataElement(0x00100010, "PN", BAD_NAME))
    ds.save_as(path, enforce_file_format=True)
    return ds.SOPInstanceUID


def withValue1JIS(ds, charset="ISO 2022 IR 87", name=JIS_NAME):
    """``ds`` naming the multi-byte set ``charset`` alone in its (0008,0005),
    as devices send it (PS3.3 C.12.1.1.2 wants ``\\ISO 2022 IR 87``), with
    ``name`` for Patient Name and names with empty components: the
    Referring Physician ``^^^^``, an item's Patient Name ``DOE^JOHN^^^``."""
    ds.SpecificCharacterSet = charset
    ds.add(DataElement(0x00100010, "PN", name))
    ds.add(DataElement(0x00080090, "PN", b"^^^^"))
    item = Dataset()
    item.add(DataElement(0x00100010, "PN", b"DOE^JOHN^^^"))
    ds.ReferencedPatientSequence = [item]
    return ds


def rawValues(data, syntax=EXPLICIT):
    ds = read_dataset(BytesIO(data), syntax == IMPLICIT, True)
    return tuple(value.rstrip(b" ") for value in (
        ds.get_item(0x00100010).value, ds.get_item(0x00081030).value,
        ds.ReferencedPatientSequence[0].get_item(0x00100010).value))


class TextBytesTests(unittest.TestCase):

    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def warnings(self):
        return [e for e in self.events if e.get("log_level") == LogLevel.warn
                and e.get("log_namespace") == "pacscore.dicom.textbytes"]

    def test_aChangeKeepsTheBytesOfTextItDoesNotTouch(self):
        for syntax in (EXPLICIT, IMPLICIT):
            ds = decodeDataset(encoded(syntax), syntax)
            assign(ds, 0x00080080, "Klinik", where="test")
            data = encodeDataset(ds, syntax)
            self.assertEqual(rawValues(data, syntax), (BAD_NAME, BAD_NAME + b"\\" + BAD_NAME, BAD_NAME))
            self.assertIn(b"Klinik", data)

    def test_invalidTextReadsAsLatin1AndIsLogged(self):
        ds = decodeDataset(encoded(), EXPLICIT)
        self.assertEqual(str(ds.PatientName), "Ungültig^Namen")
        self.assertEqual(list(ds.StudyDescription), ["Ungültig^Namen"] * 2)
        self.assertEqual(str(ds.ReferencedPatientSequence[0].PatientName), "Ungültig^Namen")
        [warning] = self.warnings()
        self.assertIn("1.2.3.4", warning["object"])
        self.assertEqual(warning["elements"], "(0008,1030), (0008,1120).0\\(0010,0010), (0010,0010)")

    def test_aChangedValueIsWrittenInTheCharacterSet(self):
        ds = decodeDataset(encoded(), EXPLICIT)
        ds.PatientName = "Neu^Name"
        self.assertEqual(rawValues(encodeDataset(ds, EXPLICIT))[0], b"Neu^Name")

    def test_aSwitchToUnicodeRewritesTextFromItsLatin1Reading(self):
        """A non-ASCII value in an ISO_IR 100 object: ensureUnicode; the
        other text, valid Latin-1, becomes UTF-8."""
        ds = decodeDataset(encoded(charset="ISO_IR 100"), EXPLICIT)
        assign(ds, 0x00080080, "Klinik Ünï", where="test")
        data = encodeDataset(ds, EXPLICIT)
        self.assertEqual(rawValues(data)[0], "Ungültig^Namen".encode())
        self.assertEqual(decodeDataset(data, EXPLICIT).InstitutionName, "Klinik Ünï")
        self.assertEqual(self.warnings(), [])

    def test_aSwitchToUnicodeOfInvalidISO2022TextTakesItsLatin1Reading(self):
        ds = decodeDataset(encoded(charset="\\ISO 2022 IR 87", name=b"Ung\x1b$B\x80\x80\x1b(B^"), EXPLICIT)
        assign(ds, 0x00080080, "Klinik Ünï", where="test")
        data = encodeDataset(ds, EXPLICIT)
        self.assertTrue(rawValues(data)[0].startswith("Ung\x1b$B\x80\x80".encode()))
        self.assertEqual(len(self.warnings()), 1)

    def test_validTextDecodesAsBefore(self):
        ds = decodeDataset(encoded(charset="ISO_IR 100", name="Müller^Jörgi".encode("latin-1")), EXPLICIT)
        self.assertEqual(str(ds.PatientName), "Müller^Jörgi")
        self.assertEqual(self.warnings(), [])


class CodeExtensionTests(unittest.TestCase):
    """A multi-byte set named as value 1 of (0008,0005), which pydicom takes
    for value 1 and failed on with any name holding an empty component
    ('undecodable data set: string index out of range': the object
    refused by an import converter, a C-FIND refused, WADO-RS metadata a
    500), reads and writes as the code extension it is."""

    def test_readAsItsCodeExtension(self):
        for charset, name, text in (("ISO 2022 IR 87", JIS_NAME, "Yamada^Tarou=山田^太郎"),
                                    ("ISO 2022 IR 159", JIS_X_0212_NAME, "Doe^John=丂^丄")):
            ds = decodeDataset(encodeDataset(withValue1JIS(Dataset(), charset, name), EXPLICIT), EXPLICIT)
            self.assertEqual((str(ds.PatientName), str(ds.ReferringPhysicianName),
                              str(ds.ReferencedPatientSequence[0].PatientName)),
                             (text, "^^^^", "DOE^JOHN^^^"), charset)
            self.assertEqual(ds.SpecificCharacterSet, charset)

    def test_aChangeKeepsTheCharacterSetAndTheBytes(self):
        """The object keeps its (0008,0005) and the bytes of its names; a
        changed name with empty components is written too."""
        ds = decodeDataset(encodeDataset(withValue1JIS(Dataset()), EXPLICIT), EXPLICIT)
        assign(ds, 0x00080080, "Klinik", where="test")
        ds.ReferringPhysicianName = "^Neu^^"
        raw = read_dataset(BytesIO(encodeDataset(ds, EXPLICIT)), False, True)
        self.assertEqual((raw.get_item(0x00080005).value, raw.get_item(0x00100010).value,
                          raw.get_item(0x00080090).value, raw.ReferencedPatientSequence[0].get_item(0x00100010).value,
                          raw.get_item(0x00080080).value),
                         (b"ISO 2022 IR 87", JIS_NAME, b"^Neu^^", b"DOE^JOHN^^^ ", b"Klinik"))

    def test_aValuePydicomCannotDecodeIsNamed(self):
        """A value pydicom fails on (an FD of 6 bytes) in a peer's data set
        (an identifier) is an IdentifierError naming it."""
        data = b"\x08\x00\x05\x00CS\x0e\x00ISO 2022 IR 87" + b"\x18\x00\x50\x10FD\x06\x00" + bytes(6)
        with self.assertRaisesRegex(IdentifierError, r"^undecodable data set: \(0018,1050\) cannot be decoded: "):
            decodePeerDataset(data, EXPLICIT)

    def test_anIntegerStringNoIntegerHoldsIsText(self):
        """InstanceNumber inf or 1e999, which the index stores as text (as
        abc): a C-FIND key of it was refused 0xC000 ('undecodable data set:
        (0020,0013) cannot be decoded: cannot convert float infinity to
        integer'), and WADO-RS metadata gave it as UN bytes; it is read as
        text, its VR IS, as abc is."""
        for value in (b"inf ", b"1e999 ", b"-Infinity ", b"abc "):
            data = (b"\x08\x00\x18\x00UI\x04\x001.3\x00"
                    + b"\x20\x00\x13\x00IS" + struct.pack("<H", len(value)) + value)
            for decode in (decodeDataset, decodePeerDataset):
                element = decode(data, EXPLICIT)[0x00200013]
                self.assertEqual((element.VR, element.value), ("IS", value.decode().strip()), (value, decode))

    def test_aBinaryValuePydicomCannotDecodeIsKeptAsItsBytes(self):
        """A stored object with a binary value pydicom fails on (an FD of 4
        bytes, in a sequence item too) could not be converted ('the stored
        object cannot be shown: undecodable data set: (0018,9087) cannot be
        decoded'): the value is kept as UN bytes, logged, and written again
        as they were."""
        item = b"\xfe\xff\x00\xe0\x10\x00\x00\x00" + b"\x18\x00\x87\x90FD\x04\x00\x01\x00\x02\x00"
        data = (b"\x08\x00\x16\x00UI\x04\x001.2\x00" + b"\x08\x00\x18\x00UI\x04\x001.3\x00"
                + b"\x08\x00\x15\x11SQ\x00\x00" + struct.pack("<L", len(item)) + item
                + b"\x18\x00\x87\x90FD\x04\x00\x01\x00\x02\x00")
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        ds = decodeDataset(data, EXPLICIT)
        self.assertEqual((ds[0x00189087].VR, ds[0x00189087].value, ds.ReferencedSeriesSequence[0][0x00189087].VR),
                         ("UN", b"\x01\x00\x02\x00", "UN"))
        raw = read_dataset(BytesIO(encodeDataset(ds, "1.2.840.10008.1.2")), True, True)
        self.assertEqual(raw.get_item(0x00189087).value, b"\x01\x00\x02\x00")
        self.assertIn("SOP Instance 1.3: value(s) that cannot be decoded kept as their bytes (UN): (0008,1115).0\\"
                      "(0018,9087) cannot be decoded", [formatEvent(event) for event in events][-1])
