"""The move commands and forward between two real Archives listening on
loopback ports in the same reactor: local sends (``(local)`` or our AE)
and C-MOVEs requested from the other archive."""

import json
import os

import pydicom
from twisted.internet import defer
from twisted.trial import unittest

from pacscore.control import moves
from pacscore.control.context import CommandError
from pacscore.dicom import retrieve
from pacscore.export import forwarder
from pacscore.testing.corpus import generateCorpus
from plugins import pacs_control_data as commands
from plugins import pacs_control_server as server
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.export.fixtures import failingFor


class MoveTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.source = RunningArchive(self, ae="ORIGIN", listen=True)
        self.destination = RunningArchive(self, ae="DEST", listen=True)
        self.source.know(self.destination)
        self.destination.know(self.source)
        self.images = generateCorpus(os.path.abspath(self.mktemp()), patients=2, studiesPerPatient=2,
                                     seriesPerStudy=2, imagesPerSeries=3)
        yield self.source.store(self.images)

    @defer.inlineCallbacks
    def test_movestudyFromLocal(self):
        study = self.images[0].studyUID
        output = yield self.source.run(commands.moveStudy, f"(local),DEST,PAT0000:{study}")
        self.assertEqual(output, "6 object(s) sent to DEST")
        self.assertEqual((yield self.destination.count("image")), 6)
        self.assertEqual((yield self.destination.count("study")), 1)

    @defer.inlineCallbacks
    def test_movesFromLocalKeepToThePatientAndStudyGiven(self):
        """A study or series asked for with another patient's ID, or a
        series with another study's UID, is not sent (as deletestudy
        deletes nothing so, and a remote source finds nothing)."""
        image = self.images[0]
        for command, arguments in ((commands.moveStudy, f"WRONGPAT:{image.studyUID}"),
                                   (commands.moveSeries, f"WRONGPAT:{image.seriesUID},{image.studyUID}"),
                                   (commands.moveSeries, f"PAT0000:{image.seriesUID},{self.images[12].studyUID}")):
            error = yield self.assertFailure(self.source.run(command, f"(local),DEST,{arguments}"), CommandError)
            self.assertIn("no stored object to send", str(error))
        self.assertEqual((yield self.destination.count("image")), 0)
        output = yield self.source.run(commands.moveSeries, f"(local),DEST,PAT0000:{image.seriesUID},{image.studyUID}")
        self.assertEqual(output, "3 object(s) sent to DEST")

    @defer.inlineCallbacks
    def test_movestudyLeavesOutWhatCannotBeConvertedAndSendsTheRest(self):
        """An image of the study that cannot be converted (pixel data no
        codec here decodes): the five others are sent, and the command
        fails saying one was left out and why."""
        self.patch(forwarder, "convertToFirst", failingFor(self.images[1].sopUID))
        study = self.images[0].studyUID
        error = yield self.assertFailure(self.source.run(commands.moveStudy, f"(local),DEST,PAT0000:{study}"),
                                         CommandError)
        self.assertTrue(str(error).startswith(f"5 object(s) sent to DEST, 1 left out, e.g. {self.images[1].sopUID} "
                                              f"cannot be converted to "), str(error))
        self.assertEqual((yield self.destination.count("image")), 5)

    @defer.inlineCallbacks
    def test_movestudyCarriesOnAfterAFailureStatus(self):
        """A destination that answers the C-STORE of one image with a
        failure status (its import line rejects it): the five others are
        sent, and the command fails saying one failed and how."""
        rejected = self.images[1].sopUID
        line = f'ifequal "%V0008,0018", "{rejected}"; reject'
        destination = RunningArchive(self, ae="REJECTS", listen=True,
                                     ini={"ImportConverters": "1", "ImportConverter0": line})
        self.source.know(destination)
        error = yield self.assertFailure(
            self.source.run(commands.moveStudy, f"(local),REJECTS,PAT0000:{self.images[0].studyUID}"), CommandError)
        self.assertTrue(str(error).startswith(f"5 object(s) sent to REJECTS, 1 failed, e.g. REJECTS answered the "
                                              f"C-STORE of {rejected} with status 0x"), str(error))
        self.assertEqual((yield destination.count("image")), 5)
        self.assertEqual(self.source.progress, [])  # no "0 object(s) sent" after the failed one

    @defer.inlineCallbacks
    def test_objectsSentAreInTheStatus(self):
        """display_status's images sent count the objects a local move
        sent, as those of a C-MOVE; the remote source's move is its own."""
        study = self.images[0].studyUID
        yield self.source.run(commands.moveStudy, f"(local),DEST,PAT0000:{study}")
        status = yield self.source.run(server.displayStatus, "json")
        self.assertEqual(json.loads(status)["images"]["sent"], 6)
        self.assertEqual(json.loads(status)["counters"]["moveCommandObjects"], 6)
        yield self.destination.run(commands.moveStudy, f"ORIGIN,DEST,PAT0001:{self.images[12].studyUID}")
        status = yield self.source.run(server.displayStatus, "")
        self.assertIn("Images received=0, sent=12, forwarded=0", status)

    @defer.inlineCallbacks
    def test_movepatientFromOurOwnAEReportsProgress(self):
        output = yield self.source.run(commands.movePatient, "ORIGIN,DEST,PAT0001")
        self.assertEqual(output, "12 object(s) sent to DEST")
        self.assertEqual(self.source.progress, ["10 object(s) sent to DEST"])
        self.assertEqual((yield self.destination.count("patient")), 1)

    @defer.inlineCallbacks
    def test_moveseriesWithoutPatientID(self):
        image = self.images[3]
        yield self.source.run(commands.moveSeries, f",DEST,:{image.seriesUID},{image.studyUID}")
        self.assertEqual((yield self.destination.count("image")), 3)

    @defer.inlineCallbacks
    def test_movestudiesByDate(self):
        yield self.assertFailure(self.source.run(commands.moveStudies, "(local),DEST,19990101"), CommandError)
        self.assertEqual((yield self.source.run(commands.moveStudies, "(local),DEST,20240101-20240131")),
                         "24 object(s) sent to DEST")
        self.assertEqual((yield self.destination.count("image")), 24)

    @defer.inlineCallbacks
    def test_movestudiesByAnOpenRange(self):
        """``-YYYYMMDD`` (up to that day) was refused: 'expected YYYYMMDD or
        YYYYMMDD-YYYYMMDD'; ``YYYYMMDD-`` is from that day on."""
        yield self.source.redate("PAT0000", "20240101")
        yield self.assertFailure(self.source.run(commands.moveStudies, "(local),DEST,20240103-"), CommandError)
        self.assertEqual((yield self.source.run(commands.moveStudies, "(local),DEST,20240102-")),
                         "12 object(s) sent to DEST")
        self.assertEqual((yield self.destination.count("patient")), 1)
        self.assertEqual((yield self.source.run(commands.moveStudies, "(local),DEST,20240101-")),
                         "24 object(s) sent to DEST")
        self.assertEqual((yield self.destination.count("image")), 24)
        self.assertEqual((yield self.source.run(commands.moveStudies, "(local),DEST,-20240102")),
                         "24 object(s) sent to DEST")

    @defer.inlineCallbacks
    def test_moveaccession(self):
        """Conquest's moveaccession:src,dst,[patid:]accession (it was
        'unknown command'): the study of that Accession Number, sent from
        here or moved from another archive."""
        image = self.images[6]
        accession = pydicom.dcmread(image.path).AccessionNumber
        self.assertEqual((yield self.source.run(commands.moveAccession, f"(local),DEST,PAT0000:{accession}")),
                         "6 object(s) sent to DEST")
        self.assertEqual((yield self.destination.count("study")), 1)
        error = yield self.assertFailure(self.source.run(commands.moveAccession, f"(local),DEST,PAT0001:{accession}"),
                                         CommandError)
        self.assertIn("no stored object to send", str(error))
        yield self.assertFailure(self.source.run(commands.moveAccession, "(local),DEST,A*"), CommandError)
        other = pydicom.dcmread(self.images[12].path).AccessionNumber
        output = yield self.destination.run(commands.moveAccession, f"ORIGIN,DEST,{other}")
        self.assertEqual(output, "6 object(s) moved from ORIGIN to DEST (0 failed, 0 warning(s)) in 1 C-MOVE(s)")
        self.assertEqual((yield self.destination.count("study")), 2)

    @defer.inlineCallbacks
    def test_remoteMoveOfAStudy(self):
        study = self.images[6].studyUID
        output = yield self.destination.run(commands.moveStudy, f"ORIGIN,DEST,PAT0000:{study}")
        self.assertEqual(output, "6 object(s) moved from ORIGIN to DEST (0 failed, 0 warning(s)) in 1 C-MOVE(s)")
        self.assertEqual((yield self.destination.count("image")), 6)

    @defer.inlineCallbacks
    def test_remoteMoveOfStudiesByDateFindsThemFirst(self):
        self.patch(moves, "PROGRESS_EVERY", 3)
        self.patch(retrieve, "PENDING_INTERVAL", 0)  # the source's C-MOVE SCP: a pending response per object
        output = yield self.destination.run(commands.moveStudies, "ORIGIN,DEST,20240102")
        self.assertEqual(output, "24 object(s) moved from ORIGIN to DEST (0 failed, 0 warning(s)) in 4 C-MOVE(s)")
        self.assertEqual((yield self.destination.count("study")), 4)
        self.assertIn("3 object(s) moved to DEST, 3 remaining", self.destination.progress)
        self.assertTrue(all("moved to DEST" in line for line in self.destination.progress))

    @defer.inlineCallbacks
    def test_unknownAEs(self):
        study = self.images[0].studyUID
        yield self.assertFailure(self.source.run(commands.moveStudy, f"(local),NOWHERE,{study}"), CommandError)
        yield self.assertFailure(self.destination.run(commands.moveStudy, f"NOWHERE,DEST,{study}"), CommandError)
        yield self.assertFailure(self.source.run(commands.movePatient, "(local),DEST,NOBODY"), CommandError)
        self.assertEqual((yield self.destination.count("image")), 0)

    @defer.inlineCallbacks
    def test_uidsMustBeUIDs(self):
        study = self.images[0].studyUID
        for command, arguments in ((commands.moveStudy, "ORIGIN,DEST,\u60a3\u8005"),
                                   (commands.moveStudy, "ORIGIN,DEST,PAT0000:1.2.\u00b2"),
                                   (commands.moveSeries, f"ORIGIN,DEST,PAT0000:\U0001f600,{study}"),
                                   (commands.moveSeries, f"ORIGIN,DEST,PAT0000:{study},1.2a")):
            error = yield self.assertFailure(self.destination.run(command, arguments), CommandError)
            self.assertIn("is not a UID", str(error))
        self.assertEqual((yield self.destination.count("image")), 0)

    @defer.inlineCallbacks
    def test_forwardOneStoredFile(self):
        path = self.source.files()[0]
        self.assertEqual((yield self.source.run(commands.forward, f"{path},un,DEST")),
                         f"MAG0:{os.path.relpath(path, self.source.archive.devices[0].path)} sent to DEST")
        self.assertEqual((yield self.destination.count("image")), 1)
        yield self.assertFailure(self.source.run(commands.forward, f"{path},un,NOWHERE"), CommandError)
        yield self.assertFailure(self.source.run(commands.forward, "MAG0:no/such.dcm,un,DEST"), CommandError)

    @defer.inlineCallbacks
    def test_forwardOfAFileThatCannotBeConvertedSaysWhy(self):
        path = self.source.files()[0]
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        self.patch(forwarder, "convertToFirst", failingFor(uid))
        error = yield self.assertFailure(self.source.run(commands.forward, f"{path},un,DEST"), CommandError)
        self.assertIn(f" not sent to DEST: {uid} cannot be converted to ", str(error))
        self.assertEqual((yield self.destination.count("image")), 0)
