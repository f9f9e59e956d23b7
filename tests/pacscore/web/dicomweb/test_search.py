"""QIDO-RS over HTTP on an archive holding two patients, each with one
study of two series of two images."""

import json
import os
import socket
from urllib.parse import urlsplit

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from twisted.internet import defer, threads
from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore.control.data import AddImageFile
from pacscore.testing.corpus import makeDataset
from pacscore.web.dicomweb.dicomjson import DICOM_JSON
from pacscore.web.dicomweb.metadataform import MetadataForm
from pacscore.web.dicomweb.search import (
    CAPPED, LARGEST_NUMBER, LITERAL, MORE, NO_MULTIPLE_VALUE_MATCHING, _withRemote)
from tests.pacscore.web.dicomweb.client import DicomWebTestCase, asText


CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def values(match, tag):
    return match.get(tag, {}).get("Value", [])


class SearchTests(DicomWebTestCase):

    ini = {"WebAllowOrigins": "*",  # every answer, an error too, readable by pages of every origin
           "WebHostNames": "h\xf6st.example"}

    @defer.inlineCallbacks
    def test_studies(self):
        found = yield self.fetch("/studies")
        self.assertEqual(found.code, 200)
        self.assertEqual(found.header("content-type"), "application/dicom+json")
        self.assertEqual(found.header("access-control-allow-origin"), "*")
        matches = found.json()
        self.assertEqual(sorted(values(m, "00100020")[0] for m in matches), ["PAT0000", "PAT0001"])
        study = self.corpus[0].studyUID
        (first,) = [m for m in matches if values(m, "0020000D") == [study]]
        self.assertEqual(values(first, "00201206"), [2])  # NumberOfStudyRelatedSeries
        self.assertEqual(values(first, "00201208"), [4])
        self.assertEqual(values(first, "00080056"), ["ONLINE"])
        self.assertEqual(values(first, "00081190"), [f"{self.base}/studies/{study}"])
        self.assertEqual(values(first, "00100010"), [{"Alphabetic": "Test^Patient0"}])
        self.assertNotIn("00080052", first)

    @defer.inlineCallbacks
    def test_matching(self):
        for query, expected in (("PatientID=PAT0001", ["PAT0001"]), ("PatientName=Test*0", ["PAT0000"]),
                                ("00100020=PAT0000", ["PAT0000"]), ("PatientID=nobody", []),
                                (f"StudyInstanceUID={self.corpus[0].studyUID},{self.corpus[-1].studyUID}",
                                 ["PAT0000", "PAT0001"])):
            found = yield self.fetch(f"/studies?{query}")
            self.assertEqual((query, sorted(values(m, "00100020")[0] for m in found.json())), (query, expected))

    @defer.inlineCallbacks
    def test_datesAndTimes(self):
        """A DA, TM or DT filter is one value or a range of them (either end
        open, a lone ``-`` any value, as in C-FIND); anything else (a DT end on a date, a year, text) is a 400
        saying why, with a log line, where it found nothing or left out the
        day it named."""
        both = ["PAT0000", "PAT0001"]
        for query, expected in (("StudyDate=20240102", both), ("StudyDate=20240102-", both),
                                ("StudyDate=-20240101", []), ("StudyDate=20240101-20240103", both),
                                ("StudyDate=", both), ("StudyDate=-", both), ("StudyTime=101500", both), ("StudyTime=10-11", both),
                                ("StudyTime=1016-", []), ("StudyDate=20240103&StudyDate=20240102", both),
                                ("AcquisitionDateTime=20240102101500.5%2B0100-", both),
                                ("AcquisitionDateTime=2024-202401021015-0500", both)):
            found = yield self.fetch(f"/studies?{query}")
            self.assertEqual((query, found.code), (query, 200))
            self.assertEqual((query, sorted(values(m, "00100020")[0] for m in found.json())), (query, expected))
        with capturedLogs() as events:
            for query, why in (("StudyDate=20240102T000000-", "StudyDate must be a date (DA, YYYYMMDD)"),
                               ("StudyDate=abc", "not 'abc'"), ("StudyDate=2024", "not '2024'"),
                               ("StudyDate=20240230", "not '20240230'"),
                               ("StudyDate=20240102&StudyDate=x", "not 'x'"),
                               ("SeriesDate=20240102--20240103", "SeriesDate must be"),
                               ("StudyTime=2500", "StudyTime must be a time (TM, HHMMSS.FFFFFF)"),
                               ("StudyTime=10:61", "not '10:61'"), ("StudyDate=abc*", "not 'abc*'"),
                               ("AcquisitionDateTime=20241301", "AcquisitionDateTime must be a date and time (DT"),
                               ("AcquisitionDateTime=20240102%2B2500", "not '20240102+2500'")):
                found = yield self.fetch(f"/studies?{query}")
                self.assertEqual((query, found.code), (query, 400))
                self.assertIn(why.encode(), found.body.replace(b"&#x27;", b"'"), query)
        self.assertTrue(any(event.get("code") == 400 and event.get("uri", "").endswith("StudyDate=abc")
                            for event in events))

    @defer.inlineCallbacks
    def test_datesAndTimesAsCFindTakesThem(self):
        """A DA, TM or DT filter C-FIND matches is matched the same: ACR-NEMA
        dates (``2024.01.02``) and ``HH:MM[:SS]`` times, ranges of them, a
        lone ``*`` (everything) and a value with wildcards."""
        both = ["PAT0000", "PAT0001"]
        for query, expected in (("StudyDate=2024.01.02", both), ("StudyDate=2024.01.01-2024.01.31", both),
                                ("StudyDate=2024.01.03-", []), ("StudyTime=10:15:00", both),
                                ("StudyTime=10:15-11:00", both), ("StudyTime=10:16-", []), ("StudyDate=*", both),
                                ("StudyDate=2024*", both), ("StudyDate=2023*", []), ("StudyTime=10?5*", both)):
            found = yield self.fetch(f"/studies?{query}")
            self.assertEqual((query, found.code), (query, 200))
            self.assertEqual((query, sorted(values(m, "00100020")[0] for m in found.json())), (query, expected))

    @defer.inlineCallbacks
    def test_repeatedFilters(self):
        """A filter repeated (as dicomweb-client sends a list) matches any of
        its values, as a list in one value does; a repeated text (LT, ST,
        UT, UR), whose one value may hold a backslash, is a 400."""
        first, last = self.corpus[0].studyUID, self.corpus[-1].studyUID
        for query, expected in ((f"StudyInstanceUID={first}&StudyInstanceUID={last}", ["PAT0000", "PAT0001"]),
                                (f"StudyInstanceUID={first},1.2.3&StudyInstanceUID={last}", ["PAT0000", "PAT0001"]),
                                ("PatientID=PAT0001&PatientID=PAT0000", ["PAT0000", "PAT0001"]),
                                ("PatientID=PAT0001&PatientID=nobody", ["PAT0001"]),
                                ("ModalitiesInStudy=MR&ModalitiesInStudy=CT", ["PAT0000", "PAT0001"])):
            found = yield self.fetch(f"/studies?{query}")
            self.assertEqual((query, sorted(values(m, "00100020")[0] for m in found.json())), (query, expected))
        refused = yield self.fetch("/studies?StudyDescription=x&00081030=y&AdditionalPatientHistory=a&"
                                   "AdditionalPatientHistory=b")
        self.assertEqual(refused.code, 400)
        self.assertIn(b"AdditionalPatientHistory matches one text: it cannot be repeated", refused.body)

    @defer.inlineCallbacks
    def test_seriesAndInstancesInside(self):
        image = self.corpus[0]
        series = (yield self.fetch(f"/studies/{image.studyUID}/series")).json()
        self.assertEqual(len(series), 2)
        self.assertNotIn("00100020", series[0])  # the study's attributes: the path names it
        self.assertEqual(values(series[0], "00201209"), [2])
        instances = (yield self.fetch(f"/studies/{image.studyUID}/series/{image.seriesUID}/instances")).json()
        self.assertEqual(sorted(values(m, "00080018")[0] for m in instances),
                         sorted(i.sopUID for i in self.corpus if i.seriesUID == image.seriesUID))
        self.assertEqual(values(instances[0], "00280010"), [64])
        # Bits Allocated is no column of the default dicom.sql: left out, not answered empty
        self.assertNotIn("00280100", instances[0])
        named = (yield self.fetch(f"/studies/{image.studyUID}/series/{image.seriesUID}/instances"
                                  "?includefield=SliceThickness")).json()
        self.assertNotIn("00180050", named[0])
        self.assertEqual(values(instances[0], "00081190")[0],
                         f"{self.base}/studies/{image.studyUID}/series/{image.seriesUID}"
                         f"/instances/{values(instances[0], '00080018')[0]}")

    @defer.inlineCallbacks
    def test_allSeriesAndInstances(self):
        series = (yield self.fetch("/series?PatientID=PAT0001")).json()
        self.assertEqual(len(series), 2)
        self.assertEqual(values(series[0], "00100020"), ["PAT0001"])
        instances = (yield self.fetch("/instances")).json()
        self.assertEqual(len(instances), 8)
        self.assertIn("0020000E", instances[0])

    @defer.inlineCallbacks
    def test_limitOffsetAndWarnings(self):
        everything = (yield self.fetch("/instances")).json()
        page = yield self.fetch("/instances?limit=3&offset=2")
        self.assertEqual(page.json(), everything[2:5])
        self.assertEqual(page.header("warning"), MORE)
        last = yield self.fetch("/instances?limit=3&offset=6&fuzzymatching=true")
        self.assertEqual(len(last.json()), 2)
        self.assertEqual(last.header("warning"), LITERAL)

    @defer.inlineCallbacks
    def test_serverMaximum(self):
        """QIDOMaxResults caps the answer, with the standard's Warning when
        it cut it; a client's smaller limit is its own; 0: no maximum."""
        everything = (yield self.fetch("/instances")).json()
        self.assertEqual(len(everything), 8)  # under the default maximum, 1000
        self.running.configuration.ini.set("QIDOMaxResults", "5")
        for path, expected, warning in (("/instances", everything[:5], CAPPED),
                                        ("/instances?limit=100&offset=2", everything[2:7], CAPPED),
                                        ("/instances?offset=5", everything[5:], None),
                                        ("/instances?limit=2&offset=4", everything[4:6], MORE),
                                        ("/studies?limit=5", None, None)):
            page = yield self.fetch(path)
            self.assertEqual((path, page.header("warning")), (path, warning))
            if expected is not None:
                self.assertEqual(page.json(), expected)
        self.running.configuration.ini.set("QIDOMaxResults", "0")
        self.assertEqual((yield self.fetch("/instances")).json(), everything)

    @defer.inlineCallbacks
    def test_hugeLimitAndOffset(self):
        """A limit or offset beyond LARGEST_NUMBER, which the index's LIMIT
        cannot take, is a 400 with a log line; up to it they page as any."""
        self.running.configuration.ini.set("QIDOMaxResults", "0")
        with capturedLogs() as events:
            for query in ("offset=9223372036854775807&limit=1", "offset=99999999999999999999999", f"limit={2**31}",
                          "limit=99999999999999999999999&offset=1", "limit=" + "9" * 5000, "offset=1_0", "limit=%2B5",
                          "offset=%D9%A5"):
                found = yield self.fetch(f"/instances?{query}")
                self.assertEqual((query, found.code), (query, 400))
                self.assertIn(f"must be a whole number from 0 to {LARGEST_NUMBER}".encode(), found.body)
        self.assertTrue(any(event.get("code") == 400 and event.get("uri", "").endswith("offset=99999999999999999999999")
                            for event in events))
        everything = (yield self.fetch("/instances")).json()
        page = yield self.fetch(f"/instances?limit={LARGEST_NUMBER}&offset=1")
        self.assertEqual((page.json(), page.header("warning")), (everything[1:], None))
        page = yield self.fetch(f"/instances?limit={LARGEST_NUMBER}&offset={LARGEST_NUMBER}")
        self.assertEqual((page.code, page.json()), (200, []))

    @defer.inlineCallbacks
    def test_unsupportedParameters(self):
        """multiplevaluematching (PS3.18 8.3.4.6) is searched without, with
        the standard's Warning (emptyvaluematching is done: no Warning); a
        parameter naming no attribute (a cache-buster) is ignored with a
        Warning, one that cannot be quoted as it is shown with ?s."""
        for query, warnings in (("emptyvaluematching=true", []),
                                ("multiplevaluematching=true&fuzzymatching=true",
                                 [LITERAL, NO_MULTIPLE_VALUE_MATCHING]),
                                ("emptyvaluematching=false&multiplevaluematching=false", []),
                                ("_=12345", ['299 pacs "The _ query parameter is not supported and has been ignored."']),
                                ("NoSuchKeyword=1&%22%5C%0A=x",
                                 ['299 pacs "The NoSuchKeyword query parameter is not supported and has been ignored."',
                                  '299 pacs "The ??? query parameter is not supported and has been ignored."'])):
            found = yield self.fetch(f"/studies?PatientID=PAT0001&{query}")
            self.assertEqual((query, found.code), (query, 200))
            self.assertEqual([values(m, "00100020") for m in found.json()], [["PAT0001"]])
            self.assertEqual((query, found.header("warning")), (query, ", ".join(warnings) or None))

    @defer.inlineCallbacks
    def test_emptyValueMatching(self):
        """``PatientID=""`` is the ID of two quotation marks, unless the
        search asks for Empty Value Matching (PS3.18 8.3.4.5), which finds
        the empty ID; neither is answered with a Warning."""
        for number, (patientID, name) in enumerate((("", "Empty^ID"), ('""', "Quotes^ID"))):
            study = f"1.2.826.0.1.3680043.8.498.5{number}"
            dataset = makeDataset(patientID, name, study, f"{study}.1", f"{study}.1.1", 1, 1)
            path = os.path.join(self.running.workdir, f"id{number}.dcm")
            dataset.save_as(path, enforce_file_format=True)
            yield self.running.run(AddImageFile(), path)
        for query, expected in (("", "Quotes^ID"), ("&emptyvaluematching=false", "Quotes^ID"),
                                ("&emptyvaluematching=true", "Empty^ID")):
            found = yield self.fetch(f"/studies?PatientID=%22%22{query}")
            self.assertEqual((query, [values(m, "00100010") for m in found.json()]),
                             (query, [[{"Alphabetic": expected}]]))
            self.assertEqual((query, found.header("warning")), (query, None))

    @defer.inlineCallbacks
    def test_emptyValueMatchingOfADate(self):
        """``StudyDate=""`` with ``emptyvaluematching=true`` finds the
        studies without a date, as any other key's; without it the two
        quotation marks are no date (a 400)."""
        study = "1.2.826.0.1.3680043.8.498.59"
        dataset = makeDataset("NODATE", "No^Date", study, f"{study}.1", f"{study}.1.1", 1, 1, studyDate="")
        path = os.path.join(self.running.workdir, "nodate.dcm")
        dataset.save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        found = yield self.fetch("/studies?StudyDate=%22%22&emptyvaluematching=true&includefield=00100020")
        self.assertEqual((found.code, [values(m, "00100020") for m in found.json()]), (200, [["NODATE"]]))
        self.assertEqual((yield self.fetch("/studies?StudyDate=%22%22")).code, 400)

    @defer.inlineCallbacks
    def test_includefield(self):
        plain = (yield self.fetch("/studies")).json()[0]
        self.assertNotIn("00080062", plain)
        named = (yield self.fetch("/studies?includefield=SOPClassesInStudy,00081030")).json()[0]
        self.assertEqual(values(named, "00080062"), ["1.2.840.10008.5.1.4.1.1.2"])
        every = (yield self.fetch("/studies?includefield=all")).json()[0]
        self.assertTrue(set(plain) < set(every))

    @defer.inlineCallbacks
    def test_invalidNumbers(self):
        """An IS or DS value goes as the number it reads as, in QIDO-RS as
        in the metadata (an InstanceNumber 1.5, which pydicom made 1), and
        one that reads as none (a SeriesNumber "abc", an AcquisitionNumber
        "nan", a PatientWeight "70,5") empty, so that a strict DICOM JSON
        reader (pydicom's) takes the whole answer (PS3.18 F.2.3: they are
        JSON numbers)."""
        study = "1.2.826.0.1.3680043.8.498.40"
        dataset = makeDataset("BADNUM", "Bad^Numbers", study, f"{study}.1", f"{study}.1.1", 1, 1)
        for tag, vr, value in ((0x00200013, "IS", b"1.5 "), (0x00200011, "IS", b"abc "), (0x00200012, "IS", b"nan "),
                               (0x00101030, "DS", b"70,5")):
            dataset[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
        path = os.path.join(self.running.workdir, "badnumbers.dcm")
        dataset.save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        (match,) = (yield self.fetch("/instances?PatientID=BADNUM&includefield=all")).json()
        (metadata,) = (yield self.fetch(f"/studies/{study}/series/{study}.1/instances/{study}.1.1/metadata")).json()
        for answer in (match, metadata):
            self.assertEqual([values(answer, tag) for tag in ("00200013", "00200011", "00200012", "00101030")],
                             [[1.5], [], [], []])
            Dataset.from_json(answer)
        (series,) = (yield self.fetch(f"/studies/{study}/series?includefield=SeriesNumber")).json()
        self.assertEqual(series["00200011"], {"vr": "IS"})

    @defer.inlineCallbacks
    def test_jsonTypes(self):
        found = yield self.fetch("/studies", accept="application/json")
        self.assertEqual(found.header("content-type"), "application/json")
        refused = yield self.fetch("/studies", accept="text/plain, application/dicom+json;q=0")
        self.assertEqual(refused.code, 406)

    @defer.inlineCallbacks
    def test_dicomXML(self):
        """Asked for multipart/related; type="application/dicom+xml"
        (PS3.18 8.7.3), or application/dicom+xml, a search answers each
        match as a part of DICOM XML (PS3.19 A.1) holding what its DICOM
        JSON holds, at every level; no match, or a page beyond the last, is
        a 204 No Content (a multipart holds at least one part) without a
        Content-Length (RFC 9110 8.6) or a Content-Type naming a boundary,
        to a GET and a HEAD, asked by Accept or by ``accept=``, where DICOM
        JSON answers []. DICOM JSON stays the default."""
        for path in ("/studies", "/series?Modality=CT", f"/studies/{self.corpus[0].studyUID}/instances",
                     "/studies?includefield=all&limit=1"):
            matches = (yield self.fetch(path)).json()
            self.assertTrue(matches, path)
            for accept in ('multipart/related; type="application/dicom+xml"', "application/dicom+xml",
                           'application/dicom+json;q=0.5, multipart/related; type="application/dicom+xml"'):
                found = yield self.fetch(path, accept=accept)
                self.assertEqual((path, accept, found.code), (path, accept, 200))
                self.assertEqual(found.xmlObjects(), asText(matches), (path, accept))
        for path in ("/studies?PatientID=NOBODY", "/studies?offset=100"):
            for method in ("GET", "HEAD"):
                for asked, accept in ((path, 'multipart/related; type="application/dicom+xml"'),
                                      (path + '&accept=multipart/related;type=%22application/dicom%2Bxml%22', None)):
                    answered = yield threads.deferToThread(self.rawAnswer, method, asked, accept)
                    head, _, body = answered.partition(b"\r\n\r\n")
                    status, *lines = head.decode("latin-1").split("\r\n")
                    names = {line.partition(":")[0].lower() for line in lines}
                    self.assertEqual((asked, method, status, body, names & {"content-length", "content-type"}),
                                     (asked, method, "HTTP/1.1 204 No Content", b"", set()))
            none = yield self.fetch(path, accept="application/dicom+json")
            self.assertEqual((path, none.code, none.json()), (path, 200, []))
        found = yield self.fetch("/studies", accept="*/*")
        self.assertEqual(found.header("content-type"), "application/dicom+json")

    def rawAnswer(self, method, path, accept):
        """The bytes of the answer to ``method`` of ``path`` (under
        /dicom-web) as they come, its headers as sent (twisted's client
        takes Content-Length out of them)."""
        accepting = f"Accept: {accept}\r\n" if accept else ""
        with socket.create_connection(("127.0.0.1", urlsplit(self.base).port), timeout=30) as s:
            s.sendall(f"{method} /dicom-web{path} HTTP/1.1\r\nHost: localhost\r\n{accepting}"
                      "Connection: close\r\n\r\n".encode())
            return b"".join(iter(lambda: s.recv(65536), b""))

    @defer.inlineCallbacks
    def test_badRequests(self):
        for path, code in (("/studies?00091001=x", 400), ("/studies?00400275.00321060=x", 400),
                           ("/studies?limit=-1", 400), ("/studies?limit=many", 400),
                           ("/studies/not-a-uid/series", 400), ("/patients", 404), ("/studies/1.2/nothing", 404)):
            found = yield self.fetch(path)
            self.assertEqual((path, found.code), (path, code))
            self.assertEqual(found.header("access-control-allow-origin"), "*")
        found = yield self.fetch("/series", method=b"POST")
        self.assertEqual((found.code, found.header("allow")), (405, "GET, HEAD, OPTIONS"))
        found = yield self.fetch("/studies", headers=[(b"Host", "h\xf6st.example".encode("latin-1"))])
        self.assertEqual(found.code, 400)
        self.assertIn(b"is not a host name or address with an optional port", found.body)

    @defer.inlineCallbacks
    def test_aParameterThatIsNotUTF8IsRefused(self):
        """PS3.18 8.3.4.1: parameter values are UTF-8; Latin-1 bytes get a 400
        saying so, and a log line, as the web pages answer them."""
        for query in ("PatientName=M%FCller*", "includefield=M%FCller", "limit=%FC",
                      "PatientID=PAT0000&PatientID=%FC"):
            with capturedLogs() as events:
                found = yield self.fetch(f"/studies?{query}")
            self.assertEqual((query, found.code), (query, 400))
            self.assertIn(b"must be UTF-8 text", found.body)
            self.assertTrue(any(event.get("code") == 400 and event.get("uri", "").endswith(query) for event in events),
                            query)

    @defer.inlineCallbacks
    def test_head(self):
        """HEAD answers as GET does, without the body."""
        got = yield self.fetch("/studies", accept="application/dicom+json")
        found = yield self.fetch("/studies", method=b"HEAD", accept="application/dicom+json")
        self.assertEqual((found.code, found.body), (200, b""))
        self.assertEqual(found.header("content-type"), got.header("content-type"))
        self.assertEqual(found.header("content-length"), str(len(got.body)))

    @defer.inlineCallbacks
    def test_preflight(self):
        found = yield self.fetch("/studies", method=b"OPTIONS")
        self.assertEqual(found.code, 204)
        self.assertEqual(found.header("access-control-allow-methods"), "GET, HEAD, OPTIONS, POST")
        self.assertEqual(found.header("access-control-allow-origin"), "*")

    @defer.inlineCallbacks
    def test_asOHIFAsks(self):
        """The searches the OHIF viewer sends for its study list."""
        found = yield self.fetch("/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060"
                                 "&ModalitiesInStudy=CT&StudyDate=19000101-20991231&PatientName=*Patient1*")
        self.assertEqual(found.code, 200)
        (study,) = found.json()
        self.assertEqual(values(study, "00100020"), ["PAT0001"])
        self.assertEqual(values(study, "00080061"), ["CT"])
        none = yield self.fetch("/studies?ModalitiesInStudy=MR")
        self.assertEqual(none.json(), [])

    @defer.inlineCallbacks
    def test_filtersBelowTheLevel(self):
        """A filter of a level below matches the entities holding a match
        there; one of an attribute the index keeps nowhere is ignored with a Warning."""
        first, last = self.corpus[0], self.corpus[-1]
        for query, expected in (("/studies?Modality=CT", ["PAT0000", "PAT0001"]), ("/studies?Modality=MR", []),
                                (f"/studies?SeriesInstanceUID={first.seriesUID}", ["PAT0000"]),
                                ("/studies?SeriesInstanceUID=1.2.3", []),
                                (f"/studies?SOPInstanceUID={last.sopUID}", ["PAT0001"]),
                                (f"/series?SOPInstanceUID={first.sopUID}&PatientID=PAT0000", ["PAT0000"])):
            found = yield self.fetch(query)
            self.assertEqual((query, sorted(values(m, "00100020")[0] for m in found.json()), found.header("warning")),
                             (query, expected, None))
        (series,) = (yield self.fetch(f"/series?SOPInstanceUID={first.sopUID}")).json()
        self.assertEqual(values(series, "0020000E"), [first.seriesUID])
        self.assertNotIn("00080018", series)
        ignored = yield self.fetch("/instances?DeviceSerialNumber=zzz&PatientID=PAT0000")
        self.assertEqual((len(ignored.json()), ignored.header("warning")), (4, '299 pacs "The DeviceSerialNumber query '
                                                                               'parameter is not supported and has been '
                                                                               'ignored."'))
        self.assertIsNone((yield self.fetch("/instances?DeviceSerialNumber=")).header("warning"))

    @defer.inlineCallbacks
    def test_studyListsAtEveryLevel(self):
        """SOPClassesInStudy and ModalitiesInStudy are the study's at every
        level, as filters and in the answers; a computed attribute answered
        only where it is computed, a count filter (never matched) ignored
        with a Warning."""
        for path, count in (("/studies", 2), ("/series", 4), ("/instances", 8)):
            none = yield self.fetch(f"{path}?SOPClassesInStudy=9.9.9.9")
            self.assertEqual((path, none.json(), none.header("warning")), (path, [], None))
            found = (yield self.fetch(f"{path}?SOPClassesInStudy={CT_IMAGE}&includefield=SOPClassesInStudy")).json()
            self.assertEqual((path, len(found)), (path, count))
            for match in found:
                self.assertEqual((path, values(match, "00080062"), values(match, "00080061")),
                                 (path, [CT_IMAGE], ["CT"]))
        self.assertNotIn("00201209", (yield self.fetch("/studies?includefield=all")).json()[0])
        self.assertEqual(values((yield self.fetch("/series?includefield=all")).json()[0], "00201209"), [2])
        ignored = yield self.fetch("/studies?NumberOfStudyRelatedSeries=5")
        self.assertEqual((len(ignored.json()), ignored.header("warning")),
                         (2, '299 pacs "The NumberOfStudyRelatedSeries query parameter is not supported and has been '
                             'ignored."'))



class StudyModalityColumnSearchTests(DicomWebTestCase):
    """EnableComputedFields = 0 (Conquest's default): ModalitiesInStudy is
    the study row's StudyModality, which storing the objects filled."""

    ini = {"EnableComputedFields": "0"}

    @defer.inlineCallbacks
    def test_modalitiesInStudy(self):
        found = (yield self.fetch("/studies?ModalitiesInStudy=CT")).json()
        self.assertEqual(sorted((values(m, "00100020")[0], values(m, "00080061")[0]) for m in found),
                         [("PAT0000", "CT"), ("PAT0001", "CT")])
        self.assertEqual((yield self.fetch("/studies?ModalitiesInStudy=MR")).json(), [])

    @defer.inlineCallbacks
    def test_countsAnsweredAllTheSame(self):
        """The counts PS3.18 lists for /studies and /series answers (Tables
        10.6.3-3, 10.6.3-4) are computed from the index all the same:
        EnableComputedFields is a C-FIND switch."""
        [study] = (yield self.fetch(f"/studies?StudyInstanceUID={self.corpus[0].studyUID}")).json()
        self.assertEqual((values(study, "00201206"), values(study, "00201208")), ([2], [4]))
        series = (yield self.fetch(f"/studies/{self.corpus[0].studyUID}/series")).json()
        self.assertEqual([values(match, "00201209") for match in series], [[2], [2]])
        found = yield self.fetch("/studies?NumberOfStudyRelatedSeries=5")
        self.assertEqual(len(found.json()), 2)
        self.assertIn("NumberOfStudyRelatedSeries query parameter is not supported", found.header("warning"))

    @defer.inlineCallbacks
    def test_sopClassesInStudyNotKept(self):
        """Without computed fields nothing holds SOPClassesInStudy: a filter
        of it is ignored with a Warning, the answers leave it out."""
        found = yield self.fetch("/series?SOPClassesInStudy=9.9.9.9&includefield=SOPClassesInStudy")
        self.assertEqual(len(found.json()), 4)
        self.assertEqual(found.header("warning"), '299 pacs "The SOPClassesInStudy query parameter is not supported '
                                                  'and has been ignored."')
        self.assertNotIn("00080062", found.json()[0])

class ConvertedSearchTests(DicomWebTestCase):
    """QueryConverter0 and QueryResultConverter0 apply to QIDO-RS as to C-FIND."""

    ini = {"QueryConverter0": 'ifequal "%V0010,0020", "NOBODY"; reject; ifequal "%V0010,0020", "GONE"; destroy; '
                              'ifequal "%V0010,0020", "FIRST"; set 0010,0020 to "PAT0000"',
           "QueryResultConverter0": 'ifequal "%V0010,0020", "PAT0001"; destroy'}

    @defer.inlineCallbacks
    def test_linesApply(self):
        shown = yield self.fetch("/studies")
        self.assertEqual([values(m, "00100020") for m in shown.json()], [["PAT0000"]])
        paged = yield self.fetch("/studies?limit=1")  # the study left out is not one "more"
        self.assertEqual((len(paged.json()), paged.header("warning")), (1, None))
        changed = yield self.fetch("/studies?PatientID=FIRST")
        self.assertEqual([values(m, "00100020") for m in changed.json()], [["PAT0000"]])
        destroyed = yield self.fetch("/studies?PatientID=GONE")
        self.assertEqual((destroyed.code, destroyed.json()), (200, []))
        rejected = yield self.fetch("/studies?PatientID=NOBODY")
        self.assertEqual(rejected.code, 403)
        self.assertIn(b"rejected by QueryConverter0", rejected.body)

    @defer.inlineCallbacks
    def test_quotesStayLiteral(self):
        """A filter ``""`` read back from the converter's identifier is
        still matched as written when the search did not ask for Empty
        Value Matching."""
        study = "1.2.826.0.1.3680043.8.498.60"
        dataset = makeDataset('""', "Quotes^ID", study, f"{study}.1", f"{study}.1.1", 1, 1)
        path = os.path.join(self.running.workdir, "quotes.dcm")
        dataset.save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        found = yield self.fetch("/studies?PatientID=%22%22")
        self.assertEqual([values(m, "00100010") for m in found.json()], [[{"Alphabetic": "Quotes^ID"}]])


class RemoteMatchesTests(unittest.TestCase):

    def test_resultConverterAppliesToRemoteMatches(self):
        """The virtual servers' matches go through QueryResultConverter0 as ours do."""
        remote = []
        for uid, patient in (("1.2.1", "SHOWN"), ("1.2.2", "HIDDEN")):
            match = Dataset()
            match.StudyInstanceUID, match.PatientID = uid, patient
            remote.append(match)
        total, body = _withRemote([], remote, "STUDY", "http://pacs/dicom-web", "PACS", 0, None,
                                  MetadataForm(DICOM_JSON), keep=lambda dataset: dataset.PatientID != "HIDDEN")
        self.assertEqual(total, 1)
        self.assertEqual([values(m, "00100020") for m in json.loads(body)], [["SHOWN"]])
