"""The virtual server's pure parts (pacscore.dicom.virtual): dicom.ini keys,
merging matches, the C-MOVE requests that fetch missing objects, and, between
two archives, how the fetched objects are stored.  The network side is
tested against real archives in tests/interop/test_virtual.py."""

import os
from collections import Counter
from types import SimpleNamespace

import pydicom

from sqlalchemy.exc import OperationalError

from pydicom.dataset import Dataset
from twisted.internet import defer, threads
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.acrnema import Node
from pacscore.config.ini import DicomIni
from pacscore.dicom import commands
from pacscore.dicom.client import NodeUnreachable
from pacscore.dicom import virtual
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.dicom.ownretrieves import OwnRetrieves
from pacscore.dicom.protocol import AssociationLost
from pacscore.dicom.models import (
    PATIENT_ROOT_FIND, PATIENT_ROOT_GET, PATIENT_ROOT_MOVE, STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE)
from pacscore.db.errors import IndexTimeout
from pacscore.dicom.virtual import (
    SERVER_MASK, Fetched, KodakPatientIDs, RemoteImage, VirtualServer, VirtualServers, _rootClasses, serversFrom,
    takeServerMask)
from pacscore.export.actions import Removal
from pacscore.testing.corpus import generateCorpus
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.dicom.test_ownretrieves import CONVERTERS

EXPLICIT = "1.2.840.10008.1.2.1"


def study(uid, patientID="P1", retrieveAE=None):
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = patientID
    ds.StudyInstanceUID = uid
    if retrieveAE:
        ds.RetrieveAETitle = retrieveAE
    return ds


class VirtualServerTests(unittest.TestCase):

    def servers(self, *servers):
        return VirtualServers(servers, None, "FRONT", Clock(), None, None, None)

    def test_serversFromDicomIni(self):
        ini = DicomIni.fromString("VirtualServerFor0 = PACS1\nVirtualServerFor2 = PACS2,FIXKODAK\n"
                                  "VirtualPerSeries2 = 1000\nVirtualServerFor1 =\nVirtualServerFor3 = PACS3,fixkodak\n"
                                  "VirtualServerFor4 = PACS4,OTHER\n")
        with capturedLogs() as events:
            servers = serversFrom(ini, VirtualServers.log)
        self.assertEqual(servers, [VirtualServer("PACS1", 0, False, 0), VirtualServer("PACS2", 1000, True, 2),
                                   VirtualServer("PACS3", 0, True, 3), VirtualServer("PACS4", 0, False, 4)])
        chosen = self.servers(*servers).chosen
        self.assertEqual([s.ae for s in chosen(None)], ["PACS1", "PACS2", "PACS3", "PACS4"])
        self.assertEqual([s.ae for s in chosen(1 << 2)], ["PACS2"])
        self.assertEqual([s.ae for s in chosen(0b11001)], ["PACS1", "PACS3", "PACS4"])
        self.assertEqual(chosen(0), [])
        self.assertEqual([formatEvent(e) for e in events],
                         ["VirtualServerFor4 = PACS4,OTHER: OTHER is not supported, ignored"])
        self.assertEqual(serversFrom(DicomIni.fromString(""), VirtualServers.log), [])

    def test_aRequestNeverGoesBackToItsSender(self):
        chosen = self.servers(VirtualServer("BACK", number=0), VirtualServer("OTHER", number=1)).chosen
        self.assertEqual([s.ae for s in chosen(None, "BACK")], ["OTHER"])
        self.assertEqual([s.ae for s in chosen(None, "BACK ")], ["OTHER"])
        self.assertEqual([s.ae for s in chosen(None, "back")], ["OTHER"])  # acrnema.map ignores case
        self.assertEqual([s.ae for s in chosen(1, "BACK")], [])
        self.assertEqual([s.ae for s in chosen(None, "VIEWER")], ["BACK", "OTHER"])

    def test_aCancelledFindCancelsTheArchivesAtOnce(self):
        """A C-FIND cancelled (our requestor's C-CANCEL) while the archives
        answer: each is sent a C-CANCEL, their associations are released
        without waiting for them, and nothing is logged as a failure."""
        busy = BusyArchive()
        servers = self.servers(VirtualServer("SLOW", number=0), VirtualServer("OTHER", number=1))
        asked = []

        async def associate(server, contexts):
            asked.append(server.ae)
            return busy
        servers._associate = associate
        with capturedLogs() as events:
            finding = defer.ensureDeferred(servers.find(STUDY_ROOT_FIND, study("")))
            self.assertNoResult(finding)
            finding.cancel()
            self.failureResultOf(finding, defer.CancelledError)
        self.assertEqual((asked, busy.cancelled, busy.releasing), (["SLOW", "OTHER"], [STUDY_ROOT_FIND] * 2, 2))
        self.assertEqual(events, [])

    def test_theArchivesAreAskedAtOnce(self):
        """A C-FIND goes to every archive before any answers (a slow one
        does not hold the others' questions back); the matches come in
        the archives' order, whichever answers first."""
        servers = self.servers(VirtualServer("SLOW", number=0), VirtualServer("FAST", number=1))
        answers = {"SLOW": defer.Deferred(), "FAST": defer.Deferred()}
        asked = []

        class Archive:
            def __init__(self, ae):
                self.ae = ae

            def findMatches(self, sopClass, identifier, inThread, timeout=None):
                asked.append(self.ae)
                return answers[self.ae]

            def release(self):
                return defer.succeed(None)

        async def associate(server, contexts):
            return Archive(server.ae)
        servers._associate = associate
        finding = defer.ensureDeferred(servers.find(STUDY_ROOT_FIND, study("")))
        self.assertEqual(asked, ["SLOW", "FAST"])
        answers["FAST"].callback((0, [study("2")]))
        self.assertNoResult(finding)
        answers["SLOW"].callback((0, [study("1")]))
        self.assertEqual([ds.StudyInstanceUID for ds in self.successResultOf(finding)], ["1", "2"])

    def test_anUnreachableArchiveIsHeldOff(self):
        """An archive that could not be reached is held off for
        FailHoldOff: the requests of that time leave it out at once,
        logged, and go to the others; it is asked again after.  One that
        refused a request (a failure status) is not held off."""
        servers = VirtualServers([VirtualServer("DOWN", number=0), VirtualServer("UP", number=1)], None, "FRONT",
                                 Clock(), None, None, None, failHoldOff=60)
        asked = []

        async def associate(server, contexts):
            asked.append(server.ae)
            if server.ae == "DOWN":
                raise NodeUnreachable(Node("DOWN", "127.0.0.1", "104"),
                                      "DOWN did not answer the A-ASSOCIATE-RQ within 10 s")
            return Answering(0xA700 if len(asked) == 2 else 0)
        servers._associate = associate
        with capturedLogs() as events:
            self.assertEqual(self.successResultOf(defer.ensureDeferred(servers.find(STUDY_ROOT_FIND, study("")))),
                             [])
            servers.reactor.advance(59)
            self.assertEqual(len(self.successResultOf(defer.ensureDeferred(
                servers.find(STUDY_ROOT_FIND, study(""))))), 1)
            self.assertEqual(self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"), mask=1))),
                             Fetched([], []))
            servers.reactor.advance(1)
            self.successResultOf(defer.ensureDeferred(servers.find(STUDY_ROOT_FIND, study(""))))
        self.assertEqual(asked, ["DOWN", "UP", "UP", "DOWN", "UP"])
        self.assertEqual([formatEvent(e) for e in events][:4], [
            "virtual server DOWN: C-FIND failed, its matches are left out: cannot associate with DOWN at "
            "127.0.0.1:104: DOWN did not answer the A-ASSOCIATE-RQ within 10 s; holding it off for 60 s (FailHoldOff)",
            "virtual server UP: C-FIND failed, its matches are left out: C-FIND ended with status 0xA700",
            "virtual server DOWN: left out of the C-FIND, held off for another 1 s after it failed (FailHoldOff)",
            "virtual server DOWN: left out of the retrieve, held off for another 1 s after it failed (FailHoldOff)",
        ])

    def test_onlyConnectingAndTheFindsWaitVirtualServerTimeout(self):
        """Connecting, the A-ASSOCIATE-AC and each C-FIND response are
        waited for VirtualServerTimeout; the C-MOVE's pending responses,
        one per object sent (a 52 MB object on a slow link takes more than
        10 s), TCPIPTimeOut, the association's DIMSE timeout."""
        associated, timeouts = [], []

        class Archive(Answering):
            def findMatches(self, sopClass, identifier, inThread, timeout=None):
                timeouts.append(timeout)
                return super().findMatches(sopClass, identifier, inThread)

        async def associateNode(reactor, node, callingAE, contexts, connectTimeout, dimseTimeout, *args):
            associated.append((connectTimeout, dimseTimeout))
            return Archive(0)
        self.patch(virtual, "associateNode", associateNode)
        servers = VirtualServers([VirtualServer("B")], SimpleNamespace(lookup=lambda ae: object()), "FRONT", Clock(),
                                 None, None, None, timeout=10, dimseTimeout=300)
        self.assertEqual(len(self.successResultOf(defer.ensureDeferred(servers.find(STUDY_ROOT_FIND, study(""))))), 1)
        self.assertEqual((associated, timeouts), ([(10, 300)], [10]))

    def connecting(self, connect):
        """Virtual servers A and B (a real ``associateNode``) whose
        connections go to ``connect(factory)``, the endpoints' ``connect``."""
        node = SimpleNamespace(ae="A", host="127.0.0.1", port=104, tls=None)
        return VirtualServers([VirtualServer("A", number=0), VirtualServer("B", number=1)],
                              SimpleNamespace(lookup=lambda ae: node), "FRONT",
                              Clock(), None, None, None, endpointFor=lambda host, port: SimpleNamespace(connect=connect))

    def test_aCancelWhileAssociatingHoldsNothingOff(self):
        """A request cancelled (its requestor's C-CANCEL, or its association
        ending) while the archives have not accepted the association yet
        is cancelled, and no archive is held off nor logged as failed: the
        next request asks them again."""
        connections = []

        def connect(factory):
            connections.append(defer.Deferred())
            return connections[-1]
        servers = self.connecting(connect)
        with capturedLogs() as events:
            for request in (servers.find(STUDY_ROOT_FIND, study("")), servers.fetch(STUDY_ROOT_MOVE, study("1"))):
                asking = defer.ensureDeferred(request)
                asking.cancel()
                self.failureResultOf(asking, defer.CancelledError)
        self.assertEqual((len(connections), servers.heldOff.remaining("A"), servers.heldOff.remaining("B")), (4, 0, 0))
        self.assertEqual([formatEvent(e) for e in events], [])

    def test_aFailureWithoutAMessageIsNamed(self):
        """The log line of an archive that failed names the error even when
        it says nothing (str() empty)."""
        servers = self.connecting(lambda factory: defer.fail(OSError()))
        servers.servers = servers.servers[:1]
        with capturedLogs() as events:
            self.assertEqual(self.successResultOf(defer.ensureDeferred(servers.find(STUDY_ROOT_FIND, study("")))), [])
        self.assertEqual([formatEvent(e) for e in events], [
            "virtual server A: C-FIND failed, its matches are left out: cannot associate with A at 127.0.0.1:104: "
            "OSError(); holding it off for 60 s (FailHoldOff)"])

    def test_aCancelledFetchCancelsTheMoveAndReleasesWhatArrived(self):
        """CacheVirtualData = 0, a fetch cancelled while an archive's C-MOVE
        runs (its pending responses heard with the objects being fetched):
        the C-MOVE is C-CANCELled, the association released without waiting,
        and the objects that arrived are deleted."""
        archive = FetchingArchive()
        busy = BusyArchive()
        images = [RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(3)]
        servers = VirtualServers([VirtualServer("B")], None, "FRONT", Clock(), archive, archive.query, archive,
                                 cache=False,
                                 ownRetrieves=archive.own)
        pending = []

        def move(sopClass, identifier, destination, onPending=None, messageID=None):
            archive.storedBy(messageID, identifier.SOPInstanceUID[:2])
            onPending({})
            return defer.Deferred()
        busy.move = move

        async def remoteImages(protocol, findClass, level, keys):
            return images

        async def associate(server, contexts):
            return busy
        servers._remoteImages, servers._associate = remoteImages, associate
        fetching = defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"), onPending=pending.append))
        self.assertEqual(pending, [3])
        fetching.cancel()
        self.failureResultOf(fetching, defer.CancelledError)
        self.assertEqual((busy.cancelled, busy.releasing), ([STUDY_ROOT_MOVE], 1))
        self.assertEqual(archive.removed, ["1.1.0", "1.1.1"])

    def test_kodakPatientIDsGoOutAndComeBackTranslated(self):
        class Association:
            def __init__(self):
                self.sent, self.released = [], False

            def findMatches(self, sopClass, identifier, inThread, adjust, timeout=None):
                self.sent.append(identifier)
                return defer.succeed((0, [adjust(study("1.1", patientID)) for patientID in ("01234567", "PAT9")]))

            def move(self, sopClass, identifier, destination, onPending=None, messageID=None):
                self.sent.append(identifier)
                self.messageID = messageID
                return defer.succeed(({}, None))

            def release(self):
                self.released = True

        association = Association()
        kodak = KodakPatientIDs(association)
        request = study("1.1", "1234567")
        status, matches = self.successResultOf(kodak.findMatches(STUDY_ROOT_FIND, request, None))
        self.assertEqual(status, 0)
        kodak.move(PATIENT_ROOT_MOVE, request, "FRONT", None, 0x8001)
        kodak.release()
        self.assertEqual([ds.PatientID for ds in association.sent], ["01234567", "01234567"])
        self.assertEqual(association.messageID, 0x8001)  # an own retrieve's (OwnRetrieves)
        self.assertEqual(request.PatientID, "1234567")  # the caller's identifier is left alone
        self.assertEqual([ds.PatientID for ds in matches], ["1234567", "PAT9"])
        self.assertTrue(association.released)

    def test_takeServerMask(self):
        request = study("1.1")
        self.assertIsNone(takeServerMask(request))
        self.assertEqual(request, study("1.1"))
        request.add_new(SERVER_MASK, "IS", "5")
        self.assertEqual(takeServerMask(request), 5)
        self.assertEqual(request, study("1.1"))
        request.add_new(SERVER_MASK, "LO", "x")
        self.assertIsNone(takeServerMask(request))
        self.assertEqual(request, study("1.1"))

    def test_rootClasses(self):
        self.assertEqual(_rootClasses(STUDY_ROOT_GET), (STUDY_ROOT_FIND, STUDY_ROOT_MOVE))
        self.assertEqual(_rootClasses(STUDY_ROOT_FIND), (STUDY_ROOT_FIND, STUDY_ROOT_MOVE))
        self.assertEqual(_rootClasses(PATIENT_ROOT_GET), (PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE))

    def test_mergeKeepsOursFirstAndOneMatchPerEntity(self):
        local = [encodeDataset(study("1.1", retrieveAE="FRONT"), EXPLICIT)]
        remote = [study("1.1", retrieveAE="BACK"), study("1.2", retrieveAE="BACK"), study("1.2"), study("1.3")]
        merged = self.servers().merge(local, remote, "STUDY", EXPLICIT, keep=lambda ds: ds.StudyInstanceUID != "1.3")
        found = [decodeDataset(match, EXPLICIT) for match in merged]
        self.assertEqual([(ds.StudyInstanceUID, ds.RetrieveAETitle) for ds in found],
                         [("1.1", "FRONT"), ("1.2", "FRONT")])

    def test_mergeGivesOurMatchTheOthersComputedKeys(self):
        """Our match of a study another archive matched too keeps its
        values but takes the larger counts and the union of the lists;
        empty or absent ones change nothing."""
        ours = study("1.1", retrieveAE="FRONT")
        ours.ModalitiesInStudy = "CT"
        ours.NumberOfStudyRelatedSeries = "1"
        ours.NumberOfStudyRelatedInstances = "5"
        ours.NumberOfPatientRelatedStudies = None
        theirs = study("1.1", "OTHER", retrieveAE="BACK")
        theirs.ModalitiesInStudy = ["MR", "CT"]
        theirs.NumberOfStudyRelatedSeries = "3"
        theirs.NumberOfStudyRelatedInstances = "4"
        theirs.NumberOfPatientRelatedStudies = None
        theirs.SOPClassesInStudy = "1.2.840.10008.5.1.4.1.1.4"
        [merged] = self.servers().merge([encodeDataset(ours, EXPLICIT)], [theirs], "STUDY", EXPLICIT)
        found = decodeDataset(merged, EXPLICIT)
        self.assertEqual((found.PatientID, found.RetrieveAETitle, list(found.ModalitiesInStudy),
                          found.NumberOfStudyRelatedSeries, found.NumberOfStudyRelatedInstances,
                          found.NumberOfPatientRelatedStudies, "SOPClassesInStudy" in found),
                         ("P1", "FRONT", ["CT", "MR"], 3, 5, None, False))
        unchanged = encodeDataset(ours, EXPLICIT)
        self.assertIs(self.servers().merge([unchanged], [study("1.1")], "STUDY", EXPLICIT)[0], unchanged)

    def test_movesByListsOfUIDs(self):
        missing = [RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(70)] + [RemoteImage("P1", "1", "1.2",
                                                                                                 "1.2.1")]
        moves = list(self.servers()._moves(VirtualServer("B"), STUDY_ROOT_FIND, missing, {("P1", "1", "1.1")}))
        self.assertEqual([(m.QueryRetrieveLevel, m.SeriesInstanceUID, m["SOPInstanceUID"].VM) for m in moves],
                         [("IMAGE", "1.1", 64), ("IMAGE", "1.1", 6), ("IMAGE", "1.2", 1)])
        self.assertNotIn("PatientID", moves[0])
        [patientRoot] = self.servers()._moves(VirtualServer("B"), PATIENT_ROOT_FIND, missing[-1:], set())
        self.assertEqual((patientRoot.PatientID, patientRoot.StudyInstanceUID, patientRoot.SOPInstanceUID),
                         ("P1", "1", "1.2.1"))

    def test_movesWholeSeriesPastVirtualPerSeries(self):
        """Per series: one more than VirtualPerSeriesN of whose objects are
        missing, and that may be moved whole, is moved at SERIES level."""
        missing = [RemoteImage("P1", "1", "1.1", "1.1.1"), RemoteImage("P1", "1", "1.1", "1.1.2"),
                   RemoteImage("P1", "1", "1.2", "1.2.1")]
        whole = {("P1", "1", "1.1"), ("P1", "1", "1.2")}
        moves = list(self.servers()._moves(VirtualServer("B", 1), STUDY_ROOT_FIND, missing, whole))
        self.assertEqual([(m.QueryRetrieveLevel, m.SeriesInstanceUID, "SOPInstanceUID" in m) for m in moves],
                         [("SERIES", "1.1", False), ("IMAGE", "1.2", True)])
        moves = list(self.servers()._moves(VirtualServer("B", 2), STUDY_ROOT_FIND, missing, whole))
        self.assertEqual([m.QueryRetrieveLevel for m in moves], ["IMAGE", "IMAGE"])
        partlyHere = whole - {("P1", "1", "1.1")}
        moves = list(self.servers()._moves(VirtualServer("B", 1), STUDY_ROOT_FIND, missing, partlyHere))
        self.assertEqual([m.QueryRetrieveLevel for m in moves], ["IMAGE", "IMAGE"])

    def test_aSeriesPartlyHereIsNotMovedWhole(self):
        """VirtualPerSeries0 = 1, a STUDY retrieve of two series of 3 the
        archive holds, one image of the first here (corrected locally): the
        first series is moved by the UIDs of its 2 missing objects (a
        SERIES C-MOVE would replace the one here with the archive's copy),
        the second, none of it here, whole."""
        index = FetchingArchive()
        index.here = ["1.1.0"]
        servers = VirtualServers([VirtualServer("B", 1)], None, "FRONT", Clock(), index, index.query, index)
        images = [RemoteImage("P1", "1", series, f"{series}.{n}") for series in ("1.1", "1.2") for n in range(3)]
        moved = movedBy(servers, images, index)
        fetched = self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"))))
        self.assertEqual(moved, [("IMAGE", "1.1", ["1.1.1", "1.1.2"]), ("SERIES", "1.2", None)])
        uids = ("1.1.1", "1.1.2", "1.2.0", "1.2.1", "1.2.2")
        self.assertEqual(fetched, Fetched(list(uids), [], uids))

    def answering(self, answers):
        """Virtual servers whose C-FINDs get ``answers(request)``; the requests asked."""
        servers, asked = self.servers(VirtualServer("B")), []

        async def find(protocol, sopClass, request):
            asked.append((sopClass, request))
            return answers(request)
        servers._find = find
        return servers, asked

    def test_remoteImagesAreAskedLevelByLevel(self):
        def answers(request):
            level = request.QueryRetrieveLevel
            if level == "STUDY":
                return [study("1")]
            if level == "SERIES":
                return [match(SeriesInstanceUID=uid) for uid in ("1.1", "1.2")]
            return [match(SOPInstanceUID=f"{request.SeriesInstanceUID}.{n}")
                    for n in range(1, 2 if request.SeriesInstanceUID == "1.1" else 3)]
        servers, asked = self.answering(answers)
        images = self.successResultOf(defer.ensureDeferred(servers._remoteImages(
            None, STUDY_ROOT_FIND, "STUDY", {"StudyInstanceUID": "1", "PatientID": "P1"})))
        self.assertEqual([image.sopInstanceUID for image in images], ["1.1.1", "1.2.1", "1.2.2"])
        self.assertEqual(images[0], RemoteImage("P1", "1", "1.1", "1.1.1"))
        self.assertEqual([(sopClass, r.QueryRetrieveLevel, r.StudyInstanceUID, r.get("SeriesInstanceUID"),
                           "PatientID" in r) for sopClass, r in asked],
                         [(STUDY_ROOT_FIND, "STUDY", "1", None, True), (STUDY_ROOT_FIND, "SERIES", "1", "", False),
                          (STUDY_ROOT_FIND, "IMAGE", "1", "1.1", False), (STUDY_ROOT_FIND, "IMAGE", "1", "1.2", False)])

    def test_remoteImagesNarrowedByTheKeysAboveTheLevel(self):
        """A Study Root SERIES retrieve named by Patient ID alone asks the
        patient's studies first, a Patient Root IMAGE retrieve named by
        Patient ID and Study UID the study's series: not every series or
        object of the archive."""
        servers, asked = self.answering(lambda request: [])
        self.successResultOf(defer.ensureDeferred(servers._remoteImages(
            None, STUDY_ROOT_FIND, "SERIES", {"PatientID": "P1", "StudyInstanceUID": "", "SeriesInstanceUID": ""})))
        self.successResultOf(defer.ensureDeferred(servers._remoteImages(
            None, PATIENT_ROOT_FIND, "IMAGE", {"PatientID": "P1", "StudyInstanceUID": "1", "SeriesInstanceUID": "",
                                               "SOPInstanceUID": ""})))
        self.assertEqual([(sopClass, r.QueryRetrieveLevel, r.get("PatientID"), r.StudyInstanceUID)
                          for sopClass, r in asked],
                         [(STUDY_ROOT_FIND, "STUDY", "P1", ""), (PATIENT_ROOT_FIND, "SERIES", "P1", "1")])

    def test_fetchAsksWithTheRetrievesUIDList(self):
        servers, asked = self.answering(lambda request: [])
        identifier = study("1")
        identifier.QueryRetrieveLevel = "IMAGE"
        identifier.SeriesInstanceUID = "1.1"
        identifier.SOPInstanceUID = ["1.1.1", "1.1.2"]
        images = self.successResultOf(defer.ensureDeferred(servers._remoteImages(
            None, PATIENT_ROOT_FIND, "IMAGE", {"PatientID": "P1", "StudyInstanceUID": "1",
                                               "SeriesInstanceUID": "1.1", "SOPInstanceUID": ["1.1.1", "1.1.2"]})))
        self.assertEqual(images, [])
        [(_, request)] = asked
        self.assertEqual((request.QueryRetrieveLevel, request.PatientID, request.StudyInstanceUID,
                          request.SeriesInstanceUID, list(request.SOPInstanceUID)),
                         ("IMAGE", "P1", "1", "1.1", ["1.1.1", "1.1.2"]))

    def test_theArchivesAreAskedAtOnceForARetrieve(self):
        """A retrieve asks every archive which objects it holds before any
        answers (a slow one does not hold the others back); an object two
        of them list is moved here once, from the first to list it."""
        index = FetchingArchive()
        servers = VirtualServers([VirtualServer("A", number=0), VirtualServer("B", number=1)], None, "FRONT",
                                 Clock(), index, index.query, index)
        listing = {"A": defer.Deferred(), "B": defer.Deferred()}
        moved = []

        def answer(ae, uids, messageID):
            index.here += uids
            return defer.succeed(({commands.STATUS: 0}, None))
        answeredBy(servers, listing, moved, answer)
        fetching = defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1")))
        images = [RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(4)]
        listing["B"].callback(images[2:])
        listing["A"].callback(images[1:3])
        self.assertEqual(self.successResultOf(fetching), Fetched(["1.1.1", "1.1.2", "1.1.3"], [],
                                                                 ("1.1.2", "1.1.3", "1.1.1")))
        self.assertEqual(moved, [("B", ["1.1.2", "1.1.3"]), ("A", ["1.1.1"])])

    def test_anObjectTwoArchivesListIsHeldOnceWithoutCaching(self):
        """CacheVirtualData = 0, an object two archives list: the first
        lists it and moves it here before the second's listing comes, which
        finds it here, held by this same retrieve: it is held once (not
        taken for one another retrieve holds), and release deletes it."""
        index = FetchingArchive()
        servers = VirtualServers([VirtualServer("A", number=0), VirtualServer("B", number=1)], None, "FRONT",
                                 Clock(), index, index.query, index, cache=False, ownRetrieves=index.own)
        listing = {"A": defer.Deferred(), "B": defer.Deferred()}
        moved = []

        def answer(ae, uids, messageID):
            index.storedBy(messageID, uids)
            return defer.succeed(({commands.STATUS: 0}, None))
        answeredBy(servers, listing, moved, answer)
        fetching = defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1")))
        image = RemoteImage("P1", "1", "1.1", "1.1.1")
        listing["A"].callback([image])
        listing["B"].callback([image])
        fetched = self.successResultOf(fetching)
        self.assertEqual((fetched, moved), (Fetched(["1.1.1"], [], ("1.1.1",)), [("A", ["1.1.1"])]))
        with capturedLogs() as events:
            self.successResultOf(defer.ensureDeferred(servers.release(fetched.held)))
        self.assertEqual((index.removed, dict(servers._holders)), (["1.1.1"], {}))
        self.assertEqual([formatEvent(e) for e in events], [
            "1 object(s) fetched from virtual servers deleted (CacheVirtualData = 0)"])

    def test_whatOneFailedToSendIsAskedOfTheOthersThatListedIt(self):
        """The objects the archive that listed them first failed to send
        (a failure status, a timeout, an abort) are asked, after, of the
        other archives that listed them, in turn (not of one whose own
        C-MOVE failed); those none sent are lost."""
        index = FetchingArchive()
        servers = VirtualServers([VirtualServer(ae, number=n) for n, ae in enumerate("ABC")], None, "FRONT",
                                 Clock(), index, index.query, index)
        listing = {ae: defer.Deferred() for ae in "ABC"}
        moved = []

        def answer(ae, uids, messageID):
            if ae == "A":
                index.here += uids[:1]
                return defer.succeed(({commands.STATUS: 0xC000, commands.FAILED_SUBOPERATIONS: 3}, None))
            if ae == "B":
                return defer.fail(AssociationLost("B aborted the association"))
            index.here += uids
            return defer.succeed(({commands.STATUS: 0}, None))
        answeredBy(servers, listing, moved, answer)
        images = [RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(5)]
        uids = [image.sopInstanceUID for image in images]
        with capturedLogs() as events:
            fetching = defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1")))
            listing["A"].callback(images[:4])
            listing["B"].callback(images[1:])
            listing["C"].callback(images[2:3])
            self.assertEqual(self.successResultOf(fetching), Fetched(["1.1.0", "1.1.2"], ["1.1.1", "1.1.3", "1.1.4"],
                                                                     tuple(uids)))
        self.assertEqual(moved, [("A", uids[:4]), ("B", uids[4:]), ("C", uids[2:3])])
        self.assertEqual([formatEvent(e) for e in events], [
            "virtual server A: 1 of 4 object(s) fetched, the others are left out of the retrieve unless another "
            "archive that listed them sends them: C-MOVE to FRONT ended with status 0xC000 (3 sub-operations failed)",
            "virtual server B: 0 of 1 object(s) fetched, the others are left out of the retrieve unless another "
            "archive that listed them sends them: B aborted the association",
            "virtual server C: 1 object(s) fetched"])

    def test_failedMoveReleasesWhatArrivedAndListsTheRest(self):
        """CacheVirtualData = 0, 70 objects to fetch (C-MOVEs of 64 and 6
        UIDs), the second C-MOVE failing after 3 of its objects came: the
        67 here are fetched (``release`` deletes them), the 3 others lost."""
        archive = FetchingArchive()
        servers = VirtualServers([VirtualServer("B")], None, "FRONT", Clock(), archive, archive.query, archive,
                                 cache=False,
                                 ownRetrieves=archive.own)
        images = [RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(70)]

        async def remoteImages(protocol, findClass, level, keys):
            return images

        async def associate(server, contexts):
            return archive
        servers._remoteImages, servers._associate = remoteImages, associate
        with capturedLogs() as events:
            fetched = self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"), mask=1)))
            self.successResultOf(defer.ensureDeferred(servers.release(fetched.arrived)))
        uids = [image.sopInstanceUID for image in images]
        self.assertEqual(fetched, Fetched(uids[:67], uids[67:], tuple(uids)))
        self.assertEqual(archive.removed, uids[:67])
        self.assertEqual([formatEvent(e) for e in events], [
            "virtual server B: 67 of 70 object(s) fetched, the others are left out of the retrieve unless another "
            "archive that listed them sends them: C-MOVE to FRONT ended with status 0xA801 (3 sub-operations failed)",
            "67 object(s) fetched from virtual servers deleted (CacheVirtualData = 0)"])


    def test_aRetrieveOfSomeObjectsOfASeriesMovesThoseOnly(self):
        """VirtualPerSeries0 = 1, CacheVirtualData = 0, an IMAGE retrieve
        of 2 objects of a series of 3, none here: they are moved by their
        UIDs (a SERIES C-MOVE would bring the third too, and leave it here
        for good), and released."""
        index = FetchingArchive()
        servers = VirtualServers([VirtualServer("B", 1)], None, "FRONT", Clock(), index, index.query, index,
                                 cache=False,
                                 ownRetrieves=index.own)
        images = [RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(2)]
        moved = movedBy(servers, images, index)
        identifier = study("1")
        identifier.QueryRetrieveLevel = "IMAGE"
        identifier.SeriesInstanceUID = "1.1"
        identifier.SOPInstanceUID = ["1.1.0", "1.1.1"]
        fetched = self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, identifier)))
        self.assertEqual(moved, [("IMAGE", "1.1", ["1.1.0", "1.1.1"])])
        self.successResultOf(defer.ensureDeferred(servers.release(fetched.arrived)))
        self.assertEqual(index.removed, ["1.1.0", "1.1.1"])

    def test_aHungIndexFailsTheFetchAfterSQLTimeOut(self):
        """The index not answering while a retrieve's requestor waits
        (which listed objects are here, which of those asked for arrived):
        the fetch fails with IndexTimeout once SQLTimeOut passed
        (``queryForPeer``), the other archives' fetches stopped, none held
        off nor logged as failed; it does not wait for as long as the
        database hangs (``runQuery``)."""
        for failing in range(2):
            index = FetchingArchive()
            answers = [defer.succeed([])] * failing + [defer.fail(IndexTimeout(15))]
            index.runQuery = lambda fn, uids: defer.Deferred()
            index.queryForPeer = lambda fn, uids: answers.pop(0)
            servers = VirtualServers([VirtualServer("A", number=0), VirtualServer("B", number=1)], None, "FRONT",
                                     Clock(), index, index.query, index, cache=False,
                                     ownRetrieves=index.own)
            listing = {"A": defer.succeed([RemoteImage("P1", "1", "1.1", "1.1.1")]), "B": defer.Deferred()}
            answeredBy(servers, listing, [], lambda ae, uids, messageID: defer.succeed(({commands.STATUS: 0}, None)))
            with capturedLogs() as events:
                fetching = defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1")))
                self.failureResultOf(fetching, IndexTimeout)
            self.assertEqual(events, [], failing)
            self.assertEqual((servers.heldOff.remaining("A"), servers.heldOff.remaining("B")), (0, 0))
            self.assertTrue(listing["B"].called)  # B's fetch was stopped (cancelled)

    def test_anObjectStoredAfterTheFetchLookedIsReleased(self):
        """CacheVirtualData = 0, an object whose C-STORE was still being
        stored when the fetch looked at what arrived (the archive's
        association ended with it): lost for the fetch, but held, and
        deleted by ``release`` with the others once it is here."""
        index = FetchingArchive()
        servers = VirtualServers([VirtualServer("B")], None, "FRONT", Clock(), index, index.query, index,
                                 cache=False,
                                 ownRetrieves=index.own)
        images = [RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(3)]
        moved = movedBy(servers, images, index)
        late = []
        index.queryForPeer = lambda fn, uids: FetchingArchive.runQuery(index, fn, [uid for uid in uids
                                                                                  if uid not in late])
        late.append("1.1.2")
        fetched = self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"))))
        self.assertEqual(len(moved), 1)
        self.assertEqual(fetched, Fetched(["1.1.0", "1.1.1"], ["1.1.2"], ("1.1.0", "1.1.1", "1.1.2")))
        self.successResultOf(defer.ensureDeferred(servers.release(fetched.held)))
        self.assertEqual(index.removed, ["1.1.0", "1.1.1", "1.1.2"])

    def test_whatArrivedIsReleasedWhenTheIndexFailsTheFetch(self):
        """CacheVirtualData = 0, the index failing (a database restarted)
        once the objects were moved here: the fetch fails, and the objects
        asked for are deleted all the same (not left here for good); the
        index failing again there, a warning says they stay."""
        for answering in (True, False):
            index = FetchingArchive()
            servers = VirtualServers([VirtualServer("B")], None, "FRONT", Clock(), index, index.query, index,
                                     cache=False,
                                     ownRetrieves=index.own)
            images = [RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(2)]
            movedBy(servers, images, index)
            answers = [defer.succeed([]), defer.fail(OperationalError("SELECT", {}, Exception("connection failed")))]
            index.queryForPeer = lambda fn, uids: answers.pop(0)
            if not answering:
                index.runQuery = lambda fn, uids: defer.fail(OperationalError("SELECT", {}, Exception("down")))
            with capturedLogs() as events:
                self.failureResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"))),
                                     OperationalError)
            self.assertEqual(index.removed, ["1.1.0", "1.1.1"] if answering else [])
            self.assertEqual([formatEvent(e) for e in events], [
                "2 object(s) fetched from virtual servers deleted (CacheVirtualData = 0)" if answering else
                "2 object(s) fetched from virtual servers are not deleted (CacheVirtualData = 0): the index "
                "database: down"])

    def test_anObjectAModalityStoredMeanwhileIsNotDeleted(self):
        """CacheVirtualData = 0, an archive lists 2 objects, its C-MOVE
        sends one and fails the other, which a modality stores here while
        the retrieve is under way: release deletes the one our C-MOVE
        stored, never the modality's (a line says it stays)."""
        index = FetchingArchive()
        servers = VirtualServers([VirtualServer("B")], None, "FRONT", Clock(), index, index.query, index,
                                 cache=False, ownRetrieves=index.own)

        def answer(ae, uids, messageID):
            index.storedBy(messageID, uids[:1])
            return defer.succeed(({commands.STATUS: 0xA702, commands.FAILED_SUBOPERATIONS: 1}, None))
        listing = {"B": defer.succeed([RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(2)])}
        answeredBy(servers, listing, [], answer)
        fetched = self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"))))
        self.assertEqual(fetched, Fetched(["1.1.0"], ["1.1.1"], ("1.1.0", "1.1.1")))
        index.here.append("1.1.1")  # a modality's C-STORE, not one of our C-MOVE's
        with capturedLogs() as events:
            self.successResultOf(defer.ensureDeferred(servers.release(fetched.held)))
        self.assertEqual(index.removed, ["1.1.0"])
        self.assertEqual([formatEvent(e) for e in events], [
            "1 object(s) asked of virtual servers not deleted (CacheVirtualData = 0): they were stored here by other "
            "means, not by their C-MOVEs",
            "1 object(s) fetched from virtual servers deleted (CacheVirtualData = 0)"])

    def test_anObjectOurCMoveStoresAsTheRetrieveIsReleasedIsDeleted(self):
        """CacheVirtualData = 0, the retrieve cancelled (C-CANCEL) while two
        C-STOREs of its C-MOVE are under way: the release runs once one is
        committed to the index but not yet over, the other not yet
        committed.  Neither is taken for a modality's: each is deleted as
        its store ends; one whose store failed is not looked for."""
        index = FetchingArchive()
        servers = VirtualServers([VirtualServer("B")], None, "FRONT", Clock(), index, index.query, index,
                                 cache=False, ownRetrieves=index.own)
        stores = []

        def answer(ae, uids, messageID):
            index.storedBy(messageID, uids[:1])
            stores.extend(index.storing(messageID, uids[1:]))
            return defer.succeed(({commands.STATUS: 0}, None))
        listing = {"B": defer.succeed([RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(4)])}
        answeredBy(servers, listing, [], answer)
        fetched = self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"))))
        index.here.remove("1.1.2")  # not committed yet
        with capturedLogs() as events:
            self.successResultOf(defer.ensureDeferred(servers.release(fetched.held)))
            self.assertEqual(index.removed, ["1.1.0"])
            stores[0](True)  # 1.1.1's store over
            index.here.append("1.1.2")
            stores[1](True)
            stores[2](False)  # 1.1.3's store failed
        self.assertEqual(index.removed, ["1.1.0", "1.1.1", "1.1.2"])
        self.assertEqual([formatEvent(e) for e in events],
                         ["1 object(s) fetched from virtual servers deleted (CacheVirtualData = 0)"] * 3)
        self.assertEqual((servers._holders, servers._brought, servers._arriving, servers._late),
                         (Counter(), set(), Counter(), set()))

    def test_anObjectAnotherStoreStoresAgainIsNotDeleted(self):
        """CacheVirtualData = 0, our C-MOVE brought 4 objects that a
        modality (its own association) and STOW-RS send again while the
        retrieve holds them: release deletes only the one whose other store
        failed; neither the one stored again (its copy acknowledged), nor the
        one whose other store is still under way, which stays once that store
        stored it; one of ours released while being stored is not deleted as
        its store ends when another store stored it, before the release or
        after."""
        index = FetchingArchive()
        servers = VirtualServers([VirtualServer("B")], None, "FRONT", Clock(), index, index.query, index,
                                 cache=False, ownRetrieves=index.own)
        movedBy(servers, [RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(4)], index)
        fetched = self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"))))
        modality = {commands.MOVE_ORIGINATOR_AE: "", commands.MOVE_ORIGINATOR_MESSAGE_ID: None}
        index.own.storing(modality, "1.1.0")(True)
        index.own.storing(None, "1.1.1")(True)  # STOW-RS
        underWay = index.own.storing(modality, "1.1.2")
        index.own.storing(modality, "1.1.3")(False)  # refused: 1.1.3 is still ours
        with capturedLogs() as events:
            self.successResultOf(defer.ensureDeferred(servers.release(fetched.held)))
            underWay(True)
        self.assertEqual(index.removed, ["1.1.3"])
        self.assertEqual([formatEvent(e) for e in events], [
            "2 object(s) asked of virtual servers not deleted (CacheVirtualData = 0): they were stored here by other "
            "means, not by their C-MOVEs",
            "1 object(s) fetched from virtual servers deleted (CacheVirtualData = 0)",
            "1 object(s) asked of virtual servers not deleted (CacheVirtualData = 0): they were stored here by other "
            "means, not by their C-MOVEs"])
        self.assertEqual((servers._holders, servers._brought, servers._others, servers._kept, servers._late),
                         (Counter(), set(), Counter(), set(), set()))
        servers._hold(["1.1.4", "1.1.5"])
        ours = index.storing(index.own.begin("B", servers._storing), ["1.1.4", "1.1.5"])
        index.own.storing(modality, "1.1.5")(True)  # before the release: 1.1.5 is the modality's
        self.successResultOf(defer.ensureDeferred(servers.release(["1.1.4", "1.1.5"])))
        after = index.own.storing(modality, "1.1.4")  # after it, while ours is still being stored
        for ended in ours:
            ended(True)
        after(True)
        self.assertEqual(index.removed, ["1.1.3"])
        self.assertEqual((servers._brought, servers._others, servers._late), (set(), Counter(), set()))

    def test_anObjectWhoseOtherStoreIsRefusedAfterTheReleaseIsDeleted(self):
        """CacheVirtualData = 0: an object our C-MOVE brought whose other
        store (a modality's) is still under way as the retrieve ends, then
        refused, is deleted as the release would have (it stayed for good,
        the release saying it was 'stored here by other means'); so is one
        of ours released while being stored that a modality's store refused
        after the release comes for, once both ended; one a second retrieve
        found here meanwhile is held by it, and deleted as it ends."""
        index = FetchingArchive()
        servers = VirtualServers([VirtualServer("B")], None, "FRONT", Clock(), index, index.query, index,
                                 cache=False, ownRetrieves=index.own)
        movedBy(servers, [RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(2)], index)
        fetched = self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"))))
        modality = {commands.MOVE_ORIGINATOR_AE: "", commands.MOVE_ORIGINATOR_MESSAGE_ID: None}
        underWay = index.own.storing(modality, "1.1.0")
        with capturedLogs() as events:
            self.successResultOf(defer.ensureDeferred(servers.release(fetched.held)))
            self.assertEqual(index.removed, ["1.1.1"])
            underWay(False)  # refused
        self.assertEqual(index.removed, ["1.1.1", "1.1.0"])
        self.assertEqual([formatEvent(e) for e in events], [
            "1 object(s) fetched from virtual servers deleted (CacheVirtualData = 0)"] * 2)
        servers._hold(["1.1.4"])
        ours = index.storing(index.own.begin("B", servers._storing), ["1.1.4"])
        self.successResultOf(defer.ensureDeferred(servers.release(["1.1.4"])))
        refused = index.own.storing(modality, "1.1.4")  # after the release, while ours is being stored
        for ended in ours:
            ended(True)
        self.assertNotIn("1.1.4", index.removed)  # the modality's store may still store it
        refused(False)
        self.assertEqual(index.removed, ["1.1.1", "1.1.0", "1.1.4"])
        movedBy(servers, [RemoteImage("P1", "2", "2.1", "2.1.0")], index)
        first = self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("2"))))
        refused = index.own.storing(modality, "2.1.0")
        self.successResultOf(defer.ensureDeferred(servers.release(first.held)))
        second = self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("2"))))
        self.assertEqual(second.held, ("2.1.0",))  # here, waiting on the modality's store: the second holds it
        refused(False)
        self.assertNotIn("2.1.0", index.removed)
        self.successResultOf(defer.ensureDeferred(servers.release(second.held)))
        self.assertEqual(index.removed, ["1.1.1", "1.1.0", "1.1.4", "2.1.0"])
        self.assertEqual((servers._holders, servers._brought, servers._others, servers._kept, servers._late),
                         (Counter(), set(), Counter(), set(), set()))

    def test_anObjectAnotherRetrieveSendsIsNotDeleted(self):
        """CacheVirtualData = 0, two retrieves of one object under way: the
        first fetches it, the second finds it here, fetched by the first,
        and holds it too; the first over, it is kept (a line says so), and
        deleted once the second is over.  An object here that no retrieve
        under way fetched is not held."""
        index = FetchingArchive()
        servers = VirtualServers([VirtualServer("B")], None, "FRONT", Clock(), index, index.query, index,
                                 cache=False,
                                 ownRetrieves=index.own)
        moved = movedBy(servers, [RemoteImage("P1", "1", "1.1", "1.1.1"), RemoteImage("P1", "1", "1.1", "1.1.2")],
                        index)
        index.here.append("1.1.2")  # here before
        first, second = [self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"))))
                         for _ in range(2)]
        self.assertEqual((len(moved), first.held, second.held), (1, ("1.1.1",), ("1.1.1",)))
        with capturedLogs() as events:
            self.successResultOf(defer.ensureDeferred(servers.release(first.held)))
            self.assertEqual(index.removed, [])
            self.successResultOf(defer.ensureDeferred(servers.release(second.held)))
        self.assertEqual(index.removed, ["1.1.1"])
        self.assertEqual([formatEvent(e) for e in events], [
            "1 object(s) fetched from virtual servers kept while another retrieve sends them (CacheVirtualData = 0): "
            "it deletes them",
            "1 object(s) fetched from virtual servers deleted (CacheVirtualData = 0)"])
        third = self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"))))
        self.assertEqual(third.held, ())  # 1.1.1 is still in the stand-in index, but no retrieve holds it


class FetchedObjectTests(unittest.TestCase):
    """FRONT (an import converter, and export converters forwarding every
    object back to BACK, in two forms, and to THIRD) stands in front of
    BACK, which holds a study FRONT does not."""

    @defer.inlineCallbacks
    def setUp(self):
        self.back = RunningArchive(self, ae="BACK", listen=True)
        self.corpus = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=1, imagesPerSeries=3)
        yield self.back.store(self.corpus)
        self.front = RunningArchive(self, ae="FRONT", listen=True, ini={
            **CONVERTERS, "ExportConverter0": "forward to BACK; forward study compressed as j2 to back; "
                                              "forward to THIRD", "VirtualServerFor0": "BACK"})
        self.front.know(self.back)
        self.back.know(self.front)

    @defer.inlineCallbacks
    def test_fetchedObjectsGoThroughTheConvertersButNotBackToTheirArchive(self):
        """What a retrieve fetches from the archive behind is data arriving
        here, as Conquest has it (only preretrieve data skips the
        converters): the import converter changes it and the export
        converters run on it, but a forward to the archive it came from is
        not queued (it would go straight back), with a line saying so; the
        forward to THIRD is."""
        archive = self.front.archive
        image = self.corpus[0]
        fetched = yield defer.ensureDeferred(archive.virtualServers.fetch(STUDY_ROOT_MOVE,
                                                                          study(image.studyUID, image.patientID)))
        self.assertEqual((len(fetched.arrived), fetched.lost), (3, []))
        descriptions = {pydicom.dcmread(path).get("StudyDescription") for path in self.front.files()}
        self.assertEqual(descriptions, {"CONVERTED"})
        self.assertEqual(archive.ownRetrieves._underWay, {})  # its C-MOVE ended
        jobs = yield archive.index.runQuery(lambda connection: archive.exportQueue.dueJobs(1e12, 100))
        self.assertEqual([job.fetchedFrom for job in jobs], ["BACK"] * 3)
        runner = archive.exportService()  # not started: its jobs are run here
        with capturedLogs() as events:
            outcomes = yield defer.gatherResults([threads.deferToThread(runner._job, job) for job in jobs])
        self.assertEqual([row["Destination"] for outcome in outcomes for row in outcome.actions], ["THIRD"] * 3)
        skipped = sorted(formatEvent(event) for event in events if "not queued" in event.get("log_format", ""))
        self.assertEqual(skipped, sorted(
            f"ExportConverter0: {level} forward of {uid} to {destination} not queued: a virtual server fetched "
            "it from there" for uid in fetched.arrived for level, destination in (("image", "BACK"), ("study", "back"))))


class StoppingTests(unittest.TestCase):
    """pacs stopping (SIGTERM) while a retrieve through a virtual server
    ends, with CacheVirtualData = 0."""

    @defer.inlineCallbacks
    def test_aReleaseWhilePacsStopsIsOneWarning(self):
        """The index writer stopping, then the whole index stopped: the
        fetched objects cannot be deleted, which one warning says (not a
        traceback logged as critical by the retrieve)."""
        running = RunningArchive(self, ini={"VirtualServerFor0": "BACK", "CacheVirtualData": "0"})
        [image] = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                 seriesPerStudy=1, imagesPerSeries=1)
        yield running.store([image])
        servers = running.archive.virtualServers
        yield running.archive.index._writer.stop()  # as the stop of pacs does first
        with capturedLogs() as events:
            servers._hold([image.sopUID])  # as a fetch whose C-MOVE stored it
            servers._storing(image.sopUID)(True)
            yield defer.ensureDeferred(servers.release([image.sopUID]))
            yield running.stop()
            servers._hold([image.sopUID])
            servers._storing(image.sopUID)(True)
            yield defer.ensureDeferred(servers.release([image.sopUID]))
        self.assertEqual([formatEvent(e) for e in events if "virtual" in formatEvent(e)], [
            "1 object(s) fetched from virtual servers are not deleted (CacheVirtualData = 0): pacs-db-writer is "
            "stopping",
            "1 object(s) fetched from virtual servers are not deleted (CacheVirtualData = 0): the index is not "
            "started"])


    def test_theStopWaitsForTheReleasesThenWarns(self):
        """pacs stopping waits for the DICOM retrieves holding fetched objects
        to release them (their abort ends them), at most QuitGracePeriod: one
        released meanwhile deletes its objects; one still holding them then
        leaves them, with a warning."""
        for releasing in (True, False):
            index, clock = FetchingArchive(), Clock()
            servers = VirtualServers([VirtualServer("B")], None, "FRONT", clock, index, index.query, index,
                                     cache=False, ownRetrieves=index.own)
            movedBy(servers, [RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(2)], index)
            aborted = defer.Deferred()

            async def retrieve():
                fetched = await servers.fetch(STUDY_ROOT_MOVE, study("1"))
                try:
                    await aborted
                finally:
                    await servers.release(fetched.held)
            retrieved = defer.ensureDeferred(servers.retrieving(retrieve()))
            with capturedLogs() as events:
                stopped = servers.stop(30)
                clock.advance(29)
                self.assertNoResult(stopped)
                if releasing:
                    aborted.callback(None)
                else:
                    clock.advance(1)
                self.successResultOf(stopped)
            self.assertEqual(index.removed, ["1.1.0", "1.1.1"] if releasing else [])
            self.assertEqual([formatEvent(e) for e in events], [
                "2 object(s) fetched from virtual servers deleted (CacheVirtualData = 0)" if releasing else
                "2 object(s) fetched from virtual servers are not deleted (CacheVirtualData = 0): pacs stopped after "
                "30 s (QuitGracePeriod) with retrieves holding them under way"])
            if not releasing:
                aborted.callback(None)
            self.successResultOf(retrieved)

    def test_theStopDoesNotWaitForAWebAnswer(self):
        """A WADO-RS answer holding fetched objects (a client that does not
        read it) is not ended by pacs stopping: the stop does not wait for
        it (nor for a hold never released), and a warning says what stays."""
        index, clock = FetchingArchive(), Clock()
        servers = VirtualServers([VirtualServer("B")], None, "FRONT", clock, index, index.query, index,
                                 cache=False, ownRetrieves=index.own)
        movedBy(servers, [RemoteImage("P1", "1", "1.1", f"1.1.{n}") for n in range(2)], index)
        self.successResultOf(defer.ensureDeferred(servers.fetch(STUDY_ROOT_MOVE, study("1"))))  # as WADO-RS
        with capturedLogs() as events:
            self.successResultOf(servers.stop(30))
        self.assertEqual(index.removed, [])
        self.assertEqual([formatEvent(e) for e in events], [
            "2 object(s) fetched from virtual servers are not deleted (CacheVirtualData = 0): pacs stopped with web "
            "answers (WADO-RS) holding them under way"])
        self.assertEqual(clock.getDelayedCalls(), [])


class Answering:
    """An archive that answers each C-FIND with ``status`` and, on success,
    one match."""

    def __init__(self, status):
        self.status = status

    def findMatches(self, sopClass, identifier, inThread, timeout=None):
        return defer.succeed((self.status, [study("1")] if self.status == 0 else []))

    def release(self):
        return defer.succeed(None)


class BusyArchive:
    """An archive that answers no request (nor a release) until it is
    through with it."""

    def __init__(self):
        self.cancelled, self.releasing = [], 0

    def findMatches(self, sopClass, identifier, inThread, timeout=None):
        return defer.Deferred()

    def move(self, sopClass, identifier, destination, onPending=None, messageID=None):
        return defer.Deferred()

    def cancelLast(self, sopClass):
        self.cancelled.append(sopClass)

    def release(self):
        self.releasing += 1
        return defer.Deferred()


class FetchingArchive:
    """The archive a fetch asks (its first C-MOVE sends every object, the
    next only 3 then fails) and the index the objects arrive in."""

    query = SimpleNamespace(instancesByUID=None)

    def __init__(self):
        self.here, self.moves, self.removed = [], 0, []
        self.own = OwnRetrieves("FRONT")  # the fetch's C-MOVEs register here (ownRetrieves)

    def storedBy(self, messageID, uids):
        """The C-STOREs of our C-MOVE ``messageID`` stored ``uids`` here
        (``StorageService`` tells the fetch of each)."""
        for ended in self.storing(messageID, uids):
            ended(True)

    def storing(self, messageID, uids):
        """The C-STOREs of our C-MOVE ``messageID`` came with ``uids`` and
        committed them to the index: the ``ended(stored)`` of each, which
        ``StorageService`` calls once its store is over."""
        command = {commands.MOVE_ORIGINATOR_AE: "FRONT", commands.MOVE_ORIGINATOR_MESSAGE_ID: messageID}
        enders = [self.own.storing(command, uid) or (lambda stored: None) for uid in uids]
        self.here += uids
        return enders

    def move(self, sopClass, identifier, destination, onPending=None, messageID=None):
        self.moves += 1
        uids = list(identifier.SOPInstanceUID)
        if self.moves == 1:
            self.storedBy(messageID, uids)
            return defer.succeed(({commands.STATUS: 0}, None))
        self.storedBy(messageID, uids[:3])
        return defer.succeed(({commands.STATUS: 0xA801, commands.FAILED_SUBOPERATIONS: len(uids) - 3}, None))

    def release(self):
        return defer.succeed(None)

    def runQuery(self, fn, uids):
        return defer.succeed([SimpleNamespace(sopInstanceUID=uid) for uid in uids if uid in self.here])

    queryForPeer = runQuery

    def removeInstances(self, instances):
        self.removed += [instance.sopInstanceUID for instance in instances]
        return defer.succeed(Removal(len(instances), 0))


def match(**values):
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def movedBy(servers, images, index):
    """``servers`` ask one archive through a stand-in that lists ``images``
    and sends what a C-MOVE asks for to ``index`` (a ``FetchingArchive``):
    its C-MOVEs, as (level, series, uids or None), in the list returned."""
    moved = []

    class Archive:
        def move(self, sopClass, identifier, destination, onPending=None, messageID=None):
            uids = identifier.get("SOPInstanceUID")
            uids = [uids] if isinstance(uids, str) else None if uids is None else list(uids)
            moved.append((identifier.QueryRetrieveLevel, identifier.SeriesInstanceUID, uids))
            index.storedBy(messageID, [image.sopInstanceUID for image in images
                                       if image.seriesInstanceUID == identifier.SeriesInstanceUID
                                       and (uids is None or image.sopInstanceUID in uids)])
            return defer.succeed(({commands.STATUS: 0}, None))

        def release(self):
            return defer.succeed(None)

    async def associate(server, contexts):
        return Archive()

    async def remoteImages(protocol, findClass, level, keys):
        return images
    servers._remoteImages, servers._associate = remoteImages, associate
    return moved


def answeredBy(servers, listing, moved, answer):
    """``servers`` ask their archives through stand-ins: an archive's
    listing is ``listing[ae]`` (a Deferred), its C-MOVEs are recorded in
    ``moved`` as (ae, uids) and answered by ``answer(ae, uids, messageID)``."""
    class Archive:
        def __init__(self, ae):
            self.ae = ae

        def move(self, sopClass, identifier, destination, onPending=None, messageID=None):
            uids = identifier.SOPInstanceUID
            uids = [uids] if isinstance(uids, str) else list(uids)
            moved.append((self.ae, uids))
            return answer(self.ae, uids, messageID)

        def release(self):
            return defer.succeed(None)

    async def associate(server, contexts):
        return Archive(server.ae)

    async def remoteImages(protocol, findClass, level, keys):
        return await listing[protocol.ae]
    servers._remoteImages, servers._associate = remoteImages, associate
