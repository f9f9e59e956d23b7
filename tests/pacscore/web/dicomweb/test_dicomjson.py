"""Tests for pacscore.web.dicomweb.dicomjson: the DICOM JSON written is
strict JSON (RFC 8259) and keeps PS3.18 annex F's value types where
pydicom cannot write an attribute itself."""

import json
import unittest

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from twisted.logger import capturedLogs, formatEvent

from pacscore.web.dicomweb.dicomjson import jsonBytes, jsonDataset


def _strict(constant):
    raise ValueError(f"not JSON: {constant}")


def written(dataset):
    """The DICOM JSON of ``dataset`` as a strict JSON reader reads it."""
    return json.loads(jsonBytes(jsonDataset(dataset)), parse_constant=_strict)


class FloatTests(unittest.TestCase):

    def test_nonFiniteFloatsAreText(self):
        dataset = Dataset()
        dataset.add_new(0x00700318, "FD", [float("nan"), float("inf"), float("-inf"), 1.5])
        dataset.add_new(0x00700319, "FL", [float("-inf")])
        found = written(dataset)
        self.assertEqual(found["00700318"], {"vr": "FD", "Value": ["NaN", "Infinity", "-Infinity", 1.5]})
        self.assertEqual(found["00700319"], {"vr": "FL", "Value": ["-Infinity"]})

    def test_nonFiniteFloatsNeverWrittenBare(self):
        with self.assertRaises(ValueError):
            jsonBytes({"vr": "FD", "Value": [float("nan")]})


class EmptyValueTests(unittest.TestCase):
    """An empty value among others is null; the others keep their types."""

    def test_personNames(self):
        dataset = Dataset()
        dataset.add_new(0x00081070, "PN", ["Smith^J", "", "Doe^J=ドウ^J"])
        self.assertEqual(written(dataset)["00081070"], {"vr": "PN", "Value": [
            {"Alphabetic": "Smith^J"}, None, {"Alphabetic": "Doe^J", "Ideographic": "ドウ^J"}]})

    def test_numbers(self):
        dataset = Dataset()
        dataset.add_new(0x00280030, "DS", ["1.5", "", "2"])
        dataset.add_new(0x00181150, "IS", ["+5", ""])
        found = written(dataset)
        self.assertEqual(found["00280030"], {"vr": "DS", "Value": [1.5, None, 2]})
        self.assertEqual(found["00181150"], {"vr": "IS", "Value": [5, None]})

    def test_text(self):
        dataset = Dataset()
        dataset.add_new(0x00321060, "LO", ["a", "", "b"])
        dataset.add_new(0x00181030, "LO", "")
        found = written(dataset)
        self.assertEqual(found["00321060"], {"vr": "LO", "Value": ["a", None, "b"]})
        self.assertEqual(found["00181030"], {"vr": "LO"})

    def test_damagedNumbersLeftEmpty(self):
        """DS and IS values are JSON numbers (PS3.18 F.2.3), so a strict
        reader (pydicom's ``Dataset.from_json``) takes the whole object: a
        value that reads as a number goes as one (an IS 1.5 as 1.5), one
        that does not (or is no finite number) is null, as Orthanc has it,
        with one log line an attribute."""
        dataset = Dataset()
        stored = {0x00280030: ("DS", b"1.5\\x\\"), 0x00101030: ("DS", b"70,5"), 0x00201041: ("DS", b"1e400 "),
                  0x00200012: ("IS", b"nan "), 0x00200013: ("IS", b"1.5 "), 0x00180086: ("IS", b"1\\x "),
                  0x00200011: ("IS", b"abc ")}
        for tag, (vr, value) in stored.items():
            dataset[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
        with capturedLogs() as events:
            found = written(dataset)
        self.assertEqual([found[f"{tag:08X}"] for tag in stored],
                         [{"vr": "DS", "Value": [1.5, None, None]}, {"vr": "DS"}, {"vr": "DS"}, {"vr": "IS"},
                          {"vr": "IS", "Value": [1.5]}, {"vr": "IS", "Value": [1, None]}, {"vr": "IS"}])
        lines = [formatEvent(event) for event in events]
        self.assertEqual(len(lines), 6, lines)
        self.assertIn("(0010,1030) DS '70,5'", lines[0])
        Dataset.from_json(found)

    def test_zeroValuesKept(self):
        """Values that are 0 beside an empty one are values (not an empty attribute)."""
        dataset = Dataset()
        dataset[0x00280030] = RawDataElement(Tag(0x00280030), "DS", 4, b"0\\\\0", 0, True, True)
        dataset[0x00181150] = RawDataElement(Tag(0x00181150), "IS", 2, b"0\\", 0, True, True)
        found = written(dataset)
        self.assertEqual(found["00280030"], {"vr": "DS", "Value": [0, None, 0]})
        self.assertEqual(found["00181150"], {"vr": "IS", "Value": [0, None]})


class ModelTests(unittest.TestCase):
    """PS3.18 F.2.2 and F.2.5: attributes in tag order, only a person name's
    non-empty component groups, no "Value" for a sequence without items."""

    def test_attributesInTagOrder(self):
        item = Dataset()
        item.add_new(0x00081155, "UI", "1.2.3")
        item.add_new(0x00081150, "UI", "1.2")
        dataset = Dataset()
        dataset.add_new(0x00200013, "IS", "1")
        dataset.add_new(0x00081110, "SQ", [item])
        dataset.add_new(0x00080060, "CS", "CT")
        found = written(dataset)
        self.assertEqual(list(found), ["00080060", "00081110", "00200013"])
        self.assertEqual(list(found["00081110"]["Value"][0]), ["00081150", "00081155"])

    def test_personNameEmptyGroupsLeftOut(self):
        dataset = Dataset()
        dataset.add_new(0x00100010, "PN", "=山田^太郎")
        dataset.add_new(0x00081070, "PN", "==ヤマダ")
        found = written(dataset)
        self.assertEqual(found["00100010"], {"vr": "PN", "Value": [{"Ideographic": "山田^太郎"}]})
        self.assertEqual(found["00081070"], {"vr": "PN", "Value": [{"Phonetic": "ヤマダ"}]})

    def test_noEscapeSequencesOfCodeExtensions(self):
        """Text and person names of an ISO 2022 IR 58 object (PS3.5 J.3)
        come without the ESC $ ) A pydicom leaves in them, as QIDO-RS has
        them; so does a value pydicom cannot read."""
        dataset = Dataset()
        dataset.SpecificCharacterSet = ["", "ISO 2022 IR 58"]
        for tag, vr, value in ((0x00100010, "PN", b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=="),
                               (0x00081030, "LO", b"\x1b$)A\xd5\xc5 study"), (0x00200013, "IS", b"\x1b$)A7")):
            dataset[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, True, True)
        found = written(dataset)
        self.assertEqual(found["00100010"]["Value"], [{"Alphabetic": "Zhang^XiaoDong", "Ideographic": "张^小东"}])
        self.assertEqual(found["00081030"]["Value"], ["张 study"])
        self.assertEqual(found["00200013"]["Value"], [7])

    def test_sequenceWithoutItemsHasNoValue(self):
        dataset = Dataset()
        dataset.add_new(0x00081110, "SQ", [])
        self.assertEqual(written(dataset)["00081110"], {"vr": "SQ"})
