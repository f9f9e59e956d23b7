"""Tests for pacscore.web.dicomweb.dicomxml: DICOM JSON objects written as
PS3.19 A.1 Native DICOM Model documents."""

import unittest
from xml.dom import minidom
from xml.etree import ElementTree

from pydicom.dataset import Dataset

from pacscore.web.dicomweb.dicomjson import jsonDataset
from pacscore.web.dicomweb.dicomxml import NAMESPACE, xmlBytes


def _name(tag):
    return f"{{{NAMESPACE}}}{tag}"


class NativeDicomModelTests(unittest.TestCase):

    def test_attributes(self):
        item = Dataset()
        item.add_new(0x00081197, "US", 0xA900)
        dataset = Dataset()
        dataset.add_new(0x00100010, "PN", ["Zhang^XiaoDong=张^小东", "Doe^Jane"])
        dataset.add_new(0x00280030, "DS", ["0.5", "", "1"])
        dataset.add_new(0x00081198, "SQ", [item])
        dataset.add_new(0x00091010, "LO", "private")
        text = xmlBytes(jsonDataset(dataset))
        self.assertTrue(text.startswith(b"<?xml version='1.0' encoding='UTF-8'?>"), text)
        root = ElementTree.fromstring(text)
        self.assertEqual(root.tag, _name("NativeDicomModel"))
        failed, private, names, spacing = root
        self.assertEqual(dict(failed.attrib), {"tag": "00081198", "vr": "SQ", "keyword": "FailedSOPSequence"})
        [entry] = failed
        self.assertEqual((entry.tag, entry.get("number")), (_name("Item"), "1"))
        self.assertEqual([(a.get("keyword"), a[0].text) for a in entry], [("FailureReason", str(0xA900))])
        self.assertEqual(dict(private.attrib), {"tag": "00091010", "vr": "LO"})
        self.assertEqual([(v.get("number"), v.text) for v in spacing], [("1", "0.5"), ("3", "1.0")])
        first, second = names
        self.assertEqual((first.tag, first.get("number"), second.get("number")), (_name("PersonName"), "1", "2"))
        self.assertEqual([(group.tag, [(c.tag, c.text) for c in group]) for group in first],
                         [(_name("Alphabetic"), [(_name("FamilyName"), "Zhang"), (_name("GivenName"), "XiaoDong")]),
                          (_name("Ideographic"), [(_name("FamilyName"), "张"), (_name("GivenName"), "小东")])])

    def test_controlCharactersXMLCannotHold(self):
        """A stored text with control characters XML 1.0 cannot hold (its
        JSON escapes them) still makes a well-formed document: they are
        U+FFFD there, tabs and line ends kept (a carriage return too, which
        a parser reads as a line feed when it comes raw)."""
        dataset = Dataset()
        dataset.add_new(0x00100010, "PN", "Doe\x01^Jane")
        dataset.add_new(0x00204000, "LT", "line\r\nnext\tcolumn\x00\x1b\x0c\rlast\n")
        text = xmlBytes(jsonDataset(dataset))
        name, comments = ElementTree.fromstring(text)
        self.assertEqual([part.text for group in name[0] for part in group], ["Doe\ufffd", "Jane"])
        expected = "line\r\nnext\tcolumn\ufffd\ufffd\ufffd\rlast\n"
        self.assertEqual(comments[0].text, expected)
        self.assertEqual(minidom.parseString(text).getElementsByTagName("Value")[0].firstChild.data, expected)
