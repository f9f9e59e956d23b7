"""Tests for pacscore.dicom.paging: Conquest's C-FIND control elements for
the order and a page of the answers."""

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from twisted.trial import unittest

from pacscore.db.query import QueryKey, SortBy
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.dicom.find import readIdentifier
from pacscore.dicom.identifiers import BadIdentifier, Request
from pacscore.dicom.paging import LIMIT, MOST, OFFSET, SORT, Page, pageOf, takePage, withSortKey

STUDY_DATE, SERIES_NUMBER = 0x00080020, 0x00200011


def study(uid, **attributes):
    dataset = Dataset()
    dataset.QueryRetrieveLevel = "STUDY"
    dataset.StudyInstanceUID = uid
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return dataset


class TakePageTests(unittest.TestCase):

    def test_noElements(self):
        request = study("1.1")
        self.assertIsNone(takePage(request))
        self.assertEqual(request, study("1.1"))

    def test_takenOut(self):
        request = study("1.1")
        request.add_new(SORT, "LO", "StudyDate DESC")
        request.add_new(LIMIT, "IS", "5")
        request.add_new(OFFSET, "UN", b"10\x00")  # as a private element of no VR comes
        self.assertEqual(takePage(request), Page("StudyDate DESC", 5, 10))
        self.assertEqual(request, study("1.1"))

    def test_emptyOnesAskNothing(self):
        """Conquest's own sample sends an empty (9999,0C02)."""
        request = study("1.1")
        request.add_new(SORT, "LO", "StudyDate")
        request.add_new(OFFSET, "LO", "")
        self.assertEqual(takePage(request), Page("StudyDate", None, 0))
        request.add_new(LIMIT, "LO", None)
        self.assertEqual(takePage(request), Page("", None, 0))

    def test_noNumberRefused(self):
        for value in ("-1", "3.5", "ten", "1; DROP TABLE DICOMStudies", "٣"):
            request = study("1.1")
            request.add_new(LIMIT, "LO", value)
            with self.assertRaises(BadIdentifier, msg=value) as raised:
                takePage(request)
            self.assertEqual(raised.exception.status, 0xA900)
            self.assertIn("(9999,0C01)", str(raised.exception))

    def test_countsAboveTheDatabasesAreItsMost(self):
        """SQLite failed on a LIMIT or OFFSET above 2**63 - 1 ('Python int too large
        to convert to SQLite INTEGER', C000 and a traceback); such a count is the
        most the databases take (RequestedSortTests.test_theMostCounts)."""
        for value, count in (("99999999999999999999", MOST), ("9223372036854775808", MOST), (str(MOST), MOST),
                             ("9" * 5000, MOST), ("0" * 5000 + "7", 7), ("000", 0)):
            request = study("1.1")
            request.add_new(LIMIT, "LO", value)
            request.add_new(OFFSET, "UN", value.encode())
            self.assertEqual(takePage(request), Page("", count, count), msg=value[:30])

    def test_noKeysOfTheRequest(self):
        """read as a C-FIND's identifier, the elements are its page, none of its keys
        (which the index cannot match: 0xFF01 before)."""
        request = study("1.1")
        request.add_new(SORT, "LO", "StudyDate")
        request.add_new(LIMIT, "LO", "3")
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            identifier, read, mask, _ = readIdentifier(encodeDataset(request, syntax), syntax, ("STUDY",), paging=True)
            self.assertEqual(read.page, Page("StudyDate", 3, 0))
            self.assertEqual([key.tag for key in read.keys], [0x0020000D])
            self.assertNotIn(SORT, identifier)
            self.assertNotIn(LIMIT, identifier)

    def test_takenOutUnreadForTheOthers(self):
        """read as a retrieve's or a web search's identifier (paging off), the
        elements are taken out, their values unread: no page, no refusal."""
        request = study("1.1")
        request.add_new(SORT, "LO", "Modality")
        request.add_new(LIMIT, "LO", "three")
        identifier, read, mask, _ = readIdentifier(encodeDataset(request, ExplicitVRLittleEndian),
                                                ExplicitVRLittleEndian, ("STUDY",), matching=False)
        self.assertIsNone(read.page)
        self.assertEqual([key.tag for key in read.keys], [0x0020000D])
        self.assertEqual(identifier, study("1.1"))


class WithSortKeyTests(unittest.TestCase):

    def test_answeredWhenNotAsked(self):
        identifier = study("")
        request = Request("STUDY", [QueryKey(0x0020000D, "UI", "")], "", Page("StudyDate", 2))
        request = withSortKey(identifier, request, STUDY_DATE, "DA")
        self.assertEqual(request.keys[-1], QueryKey(STUDY_DATE, "DA", ""))
        self.assertIn(STUDY_DATE, identifier)  # for the virtual servers too
        self.assertIs(withSortKey(identifier, request, STUDY_DATE, "DA"), request)


class PageOfTests(unittest.TestCase):
    """The page of the answers merged with those of virtual servers."""

    def encoded(self, *studies):
        return [encodeDataset(study(uid, StudyDate=date, SeriesNumber=number), ExplicitVRLittleEndian)
                for uid, date, number in studies]

    def uids(self, matches):
        return [decodeDataset(match, ExplicitVRLittleEndian).StudyInstanceUID for match in matches]

    def test_sortedThenCut(self):
        ours = [("1.1", "20240101", "10"), ("1.2", "20240301", "2")]
        theirs = [("9.1", "20240201", "1"), ("9.2", "20240101", "9")]
        merged = self.encoded(*ours, *theirs)
        byDate = SortBy(STUDY_DATE, False, False, [])
        self.assertEqual(self.uids(pageOf(merged, Page("StudyDate"), byDate, ExplicitVRLittleEndian)),
                         ["1.1", "9.2", "9.1", "1.2"])  # ours first among equal dates
        self.assertEqual(self.uids(pageOf(merged, Page("StudyDate", 2, 1), byDate, ExplicitVRLittleEndian)),
                         ["9.2", "9.1"])
        byNumber = SortBy(SERIES_NUMBER, True, True, [])
        self.assertEqual(self.uids(pageOf(merged, Page("SeriesNumber DESC", 3), byNumber, ExplicitVRLittleEndian)),
                         ["1.1", "9.2", "1.2"])
        self.assertEqual(self.uids(pageOf(merged, Page("", 1, 3), None, ExplicitVRLittleEndian)), ["9.2"])

    def test_emptyAndOtherTextAmongNumbers(self):
        """The index's order (RequestedSortTests.test_emptyAndOtherTextAmongNumbers):
        by the number a value starts with, 0 for none, then by the text; it
        put the empty and other text after every number here."""
        ours = [("1.3", "-1"), ("1.4", "x"), ("1.1", "3")]  # as the index sorted them
        theirs = [("9.2", ""), ("9.7", " 2"), ("9.6", "12abc")]
        merged = self.withNumbers(*ours, *theirs)
        ascending = ["1.3", "9.2", "1.4", "9.7", "1.1", "9.6"]
        for descending, expected in ((False, ascending), (True, ascending[::-1])):
            byNumber = SortBy(SERIES_NUMBER, True, descending, [])
            self.assertEqual(self.uids(pageOf(merged, Page("SeriesNumber"), byNumber, ExplicitVRLittleEndian)),
                             expected)
            self.assertEqual(self.uids(pageOf(merged, Page("SeriesNumber", 3, 1), byNumber, ExplicitVRLittleEndian)),
                             expected[1:4])

    @staticmethod
    def withNumbers(*studies):
        """Answers whose SeriesNumber (IS) holds any text, as its column may."""
        answers = []
        for uid, number in studies:
            answer = study(uid)
            answer.add_new(SERIES_NUMBER, "LO", number)
            answers.append(encodeDataset(answer, ExplicitVRLittleEndian).replace(b"\x20\x00\x11\x00LO",
                                                                                  b"\x20\x00\x11\x00IS"))
        return answers
