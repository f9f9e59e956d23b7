"""MAGDeviceThreshold: a write below the threshold starts a background
clean-up that deletes the least recently accessed patients until 5 MB more
than the threshold is free, one clean-up at a time.  Free space is counted
as one MB per stored file, out of 12.  LRUSort orders; NightlyCleanThreshold
checks at 01:00."""

import os
import time

import pydicom
from sqlalchemy import select
from twisted.internet import defer, task
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.errors import ConfigError
from pacscore.control.maintenance import MakeSpace
from pacscore.storage import space
from pacscore.storage.space import MEGABYTE, RETRY, STUDY_DATE, Nightly, patientsInDeletionOrder, lruSortTag
from pacscore.testing.corpus import generateCorpus
from tests.pacscore.control.running import RunningArchive


class ThresholdTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self)
        yield self.running.storeAgedPatients(os.path.abspath(self.mktemp()))
        self.keeper = self.running.archive.spaceKeeper
        self.cleaner = self.running.archive.thresholdClean
        self.cleaner.startService()
        self.addCleanup(self.cleaner.stopService)
        self.reads = 0

        def freeSpace(path):
            self.reads += 1
            return (12 - len(self.running.files())) * MEGABYTE
        self.keeper.freeSpace = freeSpace

    def checkBeforeAWrite(self, patientID=None):
        """What an I/O thread does before it writes; fires once a clean-up
        it started (if any) has begun."""
        return self.running.archive.workers.deferToWorker(self.cleaner.checkFromThread, patientID)

    def patientsLeft(self):
        patient = self.running.archive.index.tables.patient
        return self.running.archive.index.runQuery(
            lambda connection: connection.execute(select(patient.c.PatientID)).scalars().all())

    @defer.inlineCallbacks
    def test_belowTheThresholdDeletesTheOldestPatients(self):
        self.cleaner.threshold = 2 * MEGABYTE  # 0 MB free: 7 MB wanted
        yield self.checkBeforeAWrite()
        cleaning = self.keeper.cleaning
        self.assertIsNotNone(cleaning)
        yield self.checkBeforeAWrite()  # still below, but one clean-up at a time
        self.assertIs(self.keeper.cleaning, cleaning)
        yield cleaning
        self.assertIsNone(self.keeper.cleaning)
        self.assertEqual((yield self.running.count("patient")), 1)
        self.assertEqual(len(self.running.files()), 4)
        yield self.checkBeforeAWrite()  # 8 MB free now
        self.assertIsNone(self.keeper.cleaning)

    @defer.inlineCallbacks
    def test_onlyPatientsWithObjectsOnTheDevice(self):
        """The oldest patient, moved to MAG1 (NightlyMoveThreshold's way),
        frees nothing on MAG0 and stays: the next two go."""
        image = self.running.archive.index.tables.image
        yield self.running.archive.index.runWrite(lambda connection: connection.execute(
            image.update().where(image.c.ImagePat == "PAT0002").values(DeviceName="MAG1")))
        self.cleaner.threshold = 2 * MEGABYTE
        yield self.checkBeforeAWrite()
        yield self.keeper.cleaning
        self.assertEqual((yield self.patientsLeft()), ["PAT0002"])

    @defer.inlineCallbacks
    def test_aPatientJustStoredIsNotChosen(self):
        """The least recently entered patient PAT0002 gets a new image just
        before the check its write makes: recently used, it and its new
        image stay and the next two go."""
        new = [i for i in generateCorpus(os.path.abspath(self.mktemp()), patients=3, studiesPerPatient=1,
                                         seriesPerStudy=1, imagesPerSeries=1) if i.patientID == "PAT0002"]
        yield self.running.store(new)
        self.cleaner.threshold = 2 * MEGABYTE
        yield self.checkBeforeAWrite("PAT0002")
        yield self.keeper.cleaning
        self.assertEqual((yield self.patientsLeft()), ["PAT0002"])
        self.assertEqual(len(self.running.files()), 5)

    @defer.inlineCallbacks
    def test_anAccessTimeInTheFutureIsOld(self):
        """Objects stored while the clock ran a month ahead (corrected
        since) do not spare their patient, as in Conquest: the oldest two
        go, PAT0002 first."""
        image = self.running.archive.index.tables.image
        yield self.running.archive.index.runWrite(lambda connection: connection.execute(
            image.update().values(AccessTime=int(time.time()) + 30 * 86400)))
        self.cleaner.threshold = 2 * MEGABYTE
        yield self.checkBeforeAWrite()
        yield self.keeper.cleaning
        self.assertEqual((yield self.patientsLeft()), ["PAT0000"])

    @defer.inlineCallbacks
    def cleanAcrossAClockStep(self, accessTimes, wallBefore, wallAfter):
        """The patients left by a clean-up (2 MB threshold: two patients go)
        of the aged patients with an image each stored at ``accessTimes``
        (patient -> AccessTime), begun at ``wallBefore`` on the wall clock;
        3 s later on the monotonic clock, the wall clock is ``wallAfter``."""
        image = self.running.archive.index.tables.image
        for patientID, accessed in accessTimes.items():
            yield self.running.archive.index.runWrite(lambda connection, p, t: connection.execute(
                image.update().where(image.c.ImagePat == p).values(AccessTime=t)), patientID, accessed)
        clocks = [wallBefore, 50.5]
        self.keeper.wallClock, self.keeper.monotonic = lambda: clocks[0], lambda: clocks[1]
        cleaning = self.keeper.clean(2 * MEGABYTE, "makespace")  # its start is read at once
        clocks[:] = [wallAfter, 53.5]
        yield cleaning
        return (yield self.patientsLeft())

    @defer.inlineCallbacks
    def test_anObjectStoredBeforeTheClockSteppedBackIsRecent(self):
        """A clean-up begins with the clock an hour ahead; PAT0002 gets an
        object a second later, then NTP steps the clock back: PAT0002 stays.
        PAT0001's AccessTime, left by a clock two hours ahead before the
        clean-up began, is old: it goes, with PAT0000."""
        now = 1800000000
        left = yield self.cleanAcrossAClockStep({"PAT0002": now + 3601, "PAT0001": now + 7200},
                                                now + 3600, now + 3)
        self.assertEqual(left, ["PAT0002"])

    @defer.inlineCallbacks
    def test_anObjectStoredAfterTheClockSteppedForwardIsRecent(self):
        """A clean-up begins with the clock an hour behind; NTP steps it
        forward, then PAT0002 gets an object: PAT0002 stays."""
        now = 1800000000
        left = yield self.cleanAcrossAClockStep({"PAT0002": now + 2}, now - 3600, now + 3)
        self.assertEqual(left, ["PAT0002"])

    @defer.inlineCallbacks
    def test_noCleanUpOnceStopped(self):
        """Objects written while pacs stops start no clean-up."""
        self.cleaner.threshold = 2 * MEGABYTE
        yield self.cleaner.stopService()
        yield self.checkBeforeAWrite()
        self.assertIsNone(self.keeper.cleaning)
        self.assertEqual(len(self.running.files()), 12)

    @defer.inlineCallbacks
    def test_offByDefault(self):
        self.assertEqual(self.cleaner.threshold, 0)
        yield self.checkBeforeAWrite()
        self.assertEqual(self.reads, 0)
        self.assertIsNone(self.keeper.cleaning)
        self.assertEqual(len(self.running.files()), 12)

    @defer.inlineCallbacks
    def test_aCleanUpThatFreesTooLittleIsNotRunAgainAtEachWrite(self):
        """Once a clean-up ended short of the threshold (the disk filled by
        something else), the writes that follow start none for a minute,
        and the next one warns no more."""
        self.cleaner.threshold = 20 * MEGABYTE
        self.keeper.freeSpace = lambda path: 0
        clock = [1000.0]
        self.cleaner.monotonic = lambda: clock[0]
        with capturedLogs() as events:
            yield self.checkBeforeAWrite()
            yield self.keeper.cleaning
            self.assertEqual((yield self.running.count("patient")), 0)
            started = len(events)
            for _ in range(5):
                yield self.checkBeforeAWrite()
                self.assertIsNone(self.keeper.cleaning)
            clock[0] += RETRY
            yield self.checkBeforeAWrite()
            self.assertIsNotNone(self.keeper.cleaning)
            yield self.keeper.cleaning
        warnings = [formatEvent(e) for e in events if e["log_level"] >= LogLevel.warn]
        self.assertEqual(warnings, ["less than 20 MB free on MAG0 (MAGDeviceThreshold): deleting the least recently "
                                    "used patients", "0 MB free on MAG0 after the clean-up"])
        self.assertGreater(len(events), started)

    @defer.inlineCallbacks
    def test_aCleanUpThatEndedShortRunsAgainOnceTheDiskFills(self):
        """A clean-up ended short, 9 MB free, nobody left; then new patients
        are stored: a check that finds 4 MB less free starts none, one that
        finds 5 MB (MARGIN) less starts one at once, before the minute is
        up, and it deletes them."""
        self.cleaner.threshold = 10 * MEGABYTE
        free = [9 * MEGABYTE]
        self.keeper.freeSpace = lambda path: free[0]
        self.cleaner.monotonic = lambda: 1000.0
        yield self.checkBeforeAWrite()
        yield self.keeper.cleaning
        self.assertEqual((yield self.running.count("patient")), 0)
        yield self.running.store(generateCorpus(os.path.abspath(self.mktemp()), patients=2, studiesPerPatient=1,
                                                seriesPerStudy=1, imagesPerSeries=2))
        free[0] = 5 * MEGABYTE
        yield self.checkBeforeAWrite()
        self.assertIsNone(self.keeper.cleaning)
        free[0] = 4 * MEGABYTE
        yield self.checkBeforeAWrite("PAT0001")
        self.assertIsNotNone(self.keeper.cleaning)
        yield self.keeper.cleaning
        self.assertEqual((yield self.patientsLeft()), ["PAT0001"])

    def test_fromDicomIni(self):
        self.assertEqual(RunningArchive(self, ini={"MAGDeviceThreshold": "300"}).archive.thresholdClean.threshold,
                         300 * MEGABYTE)
        ignored = RunningArchive(self, ini={"MAGDeviceThreshold": "300", "IgnoreMAGDeviceThreshHold": "1"})
        self.assertEqual(ignored.archive.thresholdClean.threshold, 0)



class SpilloverThresholdTests(unittest.TestCase):
    """MAGDeviceThreshold with MAG0 spilling over to MAG1
    (MAGDeviceFullThreshHold), as Conquest's GetDevice: the device an
    object goes to is the one checked, and a clean-up stops once a device
    new objects may go to has room."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ini={"MAGDevices": "2", "MAGDevice1": "./data1/",
                                                 "MAGDeviceThreshold": "20"})
        yield self.running.storeAgedPatients(os.path.abspath(self.mktemp()))
        self.archive = self.running.archive
        self.mag0, self.mag1 = self.archive.devices
        self.keeper = self.archive.spaceKeeper
        self.cleaner = self.archive.thresholdClean
        self.cleaner.startService()
        self.addCleanup(self.cleaner.stopService)
        self.free = {self.mag0.path: 10 * MEGABYTE, self.mag1.path: 80000 * MEGABYTE}
        self.keeper.freeSpace = lambda path: self.free[path]

    def checkBeforeAWrite(self, device):
        return self.archive.workers.deferToWorker(self.cleaner.checkFromThread, None, device)

    @defer.inlineCallbacks
    def test_anObjectForARoomyDeviceDeletesNothing(self):
        """MAG0 is low, but the object goes to MAG1, which has room."""
        yield self.checkBeforeAWrite(self.mag1)
        self.assertIsNone(self.keeper.cleaning)
        self.assertEqual((yield self.running.count("patient")), 3)

    @defer.inlineCallbacks
    def test_noCleanUpWhileADeviceHasRoom(self):
        """Objects for MAG0, low but above MAGDeviceFullThreshHold: MAG1
        has room, so no clean-up starts, nor is anything logged (Conquest's
        PanicKillOff and LargestFreeMAG)."""
        with capturedLogs() as events:
            for _ in range(3):
                yield self.checkBeforeAWrite(self.mag0)
                self.assertIsNone(self.keeper.cleaning)
        self.assertEqual([formatEvent(e) for e in events], [])
        self.assertEqual((yield self.running.count("patient")), 3)

    @defer.inlineCallbacks
    def test_aCleanUpWithRoomListsNoPatient(self):
        """A clean-up that finds room at once ends before listing the patients."""
        self.patch(space, "patientsInDeletionOrder", lambda *args: self.fail("patients listed"))
        self.assertEqual((yield self.keeper.clean(20 * MEGABYTE, self.cleaner.name, anywhere=True)),
                         80000 * MEGABYTE)

    @defer.inlineCallbacks
    def test_theCleanUpCountsTheDeviceWithoutSpillover(self):
        """MAGDeviceFullThreshHold = 0 keeps every object on MAG0: MAG1's room does not end its clean-up."""
        self.keeper.spillover = ()
        self.keeper.freeSpace = lambda path: (10 + 4 * (12 - len(self.running.files()))) * MEGABYTE \
            if path == self.mag0.path else self.free[path]
        yield self.checkBeforeAWrite(self.mag0)
        yield self.keeper.cleaning
        self.assertEqual((yield self.running.count("patient")), 2)  # 26 MB free after the first

    def test_spilloverFromDicomIni(self):
        self.assertEqual(self.keeper.spillover, (self.mag1,))
        single = RunningArchive(self, ini={"MAGDevices": "2", "MAGDevice1": "./data1/",
                                           "MAGDeviceFullThreshHold": "0"})
        self.assertEqual(single.archive.spaceKeeper.spillover, ())


class AcrossDevicesTests(unittest.TestCase):
    """MAG0 spilling over to MAG1 (MAGDeviceFullThreshHold), both of 12 MB,
    one MB per stored file; the oldest patient, PAT0002, moved to MAG1 (as
    NightlyMoveTarget does).  With LRUSort empty it still goes first, as
    Conquest's PanicKillOff walks the whole patient table until one of the
    devices has room (LargestFreeMAG); by another LRUSort, or to move, only
    patients with objects on MAG0 are chosen, as its
    MakeListOfOldestPatientsOnDevice; without spillover, only MAG0's room
    counts, which deleting PAT0002 would not give."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ini={"MAGDevices": "2", "MAGDevice1": "./data1/"})
        yield self.running.storeAgedPatients(os.path.abspath(self.mktemp()))
        self.keeper = self.running.archive.spaceKeeper
        self.mag0, self.mag1 = self.running.archive.devices
        self.size = {self.mag0.path: 12, self.mag1.path: 12}
        self.keeper.freeSpace = lambda path: (self.size[path] - self.filesOn(path)) * MEGABYTE
        yield defer.ensureDeferred(self.keeper.makeSpace(4 * MEGABYTE, moveTo="MAG1"))
        self.assertEqual((self.filesOn(self.mag0.path), self.filesOn(self.mag1.path)), (8, 4))

    @staticmethod
    def filesOn(path):
        count = 0
        for folder, subfolders, names in os.walk(path):
            subfolders[:] = [d for d in subfolders if not d.startswith(".") and d != "dbase"]
            count += len(names)
        return count

    def patientsLeft(self):
        patient = self.running.archive.index.tables.patient
        return self.running.archive.index.runQuery(
            lambda connection: connection.execute(select(patient.c.PatientID).order_by(patient.c.PatientID))
            .scalars().all())

    @defer.inlineCallbacks
    def makeSpace(self, megabytes, **keywords):
        """The report lines of a makeSpace, and the patients left."""
        lines = []
        yield defer.ensureDeferred(self.keeper.makeSpace(megabytes * MEGABYTE, lines.append, **keywords))
        return lines, (yield self.patientsLeft())

    @defer.inlineCallbacks
    def test_theFirstEnteredGoFirstWhereverTheyAre(self):
        """MAGDeviceThreshold (4 MB free on MAG0, 8 on MAG1): deleting
        PAT0002 frees 12 MB on MAG1, enough."""
        lines, left = yield self.makeSpace(9, anywhere=True)
        self.assertEqual(lines, ["deleted patient PAT0002: 4 object(s)"])
        self.assertEqual(left, ["PAT0000", "PAT0001"])

    @defer.inlineCallbacks
    def test_makespaceCountsTheDevicesObjectsSpillOverTo(self):
        """Conquest's -ff: PAT0002 goes, then 12 MB are free on MAG1."""
        output = yield self.running.run(MakeSpace(), "10")
        self.assertEqual(output.split("\n"), ["deleted patient PAT0002: 4 object(s)", "12 MB free on MAG0 or MAG1"])

    @defer.inlineCallbacks
    def test_nightlyCleanCountsTheDevicesObjectsSpillOverTo(self):
        """NightlyCleanThreshold = 5 with 4 MB free on MAG0 but 8 on MAG1,
        where objects go: nobody is deleted; at 9 (14 MB wanted, more than
        a device holds), PAT0002 goes first."""
        yield defer.ensureDeferred(self.keeper.cleanIfBelow(5 * MEGABYTE, "NightlyCleanThreshold"))
        self.assertEqual((yield self.patientsLeft()), ["PAT0000", "PAT0001", "PAT0002"])
        with capturedLogs() as events:
            yield defer.ensureDeferred(self.keeper.cleanIfBelow(9 * MEGABYTE, "NightlyCleanThreshold"))
        self.assertEqual([formatEvent(e) for e in events if "deleted patient" in formatEvent(e)],
                         [f"NightlyCleanThreshold: deleted patient {p}: 4 object(s)"
                          for p in ("PAT0002", "PAT0001", "PAT0000")])

    @defer.inlineCallbacks
    def test_withoutSpilloverOnlyPatientsOnMag0(self):
        """MAGDeviceFullThreshHold = 0: PAT0002 would free nothing where
        objects go; PAT0001 goes."""
        self.keeper.spillover = ()
        lines, left = yield self.makeSpace(8, anywhere=True)
        self.assertEqual(lines, ["deleted patient PAT0001: 4 object(s)"])
        self.assertEqual(left, ["PAT0000", "PAT0002"])

    @defer.inlineCallbacks
    def test_byStudyDateOnlyPatientsOnMag0(self):
        """PAT0002's study is the oldest, but it is on MAG1: PAT0001 goes."""
        yield self.running.redate("PAT0002", "20190101")
        self.keeper.sortTag = STUDY_DATE
        lines, left = yield self.makeSpace(9, anywhere=True)
        self.assertEqual(lines, ["deleted patient PAT0001: 4 object(s)", "deleted patient PAT0000: 4 object(s)"])
        self.assertEqual(left, ["PAT0002"])

    @defer.inlineCallbacks
    def test_aMoveTakesOnlyPatientsOnMag0(self):
        lines, left = yield self.makeSpace(12, moveTo="MAG1")
        self.assertEqual(lines, ["moved patient PAT0001: 4 object(s) to MAG1",
                                 "moved patient PAT0000: 4 object(s) to MAG1"])
        self.assertEqual(left, ["PAT0000", "PAT0001", "PAT0002"])


class LRUSortTests(unittest.TestCase):
    """Which patients go first: AccessTime (default), the last StudyDate or
    the PatientBirthDate, as Conquest's LRUSort says."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self)
        yield self.running.storeAgedPatients(os.path.abspath(self.mktemp()))
        index = self.running.archive.index
        patient, study = index.tables.patient, index.tables.study
        for patientID, studyDate, birthDate in (("PAT0000", "20200101", "19900101"),
                                                ("PAT0001", "20230101", "19500101"),
                                                ("PAT0002", "20220101", "")):
            yield index.runWrite(lambda connection, p, d, b: (
                connection.execute(study.update().where(study.c.PatientID == p).values(StudyDate=d)),
                connection.execute(patient.update().where(patient.c.PatientID == p).values(PatientBirthDate=b))),
                patientID, studyDate, birthDate)

    def order(self, sortTag):
        archive = self.running.archive
        return archive.index.runQuery(patientsInDeletionOrder, archive.query, sortTag)

    @defer.inlineCallbacks
    def test_orders(self):
        for value, expected in (("", ["PAT0002", "PAT0001", "PAT0000"]),
                                ("AccessTime", ["PAT0002", "PAT0001", "PAT0000"]),
                                ("StudyDate", ["PAT0000", "PAT0002", "PAT0001"]),
                                ("PatientBir", ["PAT0002", "PAT0001", "PAT0000"]),
                                ("patientbirthdate", ["PAT0002", "PAT0001", "PAT0000"])):
            self.assertEqual((yield self.order(lruSortTag(value))), expected, value)

    @defer.inlineCallbacks
    def test_aPatientWithoutStudyGoesFirstByStudyDate(self):
        patient = self.running.archive.index.tables.patient
        yield self.running.archive.index.runWrite(
            lambda connection: connection.execute(patient.insert().values(PatientID="EMPTY", AccessTime=999)))
        self.assertEqual((yield self.order(STUDY_DATE))[0], "EMPTY")

    def test_fromDicomIni(self):
        self.assertEqual(RunningArchive(self, ini={"LRUSort": "StudyDate"}).archive.spaceKeeper.sortTag, STUDY_DATE)
        self.assertIsNone(RunningArchive(self).archive.spaceKeeper.sortTag)
        error = self.assertRaises(ConfigError, RunningArchive, self, ini={"LRUSort": "PatientName"})
        self.assertIn("LRUSort = PatientName: expected StudyDate, PatientBir or AccessTime", str(error))


class NightlyTests(unittest.TestCase):

    def at(self, day, hour, minute=0):
        return time.mktime((2026, 3, day, hour, minute, 0, 0, 0, -1))

    def inZone(self, zone):
        """Local time is ``zone``'s for the rest of the test."""
        old = os.environ.get("TZ")
        os.environ["TZ"] = zone
        time.tzset()

        def restore():
            if old is None:
                del os.environ["TZ"]
            else:
                os.environ["TZ"] = old
            time.tzset()
        self.addCleanup(restore)

    def nightlies(self, hours, start, duration=5):
        """Started Nightly services at ``hours``, whose task takes
        ``duration`` s, on a fresh ``self.clock``; the wall clock starts at
        ``start`` and moves with it, plus ``self.step`` (a clock step).  A
        list the runs go in, in local time."""
        self.clock, self.step, runs = task.Clock(), 0, []
        wall = lambda: start + self.clock.seconds() + self.step
        for hour in hours:
            async def run(keepGoing, hour=hour):
                runs.append((hour, time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(wall()))))
                done = defer.Deferred()
                self.clock.callLater(duration, done.callback, None)
                await done
            nightly = Nightly(f"at {hour}", hour, run, self.clock, wall)
            nightly.startService()
            self.addCleanup(nightly.stopService)
        return runs

    def test_runsEveryNightAtItsHour(self):
        runs = self.nightlies([1], self.at(1, 0, 59))
        self.clock.advance(59)
        self.assertEqual(runs, [])
        self.clock.advance(1)
        self.assertEqual(runs, [(1, time.strftime("%Y-%m-%d 01:00 %Z", time.localtime(self.at(1, 1))))])
        self.clock.pump([60] * 25 * 60)
        self.assertEqual([when[:16] for _, when in runs], ["2026-03-01 01:00", "2026-03-02 01:00"])

    def assertRunsAroundDay(self, zone, day, hours, expected):
        """Nightly services of ``hours`` in ``zone``, started at noon two days
        before ``day`` (year, month, day), run as ``expected`` over three days."""
        self.inZone(zone)
        year, month, mday = day
        runs = self.nightlies(hours, time.mktime((year, month, mday - 2, 12, 0, 0, 0, 0, -1)))
        self.clock.pump([60] * 3 * 24 * 60)
        self.assertEqual(runs, expected)

    def test_onceOnTheAutumnClockChange(self):
        """The hour that happens twice runs its task once, with the other
        Nightly services of a site, in New York and in Amsterdam."""
        for zone, day, hours, expected in [
                ("America/New_York", (2026, 11, 1), [1, 2],
                 [(1, "2026-10-31 01:00 EDT"), (2, "2026-10-31 02:00 EDT"), (1, "2026-11-01 01:00 EDT"),
                  (2, "2026-11-01 02:00 EST"), (1, "2026-11-02 01:00 EST"), (2, "2026-11-02 02:00 EST")]),
                ("Europe/Amsterdam", (2026, 10, 25), [2, 3],
                 [(2, "2026-10-24 02:00 CEST"), (3, "2026-10-24 03:00 CEST"), (2, "2026-10-25 02:00 CEST"),
                  (3, "2026-10-25 03:00 CET"), (2, "2026-10-26 02:00 CET"), (3, "2026-10-26 03:00 CET")])]:
            self.assertRunsAroundDay(zone, day, hours, expected)

    def test_afterItsHourOnTheSpringClockChange(self):
        """The night its hour does not exist (the clocks go forward over
        it), a task runs at the first check after that hour, once: in
        Berlin and New York NightlyMoveThreshold at 03:00 (NightlyCleanThreshold
        and the Lua nightly at their hour), in London NightlyCleanThreshold
        at 02:00."""
        for zone, day, hours, expected in [
                ("Europe/Berlin", (2027, 3, 28), [1, 2, 3],
                 [(1, "2027-03-27 01:00 CET"), (2, "2027-03-27 02:00 CET"), (3, "2027-03-27 03:00 CET"),
                  (1, "2027-03-28 01:00 CET"), (2, "2027-03-28 03:00 CEST"), (3, "2027-03-28 03:00 CEST"),
                  (1, "2027-03-29 01:00 CEST"), (2, "2027-03-29 02:00 CEST"), (3, "2027-03-29 03:00 CEST")]),
                ("America/New_York", (2027, 3, 14), [1, 2],
                 [(1, "2027-03-13 01:00 EST"), (2, "2027-03-13 02:00 EST"), (1, "2027-03-14 01:00 EST"),
                  (2, "2027-03-14 03:00 EDT"), (1, "2027-03-15 01:00 EDT"), (2, "2027-03-15 02:00 EDT")]),
                ("Europe/London", (2027, 3, 28), [1],
                 [(1, "2027-03-27 01:00 GMT"), (1, "2027-03-28 02:00 BST"), (1, "2027-03-29 01:00 BST")])]:
            self.assertRunsAroundDay(zone, day, hours, expected)

    def test_aClockStepOnTheSpringNightDoesNotRunAtTheWrongHour(self):
        """On the night 02:00 does not exist, a step forward from 00:30 to
        12:05, or from 01:30 to 03:31 CEST, runs nothing until the next
        02:00; a step to 01:59 CET runs it a minute later, at 03:00 CEST."""
        self.inZone("Europe/Berlin")
        nextNight = (2, "2027-03-29 02:00 CEST")
        for start, step, expected in [((0, 30), (11 * 60 + 34) * 60, [nextNight]),
                                      ((1, 30), 60 * 60, [nextNight]),
                                      ((0, 30), 88 * 60, [(2, "2027-03-28 03:00 CEST"), nextNight])]:
            runs = self.nightlies([2], time.mktime((2027, 3, 28) + start + (0, 0, 0, -1)))
            self.step = step
            self.clock.pump([60] * 26 * 60)
            self.assertEqual(runs, expected, (start, step))

    def test_aClockStepNeitherRunsAtTheWrongHourNorTwice(self):
        """A step forward past the hour (2 days and 10 hours, to 12:04) runs
        nothing until the next 01:00; a step back over a run does not run
        it again that night."""
        self.inZone("Europe/Amsterdam")
        runs = self.nightlies([1, 2], time.mktime((2026, 12, 7, 0, 30, 0, 0, 0, -1)))
        self.step = (2 * 24 + 10) * 3600 + 120
        self.clock.pump([60] * 12 * 60)
        self.assertEqual(runs, [])
        self.clock.pump([60] * 14 * 60)
        self.assertEqual(runs, [(1, "2026-12-10 01:00 CET"), (2, "2026-12-10 02:00 CET")])
        self.step -= 3600
        self.clock.pump([60] * 2 * 60)
        self.assertEqual(len(runs), 2)
        self.clock.pump([60] * 24 * 60)
        self.assertEqual(runs[2:], [(1, "2026-12-11 01:00 CET"), (2, "2026-12-11 02:00 CET")])

    def test_startedWithinItsHourWaitsForTheNextNight(self):
        runs = self.nightlies([1], self.at(1, 1, 30))
        self.clock.pump([60] * 24 * 60)
        self.assertEqual([when[:16] for _, when in runs], ["2026-03-02 01:00"])

    def test_aStopWaitsForTheRunUnderWay(self):
        """Stopping during a run tells it to stop (``keepGoing()`` turns
        false) and fires once it has ended; no next run is scheduled."""
        clock, underWay, asked = task.Clock(), defer.Deferred(), []

        async def run(keepGoing):
            asked.append(keepGoing())
            await underWay
            asked.append(keepGoing())
        nightly = Nightly("NightlyMoveThreshold", 2, run, clock, lambda: self.at(1, 1, 59) + clock.seconds())
        nightly.startService()
        clock.advance(60)
        stopped = nightly.stopService()
        self.assertNoResult(stopped)
        underWay.callback(None)
        self.successResultOf(stopped)
        self.assertEqual(asked, [True, False])
        self.assertEqual(clock.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_cleanIfBelow(self):
        running = RunningArchive(self)
        yield running.storeAgedPatients(os.path.abspath(self.mktemp()))
        keeper = running.archive.spaceKeeper
        keeper.freeSpace = lambda path: (12 - len(running.files())) * MEGABYTE
        yield defer.ensureDeferred(keeper.cleanIfBelow(0, "NightlyCleanThreshold"))
        self.assertEqual(len(running.files()), 12)
        yield defer.ensureDeferred(keeper.cleanIfBelow(MEGABYTE, "NightlyCleanThreshold"))  # 0 free: 6 MB wanted
        self.assertEqual(len(running.files()), 4)
        self.assertIsNone(keeper.cleaning)

    def test_fromDicomIni(self):
        archive = RunningArchive(self).archive
        self.assertEqual(archive.spaceServices(), [archive.thresholdClean])
        [_, nightly] = RunningArchive(self, ini={"NightlyCleanThreshold": "300"}).archive.spaceServices()
        self.assertEqual((nightly.name, nightly.hour), ("NightlyCleanThreshold", 1))


class UnusualPatientIDTests(unittest.TestCase):
    """Patients whose ID is empty or holds ``*`` or ``?`` are deleted (and
    moved) by their exact ID, as any other: never another patient whose ID
    the wildcards would match, and never skipped."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self)
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=4, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=2)
        self.ids = {"PAT0000": "", "PAT0001": "A*B", "PAT0002": "EMPTY?", "PAT0003": "AXB"}
        for image in images:
            ds = pydicom.dcmread(image.path)
            ds.PatientID = self.ids[image.patientID]
            ds.save_as(image.path)
        yield self.running.store(images)
        index = self.running.archive.index
        image, patient = index.tables.image, index.tables.patient
        yield index.runWrite(lambda connection: connection.execute(image.update().values(AccessTime=100)))
        for accessed, patientID in enumerate(("", "A*B", "EMPTY?", "AXB")):
            yield index.runWrite(lambda connection, p, t: connection.execute(
                patient.update().where(patient.c.PatientID == p).values(AccessTime=t)), patientID, 100 + accessed)
        self.keeper = self.running.archive.spaceKeeper
        self.keeper.freeSpace = lambda path: (8 - len(self.running.files())) * MEGABYTE

    @defer.inlineCallbacks
    def test_deletedByTheirExactID(self):
        lines = []
        free = yield defer.ensureDeferred(self.keeper.makeSpace(6 * MEGABYTE, lines.append))
        self.assertEqual(free, 6 * MEGABYTE)
        self.assertEqual(lines, ["deleted patient : 2 object(s)", "deleted patient A*B: 2 object(s)",
                                 "deleted patient EMPTY?: 2 object(s)"])
        patient = self.running.archive.index.tables.patient
        left = yield self.running.archive.index.runQuery(
            lambda connection: connection.execute(select(patient.c.PatientID)).scalars().all())
        self.assertEqual(left, ["AXB"])
        self.assertEqual(len(self.running.files()), 2)
