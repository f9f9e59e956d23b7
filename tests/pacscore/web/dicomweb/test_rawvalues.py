"""Tests for pacscore.web.dicomweb.rawvalues: the values of attributes
read straight from their stored bytes are those pydicom gives DICOM JSON,
in explicit and implicit VR, little and big endian, with the character
sets, padding, empty and damaged values pydicom handles; what is not plain
is left to pydicom."""

import struct
import unittest
import warnings

import pydicom
from pydicom.data import get_charset_files, get_testdata_files
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacscore.web.dicomweb import dicomjson
from pacscore.web.dicomweb.dicomjson import jsonDataset
from pacscore.web.dicomweb.rawvalues import rawValues

# (tag, VR, stored value); numbers as Python numbers
VALUES = [
    (0x00080005, "CS", b"ISO_IR 100"), (0x00080008, "CS", b"ORIGINAL\\PRIMARY\\"), (0x00080060, "CS", b" CT "),
    (0x00180015, "CS", b"\\ "), (0x00080050, "SH", b"  "), (0x00081010, "SH", b""),
    (0x00200010, "SH", b"A \\B\\\0"), (0x00081030, "LO", b"Hello \\World "), (0x0008103E, "LO", b"Tab\there\0"),
    (0x00204000, "LT", b"one\r\ntwo\\three  "), (0x00324000, "LT", b"caf\xe9"), (0x00080080, "LO", b"\x1b(BAB"),
    (0x00080020, "DA", b"20200101 "), (0x00080030, "TM", b"101010.5"), (0x0008002A, "DT", b"20200101101010 "),
    (0x00101010, "AS", b"030Y"), (0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
    (0x00180050, "DS", b"  1.50 "), (0x00280030, "DS", b"0.5\\ 0.5"), (0x00281050, "DS", b"40\\\\50"),
    (0x00281051, "DS", b"1e3\\-2.5E-02"), (0x00281052, "DS", b"-1024."), (0x00281053, "DS", b".5"),
    (0x00181063, "DS", b"nan "), (0x00180088, "DS", b"1e400 "), (0x00201041, "DS", b"1,5 "),
    (0x00181130, "DS", b"12345678901234567 "), (0x00200011, "IS", b" 7"), (0x00200013, "IS", b"+12 "),
    (0x00200012, "IS", b"1.0 "), (0x00180086, "IS", b"1\\2\\ 3"), (0x00082144, "IS", b"99999999999 "),
    (0x00181150, "IS", b"-5"), (0x00181152, "IS", b"99999999999999999999"),
    (0x00200052, "UI", b"\t1.2.840.99.10"), (0x00081155, "UI", b"1.2.3 \\ 1.2.40"), (0x00100010, "PN", b"Doe^J=^=x "),
    (0x00280010, "US", [64]),
    (0x00181310, "US", [0, 64, 64, 0]), (0x00189079, "FD", [1.5, float("nan"), float("inf")]),
    (0x0018605A, "FL", [0.1]), (0x00209057, "UL", [1, 2]), (0x0040A162, "SL", [-3]), (0x0072007E, "SS", [-1]),
]
PLAIN = {0x00080005, 0x00080008, 0x00080060, 0x00180015, 0x00080050, 0x00081010, 0x00200010, 0x00081030,
         0x0008103E, 0x00204000, 0x00080020, 0x00080030, 0x0008002A, 0x00101010, 0x00080016, 0x00180050,
         0x00281051, 0x00281052, 0x00281053, 0x00181130, 0x00200013, 0x00082144, 0x00181150, 0x00280010,
         0x00181310, 0x00189079, 0x0018605A, 0x00209057, 0x0040A162, 0x00200052, 0x00081155}
FORMS = {"US": "H", "FD": "d", "FL": "f", "UL": "L", "SL": "l", "SS": "h"}


def stored(syntax, charset=b"ISO_IR 100"):
    """A data set of ``VALUES`` in ``syntax``, its attributes stored bytes
    (as in a file read for WADO-RS), a sequence among them."""
    little, implicit = syntax != ExplicitVRBigEndian, syntax == ImplicitVRLittleEndian

    def raw(tag, vr, value):
        return RawDataElement(Tag(tag), None if implicit else vr, len(value), value, 0, implicit, little)
    dataset = Dataset()
    for tag, vr, value in VALUES:
        if vr in FORMS:
            value = struct.pack(f"{'<' if little else '>'}{len(value)}{FORMS[vr]}", *value)
        elif tag == 0x00080005:
            value = charset
        dataset[tag] = raw(tag, vr, value + (b"\0" if len(value) % 2 and vr == "UI" else b" " * (len(value) % 2)))
    item = Dataset()
    for tag, value in ((0x00080100, b"  X1"), (0x00080104, b"m\xe9aning ")):
        item[tag] = raw(tag, dictionary_VR(tag), value)
    dataset.ProcedureCodeSequence = [item, Dataset()]
    return dataset


def byPydicom(dataset):
    """jsonDataset of ``dataset`` with every attribute converted by pydicom."""
    real = dicomjson.rawValues
    dicomjson.rawValues = lambda dataset, tag: None
    try:
        return jsonDataset(dataset)
    finally:
        dicomjson.rawValues = real


class RawValuesTests(unittest.TestCase):

    def setUp(self):
        warnings.simplefilter("ignore")
        self.addCleanup(warnings.resetwarnings)

    def test_asPydicomGivesThem(self):
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian):
            for charset in (b"ISO_IR 100", b"ISO_IR 192", b"\\ISO 2022 IR 87"):
                self.assertEqual(jsonDataset(stored(syntax, charset)), byPydicom(stored(syntax, charset)),
                                 (syntax, charset))

    def test_onlyPlainValuesRead(self):
        """What is not plain (non-ASCII or escaped text, person names, a
        damaged or non-finite number, an empty one or one led by a space
        among numbers, SS) is left to pydicom; the plain ones are read
        without it."""
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            dataset = stored(syntax)
            read = {tag for tag, _, _ in VALUES if rawValues(dataset, tag) is not None}
            self.assertEqual(read, PLAIN, syntax)
            jsonDataset(dataset)
            converted = {tag for tag in PLAIN if not isinstance(dataset.get_item(tag), RawDataElement)}
            self.assertEqual(converted, {0x00080005})  # which pydicom reads to decode the others

    def test_convertedAttributesLeftToPydicom(self):
        dataset = Dataset()
        dataset.add_new(0x00080060, "CS", "CT")
        self.assertIsNone(rawValues(dataset, 0x00080060))

    def test_pydicomsFiles(self):
        """Every test file of pydicom, its character set files among them."""
        for path in get_testdata_files("*.dcm") + get_charset_files("*.dcm"):
            with self.subTest(path=path):
                try:
                    dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                    expected = byPydicom(pydicom.dcmread(path, stop_before_pixels=True, force=True))
                except Exception:  # a file pydicom cannot read or convert at all
                    continue
                self.assertEqual(jsonDataset(dataset), expected)
