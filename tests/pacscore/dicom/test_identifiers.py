"""Reading C-FIND/C-MOVE identifiers and encoding the matches."""

import random
import warnings
from io import BytesIO

from pydicom import config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from twisted.logger import Logger, formatEvent
from twisted.trial import unittest

from pacscore.db.query import QueryKey, hasValuesToMatch
from pacscore.dicom import identifiers, pydicomchecks
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.dicom.identifiers import (
    IDENTIFIER_DOES_NOT_MATCH, UNABLE_TO_PROCESS, BadIdentifier, MatchEncoder, Request, decodeIdentifier,
    findIdentifier, logMalformed, malformedValues, readRequest, responseCharacterSet)
from pacscore.dicom.models import ALL_LEVELS
from pacscore.testing.mutations import mutated
from tests.pacscore.db import test_query

STUDY_ROOT = ALL_LEVELS[1:]

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG_ENDIAN = "1.2.840.10008.1.2.2"


def identifier(**keys):
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds



def decodedRequest(data, transferSyntax, levels, columnVRs=None):
    """``readRequest`` of identifier bytes, as a C-FIND's (pacscore.dicom.find.readIdentifier)."""
    return readRequest(decodeIdentifier(data, transferSyntax), transferSyntax, levels, columnVRs)

class MalformedValueTests(unittest.TestCase):

    def test_namedWithThePeerNotByPydicom(self):
        """A peer's identifier with a Specific Character Set pydicom does
        not know (read as Latin-1) and an IS value that is no number,
        decoded under the warning filters the server runs with (not
        trial's, which show every warning): one line naming the peer, the
        term and the attribute, and no warning of pydicom's, which wrote
        them as anonymous lines naming its own files; valid values, a
        wildcard and a DA range are not named."""
        identifier = Dataset()
        for tag, vr, value in ((0x00080005, "CS", "ISO_IR 999"), (0x00080020, "LO", "20200101-"),
                               (0x00080052, "CS", "STUDY"), (0x00100010, "PN", "M\xfcller*"),
                               (0x00100020, "LO", "P?1"), (0x00200010, "SH", "ok"), (0x00200011, "LO", "1-3")):
            identifier.add(DataElement(tag, vr, value, validation_mode=config.IGNORE))
        events = []
        self.patch(identifiers, "log", Logger(observer=events.append))
        with warnings.catch_warnings(record=True) as caught:
            warnings.resetwarnings()
            pydicomchecks.install()
            data = encodeDataset(identifier, IMPLICIT)
            decoded = decodeIdentifier(data, IMPLICIT)
            self.assertEqual(events, [], "named once the request is read (logMalformed)")
            logMalformed(malformedValues(decoded), "FINDSCU@127.0.0.1:55572")
        self.assertEqual(decoded.PatientName, "M\xfcller*")
        self.assertEqual([str(w.message) for w in caught], [])
        self.assertEqual([formatEvent(e) for e in events],
                         ["FINDSCU@127.0.0.1:55572: identifier values taken as they are: (0008,0005) 'ISO_IR 999' is "
                          "not a character set known here, its text read as Latin-1; (0020,0011) '1-3' is not a "
                          "valid IS value"])
        events.clear()
        identifier = Dataset()
        identifier.add(DataElement(0x0020000E, "UI", [f"x{n}" for n in range(12)], validation_mode=config.IGNORE))
        logMalformed(malformedValues(decodeIdentifier(encodeDataset(identifier, IMPLICIT), IMPLICIT)), "PEER")
        [line] = [formatEvent(e) for e in events]
        self.assertEqual(line.count("is not a valid UI value"), identifiers.MALFORMED_NAMED)
        self.assertTrue(line.endswith("(0020,000E) 'x9' is not a valid UI value and 2 more"), line)


    def test_validNumbersNotNamed(self):
        """Valid IS, DS and US keys (InstanceNumber 1, SliceThickness 1.5,
        PatientWeight 70.5, a DS in exponent form, several values) are no
        malformed values: pydicom has made them numbers, whose type its
        validators refuse, so they are checked as the text received; in
        either VR encoding."""
        identifier = Dataset()
        for tag, vr, value in ((0x00080052, "CS", "IMAGE"), (0x00180050, "DS", "1.5"), (0x00101030, "DS", "70.5"),
                               (0x00200011, "IS", " 12 "), (0x00200013, "IS", "1"), (0x00280030, "DS", ["0.5", "1.5e3"]),
                               (0x00280010, "US", 512)):
            identifier.add(DataElement(tag, vr, value))
        for syntax in (IMPLICIT, EXPLICIT):
            decoded = decodeIdentifier(encodeDataset(identifier, syntax), syntax)
            self.assertEqual(identifiers.malformedValues(decoded), [], syntax)
        identifier.add(DataElement(0x00200013, "LO", "1-3"))  # IS, in implicit VR
        self.assertEqual(identifiers.malformedValues(decodeIdentifier(encodeDataset(identifier, IMPLICIT), IMPLICIT)),
                         ["(0020,0013) '1-3' is not a valid IS value"])


class ReadRequestTests(unittest.TestCase):

    def test_keysAsUnicode(self):
        ds = identifier(SpecificCharacterSet="ISO_IR 100", QueryRetrieveLevel="PATIENT",
                        PatientName="Müller*", PatientID="", ModalitiesInStudy=["CT", "MR"],
                        ReferencedStudySequence=[])
        request = decodedRequest(encodeDataset(ds, IMPLICIT), IMPLICIT, ALL_LEVELS)
        self.assertEqual(request.level, "PATIENT")
        self.assertEqual(request.characterSet, "ISO_IR 100")
        self.assertEqual(request.keys, [QueryKey(0x00080061, "CS", "CT\\MR"),
                                        QueryKey(0x00081110, "SQ", ""),
                                        QueryKey(0x00100010, "PN", "Müller*"),
                                        QueryKey(0x00100020, "LO", "")])

    def test_emptyValueMatchingOfFindKeysOnly(self):
        """Two quotation marks ask a C-FIND's key for Empty Value Matching;
        a retrieve's unique key (``matching=False``) is the value itself."""
        ds = identifier(QueryRetrieveLevel="PATIENT", PatientID='""', PatientName="")
        data = encodeDataset(ds, IMPLICIT)
        self.assertEqual(decodedRequest(data, IMPLICIT, ALL_LEVELS).keys,
                         [QueryKey(0x00100010, "PN", ""), QueryKey(0x00100020, "LO", '""', emptyValueMatching=True)])
        retrieve = readRequest(decodeIdentifier(data, IMPLICIT), IMPLICIT, ALL_LEVELS, matching=False)
        self.assertEqual(retrieve.keys, [QueryKey(0x00100010, "PN", ""), QueryKey(0x00100020, "LO", '""')])

    def test_iso2022IR58KeyWithoutEscapeSequences(self):
        """A GB2312 key under ISO 2022 IR 58 is matched without the ``ESC $ ) A``
        designating GB2312 (pydicom leaves it in the text)."""
        key = b"*\x1b$)A" + "王".encode("gb2312") + b"*"
        ds = identifier(SpecificCharacterSet=["", "ISO 2022 IR 58"], QueryRetrieveLevel="PATIENT")
        ds[0x00100010] = RawDataElement(BaseTag(0x00100010), "PN", len(key), key, 0, False, True)
        request = decodedRequest(encodeDataset(ds, EXPLICIT), EXPLICIT, ALL_LEVELS)
        self.assertEqual(request.keys, [QueryKey(0x00100010, "PN", "*王*")])

    def test_multiByteSetAloneAsValue1(self):
        """A key with an empty component under ``ISO 2022 IR 87`` alone was
        refused ('C-FIND refused: undecodable data set: string index out of
        range'); it is read as under ``\\ISO 2022 IR 87``."""
        ds = identifier(SpecificCharacterSet="ISO 2022 IR 87", QueryRetrieveLevel="STUDY", PatientID="")
        ds.add(DataElement(0x00100010, "PN", b"^Tarou"))
        ds.add(DataElement(0x00080090, "PN", b"\x1b$B;3ED\x1b(B^"))
        request = decodedRequest(encodeDataset(ds, EXPLICIT), EXPLICIT, ALL_LEVELS)
        self.assertEqual(request.characterSet, "ISO 2022 IR 87")
        self.assertEqual(request.keys, [QueryKey(0x00080090, "PN", "山田^"), QueryKey(0x00100010, "PN", "^Tarou"),
                                        QueryKey(0x00100020, "LO", "")])

    def test_privateKeyOfAColumnInImplicitVR(self):
        """A key of a private tag a dicom.sql column holds arrives without
        a VR in implicit VR (UN to pydicom): it is read as the column's VR
        (its DT type's), in the request's character set, so that it is
        matched and answered in that VR; other UN keys keep their bytes
        as text (``test_privateKeyOfNoColumnHasAValue``)."""
        ds = identifier(SpecificCharacterSet="ISO_IR 100", QueryRetrieveLevel="IMAGE")
        ds.add_new(0x00290011, "LO", "MYCREATOR")
        ds.add_new(0x00291110, "LO", "xç*")
        ds.add_new(0x00291111, "US", 300)
        ds.add_new(0x00291112, "LO", "unknown")
        columnVRs = {0x00291110: "LO", 0x00291111: "US", 0x00100020: "LO"}
        request = decodedRequest(encodeDataset(ds, IMPLICIT), IMPLICIT, ALL_LEVELS, columnVRs)
        self.assertEqual(request.keys[1:], [QueryKey(0x00291110, "LO", "xç*"), QueryKey(0x00291111, "US", "300"),
                                            QueryKey(0x00291112, "UN", "unknown")])
        encoder = MatchEncoder(Request("IMAGE", request.keys[1:2], ""), "PACS", EXPLICIT)
        match = decodeDataset(encoder.encode({0x00291110: "abc"}), EXPLICIT)
        self.assertEqual((match[0x00291110].VR, match[0x00291110].value), ("LO", "abc"))

    def test_privateKeyOfNoColumnHasAValue(self):
        """A private key no dicom.sql column holds (with its creator or
        without) has a value in implicit VR (UN) as in explicit VR, which
        the index cannot match (FF01); an empty one is universal, a long
        one no value too long to match."""
        for syntax in (IMPLICIT, EXPLICIT):
            ds = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2")
            ds.add_new(0x00091001, "LO", "nomatch")
            ds.add_new(0x00290010, "LO", "ACME")
            ds.add_new(0x00291010, "LO", "nomatch")
            ds.add_new(0x00291011, "LO", "")
            request = decodedRequest(encodeDataset(ds, syntax), syntax, ALL_LEVELS, {0x00100020: "LO"})
            self.assertEqual({key.tag: hasValuesToMatch(key) for key in request.keys if key.tag >> 16 != 0x0020},
                             {0x00091001: True, 0x00290010: True, 0x00291010: True, 0x00291011: False}, syntax)
        ds = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2")
        ds.add_new(0x00291012, "OB", b"\x01\x02" * 1500)  # never matched: not refused as too long a value
        [key] = [key for key in decodedRequest(encodeDataset(ds, IMPLICIT), IMPLICIT, ALL_LEVELS).keys
                 if key.tag == 0x00291012]
        self.assertTrue(hasValuesToMatch(key))

    def test_privateKeyOfAColumnHoldingSomethingElse(self):
        """A key of unknown VR that is not of its column's VR (6 bytes for
        a UL column, binary bytes for a text one) is an empty key, not a
        failed C-FIND."""
        ds = identifier(QueryRetrieveLevel="IMAGE")
        ds.add_new(0x00290011, "LO", "OTHER VENDOR")
        ds.add_new(0x00291110, "OB", b"ab\x00\x01cd")
        ds.add_new(0x00291111, "OB", b"ABCDEF")
        columnVRs = {0x00291110: "LO", 0x00291111: "UL"}
        request = decodedRequest(encodeDataset(ds, IMPLICIT), IMPLICIT, ALL_LEVELS, columnVRs)
        self.assertEqual(request.keys[1:], [QueryKey(0x00291110, "LO", ""), QueryKey(0x00291111, "UL", "")])

    def test_privateCreatorEchoed(self):
        """A Private Creator (gggg,0010-00FF) is no key to match: it reserves
        its block (PS3.5 7.8.1), so the answers carry it with the request's
        value, in LO even when implicit VR left it without one, and the
        elements of its block as any key."""
        ds = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2")
        ds.add_new(0x00090010, "LO", "GEMS_IDEN_01")
        ds.add_new(0x00091001, "LO", "")
        for syntax in (IMPLICIT, EXPLICIT):
            request = decodedRequest(encodeDataset(ds, syntax), syntax, ALL_LEVELS)
            answer = decodeDataset(MatchEncoder(request, "PACS", EXPLICIT).encode({0x0020000D: "1.2"}), EXPLICIT)
            self.assertEqual((answer[0x00090010].VR, answer[0x00090010].value), ("LO", "GEMS_IDEN_01"))
            self.assertEqual((answer[0x00091001].VR, answer[0x00091001].value), ("LO", ""))

    def test_timezoneOffsetFromUTCIsNoKey(self):
        """(0008,0201) "may be present in the Identifier but is not matched"
        (PS3.4 C.2.2.2): no key (so not one the index cannot match, which
        makes 0xFF01) and not in the answers, where it may not be empty."""
        ds = identifier(QueryRetrieveLevel="STUDY", TimezoneOffsetFromUTC="+0100", StudyDate="")
        request = decodedRequest(encodeDataset(ds, EXPLICIT), EXPLICIT, ALL_LEVELS)
        self.assertEqual(request.keys, [QueryKey(0x00080020, "DA", "")])
        answer = MatchEncoder(request, "PACS", EXPLICIT).dataset({0x00080020: "20240102", 0x0020000D: "1.2"})
        self.assertNotIn(0x00080201, answer)
        self.assertEqual(answer.StudyDate, "20240102")

    def test_sequenceItemsWithValues(self):
        """An SQ key says whether its items (at any depth) hold values to match."""
        code, empty, nested = Dataset(), Dataset(), Dataset()
        code.CodeValue, empty.CodeValue = "XYZ", ""
        nested.ConceptNameCodeSequence = [code]
        ds = identifier(QueryRetrieveLevel="STUDY", ProcedureCodeSequence=[code],
                        ReferencedStudySequence=[empty], RequestAttributesSequence=[nested])
        request = decodedRequest(encodeDataset(ds, EXPLICIT), EXPLICIT, ALL_LEVELS)
        self.assertEqual([(key.tag, key.itemValues) for key in request.keys],
                         [(0x00081032, True), (0x00081110, False), (0x00400275, True)])

    def test_privateSequenceInImplicitVR(self):
        """A private SQ key of defined length arrives in implicit VR as UN
        holding its items' bytes: it is a sequence key as in explicit VR,
        whose items (a nested private one too) hold values or not (items
        that do not read do), not a value of those bytes (which was answered
        FF01 where explicit VR answers FF00)."""
        value, empty, nested = Dataset(), Dataset(), Dataset()
        value.add_new(0x00091011, "LO", "x")
        empty.add_new(0x00091011, "LO", "")
        nested.add_new(0x00091012, "SQ", [empty])
        for syntax in (IMPLICIT, EXPLICIT):
            ds = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID="")
            ds.add_new(0x00090010, "LO", "CREATOR")
            ds.add_new(0x00091010, "SQ", [Dataset()])
            ds.add_new(0x00091020, "SQ", [empty])
            ds.add_new(0x00091030, "SQ", [nested])
            ds.add_new(0x00091040, "SQ", [empty, value])
            ds.add_new(0x00091050, "UN", b"")
            ds.add_new(0x00091060, "UN", b"\xfe\xff\x00\xe0\x10\x00")  # items that do not read
            request = decodedRequest(encodeDataset(ds, syntax), syntax, ALL_LEVELS, {0x00100020: "LO"})
            self.assertEqual([(key.tag, key.vr, hasValuesToMatch(key)) for key in request.keys[1:-1]],
                             [(0x00091010, "SQ", False), (0x00091020, "SQ", False), (0x00091030, "SQ", False),
                              (0x00091040, "SQ", True), (0x00091050, "UN", False), (0x00091060, "SQ", True)],
                             syntax)

    def test_levelOutsideTheModel(self):
        data = encodeDataset(identifier(QueryRetrieveLevel="PATIENT"), EXPLICIT)
        error = self.assertRaises(BadIdentifier, decodedRequest, data, EXPLICIT, ("STUDY", "SERIES", "IMAGE"))
        self.assertEqual(error.status, IDENTIFIER_DOES_NOT_MATCH)

    def test_missingOrGarbage(self):
        for data in (None, b"\x08\x00\x52\x00\xff\xff\xff\x7f"):
            error = self.assertRaises(BadIdentifier, decodedRequest, data, IMPLICIT, ALL_LEVELS)
            self.assertEqual(error.status, UNABLE_TO_PROCESS)

    def readStudyRequest(self, syntax=IMPLICIT, **keys):
        """``readRequest`` of a STUDY level identifier (pydicom's warnings
        about long values silenced)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = encodeDataset(identifier(QueryRetrieveLevel="STUDY", **keys), syntax)
            return decodedRequest(data, syntax, ALL_LEVELS)

    def test_tooManyValues(self):
        """More than 500 values in a key, 10000 in a UID list: refused as
        unprocessable before any SQL is built."""
        read = self.readStudyRequest
        ids = [f"ID{i}" for i in range(1001)]
        error = self.assertRaises(BadIdentifier, read, PatientID=ids)
        self.assertEqual(error.status, UNABLE_TO_PROCESS)
        self.assertEqual(str(error), "(0010,0020) has 1001 values, at most 500")
        self.assertEqual(read(PatientID=ids[:500]).keys, [QueryKey(0x00100020, "LO", "\\".join(ids[:500]))])
        uids = [f"1.2.{i}" for i in range(10001)]
        error = self.assertRaises(BadIdentifier, read, StudyInstanceUID=uids)
        self.assertEqual(str(error), "(0020,000D) has 10001 values, at most 10000")
        self.assertEqual(read(StudyInstanceUID=uids[:10000]).keys,
                         [QueryKey(0x0020000D, "UI", "\\".join(uids[:10000]))])
        error = self.assertRaises(BadIdentifier, read, StudyInstanceUID=uids[:10000],
                                  SeriesInstanceUID=uids[:10000], PatientID=ids[:500])
        self.assertEqual(str(error), "20500 values in all keys, at most 20000")

    def test_tooLongValue(self):
        """A value over 1024 characters (a LIKE pattern too complex for
        SQLite, say) is refused; LT values are not split at backslashes."""
        read = self.readStudyRequest
        error = self.assertRaises(BadIdentifier, read, StudyDescription="*" + "a" * 50001 + "*")
        self.assertEqual(error.status, UNABLE_TO_PROCESS)
        self.assertEqual(str(error), "(0008,1030) has a value of 50003 characters, at most 1024")
        self.assertRaises(BadIdentifier, read, PatientName="DOE^*\\" + "x" * 1025)
        self.assertEqual(read(StudyDescription="*" + "a" * 1022 + "*").keys[0].value, "*" + "a" * 1022 + "*")
        self.assertEqual(len(read(AdditionalPatientHistory="\\" * 600).keys), 1)
        self.assertRaises(BadIdentifier, read, AdditionalPatientHistory="\\" * 1025)

    def test_malformedDatesAndTimesRefused(self):
        """A DA, TM or DT key that is neither one value nor a range ``A-B``,
        ``A-`` or ``-B`` of them (PS3.4 C.2.2.2.5, PS3.5 6.2) is refused
        with A900, as wlmscpfs does, rather than matching nothing or, for
        a three-part range, a range the request did not ask for."""
        read = self.readStudyRequest
        for keyword, value in (("StudyDate", "20261202-20261203-20261204"), ("StudyDate", "2026-12-02"),
                               ("StudyDate", "20261302"), ("StudyDate", "abcdefgh"), ("StudyDate", "2026"),
                               ("StudyDate", "20261202\\2026-12-03"), ("StudyTime", "2500"),
                               ("StudyTime", "ab"), ("StudyTime", "0900-1000-2359"),
                               ("AcquisitionDateTime", "20261202093000+2500")):
            error = self.assertRaises(BadIdentifier, read, **{keyword: value})
            self.assertEqual(error.status, IDENTIFIER_DOES_NOT_MATCH, value)
            self.assertIn(f"{value.split(chr(92))[-1]!r}", str(error))
        error = self.assertRaises(BadIdentifier, read, StudyDate="2026-12-02")
        self.assertEqual(str(error), "(0008,0020) must be a date (DA, YYYYMMDD) or a range of them, "
                                     "not '2026-12-02'")
        for keyword, value in (("StudyDate", ""), ("StudyDate", "-"), ("StudyDate", "20261202-"),
                               ("StudyDate", "-20261202"), ("StudyDate", "20261202-20261204"),
                               ("StudyDate", "2026.12.02"), ("StudyDate", "2026*"),
                               ("StudyDate", "20261202\\20261204"), ("StudyTime", "0930"),
                               ("StudyTime", "093000.123456-"), ("StudyTime", "10:30"),
                               ("AcquisitionDateTime", "20261202093000.5+0100-20261203-0500")):
            self.assertEqual(read(**{keyword: value}).keys[0].value, value)

    def test_emptyValueMatchingOfDatesAndTimes(self):
        """Two quotation marks in a DA, TM or DT key ask for Empty Value
        Matching (PS3.4 C.2.2.2.7) as in any other key: not refused as a
        value that is no date."""
        for keyword, tag, vr in (("StudyDate", 0x00080020, "DA"), ("StudyTime", 0x00080030, "TM"),
                                 ("AcquisitionDateTime", 0x0008002A, "DT")):
            self.assertEqual(self.readStudyRequest(**{keyword: '""'}).keys[0],
                             QueryKey(tag, vr, '""', emptyValueMatching=True))

    def test_aRetrieveDoesNotCheckTheDatesItIgnores(self):
        """A C-MOVE's keys other than its unique keys select nothing: one
        echoing a stored date that is no date is not refused for it."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's, about the date
            data = encodeDataset(identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.3",
                                            StudyDate="2026-12-02"), IMPLICIT)
        request = readRequest(decodeIdentifier(data, IMPLICIT), IMPLICIT, ALL_LEVELS, matching=False)
        self.assertEqual([key.value for key in request.keys], ["2026-12-02", "1.2.3"])

    def test_mutatedIdentifiers(self):
        """Seeded random damage to identifiers in three encodings: a
        request, or BadIdentifier (a C-FIND/C-MOVE failure status)."""
        rng = random.Random(20261202)
        ds = identifier(SpecificCharacterSet="ISO_IR 100", QueryRetrieveLevel="STUDY", PatientName="Müller*",
                        PatientID="", StudyDate="20260101-20261231", ModalitiesInStudy=["CT", "MR"],
                        StudyInstanceUID="", ReferencedStudySequence=[identifier(ReferencedSOPInstanceUID="")])
        sources = [(encodeDataset(ds, syntax), syntax) for syntax in (IMPLICIT, EXPLICIT, BIG_ENDIAN)]
        refused = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(2000):
                data, syntax = rng.choice(sources)
                try:
                    decodedRequest(mutated(rng, data), syntax, ALL_LEVELS)
                except BadIdentifier:
                    refused += 1
        self.assertGreater(refused, 1000)


class RetrieveKeysTests(unittest.TestCase):
    """What a C-MOVE/C-GET identifier selects: its unique keys only."""

    def request(self, level, **keys):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's, about wildcards in UIDs
            return decodedRequest(encodeDataset(identifier(QueryRetrieveLevel=level, **keys), IMPLICIT),
                                  IMPLICIT, ALL_LEVELS)

    def refusal(self, levels, level, **keys):
        """The BadIdentifier refusing a retrieve at ``level`` with ``keys`` in
        a model of ``levels``; it must be A900."""
        with self.assertRaises(BadIdentifier) as raised:
            identifiers.retrieveKeys(self.request(level, **keys), levels)
        self.assertEqual(raised.exception.status, IDENTIFIER_DOES_NOT_MATCH, (level, keys))
        return raised.exception

    def selecting(self, levels, level, **keys):
        """The tags of the keys that select, and of those ignored holding values."""
        selecting, ignored = identifiers.retrieveKeys(self.request(level, **keys), levels)
        return [key.tag for key in selecting], [key.tag for key in ignored if hasValuesToMatch(key)]

    def test_aListOfEmptyValuesIsNoUniqueKey(self):
        """A unique key of empty values (a lone "\\") matches like an empty
        one, everything: A900 as for "", not the whole archive."""
        for level, keyword in (("STUDY", "StudyInstanceUID"), ("IMAGE", "SOPInstanceUID"),
                               ("PATIENT", "PatientID"), ("STUDY", "PatientID")):
            for value in ("", "\\", " \\ \\"):
                self.refusal(ALL_LEVELS, level, **{keyword: value})
        identifiers.retrieveKeys(self.request("STUDY", StudyInstanceUID="1.2.3\\"), ALL_LEVELS)
        identifiers.retrieveKeys(self.request("STUDY", PatientID="P1", StudyInstanceUID="\\"), ALL_LEVELS)

    def test_onlyUniqueKeysOfTheLevelAndAboveSelect(self):
        request = self.request("SERIES", PatientID="P1", PatientName="Retr^One", StudyInstanceUID="1.2",
                               StudyDate="20991231", SeriesInstanceUID="1.2.3", SOPInstanceUID="1.2.3.4")
        selecting, ignored = identifiers.retrieveKeys(request, ALL_LEVELS)
        self.assertEqual([key.tag for key in selecting], [0x00100020, 0x0020000D, 0x0020000E])
        self.assertEqual({key.tag for key in ignored}, {0x00080018, 0x00080020, 0x00100010})

    def test_wildcardsAboveAUniqueKeySelectNothing(self):
        """A universal value (``*``) in a unique key above the lowest one
        holding UIDs counts as absent, another wildcard (``PAT*``) is
        ignored: what a client copies from its C-FIND identifier does not
        refuse the retrieve of the UIDs it names (as dcmqrscp and Orthanc
        move them)."""
        for levels in (ALL_LEVELS, STUDY_ROOT):
            for patientID in ("*", "PAT*", "PAT000?"):
                self.assertEqual(self.selecting(levels, "STUDY", PatientID=patientID, StudyInstanceUID="1.2"),
                                 ([0x0020000D], [] if patientID == "*" else [0x00100020]), (levels, patientID))
                self.assertEqual(self.selecting(levels, "SERIES", PatientID=patientID, StudyInstanceUID="1.2",
                                                SeriesInstanceUID="1.2.3"),
                                 ([0x0020000D, 0x0020000E], [] if patientID == "*" else [0x00100020]))
        self.assertEqual(self.selecting(STUDY_ROOT, "SERIES", StudyInstanceUID="*", SeriesInstanceUID="1.2.3"),
                         ([0x0020000E], []))
        self.assertEqual(self.selecting(ALL_LEVELS, "IMAGE", PatientID="P1", StudyInstanceUID="1.*",
                                        SOPInstanceUID="1.2.3.4"), ([0x00100020, 0x00080018], [0x0020000D]))

    def test_aWildcardThatWouldSelectIsRefused(self):
        """A wildcard in the lowest unique key holding values would select
        by it: A900, and a universal one alone selects nothing, never the
        whole archive."""
        for levels, level, keys in ((STUDY_ROOT, "STUDY", {"StudyInstanceUID": "1.2.*"}),
                                    (ALL_LEVELS, "STUDY", {"PatientID": "P1", "StudyInstanceUID": "1.2.*"}),
                                    (ALL_LEVELS, "PATIENT", {"PatientID": "PAT*"}),
                                    (STUDY_ROOT, "STUDY", {"PatientID": "PAT*"}),
                                    (STUDY_ROOT, "SERIES", {"StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.?"})):
            self.assertIn("a wildcard in", str(self.refusal(levels, level, **keys)))
        for levels, level, keys in ((STUDY_ROOT, "STUDY", {"StudyInstanceUID": "*"}),
                                    (STUDY_ROOT, "STUDY", {"PatientID": "*", "StudyInstanceUID": "*"}),
                                    (ALL_LEVELS, "PATIENT", {"PatientID": "*"})):
            self.assertIn("retrieve needs", str(self.refusal(levels, level, **keys)))

    def test_studyRootHasNoPatientLevel(self):
        """In Study Root, Patient ID is no unique key (PS3.4 C.6.2.1): along
        with a Study Instance UID it is ignored; alone it selects the
        patient's studies (as Conquest's clients ask).  In Patient Root it
        selects along with it."""
        self.assertEqual(self.selecting(STUDY_ROOT, "STUDY", PatientID="P1", StudyInstanceUID="1.2"),
                         ([0x0020000D], [0x00100020]))
        self.assertEqual(self.selecting(STUDY_ROOT, "SERIES", PatientID="P1", StudyInstanceUID="",
                                        SeriesInstanceUID=""), ([0x00100020], []))
        self.assertEqual(self.selecting(ALL_LEVELS, "STUDY", PatientID="P1", StudyInstanceUID="1.2"),
                         ([0x00100020, 0x0020000D], []))

    def test_patientLevelInStudyRootByPatientID(self):
        """A Study Root retrieve at PATIENT level (Orthanc's for a patient)
        with a Patient ID is the STUDY retrieve by Patient ID alone; without
        one (or with a universal one) it is refused."""
        dataset = identifier(QueryRetrieveLevel="PATIENT", PatientID="P1")
        request, ignored = identifiers.patientAsStudy(dataset, self.request("PATIENT", PatientID="P1"))
        self.assertEqual((request.level, dataset.QueryRetrieveLevel, ignored), ("STUDY", "STUDY", []))
        self.assertEqual(self.selecting(STUDY_ROOT, request.level, PatientID="P1"), ([0x00100020], []))
        for keys in ({"PatientID": ""}, {"PatientID": "*"}, {"PatientName": "N"}):
            with self.assertRaises(BadIdentifier) as raised:
                identifiers.patientAsStudy(identifier(QueryRetrieveLevel="PATIENT", **keys),
                                           self.request("PATIENT", **keys))
            self.assertEqual(raised.exception.status, IDENTIFIER_DOES_NOT_MATCH, keys)

    def test_patientLevelInStudyRootMovesTheWholePatient(self):
        """A Study Root retrieve at PATIENT level that names a study (or a
        series, an object) too selects the whole patient, as in Patient
        Root: the keys below PATIENT level are taken out of the identifier
        and the request, and named."""
        keys = {"PatientID": "P1", "StudyInstanceUID": "1.2", "SeriesInstanceUID": "", "StudyDate": "20200101"}
        dataset = identifier(QueryRetrieveLevel="PATIENT", **keys)
        request, ignored = identifiers.patientAsStudy(dataset, self.request("PATIENT", **keys))
        self.assertEqual((ignored, "StudyInstanceUID" in dataset, "SeriesInstanceUID" in dataset),
                         (["StudyInstanceUID"], False, False))
        selecting, _ = identifiers.retrieveKeys(request, STUDY_ROOT)
        self.assertEqual([key.tag for key in selecting], [0x00100020])

    def test_errorCommentsFit(self):
        """A refusal's message, the Error Comment, fits LO's 64 characters,
        and so names the level's unique key in the model (Study Root: no
        Patient ID); its detail, for the log, names them all, or the
        wildcard."""
        keywords = dict(zip(ALL_LEVELS, ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")))
        for levels in (ALL_LEVELS, STUDY_ROOT, ALL_LEVELS[:2]):
            for level in levels:
                refusal = self.refusal(levels, level, StudyInstanceUID="")
                logged = f"{refusal} ({refusal.detail})"
                self.assertLessEqual(len(str(refusal)), 64, logged)
                self.assertIn(keywords[level], str(refusal))
                named = [keywords[at] for at in levels[:levels.index(level) + 1]]
                self.assertEqual([keyword for keyword in keywords.values() if keyword in logged], named)
        self.assertEqual(str(self.refusal(STUDY_ROOT, "STUDY")), "STUDY retrieve needs StudyInstanceUID")
        uid = "1.2.840.113619.2.55.3.604688119.969." + "9" * 20 + "*"
        refusal = self.refusal(ALL_LEVELS, "SERIES", SeriesInstanceUID=uid)
        self.assertEqual((str(refusal), refusal.detail[-4:]), ("a wildcard in SeriesInstanceUID of a retrieve", "999*"))


class MatchEncoderTests(unittest.TestCase):

    def encode(self, keys, values, level="STUDY", characterSet=""):
        encoder = MatchEncoder(Request(level, keys, characterSet), "PACS", EXPLICIT)
        return decodeDataset(encoder.encode(values), EXPLICIT)

    def test_requestedKeysAndTheUniqueKey(self):
        match = self.encode([QueryKey(0x00080020, "DA", "2024*"), QueryKey(0x00201208, "IS", ""),
                             QueryKey(0x00081110, "SQ", ""), QueryKey(0x00280010, "US", "")],
                            {0x00080020: "20240102", 0x00201208: "12", 0x0020000D: "1.2.3", 0x00280010: "512"})
        self.assertEqual({e.keyword for e in match},
                         {"StudyDate", "NumberOfStudyRelatedInstances", "ReferencedStudySequence", "Rows",
                          "StudyInstanceUID", "QueryRetrieveLevel", "RetrieveAETitle"})
        self.assertEqual((match.StudyDate, match.NumberOfStudyRelatedInstances, match.Rows, match.StudyInstanceUID),
                         ("20240102", 12, 512, "1.2.3"))
        self.assertEqual((match.QueryRetrieveLevel, match.RetrieveAETitle), ("STUDY", "PACS"))

    def test_usOrSSNegativeAsSS(self):
        """A "US or SS" attribute (signed pixels, PS3.5 Annex A) is answered
        SS when its value is negative, US otherwise."""
        for stored, vr, value in (("-2000", "SS", -2000), ("2000", "US", 2000)):
            match = self.encode([QueryKey(0x00280106, "US", "")], {0x00280106: stored, 0x00080018: "1.2"}, "IMAGE")
            self.assertEqual((match[0x00280106].VR, match[0x00280106].value), (vr, value))

    def test_missingValuesAreEmpty(self):
        match = self.encode([QueryKey(0x00100010, "PN", "")], {0x0020000D: "1.2.3"})
        self.assertEqual(match.PatientName, "")

    def test_characterSets(self):
        """The request's character set when it holds the answer, else
        ISO_IR 100 or ISO_IR 192; none for ASCII answers to a request
        without one (PS3.4 C.4.1.1.3.2)."""
        for requested, name, expected in (("", "Doe^John", None),
                                          ("ISO_IR 100", "Doe^John", "ISO_IR 100"),
                                          ("", "Müller^Jürgen", "ISO_IR 100"),
                                          ("", "山田^太郎", "ISO_IR 192"),
                                          ("ISO_IR 192", "Müller^Jürgen", "ISO_IR 192"),
                                          ("ISO_IR 100", "山田^太郎", "ISO_IR 192")):
            match = self.encode([QueryKey(0x00100010, "PN", "")], {0x00100010: name}, "PATIENT", requested)
            self.assertEqual((str(match.PatientName), match.get("SpecificCharacterSet")), (name, expected))

    def test_codeExtensionsOfTheRequest(self):
        """A Japanese request's code extensions are answered with, as a
        multi-valued element, and the name's bytes are ISO 2022 JP a strict
        decoder reads: JIS X 0208 left before each delimiter.  A single
        "ISO 2022 IR 87" (not a defined term alone) gets an empty value 1."""
        name = "Yamada^Tarou=山田^太郎=やまだ^たろう"
        for requested in ("\\ISO 2022 IR 87", "ISO 2022 IR 87"):
            encoder = MatchEncoder(Request("PATIENT", [QueryKey(0x00100010, "PN", "")], requested), "PACS", EXPLICIT)
            raw = read_dataset(BytesIO(encoder.encode({0x00100010: name})), False, True)
            self.assertEqual(raw.get_item(0x00080005).value, b"\\ISO 2022 IR 87 ", requested)
            self.assertEqual(raw.get_item(0x00100010).value.decode("iso2022_jp"), name, requested)

    def test_dictionaryVRs(self):
        """Answers carry the data dictionary's VR whatever VR the request
        gave a key (explicit VR), the request's for unknown tags."""
        match = self.encode([QueryKey(0x00100020, "US", ""), QueryKey(0x00100010, "IS", ""),
                             QueryKey(0x00100030, "UI", ""), QueryKey(0x00280010, "UL", ""),
                             QueryKey(0x00081110, "LO", "x"), QueryKey(0x00091010, "SH", "")],
                            {0x00100020: "-5", 0x00100010: "山田^太郎", 0x00100030: "19700101",
                             0x00280010: "512", 0x00091010: "private", 0x0020000D: "1.2.3"}, "PATIENT")
        self.assertEqual([(match[tag].VR, match[tag].value) for tag in (0x00100020, 0x00100030, 0x00280010,
                                                                       0x00091010)],
                         [("LO", "-5"), ("DA", "19700101"), ("US", 512), ("SH", "private")])
        self.assertEqual((match["PatientName"].VR, str(match.PatientName)), ("PN", "山田^太郎"))
        self.assertEqual((match["ReferencedStudySequence"].VR, len(match.ReferencedStudySequence)), ("SQ", 0))

    def test_valuesTheirVRCannotHold(self):
        """Stored values their VR cannot encode are answered empty, with a
        debug line; the match and its other values still go out."""
        events = []
        self.patch(identifiers, "log", Logger(observer=events.append))
        keys = [QueryKey(tag, vr, "") for tag, vr in (
            (0x00200011, "IS"), (0x00201041, "DS"), (0x00280010, "US"), (0x00180086, "IS"),
            (0x00280106, "SS"), (0x00080021, "DA"), (0x0008103E, "LO"), (0x00200013, "IS"))]
        match = self.encode(keys, {0x00200011: "abc", 0x00201041: "n/a", 0x00280010: "70000",
                                   0x00180086: "1\\x", 0x00280106: "-40000", 0x00080021: "２０２４０１０２",
                                   0x0008103E: "Kopf ü", 0x00200013: "7", 0x0020000E: "1.2.3.4"}, "SERIES")
        for keyword in ("SeriesNumber", "SliceLocation", "Rows", "EchoNumbers", "SmallestImagePixelValue",
                        "SeriesDate"):
            self.assertEqual(match[keyword].VM, 0, keyword)
        self.assertEqual((match.SeriesDescription, match.InstanceNumber, match.SeriesInstanceUID),
                         ("Kopf ü", 7, "1.2.3.4"))
        self.assertEqual(len(events), 6)
        self.assertEqual({event["log_level"].name for event in events}, {"debug"})

    def test_responseCharacterSet(self):
        self.assertEqual(responseCharacterSet("ISO_IR 144", ["Иванов"]), "ISO_IR 144")
        self.assertEqual(responseCharacterSet("ISO_IR 6", ["Ærø"]), "ISO_IR 100")
        # Python's codec holds these, pydicom's encoding of the character set does not
        self.assertEqual(responseCharacterSet("ISO_IR 13", ["山田^太郎", "ﾔﾏﾀﾞ"]), "ISO_IR 192")
        self.assertEqual(responseCharacterSet("ISO 2022 IR 87", ["Müller"]), "ISO_IR 100")
        self.assertEqual(responseCharacterSet("", ["Smith"]), None)
        self.assertEqual(responseCharacterSet("", ["Smith", ""]), None)
        self.assertEqual(responseCharacterSet("ISO_IR 192", ["Smith"]), "ISO_IR 192")

    def test_latin9(self):
        """ISO_IR 203 and ISO 2022 IR 203 (ISO 8859-15), which pydicom's tables
        lack: a request in them is answered in them (it was relabelled)."""
        self.assertEqual(responseCharacterSet("ISO_IR 203", ["Škoda^œ"]), "ISO_IR 203")
        self.assertEqual(responseCharacterSet("ISO 2022 IR 6\\ISO 2022 IR 203", ["Škoda^œ"]),
                         "ISO 2022 IR 6\\ISO 2022 IR 203")

    def test_responseCharacterSetCodeExtensions(self):
        """A multi-valued request character set is answered with when every
        value is a defined term and pydicom writes the text in it as a
        strict ISO 2022 reader needs it."""
        japanese = ["Yamada^Tarou=山田^太郎=やまだ^たろう", "山田 comment\r\n太郎\\二"]
        korean = ["Hong^Gildong=洪^吉洞=홍^길동"]
        for requested, values, expected in (
                ("\\ISO 2022 IR 87", japanese, "\\ISO 2022 IR 87"),
                ("ISO 2022 IR 6\\ISO 2022 IR 87", japanese, "ISO 2022 IR 6\\ISO 2022 IR 87"),
                ("ISO 2022 IR 13\\ISO 2022 IR 87", ["ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎"], "ISO 2022 IR 13\\ISO 2022 IR 87"),
                ("\\ISO 2022 IR 87\\ISO 2022 IR 159", japanese, "\\ISO 2022 IR 87\\ISO 2022 IR 159"),
                ("\\ISO 2022 IR 149", korean, "\\ISO 2022 IR 149"),
                ("ISO 2022 IR 100\\ISO 2022 IR 149", korean + ["Müller"], "ISO 2022 IR 100\\ISO 2022 IR 149"),
                ("ISO 2022 IR 100\\ISO 2022 IR 87", ["Müller"], "ISO 2022 IR 100\\ISO 2022 IR 87"),
                ("\\ISO 2022 IR 87", ["Smith"], "\\ISO 2022 IR 87"),
                ("\\ISO 2022 IR 87", ["Müller"], "ISO_IR 100"),  # pydicom writes Latin-1 for value 1
                # a multi-byte set alone gets the empty value 1 it needs
                ("ISO 2022 IR 87", japanese, "\\ISO 2022 IR 87"),
                ("ISO 2022 IR 149", korean, "\\ISO 2022 IR 149"),
                ("ISO 2022 IR 87\\", japanese, "\\ISO 2022 IR 87"),
                # pydicom leaves JIS X 0208 invoked at "^" (ESC - A is no way back to G0 ASCII)
                ("ISO 2022 IR 100\\ISO 2022 IR 87", japanese, "ISO_IR 192"),
                # pydicom writes GB 2312 without its escape sequence
                ("\\ISO 2022 IR 58", ["中文"], "ISO_IR 192"),
                # not a term of ISO 2022 among several, an unknown term
                ("ISO_IR 100\\ISO 2022 IR 87", japanese, "ISO_IR 192"),
                ("\\ISO 2022 IR 999", korean, "ISO_IR 192"),
                ("ISO_IR 192\\ISO 2022 IR 87", ["Müller"], "ISO_IR 100")):
            self.assertEqual(responseCharacterSet(requested, values), expected, requested)

    def test_responseCharacterSetNotAnUnknownTerm(self):
        """pydicom reads an unknown or misspelt term as Latin-1 (with a
        warning): answers must not be labelled with it."""
        self.assertEqual(responseCharacterSet("ISO_IR 999", ["Müller"]), "ISO_IR 100")
        self.assertEqual(responseCharacterSet("ISO-IR 144", ["Иванов"]), "ISO_IR 192")
        self.assertEqual(responseCharacterSet("ISO_IR 999", ["Smith"]), "ISO_IR 100")

    def test_findIdentifierDeclaresItsCharacterSet(self):
        keys = [QueryKey(0x00100010, "PN", "*Müller*"), QueryKey(0x00100020, "LO", "")]
        self.assertEqual(findIdentifier("PATIENT", keys).SpecificCharacterSet, "ISO_IR 100")
        keys = [QueryKey(0x00100010, "PN", "*山田*"), QueryKey(0x00080020, "DA", "20240101")]
        identifier = findIdentifier("STUDY", keys)
        self.assertEqual((identifier.SpecificCharacterSet, identifier.QueryRetrieveLevel), ("ISO_IR 192", "STUDY"))
        self.assertNotIn("SpecificCharacterSet", findIdentifier("STUDY", [QueryKey(0x00100010, "PN", "Smith*")]))


class StoredValuesTests(test_query.ArchiveTestCase):
    """Index rows whose values do not fit their VR, queried and encoded."""

    PATIENT_WEIGHT = 0x00101030  # DS
    OVERRIDES = {"1.1.2": {test_query.SERIES_NUMBER: "abc"}, "1.1": {PATIENT_WEIGHT: "heavy"},
                 "1.2": {PATIENT_WEIGHT: "72.5"}}

    def records(self):
        for record in test_query.archiveRecords():
            for uid in (record.attrs[test_query.STUDY_UID], record.attrs[test_query.SERIES_UID]):
                record.attrs.update(self.OVERRIDES.get(uid, {}))
            yield record

    def answers(self, level, *keys):
        """The decoded matches of a query (explicit VR)."""
        encoder = MatchEncoder(Request(level, list(keys), ""), "PACS", EXPLICIT)
        return [decodeDataset(encoder.encode(row), EXPLICIT) for row in self.find(level, *keys)]

    def test_seriesNumber(self):
        """A SeriesNumber "abc" is answered empty in its series' match; the
        other series of the query keep theirs."""
        answers = self.answers("SERIES", QueryKey(test_query.STUDY_UID, "UI", "1.1"),
                               QueryKey(test_query.SERIES_NUMBER, "IS", ""),
                               QueryKey(test_query.MODALITY, "CS", ""))
        self.assertEqual([(a.SeriesInstanceUID, a.Modality, a["SeriesNumber"].VM, a.get("SeriesNumber"))
                          for a in answers],
                         [("1.1.1", "CT", 1, 1), ("1.1.2", "MR", 0, None)])

    def test_patientWeight(self):
        answers = self.answers("STUDY", QueryKey(test_query.PATIENT_ID, "LO", "PAT1"),
                               QueryKey(self.PATIENT_WEIGHT, "DS", ""), QueryKey(test_query.ACCESSION, "SH", ""))
        self.assertEqual([(a.StudyInstanceUID, a.AccessionNumber, a["PatientWeight"].VM, a.get("PatientWeight"))
                          for a in answers],
                         [("1.1", "ACC1", 0, None), ("1.2", "ACC2", 1, 72.5)])
