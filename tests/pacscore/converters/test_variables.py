"""Tests for pacscore.converters.variables: every %-variable of manual 7.2."""

import os
import re
import time
import zlib
from types import SimpleNamespace

from pydicom import Dataset
from sqlalchemy import insert
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.converters.context import ConverterContext, ConverterServices
from pacscore.converters.saving import writePart10
from pacscore.converters.uidmap import UIDMap
from pacscore.converters.variables import expand
from pacscore.db.index import Index
from tests.pacscore.db.test_index import makeRecord
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout, sqliteEngine

FILENAME = "/data/MAG0/PAT001/1.2.3_1.dcm"


def item(**values):
    dataset = Dataset()
    for keyword, value in values.items():
        setattr(dataset, keyword, value)
    return dataset


def objectDataset():
    """A CT-like object with RT sequences, as in the manual's examples."""
    dataset = item(PatientID="PAT001", PatientName="Doe^John", Modality="CT", StationName="STATION1",
                   SOPInstanceUID="1.2.3.1.1", StudyInstanceUID="1.2.3", SeriesInstanceUID="1.2.3.1",
                   StudyDate="20021231", ImageType=["ORIGINAL", "PRIMARY"], Rows=512,
                   PixelSpacing=["0.5", "0.25"], AccessionNumber="ACC1")
    dataset.ReferencedStructureSetSequence = [
        item(ReferencedSOPClassUID="1.2.840.10008.5.1.4.1.1.481.3", ReferencedSOPInstanceUID="1.2.3.9.1"),
        item(ReferencedSOPInstanceUID="1.2.3.9.2")]
    dataset.BeamSequence = [item(BeamNumber=1, ControlPointSequence=[item(NominalBeamEnergy="6")]),
                            item(BeamNumber=2, TreatmentMachineName="A2_LINAC")]
    return dataset


def makeContext(dataset=None, kind="export", filename=FILENAME, **services):
    return ConverterContext(kind, objectDataset() if dataset is None else dataset, callingAE="SENDER",
                            calledAE="ARCHIVE", filename=filename,
                            services=ConverterServices(**services),
                            converterName="ExportConverter0",
                            variables={"x": "ex", "y": "", "z": "zed"})


class ExpandTests(unittest.TestCase):
    """The variables that need no index, table-driven."""

    cases = [
        ("%m", "CT"), ("%s", "STATION1"), ("%o", "1.2.3.1.1"), ("%i", "PAT001"),
        ("%u", "SENDER"), ("%c", "ARCHIVE"),
        ("%f", FILENAME), ("%b", "1.2.3_1"), ("%p", "/data/MAG0/PAT001"),
        ("%n", "\n"), ("%t", "\t"), ("%%", "%"), ("%^", "^"), ("%~", "~"), ("%[", "["),
        ("%x", "ex"), ("%y", ""), ("%z", "zed"),
        # %V: top level
        ("%V0010,0010", "Doe^John"), ("%V0008,0008", "ORIGINAL\\PRIMARY"), ("%V0028,0010", "512"),
        ("%V0028,0030", "0.5\\0.25"), ("%V0010,1010", ""), ("%V300c,0060", "(sequence)"),
        ("%V0008,0018.dcm", "1.2.3.1.1.dcm"),
        # %V*: anywhere, depth first
        ("%V*300a,00b2", "A2_LINAC"), ("%V*300a,00b2[0,1]", "A2"), ("%V*300a,0114", "6"),
        ("%V*300a,00c0", "1"), ("%V*0010,0020", "PAT001"), ("%V*0010,1010", ""),
        # %V paths, both separators
        ("%V\\300c,0060\\0008,1155", "1.2.3.9.1"), ("%V/300c,0060/0008,1155", "1.2.3.9.1"),
        ("%V/300c,0060.1/0008,1155", "1.2.3.9.2"), ("%V\\300c,0060.0\\0008,1150", "1.2.840.10008.5.1.4.1.1.481.3"),
        ("%V/300c,0060.2/0008,1155", ""), ("%V/300a,00b0.0/300a,0111/300a,0114", "6"),
        ("%V/300a,00b0.1/300a,00b2[3,7]~", "linac"), ("%V/0010,0010/0010,0020", ""),
        # substrings and case
        ("%i[0,1]", "PA"), ("%i[3,100]", "001"), ("%i[4,2]", "PAT001"), ("%i[9,20]", ""), ("%i[9,2]", "PAT001"),
        ("%i[,2]", "01"), ("%i[,0]", ""), ("%i[,9]", "PAT001"), ("%V0008,0020[,4]^", "1231"), ("%i[,x]", "PAT001[,x]"), ("%V0008,0020[0,3]", "2002"),
        ("%V0010,0010^", "DOE^JOHN"), ("%V0010,0010~", "doe^john"), ("%V0010,0010[0,2]^", "DOE"),
        ("%m~%s^", "ctSTATION1"), ("%x^", "EX"),
        # %A
        ("%A0010,0020", str(zlib.crc32(b"PAT001"))), ("%A/300c,0060.1/0008,1155", str(zlib.crc32(b"1.2.3.9.2"))),
        ("%A0010,1010", "0"),
        # text around, unknown sequences left as written
        ("my string and date: %i;", "my string and date: PAT001;"),
        ("c:\\bitmaps%\\%b.bmp", "c:\\bitmaps%\\1.2.3_1.bmp"),
        ("100% %q %V %V0010 %V*xx %V(0010,0020 %QZ0010,0020 %QP %", "100% %q %V %V0010 %V*xx %V(0010,0020 %QZ0010,0020 %QP %"),
        ("%%i", "%i"), ("%i%n%i", "PAT001\nPAT001"),
        # text for a program: %% keeps a %, which before another letter or a digit stays as written
        ("date +%%H%%M%%S %H%3", "date +%H%M%S %H%3"), ("date +%H%M", "date +%HCT"),
    ]

    def test_cases(self):
        context = makeContext()
        for template, expected in self.cases:
            self.assertEqual((template, expand(template, context)), (template, expected))

    def test_anyCaseAndKeywords(self):
        """The letter is read regardless of case and a DICOM keyword may
        stand for gggg,eeee, as in Conquest (``%v0010,0020``, ``%I``,
        ``%VPatientID``): nothing is left as written into the object."""
        context = makeContext()
        cases = [
            ("%v0010,0020", "PAT001"), ("%VPatientID", "PAT001"), ("%vPatientID[0,2]^", "PAT"),
            ("[%I][%M][%O][%S][%U][%C][%F][%B][%P][%X][%N]", expand("[%i][%m][%o][%s][%u][%c][%f][%b][%p][%x][%n]",
                                                                       context)),
            ("%V*TreatmentMachineName", "A2_LINAC"), ("%v*300a,00b2", "A2_LINAC"),
            ("%V/ReferencedStructureSetSequence.1/ReferencedSOPInstanceUID", "1.2.3.9.2"),
            ("%V/300c,0060.1/ReferencedSOPInstanceUID", "1.2.3.9.2"),
            ("%a0010,0020", str(zlib.crc32(b"PAT001"))), ("%APatientID", str(zlib.crc32(b"PAT001"))),
            ("%VPatientIDs %VNoSuchKeyword %V*Nope %vpatientid", "%VPatientIDs %VNoSuchKeyword %V*Nope %vpatientid"),
            ("%VPatientID.dcm", "PAT001.dcm"), ("%VOverlayData", "%VOverlayData"),
            # a path ends before a step naming no tag nor known keyword, as in Conquest
            ("%V\\300c,0060\\0008,1155\\x", "1.2.3.9.1\\x"), ("%V/300c,0060/0008,1155/images", "1.2.3.9.1/images"),
            ("%V/300c,0060.1/x", "(sequence).1/x"), ("%V/ReferencedStructureSetSequence/Nope", "(sequence)/Nope"),
        ]
        for template, expected in cases:
            self.assertEqual((template, expand(template, context)), (template, expected))

    def test_sequencesAndLongBinaryValues(self):
        """As Conquest's SearchDICOMObject: a sequence reads "(sequence)"
        (a missing one ""), a binary value over 255 bytes "(too long)";
        text is read whole."""
        dataset = objectDataset()
        dataset.PixelData = bytes(512 * 512)
        dataset.add_new(0x00091010, "OB", b"short")
        dataset.ImageComments = "c" * 300
        context = makeContext(dataset)
        cases = [
            ("%V300c,0060", "(sequence)"), ("%V/300a,00b0.0/300a,0111", "(sequence)"), ("%V300a,00b0[1,3]", "seq"),
            ("%V0008,1140", ""), ("%V7fe0,0010", "(too long)"), ("%V0009,1010", "short"),
            ("%V0020,4000", "c" * 300), ("%A300c,0060", str(zlib.crc32(b"(sequence)"))),
        ]
        for template, expected in cases:
            self.assertEqual((template, expand(template, context)), (template, expected))

    def test_newUID(self):
        """%g is a new UID (under the UID map's prefix), another each time."""
        context = makeContext(uidMap=UIDMap(prefix="1.2.826.0.1.3680043.2.135"))
        first, second = expand("%g %g", context).split()
        self.assertNotEqual(first, second)
        for uid in (first, second):
            self.assertRegex(uid, r"^1\.2\.826\.0\.1\.3680043\.2\.135\.[0-9.]+$")
            self.assertLessEqual(len(uid), 64)
        self.assertEqual(expand("%G[0,3]", context), "1.2.")

    def test_contextExpand(self):
        self.assertEqual(makeContext().expand("%i/%m"), "PAT001/CT")

    def test_date(self):
        before = time.strftime("%Y%m%d %H:%M:%S")
        value = expand("%d", makeContext())
        after = time.strftime("%Y%m%d %H:%M:%S")
        self.assertRegex(value, r"^[0-9]{8} [0-9]{2}:[0-9]{2}:[0-9]{2}$")
        self.assertTrue(before <= value <= after)
        self.assertEqual(expand("%d[0,3]", makeContext()), value[:4])

    def test_importHasNoFile(self):
        context = makeContext(kind="import", filename=None)
        self.assertEqual(expand("[%f][%b][%p]", context), "[][][]")

    def test_personNameIsItsDicomString(self):
        dataset = item(PatientName="Yamada^Tarou=山田^太郎", SpecificCharacterSet=["", "ISO 2022 IR 87"])
        self.assertEqual(expand("%V0010,0010", makeContext(dataset)), "Yamada^Tarou=山田^太郎")

    def test_noDataset(self):
        context = makeContext(Dataset())
        context.dataset = None
        self.assertEqual(expand("[%i][%V0010,0010][%V*0010,0010][%QP0010,0010]", context), "[][][][]")


class AnonymizedTests(unittest.TestCase):
    """%E and %R through the UID map."""

    def test_roundTrip(self):
        uidMap = UIDMap(sqliteEngine(self))
        context = makeContext(uidMap=uidMap)
        new = expand("%E0020,000d", context)
        self.assertNotIn(new, ("", "1.2.3"))
        self.assertEqual(expand("%E0020,000d", context), new)
        self.assertEqual(uidMap.oldFor(new), "1.2.3")
        anonymized = makeContext(item(StudyInstanceUID=new), uidMap=uidMap)
        self.assertEqual(expand("%R0020,000d", anonymized), "1.2.3")

    def test_fallbackMap(self):
        """Without a uidMap in the services the process-wide one is used."""
        new = expand("%E/300c,0060.1/0008,1155", makeContext())
        self.assertEqual(expand("%E/300c,0060.1/0008,1155", makeContext()), new)
        self.assertEqual(expand("%R0008,1155", makeContext(item(ReferencedSOPInstanceUID=new))), "1.2.3.9.2")

    def test_multipleValues(self):
        uidMap = UIDMap()
        dataset = item(FailedSOPInstanceUIDList=["1.2.3.4", "1.2.3.5"])
        new = expand("%E0008,0058", makeContext(dataset, uidMap=uidMap)).split("\\")
        self.assertEqual([uidMap.oldFor(uid) for uid in new], ["1.2.3.4", "1.2.3.5"])

    def test_unknownAndEmpty(self):
        context = makeContext(uidMap=UIDMap())
        self.assertEqual(expand("[%R0020,000d][%E0010,1010][%R0010,1010]", context), "[1.2.3][][]")

    def test_substringOfAnonymized(self):
        context = makeContext(uidMap=UIDMap(prefix="1.2.826.0.1.3680043.2.135"))
        self.assertEqual(expand("%E0020,000d[0,24]", context), "1.2.826.0.1.3680043.2.135")


class IndexVariablesTests(unittest.TestCase):
    """%QP %QS %QE %QW and %V(...) against a real SQLite index."""

    def setUp(self):
        self.engine = sqliteEngine(self)
        self.index = Index(self.engine, conquestLayout(), TABLE_NAMES)
        self.index.createTables()
        self.magFolder = os.path.abspath(self.mktemp())
        # the ini names another MAG0 (put_param:MAGDevice0 since the start): the device in use is read
        self.configuration = SimpleNamespace(magDevices=[("MAG0", os.path.join(self.magFolder, "next"))],
                                             configDir=self.magFolder)
        self.index.storeMany([
            makeRecord("1.2.3.1.1", patient="PAT001", STUDY_DESCRIPTION="HEAD"),
            makeRecord("1.2.3.9.1", series="1.2.3.9", patient="PAT001", MODALITY="RTSTRUCT",
                       objectFile="PAT001/rtstruct.dcm"),
            makeRecord("5.5.5.1.1", series="5.5.5.1", study="5.5.5", patient="OTHER",
                       PATIENT_NAME="ROE^JANE")])

    def context(self, dataset=None, **services):
        services.setdefault("index", self.index)
        services.setdefault("configuration", self.configuration)
        services.setdefault("magDevices", [("MAG0", self.magFolder)])
        return makeContext(dataset, **services)

    def test_patientStudySeries(self):
        context = self.context()
        for template, expected in [
                ("%QP0010,0010", "DOE^JOHN"), ("%QP0010,0030", "19700101"), ("%QP0010,0040[0,0]~", "m"),
                ("%QS0008,1030", "HEAD"), ("%QS0008,0020", "20240102"), ("%QS0010,0010", "DOE^JOHN"),
                ("%QE0008,0060", "CT"), ("%QE0020,000d", "1.2.3"),
                ("%QP0008,1030", ""), ("%QE0010,0010", ""), ("%QS0010,1010", ""),
                # the level letter in either case too, as Conquest reads it
                ("%qp0010,0010", "DOE^JOHN"), ("%Qs0008,1030", "HEAD"), ("%qe0008,0060", "CT")]:
            self.assertEqual((template, expand(template, context)), (template, expected))

    def test_rowsOfTheObject(self):
        dataset = item(PatientID="OTHER", StudyInstanceUID="5.5.5", SeriesInstanceUID="5.5.5.1")
        self.assertEqual(expand("%QP0010,0010 %QS0020,000d %QE0020,000e", self.context(dataset)),
                         "ROE^JANE 5.5.5 5.5.5.1")

    def test_noRow(self):
        dataset = item(PatientID="NOBODY", StudyInstanceUID="9.9", SeriesInstanceUID="9.9.9")
        self.assertEqual(expand("[%QP0010,0010][%QS0008,1030][%QE0008,0060]", self.context(dataset)),
                         "[][][]")
        self.assertEqual(expand("[%QP0010,0010][%QS0008,1030]", self.context(item())), "[][]")

    def test_noIndex(self):
        self.assertEqual(expand("[%QP0010,0010][%QW0010,0010]", makeContext()), "[][]")

    def addWorklistItem(self, **values):
        with self.engine.begin() as connection:
            connection.execute(insert(self.index.tables.worklist).values(**values))

    def test_worklist(self):
        self.addWorklistItem(AccessionNumber="ACC1", PatientID="PAT001", PatientName="DOE^JANE",
                             Modality="MR", StartDate="20260101")
        self.addWorklistItem(AccessionNumber="ACC2", PatientName="ROE^RICHARD")
        for template, expected in [("%QW0010,0010", "DOE^JANE"), ("%QW0008,0060", "MR"),
                                   ("%QW0040,0002[0,3]", "2026"), ("%QW0010,2000", ""),
                                   ("%QW0099,0010", "")]:
            self.assertEqual((template, expand(template, self.context())), (template, expected))
        other = self.context(item(AccessionNumber="ACC3"))
        self.assertEqual(expand("[%QW0010,0010]", other), "[]")
        noAccession = self.context(item(PatientID="PAT001"))
        self.assertEqual(expand("[%QW0010,0010]", noAccession), "[]")

    def test_worklistLookupService(self):
        asked = []

        def lookup(accession):
            asked.append(accession)
            return {0x00100010: "LOOKED^UP"}
        self.assertEqual(expand("%QW0010,0010", self.context(worklistLookup=lookup)), "LOOKED^UP")
        self.assertEqual(asked, ["ACC1"])

    def storeObject(self, relative, dataset):
        path = os.path.join(self.magFolder, *relative.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        writePart10(dataset, path)

    def test_otherObject(self):
        """%V(path)path reads the object whose SOP Instance UID the path gives."""
        structureSet = item(SOPClassUID="1.2.840.10008.5.1.4.1.1.481.3", SOPInstanceUID="1.2.3.9.1",
                            PatientName="Doe^John", StructureSetLabel="BODY")
        structureSet.ReferencedFrameOfReferenceSequence = [item(
            FrameOfReferenceUID="1.2.3.7",
            RTReferencedStudySequence=[item(RTReferencedSeriesSequence=[
                item(SeriesInstanceUID="1.2.3.1"), item(SeriesInstanceUID="1.2.3.2")])])]
        self.storeObject("PAT001/rtstruct.dcm", structureSet)
        context = self.context()
        for template, expected in [
                ("%V(/300c,0060/0008,1155)/3006,0010/3006,0012/3006,0014/0020,000e", "1.2.3.1"),
                ("%V(\\300c,0060\\0008,1155)\\3006,0010\\3006,0012\\3006,0014.1\\0020,000e", "1.2.3.2"),
                ("%V(/300c,0060.0/0008,1155)3006,0002", "BODY"),
                ("%V(/300c,0060/0008,1155)3006,0002[0,1]~", "bo"),
                ("%A(/300c,0060/0008,1155)3006,0002", str(zlib.crc32(b"BODY"))),
                # the second item names an object that is not stored
                ("%V(/300c,0060.1/0008,1155)3006,0002", ""),
                # a path that gives no UID
                ("%V(/300c,0060.5/0008,1155)3006,0002", "")]:
            self.assertEqual((template, expand(template, context)), (template, expected))

    def test_otherObjectMissingFile(self):
        """Indexed but not on disk (or no MAG device of that name): empty."""
        self.assertEqual(expand("[%V(/300c,0060/0008,1155)3006,0002]", self.context()), "[]")
        self.storeObject("PAT001/rtstruct.dcm", item(StructureSetLabel="BODY"))
        self.assertEqual(expand("[%V(/300c,0060/0008,1155)3006,0002]",
                                self.context(magDevices=[("MAG1", self.magFolder)])), "[]")
        self.assertEqual(expand("[%V(/300c,0060/0008,1155)3006,0002]", makeContext()), "[]")


class AliasFileTests(unittest.TestCase):
    """%QX: values mapped through aliasfileQX.txt in the configuration folder."""

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.configuration = SimpleNamespace(configDir=self.folder)

    def writeAliases(self, text, name="aliasfileQX.txt", encoding="latin-1"):
        with open(os.path.join(self.folder, name), "w", encoding=encoding) as f:
            f.write(text)

    def test_mapped(self):
        self.writeAliases("PAT000\tNOT_THIS\nPAT001\tANON_1\nCT\tCOMPUTED TOMOGRAPHY\nbroken line\n")
        context = makeContext(configuration=self.configuration)
        self.assertEqual(expand("%QX0010,0020 %qx0010,0020", context), "ANON_1 ANON_1")
        self.assertEqual(expand("%QX0008,0060[0,7]^", context), "COMPUTED")
        self.assertEqual(expand("%QX0008,1010", context), "STATION1")
        self.assertEqual(expand("[%QX0010,1010]", context), "[]")

    def test_lowerCaseName(self):
        self.writeAliases("PAT001\tANON_2\n", name="aliasfileqX.txt")
        self.assertEqual(expand("%QX0010,0020", makeContext(configuration=self.configuration)), "ANON_2")

    def test_noFile(self):
        self.assertEqual(expand("%QX0010,0020", makeContext(configuration=self.configuration)), "PAT001")
        self.assertEqual(expand("%QX0010,0020", makeContext()), "PAT001")

    def test_windowsLineEnds(self):
        self.writeAliases("PAT001\tANON_3\r\n")
        self.assertEqual(expand("%QX0010,0020", makeContext(configuration=self.configuration)), "ANON_3")

    def test_readAsEveryConfigurationFile(self):
        """A UTF-8 file maps a name beyond ASCII (it was read as Latin-1, so
        'Müller^Anna' matched no line, silently); one saved as "ANSI" is
        read as cp1252, with one warning naming the file and line."""
        context = makeContext(item(PatientName="M\u00fcller^Anna"), configuration=self.configuration)
        self.writeAliases("M\u00fcller^Anna\tM\u00fcller-Schmidt^Anna\n", encoding="utf-8")
        with capturedLogs() as events:
            self.assertEqual(expand("%QX0010,0010", context), "M\u00fcller-Schmidt^Anna")
        self.assertEqual([e for e in events if e["log_level"] == LogLevel.warn], [])
        self.writeAliases("Doe^John\tDOE\nM\u00fcller^Anna\tM\u00fcller-Meier^Anna\n", encoding="cp1252")
        path = os.path.join(self.folder, "aliasfileQX.txt")
        with capturedLogs() as events:
            self.assertEqual(expand("%QX0010,0010 %QX0010,0010", context),
                             "M\u00fcller-Meier^Anna M\u00fcller-Meier^Anna")
        self.assertEqual([formatEvent(e) for e in events if e["log_level"] == LogLevel.warn],
                         [f'{path}:2: not UTF-8: the line is read as Windows\' cp1252 ("ANSI")'])

    def test_eachLineIsDecodedOnItsOwn(self):
        """Lines ending in CR alone are lines, as before (the file was one
        line, so 'Müller^Anna' was stored unmapped), and each is decoded
        on its own: a UTF-8 line after an ANSI one maps as written."""
        context = makeContext(item(PatientName="M\u00fcller^Anna"), configuration=self.configuration)
        with open(os.path.join(self.folder, "aliasfileQX.txt"), "wb") as f:
            f.write(b"Doe^John\tD\xd6E\rM\xc3\xbcller^Anna\tM\xc3\xbcller-Schmidt^Anna\r")
        with capturedLogs():
            self.assertEqual(expand("%QX0010,0010", context), "M\u00fcller-Schmidt^Anna")

    def test_aFileThatCannotBeReadIsOneLine(self):
        """An alias file that cannot be read (here a folder) leaves the
        value unchanged, as a missing one does, with one warning and then
        debug lines (each object's statement failed with a traceback)."""
        context = makeContext(item(PatientName="Doe^John"), configuration=self.configuration)
        path = os.path.join(self.folder, "aliasfileQX.txt")
        os.mkdir(path)
        with capturedLogs() as events:
            for _ in range(3):
                self.assertEqual(expand("X%QX0010,0010", context), "XDoe^John")
        self.assertEqual([(e["log_level"], formatEvent(e)) for e in events],
                         [(LogLevel.warn, f"%QX: {path}: cannot read: Is a directory; the value is left unchanged "
                                          "(further ones of this file are logged at debug level for an hour)")]
                         + [(LogLevel.debug, f"%QX: {path}: cannot read: Is a directory; the value is left "
                                             "unchanged")] * 2)


class DateFormatTests(unittest.TestCase):

    def test_documentedFormat(self):
        self.assertTrue(re.fullmatch(r"[0-9]{8} [0-9:]{8}", expand("%d", makeContext())))
