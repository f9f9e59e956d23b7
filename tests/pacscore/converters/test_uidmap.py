"""Tests for pacscore.converters.uidmap: anonymized UIDs kept in UIDMODS."""

import threading

from pydicom.uid import UID
from sqlalchemy import MetaData, inspect, select
from twisted.trial import unittest

from pacscore.converters.context import ConverterServices
from pacscore.converters.uidmap import OWN_STAGE, TABLE_NAME, UIDMap, memoryUIDMap, uidMapOf, uidStagesTable
from tests.pacscore.db.test_schema import sqliteEngine


class UIDMapTests(unittest.TestCase):

    def makeEngine(self):
        return sqliteEngine(self)

    def setUp(self):
        self.engine = self.makeEngine()
        self.uidMap = UIDMap(self.engine, clock=lambda: 1700000000)

    def rows(self):
        with self.engine.connect() as connection:
            return [row._asdict() for row in connection.execute(select(self.uidMap.table))]

    def test_createsTable(self):
        self.assertIn(TABLE_NAME, inspect(self.engine).get_table_names())
        columns = [c["name"] for c in inspect(self.engine).get_columns(TABLE_NAME)]
        self.assertEqual(columns, ["MODTime", "OldUID", "MODType", "NewUID"])

    def test_newUIDIsValidAndStable(self):
        new = self.uidMap.newFor("1.2.3", "StudyInstanceUID")
        self.assertTrue(UID(new).is_valid)
        self.assertNotEqual(new, "1.2.3")
        self.assertEqual(self.uidMap.newFor("1.2.3"), new)
        self.assertNotEqual(self.uidMap.newFor("1.2.4"), new)

    def test_recordsPairs(self):
        new = self.uidMap.newFor("1.2.3", "StudyInstanceUID")
        self.assertEqual(self.rows(), [{"MODTime": 1700000000, "OldUID": "1.2.3",
                                        "MODType": "StudyInstanceUID", "NewUID": new}])

    def test_oldFor(self):
        new = self.uidMap.newFor("1.2.3")
        self.assertEqual(self.uidMap.oldFor(new), "1.2.3")
        self.assertIsNone(self.uidMap.oldFor("1.2.3"))
        self.assertIsNone(self.uidMap.oldFor("9.9.9"))

    def test_lookupMakesNothing(self):
        self.assertIsNone(self.uidMap.lookup("1.2.3"))
        self.assertEqual(self.rows(), [])
        new = self.uidMap.newFor("1.2.3")
        self.assertEqual(UIDMap(self.engine).lookup("1.2.3"), new)

    def test_merges(self):
        """Several studies may be merged into one, each once; merges are no
        new UIDs (a merged study anonymized later gets a new UID, not the
        real UID of the study it went into) and a UID anonymized before may
        still be merged."""
        self.uidMap.merge("1.2.4", "1.2.3", "MergeStudy")
        self.uidMap.merge("1.2.5", "1.2.3", "MergeStudy")
        self.uidMap.merge("1.2.5", "1.2.3", "MergeStudy")  # again: nothing new
        self.assertEqual(UIDMap(self.engine).mergedInto("1.2.5"), "1.2.3")
        with self.assertRaises(ValueError) as raised:
            self.uidMap.merge("1.2.5", "1.2.9", "MergeStudy")
        self.assertIn("1.2.5 was merged into 1.2.3 before", str(raised.exception))
        self.assertEqual(self.rows(), [], "UIDMODS holds no merge")
        self.assertNotIn(self.uidMap.newFor("1.2.4"), ("1.2.3", "1.2.4"))
        changed = self.uidMap.newFor("1.2.6")
        self.uidMap.merge("1.2.6", "1.2.3", "MergeStudy")
        self.assertEqual((self.uidMap.newFor("1.2.6"), self.uidMap.mergedInto("1.2.6")), (changed, "1.2.3"))
        self.assertIsNone(self.uidMap.mergedInto("1.2.7"))

    def test_mergesOfAnEarlierVersionMoveOutOfUIDMODS(self):
        engine = self.makeEngine()
        old = UIDMap(engine)
        old._merges.table.drop(engine)
        with engine.begin() as connection:
            connection.execute(old.table.insert(), [
                {"MODTime": 1, "OldUID": "1.2.4", "MODType": "MergeStudy", "NewUID": "1.2.3"},
                {"MODTime": 1, "OldUID": "1.2.8", "MODType": "SOPInstanceUID", "NewUID": "2.25.8"}])
        again = UIDMap(engine)
        self.assertEqual((again.mergedInto("1.2.4"), again.lookup("1.2.4")), ("1.2.3", None))
        self.assertEqual(again.newFor("1.2.8"), "2.25.8")

    def test_givenValue(self):
        """A value given for an original (changeuid(uid, to), Conquest's
        ChangeUIDTo) is recorded as given, any text (its anonymizer's
        pseudonyms, 'PAT2345723590'), in this process and after a restart;
        empty or past the column's 64 characters it is a ValueError, nothing
        recorded. An original given one before keeps it."""
        self.assertEqual(self.uidMap.newFor("1.2.3.1", given="1.2.3.99"), "1.2.3.99")
        self.assertEqual(self.uidMap.newFor("1.2.3.1", given="1.2.3.98"), "1.2.3.99")
        self.assertEqual(self.uidMap.newFor("DOE^JOHN", "PatientName", given="PAT2345723590"), "PAT2345723590")
        for given in ("", "1" * 65):
            with self.assertRaisesRegex(ValueError, "cannot be recorded: 1 to 64 characters are wanted"):
                self.uidMap.newFor("1.2.3.2", given=given)
        self.assertIsNone(self.uidMap.lookup("1.2.3.2"))
        again = UIDMap(self.engine)
        self.assertEqual((again.oldFor("1.2.3.99"), again.oldFor("PAT2345723590"), again.lookup("DOE^JOHN")),
                         ("1.2.3.1", "DOE^JOHN", "PAT2345723590"))

    def test_aValueStandingForSeveralOriginals(self):
        """One value may be given for several originals (one patient ID's
        two spellings of the name): each keeps it, and oldFor gives the first
        recorded (Conquest's ChangeUIDBack takes the first row), or the one
        recorded for the stage and type asked for, in memory and in the
        table."""
        ticks = iter(range(1700000000, 1700000100))
        for uidMap in (UIDMap(self.engine, clock=lambda: next(ticks)), UIDMap()):
            uidMap.newFor("DOE^JOHN", "PatientName", given="PAT1")
            uidMap.newFor("DOE^J", "PatientName", given="PAT1")
            uidMap.newFor("PID1", "PatientID", given="PAT1")
            uidMap.newFor("DOE^JOHN", "PatientName", "trialA", given="PATA")
            uidMap.newFor("PID1", "PatientID", "trialA", given="PATA")
            uidMap.newFor("DOE^JOHN", "PatientName", "trialB", given="PATB")
            self.assertEqual((uidMap.lookup("DOE^J"), uidMap.lookup("DOE^JOHN", "trialB")), ("PAT1", "PATB"))
            self.assertEqual([uidMap.oldFor("PAT1"), uidMap.oldFor("PAT1", modType="PatientID"),
                              uidMap.oldFor("PATA"), uidMap.oldFor("PATA", "trialA", "PatientID"),
                              uidMap.oldFor("PATA", "trialB"), uidMap.oldFor("PATB", "trialB"),
                              uidMap.oldFor("PAT1", "trialA"), uidMap.oldFor("PAT1", modType="PatientSex")],
                             ["DOE^JOHN", "PID1", "DOE^JOHN", "PID1", None, "DOE^JOHN", None, None])
        self.assertEqual(UIDMap(self.engine).oldFor("PAT1"), "DOE^JOHN")

    def test_uidForPassesOverValuesThatAreNoUIDOfTheOriginalsOwn(self):
        """What replaces a UID element (uidFor: newuids, %E) is a valid UID
        no other original has: a text changeuid recorded ('PAT.SAME' for two
        instances) or a UID recorded first for another original gives way to
        one made for this original alone, the same each time and after a
        restart; a UID recorded for the original alone is taken; stage by
        stage too; the stage kept for those UIDs is refused to changeuid."""
        for uidMap in (self.uidMap, UIDMap()):
            uidMap.newFor("1.2.3.100", given="PAT.SAME")
            uidMap.newFor("1.2.3.101", given="PAT.SAME")
            uidMap.newFor("1.2.3.102", given="1.2.3.999")
            uidMap.newFor("1.2.3.103", given="1.2.3.999")
            uidMap.newFor("1.2.3.104", stage="trialA", given="TEXT")
            made = [uidMap.uidFor(uid, "SOPInstanceUID") for uid in ("1.2.3.100", "1.2.3.101", "1.2.3.103")]
            made.append(uidMap.uidFor("1.2.3.104", stage="trialA"))
            self.assertTrue(all(UID(uid).is_valid for uid in made), made)
            self.assertEqual(len(set(made) | {"1.2.3.999"}), 5, made)
            self.assertEqual(uidMap.uidFor("1.2.3.102"), "1.2.3.999")
            self.assertEqual([uidMap.uidFor(uid) for uid in ("1.2.3.100", "1.2.3.101", "1.2.3.103")], made[:3])
            self.assertEqual((uidMap.newFor("1.2.3.100"), uidMap.lookup("1.2.3.104", "trialA")), ("PAT.SAME", "TEXT"))
            with self.assertRaisesRegex(ValueError, "is kept for UIDs the archive makes"):
                uidMap.newFor("1.2.3.105", stage=OWN_STAGE, given="1.2.3.5")
        self.assertEqual(UIDMap(self.engine).uidFor("1.2.3.101"), self.uidMap.uidFor("1.2.3.101"))

    def test_changeuidbackOfAStageFindsTheUIDsUidForMadeForIt(self):
        """A UID uidFor made for a stage (a text was recorded for the
        original there) leads back to the original with that stage, as
        without one, and not with another stage; after a restart too."""
        for uidMap in (self.uidMap, UIDMap()):
            uidMap.newFor("1.2.3.78", stage="ST", given="PSEUDO")
            made = uidMap.uidFor("1.2.3.78", stage="ST")
            self.assertEqual([uidMap.oldFor(made, "ST"), uidMap.oldFor(made), uidMap.oldFor(made, "OTHER")],
                             ["1.2.3.78", "1.2.3.78", None])
        self.assertEqual(UIDMap(self.engine).oldFor(self.uidMap.uidFor("1.2.3.78", stage="ST"), "ST"), "1.2.3.78")

    def test_originalsAndStagesLongerThanTheTableHolds(self):
        """An original past OldUID's 64 characters (Conquest's anonymizer's
        oldID..'.bd.'..org of a long Patient ID) or a stage past 64 is a
        ValueError saying so, on every database (SQLite would keep it,
        PostgreSQL and MariaDB answer a raw DataError), nothing recorded; 64
        are kept, and a UID of its own is made for a stage of 64.  uidFor
        (newuids) still maps an original past 64, in every stage."""
        for uidMap in (self.uidMap, UIDMap()):
            for old, stage in (("P" * 60 + ".bd.ORG", ""), ("1.2.3.7", "s" * 65), ("1.2.3.8" * 10, "s")):
                with self.assertRaisesRegex(ValueError, "cannot be recorded: at most 64 characters of original "
                                                        "and of stage are kept"):
                    uidMap.newFor(old, "PatientID", stage, given="PAT1")
            with self.assertRaises(ValueError):
                uidMap.uidFor("1.2.3.7", stage="s" * 65)
            self.assertEqual(uidMap.newFor("P" * 64, stage="s" * 64, given="PAT1"), "PAT1")
            self.assertTrue(UID(uidMap.uidFor("P" * 64, stage="s" * 64)).is_valid)
            long = "1.2.3.8" * 10
            made = {uidMap.uidFor(long), uidMap.uidFor(long, stage="s"), uidMap.uidFor(long, stage="t")}
            self.assertEqual(len(made), 3)
            self.assertTrue(all(UID(uid).is_valid for uid in made), made)
            self.assertIn(uidMap.uidFor(long, stage="s"), made)
            self.assertEqual([uidMap.oldFor(uid) for uid in made], [None] * 3)
        self.assertEqual(len(self.rows()), 0)

    def test_survivesRestart(self):
        """A new map on the same database (an existing table) knows the pairs."""
        new = self.uidMap.newFor("1.2.3")
        again = UIDMap(self.engine)
        self.assertEqual(again.oldFor(new), "1.2.3")
        self.assertEqual(again.newFor("1.2.3"), new)
        self.assertEqual(len(self.rows()), 1)

    def test_stages(self):
        """New UIDs made for a target (a stage: the patient a copy is for)
        are its own, stable, kept in PacsUIDStages (UIDMODS unchanged),
        and lead back to the original."""
        unstaged = self.uidMap.newFor("1.2.3")
        forA, forB = self.uidMap.newFor("1.2.3", "SOPInstanceUID", "PATA"), self.uidMap.newFor("1.2.3", stage="PATB")
        self.assertEqual(len({unstaged, forA, forB}), 3)
        self.assertEqual(len(self.rows()), 1)
        again = UIDMap(self.engine)
        self.assertEqual(again.newFor("1.2.3", stage="PATA"), forA)
        self.assertEqual([again.oldFor(new) for new in (unstaged, forA, forB)], ["1.2.3"] * 3)
        stages = uidStagesTable(MetaData()).c
        with self.engine.connect() as connection:
            rows = connection.execute(select(stages.OldUID, stages.Stage, stages.MODType, stages.NewUID)
                                      .order_by(stages.Stage)).all()
        self.assertEqual([tuple(row) for row in rows], [("1.2.3", "PATA", "SOPInstanceUID", forA),
                                                        ("1.2.3", "PATB", "", forB)])
        memory = UIDMap()
        self.assertNotEqual(memory.newFor("1.2.3", stage="PATA"), memory.newFor("1.2.3"))

    def test_anotherProcessWins(self):
        """When the pair was recorded between the look-up and the insert,
        the recorded UID is used."""
        other = UIDMap(self.engine)
        stored = other._uids.stored
        calls = []

        def missFirst(*args):
            calls.append(args)
            return None if len(calls) == 1 else stored(*args)
        self.patch(other._uids, "stored", missFirst)
        new = self.uidMap.newFor("1.2.3")
        self.assertEqual(other.newFor("1.2.3"), new)
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.rows()), 1)

    def test_prefix(self):
        for prefix in ("1.2.826.0.1.3680043.2.135.730956.43877812",
                       "1.2.826.0.1.3680043.2.135.730956.43877812."):
            new = UIDMap(prefix=prefix).newFor("1.2.3")
            self.assertTrue(new.startswith("1.2.826.0.1.3680043.2.135.730956.43877812."))
            self.assertTrue(UID(new).is_valid)

    def test_defaultPrefix(self):
        self.assertTrue(self.uidMap.newFor("1.2.3").startswith("2.25."))

    def test_givenMetadata(self):
        metadata = MetaData()
        UIDMap(self.engine, metadata)
        self.assertIn(TABLE_NAME, metadata.tables)

    def test_memoryOnly(self):
        uidMap = UIDMap()
        new = uidMap.newFor("1.2.3")
        self.assertEqual(uidMap.newFor("1.2.3"), new)
        self.assertEqual(uidMap.oldFor(new), "1.2.3")
        self.assertIsNone(uidMap.oldFor("1.2.3"))

    def test_threads(self):
        """Threads asking for the same UIDs at once all get the same answers."""
        olds = [f"1.2.3.{n}" for n in range(20)]
        results = []

        def work():
            results.append([self.uidMap.newFor(old) for old in olds])
        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(len(results), 8)
        self.assertTrue(all(result == results[0] for result in results))
        self.assertEqual(len(set(results[0])), 20)
        self.assertEqual(len(self.rows()), 20)

    def test_uidMapOf(self):
        self.assertIs(uidMapOf(ConverterServices()), memoryUIDMap)
        self.assertIs(uidMapOf(ConverterServices(uidMap=self.uidMap)), self.uidMap)
