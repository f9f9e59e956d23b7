"""Accept headers read as DICOMweb clients write them, and multipart
bodies split into parts from a file without reading it whole."""

import io

from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from pacscore.web.answers import WebError
from pacscore.web.dicomweb import multipart


def requestAccepting(*values, query=()):
    request = DummyRequest([])
    for value in values:
        request.requestHeaders.addRawHeader(b"accept", value.encode())
    request.args = {b"accept": [value.encode() for value in query]} if query else {}
    return request


class AcceptTests(unittest.TestCase):

    def test_none(self):
        self.assertEqual(multipart.accepted(requestAccepting()), [multipart.MediaType("*/*", {})])

    def test_parametersAndQuotes(self):
        (media,) = multipart.accepted(requestAccepting(
            'multipart/related; type="application/dicom"; transfer-syntax=*'))
        self.assertEqual(media.name, "multipart/related")
        self.assertEqual(media.parameters, {"type": "application/dicom", "transfer-syntax": "*"})

    def test_qualityOrdersAndZeroDrops(self):
        found = multipart.accepted(requestAccepting(
            "image/png;q=0.5, image/jpeg, image/gif;q=0", 'multipart/related; type="a,b";q=0.7'))
        self.assertEqual([m.name for m in found], ["image/jpeg", "multipart/related", "image/png"])
        self.assertEqual(found[1].get("type"), "a,b")

    def test_onlyZeroQualitiesTakeNothing(self):
        """q=0 is "not acceptable" (RFC 9110 12.4.2), never taken as no Accept header (``*/*``)."""
        for texts in (("image/png;q=0",), ('multipart/related; type="application/dicom";q=0', "*/*;q=0.0")):
            found = multipart.accepted(requestAccepting(*texts))
            self.assertEqual((texts, list(found)), (texts, []))
        self.assertEqual(multipart.accepted(requestAccepting("")), [multipart.MediaType("*/*", {})])

    def test_zeroQualityRefusesWhatAWiderRangeWouldTake(self):
        found = multipart.accepted(requestAccepting('*/*, image/*;q=0.5, image/png;q=0, '
                                                    'multipart/related; type="application/dicom";q=0'))
        anything, images = found
        self.assertTrue(found.refuses("image/png", taken=anything))
        self.assertTrue(found.refuses("image/png", taken=images))
        self.assertFalse(found.refuses("image/jpeg", taken=anything))
        self.assertTrue(found.refuses("multipart/related", {"type": "application/dicom", "transfer-syntax": "*"},
                                      anything))
        self.assertFalse(found.refuses("multipart/related", {"type": "application/octet-stream"}, anything))
        narrowest = multipart.accepted(requestAccepting("image/*;q=0, image/png"))
        self.assertEqual([m.name for m in narrowest], ["image/png"])
        self.assertFalse(narrowest.refuses("image/png", taken=narrowest[0]))

    def test_queryParameterFirst(self):
        found = multipart.accepted(requestAccepting("image/png", query=("image/gif",)))
        self.assertEqual([m.name for m in found], ["image/gif", "image/png"])

    def test_badQuality(self):
        """A q is RFC 9110's qvalue: 0 to 1 with at most three decimals;
        anything else (that Python's float() would read too) is a 400."""
        for q in ("x", "nan", "inf", "-1", "2", "1_0", "1.5", "0.0001", "1.001", "+0.5", "", ".5", "1e-1"):
            error = self.assertRaises(WebError, multipart.accepted, requestAccepting(f"image/png;q={q}, image/jpeg"))
            self.assertEqual((q, error.code), (q, 400))
        for q, kept in (("0", ["image/jpeg"]), ("0.", ["image/jpeg"]), ("0.001", ["image/jpeg", "image/png"]),
                        ("1.000", ["image/png", "image/jpeg"]), ("1", ["image/png", "image/jpeg"])):
            found = multipart.accepted(requestAccepting(f"image/png;q={q}, image/jpeg;q=0.5"))
            self.assertEqual((q, [m.name for m in found]), (q, kept))


def body(boundary, *parts, preamble=b"", epilogue=b""):
    data = preamble
    for headers, content in parts:
        data += multipart.partHeader(boundary, headers) + content + multipart.CRLF
    return data + multipart.closing(boundary) + epilogue


class SplitTests(unittest.TestCase):

    def setUp(self):
        self.patch(multipart, "SCAN_CHUNK", 7)  # boundaries and header ends straddle the chunks read

    def contents(self, data, boundary):
        f = io.BytesIO(data)
        return [(part.headers, data[part.start:part.end]) for part in multipart.splitParts(f, boundary)]

    def test_parts(self):
        first, second = b"\0" * 100 + b"--notit\r\n", b"DICM" * 50
        data = body("b0undary", ("application/dicom", first), ("application/dicom; x=1", second),
                    preamble=b"ignored\r\n", epilogue=b"ignored too")
        found = self.contents(data, "b0undary")
        self.assertEqual([content for _, content in found], [first, second])
        self.assertEqual(found[1][0], {"content-type": "application/dicom; x=1"})

    def test_partWithoutHeaders(self):
        data = b"--b\r\n\r\nabc\r\n--b--\r\n"
        self.assertEqual(self.contents(data, "b"), [({}, b"abc")])

    def test_damaged(self):
        for data in (b"no boundary here", b"--b\r\nContent-Type: x\r\n\r\nnever closed",
                     b"--b\r\nContent-Type: x"):
            self.assertRaises(ValueError, multipart.splitParts, io.BytesIO(data), "b")

    def test_mostParts(self):
        """More parts than ``most`` are refused; as many are taken."""
        data = body("b", *[("application/dicom", b"x")] * 3)
        self.assertEqual(len(multipart.splitParts(io.BytesIO(data), "b", 3)), 3)
        self.assertRaisesRegex(multipart.TooManyParts, "more than 2 parts", multipart.splitParts, io.BytesIO(data),
                               "b", 2)

    def test_partFile(self):
        view = multipart.PartFile(io.BytesIO(b"0123456789"), 2, 8)
        self.assertEqual(view.read(3), b"234")
        self.assertEqual(view.tell(), 3)
        self.assertEqual(view.read(), b"567")
        self.assertEqual(view.read(5), b"")
        self.assertEqual(view.seek(0, 2), 6)
        view.seek(1)
        self.assertEqual(view.read(100), b"34567")
