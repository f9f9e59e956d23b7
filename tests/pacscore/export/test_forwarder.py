"""The Forwarder against our own acceptor over twisted.test.iosim, with a
task.Clock: association reuse by ForwardAssociationLevel, idle close,
SOP class changes, compression and its fallbacks, failures; ``get`` as
C-FIND and C-MOVE."""

import functools
import math
import os

from pydicom.dataset import Dataset
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial import unittest

from pacscore.config.acrnema import AcrNemaMap, Node
from pacscore.config.ini import DicomIni
from pacscore.config.loader import Configuration
from pacscore.dicom import commands, pdu
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.dicom.models import PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE
from pacscore.dicom.storeddata import STREAMED_OBJECT
from pacscore.export import forwarder as forwarderModule
from pacscore.export.actions import LocalActions
from pacscore.export.forwarder import Forwarder, ForwardError, Interrupted, Refused, Undelivered, Unreadable
from pacscore.export.queue import Action, Target
from pacscore.storage.reader import currentInstance
from tests.pacscore.export.fixtures import (
    EXPLICIT, IMPLICIT, JPEG_2000_LOSSLESS, MR_STORAGE, Acceptor, Archive, Recorder, SyncWorkers, failingFor, settle)
from tests.pacscore.dicom.test_client import AbortingOnce, Silent

class TcpTransport(StringTransport):
    """A StringTransport standing in for TCP (TCP_NODELAY is set on it)."""

    def setTcpNoDelay(self, enabled):
        pass


NODES = "DEST 127.0.0.1 104\nDESTJK 127.0.0.1 105 jk\n"


def damageBitsStored(path):
    """Damage the stored file ``path`` before its Pixel Data: the VR of its
    Bits Stored overwritten, giving an impossible length."""
    with open(path, "rb") as f:
        content = bytearray(f.read())
    at = content.find(b"\x28\x00\x01\x01US")
    content[at + 4:at + 6] = b"\0\0"
    with open(path, "wb") as f:
        f.write(content)


def imageAction(sop, series="1.2.3.1", study="1.2.3", patient="PAT1", destination="DEST", compression="",
                level="IMAGE", filters=None, objectPath=""):
    return Action(1, "forward", destination, level, Target(patient, study, series, sop), compression,
                  filters or {}, 0, objectPath)


class ForwarderTests(unittest.TestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.archive = Archive(self)
        self.datasets = [self.archive.add("PAT1", "1.2.3", "1.2.3.1", f"1.2.3.1.{n}", number=n + 1)
                         for n in range(3)]
        self.archive.add("PAT1", "1.2.3", "1.2.3.2", "1.2.3.2.1", sopClass=MR_STORAGE, modality="MR")
        self.archive.add("PAT1", "1.2.3", "1.2.3.3", "1.2.3.3.1", description="Scout")
        self.acceptor = Acceptor(self.clock)

    def forwarder(self, **settings):
        return Forwarder(self.clock, AcrNemaMap.fromString(NODES), "PACS", self.archive.syncIndex,
                         self.archive.query, self.archive.reader, SyncWorkers(),
                         endpointFor=self.acceptor.endpointFor, **settings)

    def forward(self, forwarder, action, carryOn=False):
        return settle(self, defer.ensureDeferred(forwarder.forward(action, carryOn=carryOn)), self.acceptor,
                      self.clock)

    def received(self):
        return [command[commands.AFFECTED_SOP_INSTANCE_UID] for command, _, _ in self.acceptor.recorder.received]

    def test_imageLevelUsesOneAssociationPerImage(self):
        forwarder = self.forwarder()
        for n in range(3):
            self.assertEqual(self.forward(forwarder, imageAction(f"1.2.3.1.{n}")), 1)
        self.assertEqual(self.received(), ["1.2.3.1.0", "1.2.3.1.1", "1.2.3.1.2"])
        self.assertEqual(self.acceptor.associations, 3)
        self.acceptor.flush()
        self.assertEqual(self.acceptor.openAssociations(), [])

    def test_seriesLevelKeepsTheAssociationUntilIdle(self):
        forwarder = self.forwarder(associationLevel="SERIES", closeDelay=5)
        for n in range(3):
            self.forward(forwarder, imageAction(f"1.2.3.1.{n}"))
            self.clock.advance(4)
        self.assertEqual(self.acceptor.associations, 1)
        self.forward(forwarder, imageAction("1.2.3.3.1", series="1.2.3.3"))  # another series: a new one
        self.assertEqual(self.acceptor.associations, 2)
        self.assertEqual(len(self.acceptor.openAssociations()), 1)
        self.clock.advance(5)
        self.acceptor.flush()
        self.assertEqual(self.acceptor.openAssociations(), [])
        self.assertEqual(len(self.received()), 4)

    def test_newSopClassReopensAndIsProposedAfterwards(self):
        forwarder = self.forwarder(associationLevel="GLOBAL")
        self.forward(forwarder, imageAction("1.2.3.1.0"))
        self.forward(forwarder, imageAction("1.2.3.2.1", series="1.2.3.2"))  # MR: not proposed before
        self.forward(forwarder, imageAction("1.2.3.1.1"))                      # CT again: still proposed
        self.forward(forwarder, imageAction("1.2.3.2.1", series="1.2.3.2"))
        self.assertEqual(self.acceptor.associations, 2)
        self.assertEqual(len(self.received()), 4)

    def test_refreshDelayForgetsTheSopClasses(self):
        forwarder = self.forwarder(associationLevel="GLOBAL", closeDelay=5, refreshDelay=60)
        self.forward(forwarder, imageAction("1.2.3.2.1", series="1.2.3.2"))
        self.clock.advance(61)
        self.forward(forwarder, imageAction("1.2.3.1.0"))
        proposed = {sopClass for sopClass, _ in self.acceptor.clients[-1].association.contexts.values()}
        self.assertEqual(proposed, {"1.2.840.10008.5.1.4.1.1.2"})

    def test_studyActionGoesOnOneAssociationWithFilters(self):
        forwarder = self.forwarder()
        self.assertEqual(self.forward(forwarder, imageAction("", level="STUDY")), 5)
        self.assertEqual(self.acceptor.associations, 1)
        self.forward(forwarder, imageAction("", level="STUDY", filters={"modality": "MR"}))
        self.forward(forwarder, imageAction("", level="PATIENT", filters={"seriesdesc": "Scout"}))
        self.assertEqual(self.received()[5:], ["1.2.3.2.1", "1.2.3.3.1"])

    def test_sopClassLevelKeepsACollectedActionOnOneAssociation(self):
        self.assertEqual(self.forward(self.forwarder(associationLevel="SOPCLASS"), imageAction("", level="STUDY")), 5)
        self.assertEqual(self.acceptor.associations, 1)

    def test_anUnreadableOrLostObjectFailsTheActionADeletedOneIsSkipped(self):
        """At its look-up, the reader asking the index as the server's does:
        a file that exists but cannot be read (here a folder: EISDIR, as EIO
        or EACCES would be), and one gone while the index still names it and
        no delete removes it (its data disk not mounted), fail the action
        with Unreadable, to be tried again, after the others went (the lost
        one was skipped as if deleted, its forward done); an object a delete
        under way is removing (its file gone, noted in PacsDeletes) is
        skipped.  The retry is to cover the two not read only
        (``retryOnly``)."""
        self.archive.reader.current = functools.partial(currentInstance, self.archive.index, self.archive.query)
        folder = os.path.join(self.archive.folder, "PAT1")
        unreadable, lost, deleted = (os.path.join(folder, f"1.2.3.1.{n}.dcm") for n in range(3))
        os.rename(unreadable, unreadable + ".away")
        os.mkdir(unreadable)
        os.rename(lost, lost + ".away")
        with self.archive.index.engine.begin() as connection:
            [instance] = [instance for instance in self.archive.query.instances(connection, "SERIES", [])
                          if instance.sopInstanceUID == "1.2.3.1.2"]
            self.archive.index.deletes.write(connection, [instance], [None])
        os.remove(deleted)
        failure = self.forward(self.forwarder(), imageAction("", level="STUDY"))
        failure.trap(Unreadable)
        self.assertIn("2 of its objects could not be read, e.g. 1.2.3.1.0", failure.getErrorMessage())
        self.assertEqual(self.received(), ["1.2.3.2.1", "1.2.3.3.1"])
        self.assertEqual([target.sopInstanceUID for target in failure.value.retryOnly], ["1.2.3.1.0", "1.2.3.1.1"])
        os.rmdir(unreadable)
        os.rename(unreadable + ".away", unreadable)
        os.rename(lost + ".away", lost)
        self.assertEqual(self.forward(self.forwarder(), imageAction("", level="STUDY")), 4)
        self.assertEqual(self.received()[2:], ["1.2.3.1.0", "1.2.3.1.1", "1.2.3.2.1", "1.2.3.3.1"])

    def locatedThen(self, forwarder, action, change):
        """``forwarder``'s ``locate`` result of ``action``, ``change(instances)`` made after it (the objects
        located, e.g. deleted before they are sent), the reader following stored objects as the server's
        does (``currentInstance``)."""
        self.archive.reader.current = functools.partial(currentInstance, self.archive.index, self.archive.query)
        [found] = self.successResultOf(forwarder.locate([action]))
        change({instance.sopInstanceUID: instance for instance in found[0]})
        return found

    def forwardLocated(self, forwarder, action, found):
        events = []
        forwarder.log = Logger(observer=events.append)
        result = settle(self, defer.ensureDeferred(forwarder.forward(action, found=found)), self.acceptor, self.clock)
        return result, [formatEvent(event) for event in events]

    def test_anObjectDeletedAfterItWasLocatedIsSkipped(self):
        """A series located, then one of its objects deleted (``dgate
        --deletepatient:`` under way: its file, then its row): skipped with a
        log line as one deleted before the locate, the others go, the
        forward succeeds (no ForwardError: its destination is not held off)."""
        forwarder = self.forwarder()
        action = imageAction("", level="SERIES")
        removal = LocalActions(self.archive.syncIndex, self.archive.query, self.archive.reader, SyncWorkers())
        found = self.locatedThen(forwarder, action, lambda instances: self.successResultOf(
            removal.removeInstances([instances["1.2.3.1.1"]])))
        sent, lines = self.forwardLocated(forwarder, action, found)
        self.assertEqual((sent, self.received()), (2, ["1.2.3.1.0", "1.2.3.1.2"]))
        self.assertEqual(lines, ["forward to DEST: 1.2.3.1.1 was deleted since its forward was looked up: skipped"])

    def test_noAssociationIsOpenedForAnObjectDeletedAfterItWasLocated(self):
        """Each object is read before its association is opened: an image
        forward whose object was deleted after the lane located it (a
        patient's thousand queued forwards as it is deleted) opens none,
        and neither does a series whose objects were all deleted."""
        forwarder = self.forwarder()
        removal = LocalActions(self.archive.syncIndex, self.archive.query, self.archive.reader, SyncWorkers())
        for action, deleted in ((imageAction("1.2.3.1.1"), ["1.2.3.1.1"]),
                                (imageAction("", level="SERIES"), ["1.2.3.1.0", "1.2.3.1.2"])):
            found = self.locatedThen(forwarder, action, lambda instances: self.successResultOf(
                removal.removeInstances([instances[uid] for uid in deleted])))
            sent, lines = self.forwardLocated(forwarder, action, found)
            self.assertEqual(lines, [f"forward to DEST: {uid} was deleted since its forward was looked up: skipped"
                                     for uid in deleted])
            self.assertEqual((sent, self.acceptor.associations), (0, 0))

    def test_anObjectADeleteIsRemovingIsSkipped(self):
        """Its file removed, its row not yet (a delete removes the files of
        a part, then their rows): it is noted in PacsDeletes, so skipped
        too."""
        forwarder = self.forwarder()
        action = imageAction("", level="SERIES")

        def beingDeleted(instances):
            with self.archive.index.engine.begin() as connection:
                self.archive.index.deletes.write(connection, [instances["1.2.3.1.1"]], [None])
            os.remove(os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm"))
        sent, lines = self.forwardLocated(forwarder, action, self.locatedThen(forwarder, action, beingDeleted))
        self.assertEqual((sent, self.received()), (2, ["1.2.3.1.0", "1.2.3.1.2"]))
        self.assertEqual(lines, ["forward to DEST: 1.2.3.1.1 was deleted since its forward was looked up: skipped"])

    def test_anIndexedObjectWhoseFileIsLostFailsTheForward(self):
        """Its file gone while the index still names it and no delete
        removes it: not dropped, the forward fails with Unreadable (retried,
        but not the destination's failure) once the others went, its
        association released."""
        forwarder = self.forwarder(associationLevel="SERIES")
        action = imageAction("", level="SERIES")
        aborted = self.released(forwarder)
        found = self.locatedThen(forwarder, action, lambda instances: os.remove(
            os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm")))
        failure, _ = self.forwardLocated(forwarder, action, found)
        failure.trap(Unreadable)
        self.assertIn("1.2.3.1.1 could not be read here: [Errno 2] No such file or directory", str(failure.value))
        self.assertEqual(self.received(), ["1.2.3.1.0", "1.2.3.1.2"])
        self.assertEqual(failure.value.retryOnly, (Target("PAT1", "1.2.3", "1.2.3.1", "1.2.3.1.1"),))
        self.clock.advance(forwarder.closeDelay)
        self.acceptor.flush()
        self.assertEqual((self.acceptor.openAssociations(), aborted), ([], []))

    def test_anObjectStoredAgainAfterItWasLocatedIsSent(self):
        """Stored again under another file name after the locate, the old
        file removed: its new file is read and sent."""
        forwarder = self.forwarder()
        action = imageAction("1.2.3.1.1")

        def storedAgain(instances):
            old = os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm")
            os.rename(old, os.path.join(self.archive.folder, "PAT1", "again.dcm"))
            with self.archive.index.engine.begin() as connection:
                image = self.archive.index.tables.image
                connection.execute(image.update().where(image.c.SOPInstanceUID == "1.2.3.1.1")
                                   .values(ObjectFile="PAT1/again.dcm"))
        sent, _ = self.forwardLocated(forwarder, action, self.locatedThen(forwarder, action, storedAgain))
        self.assertEqual((sent, self.received()), (1, ["1.2.3.1.1"]))

    def test_thePatientIDMatchesExactly(self):
        """A Patient ID holding a wildcard character selects only itself."""
        self.archive.add("PAT*", "1.2.9", "1.2.9.1", "1.2.9.1.1")
        self.assertEqual(self.forward(self.forwarder(), imageAction("", "", "", patient="PAT*", level="PATIENT")), 1)
        self.assertEqual(self.received(), ["1.2.9.1.1"])

    def test_nothingToForwardIsDone(self):
        """... and said in a warning: the object the action was queued for is not there."""
        forwarder, events = self.forwarder(), []
        forwarder.log = Logger(observer=events.append)
        self.assertEqual(self.forward(forwarder, imageAction("9.9.9")), 0)
        self.assertEqual(self.acceptor.associations, 0)
        self.assertEqual([(e["log_level"], formatEvent(e)) for e in events],
                         [(LogLevel.warn, "forward to DEST: no stored object of image 9.9.9 matches")])

    def test_unindexedImageGoesFromTheFileItsActionNames(self):
        """Where the index keeps no rows (the NULL driver), an image action
        recorded with its object's file still forwards it."""
        with self.archive.index.engine.begin() as connection:
            connection.execute(self.archive.index.tables.image.delete())
        path = os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm")
        self.assertEqual(self.forward(self.forwarder(), imageAction("1.2.3.1.1")), 0)
        self.assertEqual(self.forward(self.forwarder(), imageAction("1.2.3.1.1", objectPath=path)), 1)
        [(command, data, sent)] = self.acceptor.recorder.received
        self.assertEqual(command[commands.AFFECTED_SOP_INSTANCE_UID], "1.2.3.1.1")
        self.assertEqual(decodeDataset(data, sent).PixelData, self.datasets[1].PixelData)

    def test_compressedAsJ2KWhenThePeerTakesIt(self):
        self.acceptor = Acceptor(self.clock, syntaxes=(JPEG_2000_LOSSLESS, EXPLICIT, IMPLICIT))
        forwarder = self.forwarder()
        self.forward(forwarder, imageAction("1.2.3.1.0", compression="jk"))
        self.forward(forwarder, imageAction("1.2.3.1.1", destination="DESTJK"))  # acrnema.map column
        [(_, data, syntax), (_, _, second)] = self.acceptor.recorder.received
        self.assertEqual((syntax, second), (JPEG_2000_LOSSLESS, JPEG_2000_LOSSLESS))
        dataset = decodeDataset(data, EXPLICIT)
        dataset.file_meta = Dataset()
        dataset.file_meta.TransferSyntaxUID = JPEG_2000_LOSSLESS
        self.assertTrue((dataset.pixel_array == self.datasets[0].pixel_array).all())

    def test_anImageTheEncoderRefusesGoesUncompressed(self):
        """With a log line saying why."""
        self.archive.add("PAT1", "1.2.3", "1.2.3.4", "1.2.3.4.1", size=16)  # openjpeg wants >= 32 pixels
        self.acceptor = Acceptor(self.clock, syntaxes=(JPEG_2000_LOSSLESS, EXPLICIT, IMPLICIT))
        forwarder = self.forwarder()
        events = []
        forwarder.log = Logger(observer=events.append)
        self.assertEqual(self.forward(forwarder, imageAction("1.2.3.4.1", series="1.2.3.4", compression="jk")), 1)
        [(_, data, syntax)] = self.acceptor.recorder.received
        self.assertEqual(syntax, EXPLICIT)
        self.assertEqual(decodeDataset(data, EXPLICIT).Rows, 16)
        [line] = [formatEvent(e) for e in events]
        self.assertTrue(line.startswith(f"forward to DEST: 1.2.3.4.1 cannot be converted to {JPEG_2000_LOSSLESS} ("),
                        line)
        self.assertTrue(line.endswith(f"); sent as {EXPLICIT}"), line)

    def test_aKeptAssociationServesEachActionsCompression(self):
        """ForwardAssociationLevel GLOBAL: 'forward to DEST', then 'forward
        compressed as jk to DEST' of the next object: the association
        proposed for the first has no JPEG 2000 context, so a new one is
        opened and the object goes as JPEG 2000."""
        self.acceptor = Acceptor(self.clock, syntaxes=(JPEG_2000_LOSSLESS, EXPLICIT, IMPLICIT))
        forwarder = self.forwarder(associationLevel="GLOBAL")
        self.forward(forwarder, imageAction("1.2.3.1.0"))
        self.forward(forwarder, imageAction("1.2.3.1.1", compression="jk"))
        self.forward(forwarder, imageAction("1.2.3.1.2", compression="jk"))
        self.assertEqual([syntax for _, _, syntax in self.acceptor.recorder.received],
                         [EXPLICIT, JPEG_2000_LOSSLESS, JPEG_2000_LOSSLESS])
        self.assertEqual(self.acceptor.associations, 2)

    def test_aDestinationMovedInAcrNemaMapGetsANewAssociation(self):
        """ForwardAssociationLevel GLOBAL, DEST moved to another port by
        ``put_amap`` while an association to it is kept open: the next
        object goes on a new association to the new port, the old one
        released, with a log line."""
        forwarder, events, ports = self.forwarder(associationLevel="GLOBAL", closeDelay=5), [], []
        forwarder.log = Logger(observer=events.append)
        endpointFor = self.acceptor.endpointFor
        forwarder.endpointFor = lambda host, port: ports.append(port) or endpointFor(host, port)
        aborted = self.released(forwarder)
        self.forward(forwarder, imageAction("1.2.3.1.0"))
        forwarder.acrNemaMap.put(0, Node("DEST", "127.0.0.1", "106"))
        self.forward(forwarder, imageAction("1.2.3.1.1"))
        self.forward(forwarder, imageAction("1.2.3.1.2"))
        self.assertEqual(ports, [104, 106])
        self.acceptor.flush()
        self.assertEqual((self.acceptor.openAssociations(), aborted), ([self.acceptor.clients[1]], []))
        self.assertEqual(self.received(), ["1.2.3.1.0", "1.2.3.1.1", "1.2.3.1.2"])
        self.assertIn("forward to DEST: acrnema.map moved it from DEST at 127.0.0.1:104 to DEST at 127.0.0.1:106: "
                      "the association kept open is closed, another opened", [formatEvent(e) for e in events])
        self.assertEqual(self.acceptor.associations, 2)

    def test_aDestinationMovedDuringAnActionGetsItsNextObject(self):
        """DEST moved by ``put_amap`` while a study action is being sent to
        it: the address is looked up for each object, so the objects after
        the move go on an association to the new port, not the rest of the
        study to the old one."""
        forwarder, ports, arrived = self.forwarder(associationLevel="GLOBAL"), [], []
        endpointFor = self.acceptor.endpointFor
        forwarder.endpointFor = lambda host, port: ports.append(port) or endpointFor(host, port)
        handle = self.acceptor.recorder.handle
        self.acceptor.recorder.handle = lambda protocol, contextId, command, dataset: (
            arrived.append(ports[-1]), handle(protocol, contextId, command, dataset))

        def moved(sent):
            if sent == 2:
                forwarder.acrNemaMap.put(0, Node("DEST", "127.0.0.1", "106"))
        self.assertEqual(settle(self, defer.ensureDeferred(forwarder.forward(imageAction("", level="STUDY"), moved)),
                                self.acceptor, self.clock), 5)
        self.assertEqual((ports, arrived), ([104, 106], [104, 104, 106, 106, 106]))

    def test_anObjectThePeerDoesNotTakeIsLeftOutNotRetried(self):
        """DEST takes no MR: the MR object of a study is left out with a log
        line (retrying would change nothing), the others go, and the forward
        fails with Undelivered saying so."""
        self.acceptor = Acceptor(self.clock, sopClasses=("1.2.840.10008.5.1.4.1.1.2",))
        forwarder = self.forwarder()
        events = []
        forwarder.log = Logger(observer=events.append)
        failure = self.forward(forwarder, imageAction("", level="STUDY"))
        failure.trap(Undelivered)
        self.assertEqual(failure.value.sent, 4)
        self.assertTrue(str(failure.value).startswith("4 object(s) sent to DEST, 1 left out, e.g. DEST takes "))
        self.assertNotIn("1.2.3.2.1", self.received())
        self.assertIn("forward to DEST: 1.2.3.2.1 left out, not retried: DEST takes 1.2.840.10008.5.1.4.1.1.4 "
                      "in none of the syntaxes", formatEvent(events[0]))

    def test_aForwardThatAlsoLeftAnObjectOutIsRetriedWhole(self):
        """DEST takes no MR and a CT file cannot be read: the forward fails
        with Unreadable to be retried whole (no ``retryOnly``), as removing
        it would let a delete queued after it remove the MR object that
        never reached DEST."""
        self.acceptor = Acceptor(self.clock, sopClasses=("1.2.840.10008.5.1.4.1.1.2",))
        path = os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm")
        os.remove(path)
        os.mkdir(path)
        failure = self.forward(self.forwarder(), imageAction("", level="STUDY"))
        failure.trap(Unreadable)
        self.assertEqual(self.received(), ["1.2.3.1.0", "1.2.3.1.2", "1.2.3.3.1"])
        self.assertEqual(failure.value.retryOnly, ())

    def test_anObjectThatCannotBeConvertedIsLeftOutNotRetried(self):
        """An image of a study that cannot be converted to any syntax DEST
        took (pixel data the codecs cannot decode): left out with a log line
        naming the syntaxes tried, the objects after it go too, the action
        fails with Undelivered (a retry would change nothing)."""
        self.patch(forwarderModule, "convertToFirst", failingFor("1.2.3.1.1"))
        forwarder = self.forwarder()
        events = []
        forwarder.log = Logger(observer=events.append)
        self.assertEqual(self.forward(forwarder, imageAction("", level="STUDY")).value.sent, 4)
        self.assertEqual(sorted(self.received()), ["1.2.3.1.0", "1.2.3.1.2", "1.2.3.2.1", "1.2.3.3.1"])
        self.assertIn(f"forward to DEST: 1.2.3.1.1 left out, not retried: 1.2.3.1.1 cannot be converted to "
                      f"{EXPLICIT} (what DEST takes it in): cannot decode",
                      [formatEvent(event) for event in events])

    def test_aDamagedObjectIsLeftOutNotRetried(self):
        """A stored file damaged before its Pixel Data (the VR of Bits
        Stored overwritten: an impossible length) is left out with one log
        line, the objects after it go, the action fails with Undelivered."""
        damageBitsStored(os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm"))
        forwarder = self.forwarder()
        events = []
        forwarder.log = Logger(observer=events.append)
        failure = self.forward(forwarder, imageAction("", level="SERIES"))
        failure.trap(Undelivered)
        self.assertEqual(self.received(), ["1.2.3.1.0", "1.2.3.1.2"])
        [line] = [formatEvent(event) for event in events]
        self.assertTrue(line.startswith("forward to DEST: 1.2.3.1.1 left out, not retried: 1.2.3.1.1 cannot be "
                                        "read: element (0028,0101)"), line)

    def test_fallsBackToUncompressedWhenThePeerRefuses(self):
        forwarder = self.forwarder()
        self.forward(forwarder, imageAction("1.2.3.1.0", compression="jk"))
        [(_, _, syntax)] = self.acceptor.recorder.received
        self.assertEqual(syntax, EXPLICIT)

    def test_implicitOnlyPeer(self):
        self.acceptor = Acceptor(self.clock, syntaxes=(IMPLICIT,))
        self.forward(self.forwarder(), imageAction("1.2.3.1.0", compression="jk"))
        [(_, data, syntax)] = self.acceptor.recorder.received
        self.assertEqual(syntax, IMPLICIT)
        self.assertEqual(decodeDataset(data, IMPLICIT).SOPInstanceUID, "1.2.3.1.0")

    def test_largeObjectGoesFromItsFile(self):
        """An object over STREAMED_OBJECT goes piece by piece from its file
        as stored, or is read whole to be converted; the file is closed."""
        size = math.isqrt(STREAMED_OBJECT // 2) + 8
        big = self.archive.add("PAT1", "1.2.3", "1.2.3.5", "1.2.3.5.1", size=size)
        for syntax in (EXPLICIT, IMPLICIT):
            self.acceptor = Acceptor(self.clock, syntaxes=(syntax,))
            self.assertEqual(self.forward(self.forwarder(), imageAction("1.2.3.5.1", series="1.2.3.5")), 1)
            [(_, data, sent)] = self.acceptor.recorder.received
            self.assertEqual(sent, syntax)
            self.assertEqual(decodeDataset(data, syntax).PixelData, big.PixelData)
        path = os.path.join(self.archive.folder, "PAT1", "1.2.3.5.1.dcm")
        self.assertNotIn(path, [os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")])

    def test_peerDown(self):
        self.acceptor.down = True
        failure = self.forward(self.forwarder(), imageAction("1.2.3.1.0"))
        failure.trap(ForwardError)
        self.assertIn("connection refused", str(failure.value))

    def test_unknownDestination(self):
        failure = self.forward(self.forwarder(), imageAction("1.2.3.1.0", destination="NOWHERE"))
        failure.trap(ForwardError)
        self.assertIn("not in acrnema.map", str(failure.value))

    def test_anIPv6AddressInBracketsIsReachedThere(self):
        """``forward to [::1]:104`` goes to ::1, port 104, as ``forward to
        127.0.0.1:104`` goes to 127.0.0.1; ``::1:104``, whose port reads as
        a group of the address, is refused saying how to write it."""
        reached = []

        def endpointFor(host, port):
            reached.append((host, port))
            return self.acceptor.endpointFor(host, port)
        self.acceptor.factory.policy.aeTitles.append("[::1]:104")  # the text called, as for 127.0.0.1:104
        forwarder = self.forwarder()
        forwarder.endpointFor = endpointFor
        self.assertEqual(self.forward(forwarder, imageAction("1.2.3.1.0", destination="[::1]:104")), 1)
        self.assertEqual(reached, [("::1", 104)])
        self.assertEqual(self.received(), ["1.2.3.1.0"])
        failure = self.forward(forwarder, imageAction("1.2.3.1.0", destination="::1:104"))
        failure.trap(ForwardError)
        self.assertEqual(str(failure.value), "'::1:104' is no host:port: write an IPv6 address in brackets, [::1]:104")

    def test_aLinkLocalAddressWithItsZoneIsReachedThere(self):
        """``forward to [fe80::1%eth0]:104``, as the refusal of
        ``fe80::1%eth0:104`` advises, goes to that address with its zone
        (it was queued and retried for ever: 'is not in acrnema.map')."""
        reached = []

        def endpointFor(host, port):
            reached.append((host, port))
            return self.acceptor.endpointFor(host, port)
        destination = "[fe80::fc:ff:fe00:1%eth0]:104"
        self.acceptor.factory.policy.aeTitles.append(destination[:16])
        forwarder = self.forwarder()
        forwarder.endpointFor = endpointFor
        self.assertEqual(self.forward(forwarder, imageAction("1.2.3.1.0", destination=destination)), 1)
        self.assertEqual(reached, [("fe80::fc:ff:fe00:1%eth0", 104)])
        self.assertEqual(self.received(), ["1.2.3.1.0"])

    def released(self, forwarder):
        """Patch every association ``forwarder`` opens to record an abort;
        the list of those aborted."""
        aborted = []
        associate = forwarder._associate

        async def recording(node, contexts):
            protocol = await associate(node, contexts)
            protocol.abortAssociation = lambda: aborted.append(protocol)
            return protocol
        forwarder._associate = recording
        return aborted

    def test_failureStatusFailsAndReleases(self):
        """A C-STORE answered A700 fails the forward (to be retried); the
        association, whose exchange went as it should, is released."""
        recorder = Recorder(status=0xA700)
        self.acceptor = Acceptor(self.clock, services={commands.C_STORE_RQ: recorder})
        forwarder = self.forwarder(associationLevel="GLOBAL")
        aborted = self.released(forwarder)
        failure = self.forward(forwarder, imageAction("", level="STUDY"))
        failure.trap(Refused)
        self.assertIn("DEST answered the C-STORE of 1.2.3.1.0 with status 0xA700", str(failure.value))
        self.assertEqual(len(recorder.received), 1)
        self.acceptor.flush()
        self.assertEqual((self.acceptor.openAssociations(), aborted), ([], []))

    def test_aDestinationThatAbortsIsNotAbortedBack(self):
        """A destination that A-ABORTs the association on a C-STORE: the
        forward fails (to be retried) naming the abort, and pacs, finding
        the association gone, sends no A-ABORT of its own back."""
        self.acceptor = Acceptor(self.clock, services={commands.C_STORE_RQ: AbortingOnce()})
        forwarder = self.forwarder(associationLevel="GLOBAL")
        aborted = self.released(forwarder)
        failure = self.forward(forwarder, imageAction("", level="STUDY"))
        failure.trap(ForwardError)
        self.assertIn("C-STORE of 1.2.3.1.0 failed: DEST@", str(failure.value))
        self.assertIn("aborted the association (A-ABORT from the peer's service user)", str(failure.value))
        self.acceptor.flush()
        self.assertEqual((self.acceptor.openAssociations(), aborted), ([], []))

    def test_statusesThatRefuseForGoodLeaveTheObjectOut(self):
        """A9xx (Data Set does not match SOP Class), Cxxx (Cannot
        understand) and PS3.7 C.4's general refusals (0122 SOP class not
        supported, 0117 invalid SOP instance ...) will be answered every
        time (PS3.4 B.2.3): the object is
        left out, not retried, with the status, its meaning and the Error
        Comment; the rest of the action goes."""
        for status, meaning in ((0xA900, "data set does not match SOP class"), (0xC011, "cannot understand"),
                                (0x0122, "SOP class not supported"), (0x0117, "invalid SOP instance"),
                                (0x0120, "missing attribute")):
            recorder = Recorder()
            self.acceptor = Acceptor(self.clock, services={commands.C_STORE_RQ: recorder})

            def handle(protocol, contextId, command, dataset, recorder=recorder, status=status):
                recorder.received.append((command, b"", None))
                refused = command[commands.AFFECTED_SOP_INSTANCE_UID] == "1.2.3.1.1"
                protocol.sendMessage(contextId, commands.response(
                    command, commands.C_STORE_RSP, status if refused else 0,
                    {commands.ERROR_COMMENT: "no pixel data"} if refused else None))
            recorder.handle = handle
            failure = self.forward(self.forwarder(), imageAction("", level="STUDY"))
            failure.trap(Undelivered)
            self.assertEqual(failure.value.sent, 4)
            self.assertEqual(str(failure.value), f"4 object(s) sent to DEST, 1 left out, e.g. DEST answered the "
                                                 f"C-STORE of 1.2.3.1.1 with status 0x{status:04X} ({meaning}: "
                                                 f"no pixel data)")
            self.assertEqual(len(recorder.received), 5)

    def test_aWarningStatusCountsAsSentWithALogLine(self):
        """A C-STORE answered with a Warning status (PS3.4 B.2.3: B000
        coercion, B007 data set does not match SOP class; PS3.7 C.4: 0107)
        was stored: the object counts as sent, the action is done, and a
        warning line names the status, its meaning, the object, the
        destination and the Error Comment."""
        warnings = {"1.2.3.1.0": (0xB000, None), "1.2.3.1.1": (0xB007, "no pixel data"), "1.2.3.1.2": (0x0107, None)}
        recorder = Recorder()
        self.acceptor = Acceptor(self.clock, services={commands.C_STORE_RQ: recorder})

        def handle(protocol, contextId, command, dataset):
            recorder.received.append((command, b"", None))
            status, comment = warnings.get(command[commands.AFFECTED_SOP_INSTANCE_UID], (0, None))
            protocol.sendMessage(contextId, commands.response(command, commands.C_STORE_RSP, status,
                                                              {commands.ERROR_COMMENT: comment} if comment else None))
        recorder.handle = handle
        forwarder, events = self.forwarder(), []
        forwarder.log = Logger(observer=events.append)
        self.assertEqual(self.forward(forwarder, imageAction("", level="STUDY")), 5)
        self.assertEqual([(e["log_level"], formatEvent(e)) for e in events], [
            (LogLevel.warn, "forward to DEST: DEST answered the C-STORE of 1.2.3.1.0 with status 0xB000 (coercion of "
                            "data elements), a warning: stored, counted as sent"),
            (LogLevel.warn, "forward to DEST: DEST answered the C-STORE of 1.2.3.1.1 with status 0xB007 (data set "
                            "does not match SOP class: no pixel data), a warning: stored, counted as sent"),
            (LogLevel.warn, "forward to DEST: DEST answered the C-STORE of 1.2.3.1.2 with status 0x0107 (attribute "
                            "list error), a warning: stored, counted as sent")])

    def test_carryOnSendsTheRestAfterAFailureStatus(self):
        """With ``carryOn`` (a user's move command) an object answered A700
        is counted failed and the others go, on associations released."""
        recorder = Recorder(status=0xA700)
        self.acceptor = Acceptor(self.clock, services={commands.C_STORE_RQ: recorder})
        forwarder = self.forwarder()
        aborted = self.released(forwarder)
        handle = recorder.handle

        def firstRefused(protocol, contextId, command, dataset):
            handle(protocol, contextId, command, dataset)
            recorder.status = 0
        recorder.handle = firstRefused
        failure = self.forward(forwarder, imageAction("", level="STUDY"), carryOn=True)
        failure.trap(Undelivered)
        self.assertEqual(failure.value.sent, 4)
        self.assertEqual(str(failure.value), "4 object(s) sent to DEST, 1 failed, e.g. DEST answered the C-STORE of "
                                             "1.2.3.1.0 with status 0xA700")
        self.assertEqual(len(recorder.received), 5)
        self.clock.advance(5)  # ForwardAssociationCloseDelay
        self.acceptor.flush()
        self.assertEqual((self.acceptor.openAssociations(), aborted), ([], []))

    def test_aCStoreResponseWithoutStatusIsARefusal(self):
        """A destination answering the C-STORE of 1.2.3.1.0 without a
        Status (the object may be stored or not): the forward is refused,
        to be retried, with a reason saying so; with ``carryOn`` (dgate
        --movestudy) that object counts as failed and the rest goes on a
        new association, the one that answered so being aborted."""
        for carryOn in (False, True):
            recorder = Recorder()
            self.acceptor = Acceptor(self.clock, services={commands.C_STORE_RQ: recorder})

            def handle(protocol, contextId, command, dataset, recorder=recorder):
                recorder.received.append((command, b"", None))
                response = commands.response(command, commands.C_STORE_RSP, 0)
                if command[commands.AFFECTED_SOP_INSTANCE_UID] == "1.2.3.1.0":
                    del response[commands.STATUS]
                protocol.sendMessage(contextId, response)
            recorder.handle = handle
            failure = self.forward(self.forwarder(associationLevel="GLOBAL"), imageAction("", level="STUDY"),
                                   carryOn=carryOn)
            reason = "DEST answered the C-STORE of 1.2.3.1.0 without a Status"
            if carryOn:
                failure.trap(Undelivered)
                self.assertEqual(str(failure.value), f"4 object(s) sent to DEST, 1 failed, e.g. {reason}")
                self.assertEqual((len(recorder.received), self.acceptor.associations), (5, 2))
            else:
                failure.trap(Refused)
                self.assertEqual(str(failure.value), reason)
                self.assertEqual(len(recorder.received), 1)

    def test_anInterruptAbortsACStoreStillUnanswered(self):
        """A destination that leaves a C-STORE unanswered: ``interrupt``
        aborts its association at once (not after TCPIPTimeOut), with
        nothing after the A-ABORT (no A-RELEASE-RQ), and the forward fails
        with Interrupted (stays queued, no attempt counted)."""
        self.acceptor = Acceptor(self.clock, services={commands.C_STORE_RQ: Silent()})
        forwarder = self.forwarder(dimseTimeout=300)
        d = defer.ensureDeferred(forwarder.forward(imageAction("", level="STUDY")))
        for _ in range(5):
            self.acceptor.flush()
            self.clock.advance(1)
        self.assertNoResult(d)
        forwarder.interrupt()
        self.assertEqual(b"".join(self.acceptor.pumps[0].clientIO.stream),
                         pdu.encodeAbort(pdu.SOURCE_SERVICE_USER, pdu.REASON_NOT_SPECIFIED))
        self.acceptor.flush()
        self.failureResultOf(d, Interrupted)
        self.acceptor.flush()
        self.assertEqual(self.acceptor.openAssociations(), [])

    def test_aTCPIPTimeOutOfZeroIsNoLimitForTheCStoreResponse(self):
        """TCPIPTimeOut = 0 in dicom.ini: a destination may take as long as
        it likes to answer a C-STORE (no limit, as for the idle timeout),
        not 300 s; so too the STOW-RS requests."""
        ini = DicomIni.fromString("[sscscp]\nTCPIPTimeOut = 0\n", "/c/dicom.ini")
        configuration = Configuration(ini=ini, acrNemaMap=AcrNemaMap.fromString(NODES), sopList=None,
                                      layout=None, configDir="/c", workdir="/w", iniPath="/c/dicom.ini")
        self.acceptor = Acceptor(self.clock, services={commands.C_STORE_RQ: Silent()})
        forwarder = Forwarder.fromConfiguration(configuration, self.clock, "PACS", self.archive.syncIndex,
                                                self.archive.query, self.archive.reader, SyncWorkers())
        forwarder.endpointFor = self.acceptor.endpointFor
        d = defer.ensureDeferred(forwarder.forward(imageAction("1.2.3.1.0")))
        for _ in range(4):
            self.acceptor.flush()
            self.clock.advance(100)
        self.assertNoResult(d)
        self.assertEqual(forwarder.stow.timeout, None)
        forwarder.interrupt()
        self.acceptor.flush()
        self.failureResultOf(d, Interrupted)

    def test_anInterruptCancelsAnAssociationBeingOpened(self):
        """A destination that takes the connection but never answers the
        A-ASSOCIATE-RQ: ``interrupt`` stops the attempt at once (not after
        the connect timeout), and the forward fails with Interrupted (stays
        queued, no attempt counted)."""
        transports = []

        def connect(factory):
            client = factory.buildProtocol(None)
            transports.append(TcpTransport())
            client.makeConnection(transports[-1])
            return defer.succeed(client)
        self.acceptor.connect = connect
        forwarder = self.forwarder()
        d = defer.ensureDeferred(forwarder.forward(imageAction("1.2.3.1.0")))
        self.clock.advance(5)
        self.assertNoResult(d)
        forwarder.interrupt()
        self.failureResultOf(d, Interrupted)
        self.assertTrue(transports[0].value().endswith(pdu.encodeAbort(pdu.SOURCE_SERVICE_USER,
                                                                       pdu.REASON_NOT_SPECIFIED)))

    def test_anInterruptedForwardStopsBeforeItsNextObjectAndReleases(self):
        """The service stops (``interrupt``): a study forward under way sends
        no further object, raises Interrupted, and releases its association."""
        forwarder = self.forwarder(associationLevel="STUDY")
        aborted = []

        def sent(count):
            forwarder.interrupt()
            protocol = self.acceptor.clients[0]
            protocol.abortAssociation = lambda: aborted.append(protocol)
        failure = settle(self, defer.ensureDeferred(forwarder.forward(imageAction("", level="STUDY"), sent)),
                         self.acceptor, self.clock)
        failure.trap(Interrupted)
        self.assertEqual(len(self.received()), 1)
        self.acceptor.flush()
        self.assertEqual((self.acceptor.openAssociations(), aborted), ([], []))

    def test_badAssociationLevel(self):
        self.assertRaises(ValueError, self.forwarder, associationLevel="WARD")



class Mover:
    """C-FIND and C-MOVE services of a remote archive holding two CT series
    and an MR series of study 1.2.3: records the C-MOVE identifiers."""

    SERIES = [("1.2.3.1", "CT"), ("1.2.3.2", "MR"), ("1.2.3.3", "CT")]

    def __init__(self, status=0):
        self.moves = []
        self.status = status
        self.counters = {}  # the sub-operation counters of the final C-MOVE response

    def handle(self, protocol, contextId, command, dataset):
        syntax = protocol.association.contexts[contextId][1]
        identifier = decodeDataset(dataset.data, syntax)
        field = command[commands.COMMAND_FIELD]
        if field == commands.C_MOVE_RQ:
            self.moves.append((command[commands.MOVE_DESTINATION], identifier))
            protocol.sendMessage(contextId, commands.response(command, commands.C_MOVE_RSP, self.status,
                                                              self.counters))
            return
        for series, modality in self.SERIES:
            if identifier.Modality in ("", modality):
                match = Dataset()
                match.QueryRetrieveLevel = "SERIES"
                match.PatientID, match.StudyInstanceUID, match.SeriesInstanceUID = "PAT1", "1.2.3", series
                match.Modality = modality
                protocol.sendMessage(contextId, commands.response(command, commands.C_FIND_RSP, 0xFF00),
                                     encodeDataset(match, syntax))
        protocol.sendMessage(contextId, commands.response(command, commands.C_FIND_RSP, 0))


class GetTests(unittest.TestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.mover = Mover()
        self.acceptor = Acceptor(self.clock, sopClasses=(PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE),
                                 services={commands.C_FIND_RQ: self.mover, commands.C_MOVE_RQ: self.mover})
        self.forwarder = Forwarder(self.clock, AcrNemaMap.fromString(NODES), "PACS", None, None, None, SyncWorkers(),
                                   endpointFor=self.acceptor.endpointFor)

    def get(self, level, filters=None):
        action = Action(1, "get", "DEST", level, Target("PAT1", "1.2.3", "1.2.3.9", "1.2.3.9.1"), "",
                        filters or {}, 0)
        return settle(self, defer.ensureDeferred(self.forwarder.get(action)), self.acceptor, self.clock)

    def test_getStudyIsOneMoveToUs(self):
        self.assertEqual(self.get("STUDY"), 1)
        [(destination, identifier)] = self.mover.moves
        self.assertEqual(destination, "PACS")
        self.assertEqual((identifier.QueryRetrieveLevel, identifier.PatientID, identifier.StudyInstanceUID),
                         ("STUDY", "PAT1", "1.2.3"))
        self.acceptor.flush()
        self.assertEqual(self.acceptor.openAssociations(), [])

    def test_filtersFindWhatToMove(self):
        self.assertEqual(self.get("STUDY", {"modality": "CT"}), 2)
        self.assertEqual([(i.QueryRetrieveLevel, i.SeriesInstanceUID) for _, i in self.mover.moves],
                         [("SERIES", "1.2.3.1"), ("SERIES", "1.2.3.3")])

    def test_failedMove(self):
        self.mover.status = 0xA702
        failure = self.get("PATIENT")
        failure.trap(ForwardError)
        self.assertIn("0xA702", str(failure.value))

    def test_aMoveResponseWithoutStatusFails(self):
        """A final C-MOVE response without a Status: the get fails (to be
        retried) saying so, instead of formatting a status of None."""
        handle = self.mover.handle

        def withoutStatus(protocol, contextId, command, dataset):
            send = protocol.sendMessage
            protocol.sendMessage = lambda contextId, response: send(
                contextId, {tag: value for tag, value in response.items() if tag != commands.STATUS})
            handle(protocol, contextId, command, dataset)
            protocol.sendMessage = send
        self.mover.handle = withoutStatus
        failure = self.get("STUDY")
        failure.trap(ForwardError)
        self.assertRegex(str(failure.value), r"^retrieve from DEST failed: .* answered message 1 with a C-MOVE-RSP "
                                             r"without a Status$")

    def test_moveWithWarningsOnlyIsDone(self):
        """B000 is "one or more failures or warnings" (PS3.4 C.4.2.1.4.1):
        with warnings only every object arrived; with failures (or no
        count of them) the get fails."""
        self.mover.status = 0xB000
        self.mover.counters = {commands.COMPLETED_SUBOPERATIONS: 2, commands.FAILED_SUBOPERATIONS: 0,
                               commands.WARNING_SUBOPERATIONS: 1}
        self.assertEqual(self.get("STUDY"), 1)
        for counters in ({commands.COMPLETED_SUBOPERATIONS: 2, commands.FAILED_SUBOPERATIONS: 1}, {}):
            self.mover.counters = counters
            failure = self.get("STUDY")
            failure.trap(ForwardError)
            self.assertIn("ended with status 0xB000", str(failure.value))
