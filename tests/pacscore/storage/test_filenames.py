"""Tests for pacscore.storage.filenames: Conquest's FileNameSyntax."""

import os
import time

from pydicom.dataset import Dataset
from twisted.trial import unittest

from pacscore.db.filepaths import storedPath
from pacscore.storage.filenames import (
    IMAGE_ID, INSTANCE_NUMBER, MODALITY, PATIENT_ID, PATIENT_NAME, SERIES_INSTANCE_UID,
    SERIES_NUMBER, SOP_INSTANCE_UID, STUDY_DATE, STUDY_DESCRIPTION, STUDY_ID,
    STUDY_INSTANCE_UID, FileNamer, atoi, cleanup, fitPath)

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = "1.2.826.0.1.3680043.8.498.2"
SOP = "1.2.826.0.1.3680043.8.498.3"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
EXPLICIT = "1.2.840.10008.1.2.1"

ATTRS = {
    PATIENT_NAME: "Müller^Hans Peter",
    PATIENT_ID: "AB/12\\3:4*5 6",
    STUDY_INSTANCE_UID: STUDY,
    SERIES_INSTANCE_UID: SERIES,
    SOP_INSTANCE_UID: SOP,
    STUDY_ID: "S 7",
    SERIES_NUMBER: "3",
    INSTANCE_NUMBER: "17",
    MODALITY: "CT",
    STUDY_DATE: "20240131",
    STUDY_DESCRIPTION: "Thorax, low-dose",
    IMAGE_ID: "IMG.1",
}
NAME = "Müller^Hans_Peter"
ID = "AB_12_3_4_5_6"
NOW = 892665661.75

EXPECTED = {
    0: "Müller^H_AB_12_3_/3_17_892665661.v2",
    1: "Müller^H_AB_12_3_/0003_000017_8926656610000.v2",
    2: f"Müller^H_AB_12_3_/{SERIES}_0003_000017_8926656610000.v2",
    3: f"{ID}/{SERIES}_0003_000017_8926656610000.v2",
    4: f"{ID}/{SERIES}_0003_000017_8926656610000.dcm",
    5: f"{NAME}/{SERIES}_0003_000017_8926656610000.v2",
    6: f"{ID}/{STUDY}/{SERIES}/{SOP}.v2",
    7: f"{STUDY}/{SERIES}/{SOP}.v2",
    8: f"{ID}/{STUDY}/{SERIES}/{SOP}.dcm",
    9: f"{STUDY}/{SERIES}/{SOP}.dcm",
    10: f"Images/{SOP}.dcm",
    11: f"{NAME}/{STUDY}/{SERIES}/{SOP}.dcm",
    12: f"{NAME}_{ID}/CT_S_7/3/{SOP}.dcm",
}


def namer(syntax, **kwargs):
    return FileNamer(syntax, clock=lambda: NOW, **kwargs)


class AtoiTests(unittest.TestCase):
    """atoi reads a number as C's does."""

    def test_asciiOnly(self):
        """ASCII digits after ASCII blanks, a sign; other digits (Arabic-Indic,
        full-width) and blanks (a no-break space) are no number to C's atoi,
        which read them as 3, 2, 12 and 7."""
        for text, number in (("17", 17), (" \t\n-3x", -3), ("+08", 8), ("", 0), ("x1", 0),
                             ("\u0663", 0), ("\uff12", 0), ("\u0661\u0662", 0), (" \xa07", 0), ("1\u0662", 1)):
            self.assertEqual(atoi(text), number, repr(text))


class CleanupTests(unittest.TestCase):
    """Conquest's Cleanup() of IDs and names."""

    def test_replaced(self):
        self.assertEqual(cleanup('a/b\\c;d>e<f|g,h.i j:k?l*m"n'), "a_b_c_d_e_f_g_h_i_j_k_l_m_n")

    def test_endsAtControlCharacter(self):
        self.assertEqual(cleanup("AB\x00CD"), "AB")
        self.assertEqual(cleanup("AB\tCD"), "AB")
        self.assertEqual(cleanup("AB\r\nCD"), "AB")

    def test_trailingUnderscoresAndEmpty(self):
        self.assertEqual(cleanup("Doe^John.."), "Doe^John")
        self.assertEqual(cleanup(""), "unknown")
        self.assertEqual(cleanup(" . "), "unknown")

    def test_nonAsciiKept(self):
        self.assertEqual(cleanup("Ærø^Åse"), "Ærø^Åse")

    def test_length(self):
        self.assertEqual(cleanup("x" * 100), "x" * 65)


class NumberedModeTests(unittest.TestCase):

    def test_everyMode(self):
        for mode, expected in EXPECTED.items():
            self.assertEqual(namer(str(mode)).name(ATTRS), expected, f"mode {mode}")

    def test_unknownModeIsModeZero(self):
        self.assertEqual(namer("13").name(ATTRS), EXPECTED[0])
        self.assertEqual(namer("-1").name(ATTRS), EXPECTED[0])
        self.assertEqual(namer("nonsense").name(ATTRS), EXPECTED[0])
        self.assertEqual(namer(" 4 ").name(ATTRS), EXPECTED[4])

    def test_manualRegenExample(self):
        """The manual's HEAD_EXP_00097038\\0001_002000_892665661.v2 predates the
        counter (1.3.11); today's mode 1 appends it."""
        attrs = {PATIENT_NAME: "HEAD EXPERIMENT", PATIENT_ID: "00097038",
                 SERIES_NUMBER: "1", INSTANCE_NUMBER: "2000"}
        self.assertEqual(namer("1").name(attrs), "HEAD_EXP_00097038/0001_002000_8926656610000.v2")

    def test_requiredTags(self):
        self.assertEqual(namer("4").requiredTags,
                         {PATIENT_ID, SERIES_INSTANCE_UID, SERIES_NUMBER, INSTANCE_NUMBER})
        self.assertEqual(namer("9").requiredTags,
                         {STUDY_INSTANCE_UID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID})
        self.assertEqual(namer("12").requiredTags,
                         {PATIENT_NAME, PATIENT_ID, MODALITY, STUDY_ID, SERIES_NUMBER, SOP_INSTANCE_UID})
        for mode in range(14):
            partial = {tag: ATTRS[tag] for tag in namer(str(mode)).requiredTags}
            self.assertEqual(namer(str(mode)).name(partial), namer(str(mode)).name(ATTRS))

    def test_absentAndEmptyValues(self):
        """An absent attribute reads "empty", a cleaned empty one "unknown";
        an empty UID leaves no empty directory."""
        self.assertEqual(namer("4").name({}), "empty/empty_0000_000000_8926656610000.dcm")
        attrs = {PATIENT_ID: "", SERIES_INSTANCE_UID: SERIES, SERIES_NUMBER: "", INSTANCE_NUMBER: ""}
        self.assertEqual(namer("4").name(attrs), f"unknown/{SERIES}_0000_000000_8926656610000.dcm")
        attrs = {STUDY_INSTANCE_UID: "", SERIES_INSTANCE_UID: SERIES, SOP_INSTANCE_UID: SOP}
        self.assertEqual(namer("9").name(attrs), f"{SERIES}/{SOP}.dcm")

    def test_numbers(self):
        attrs = dict(ATTRS)
        attrs[SERIES_NUMBER] = "-2"
        attrs[INSTANCE_NUMBER] = "1234567"
        self.assertEqual(namer("3").name(attrs), f"{ID}/{SERIES}_-002_1234567_8926656610000.v2")
        attrs[SERIES_NUMBER] = "12abc"
        self.assertEqual(namer("0").name(attrs), "Müller^H_AB_12_3_/12_1234567_892665661.v2")

    def test_counterIncrementsAndWraps(self):
        named = namer("4")
        first, second = named.name(ATTRS), named.name(ATTRS)
        self.assertTrue(first.endswith("8926656610000.dcm"))
        self.assertTrue(second.endswith("8926656610001.dcm"))
        named.counter = 0xFFFF
        self.assertTrue(named.name(ATTRS).endswith("892665661ffff.dcm"))
        self.assertTrue(named.name(ATTRS).endswith("8926656610000.dcm"))

    def test_uidModesDoNotCount(self):
        named = namer("9")
        named.name(ATTRS)
        self.assertEqual(named.counter, 0)

    def test_clock(self):
        ticks = iter([1000.9, 2 ** 32 + 5])
        named = FileNamer("1", clock=lambda: next(ticks))
        self.assertTrue(named.name(ATTRS).endswith("_10000000.v2"))
        self.assertTrue(named.name(ATTRS).endswith("_50001.v2"))

    def test_longValuesReadAs64Characters(self):
        attrs = dict(ATTRS)
        attrs[PATIENT_NAME] = "N" * 70
        self.assertEqual(namer("5").name(attrs).split("/")[0], "N" * 64)

    def test_longNonAsciiValuesFitTheFileSystem(self):
        """Values are cut at 64 bytes as Conquest cuts them (not 64
        characters: 64 CJK ones are 192 bytes), and no path part is longer
        than 255 bytes, whatever a template puts in it."""
        attrs = {**ATTRS, PATIENT_NAME: "\u5c71" * 64, PATIENT_ID: "P" * 64}
        folder = namer("12").name(attrs).split("/")[0]
        self.assertEqual(folder, "\u5c71" * 21 + "_" + "P" * 64)
        long = namer("%name_%id_%name_%id_%name_%id/%sopuid.dcm").name(attrs)
        self.assertLessEqual(len(long.split("/")[0].encode()), 255)
        self.assertTrue(long.endswith(f"/{SOP}.dcm"))

    def test_compressedV2BecomesDcm(self):
        self.assertEqual(namer("3").name(ATTRS, transferSyntax=JPEG_BASELINE),
                         EXPECTED[3][:-3] + ".dcm")
        self.assertEqual(namer("3").name(ATTRS, transferSyntax=EXPLICIT), EXPECTED[3])
        self.assertEqual(namer("8").name(ATTRS, transferSyntax=JPEG_BASELINE), EXPECTED[8])

    def test_maxFileNameLength(self):
        """The part after the patient directory keeps its last characters."""
        tail = EXPECTED[4].split("/", 1)[1]
        self.assertEqual(namer("4", maxFileNameLength=20).name(ATTRS), f"{ID}/{tail[-20:]}")
        self.assertEqual(namer("4", maxFileNameLength=len(tail)).name(ATTRS), EXPECTED[4])
        self.assertEqual(namer("4", maxFileNameLength=0).name(ATTRS), EXPECTED[4])
        self.assertEqual(namer("1", maxFileNameLength=12).name(ATTRS),
                         "Müller^H_AB_12_3_/656610000.v2")

    def test_maxFileNameLengthMakesNoHiddenFile(self):
        """Conquest's cut can start the name with "." (Images/.498.3.dcm,
        PID1/.498.3.dcm): a hidden file, which regen skipped, so a rebuilt
        index lost the object; the "." becomes "_", and only there."""
        self.assertEqual(namer("10", maxFileNameLength=10).name(ATTRS), "Images/_498.3.dcm")
        self.assertEqual(namer("11", maxFileNameLength=10).name(ATTRS), "Müller^Hans_Peter/_498.3.dcm")
        self.assertEqual(namer(r"%id\%sopuid.dcm", maxFileNameLength=10).name(ATTRS), f"{ID}/_498.3.dcm")
        self.assertEqual(namer(r"%id\%sopuid.dcm", maxFileNameLength=11).name(ATTRS), f"{ID}/8.498.3.dcm")


class TemplateTests(unittest.TestCase):

    def test_manualExample(self):
        named = namer(r"%id\%studyid\%seriesid\%sopuid.dcm")
        self.assertEqual(named.name(ATTRS), f"{ID}/S_7/3/{SOP}.dcm")

    def test_everyName(self):
        named = namer("%name|%id|%modality|%studyid|%studyuid|%seriesid|%series|%seriesuid|"
                      "%sopuid|%imagenum|%image|%imageid|%studydesc|%time|%counter|"
                      "%calledae|%callingae|%studydate|%date")
        date = time.strftime("%Y%m%d", time.localtime(NOW))
        self.assertEqual(
            named.name(ATTRS, "STORESCU  ", "PACS "),
            f"{NAME}|{ID}|CT|S_7|{STUDY}|3|0003|{SERIES}|{SOP}|17|000017|IMG_1|"
            f"Thorax__low-dose|892665661|0000|PACS|STORESCU|20240131|{date}")
        self.assertEqual(named.requiredTags, set(ATTRS))

    def test_substrings(self):
        named = namer("%studydate[0,3]/%studydate[4,5]/%studydate[6,100]/"
                      "%studydate[5,2]-%studydate[3]-%id[0,1]-%counter[2,3]")
        self.assertEqual(named.name(ATTRS), "2024/01/31/20240131-20240131-AB-00")

    def test_unknownNamesStayLiteral(self):
        self.assertEqual(namer("%foo_%%id.dcm").name(ATTRS), f"foo_{ID}.dcm")

    def test_element(self):
        named = namer(r"%V0008,0060\%v0010,0010[0,5]\%V0009,1001\%sopuid")
        self.assertEqual(named.name(ATTRS), f"CT/Müller/unknown/{SOP}")
        self.assertEqual(named.requiredTags, {MODALITY, PATIENT_NAME, 0x00091001, SOP_INSTANCE_UID})

    def test_sequenceElements(self):
        """%V\\gggg,eeee\\gggg,eeee (first item), .N (item N) and *gggg,eeee
        (anywhere, depth first) read the parsed data set; each value is
        cleaned, and what is missing reads "unknown"."""
        dataset = Dataset()
        dataset.SOPInstanceUID = SOP
        dataset.ReferencedImageSequence = [Dataset(), Dataset()]
        dataset.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3"
        dataset.ReferencedImageSequence[1].ReferencedSOPInstanceUID = "4.5.6"
        dataset.ReferencedImageSequence[1].ReferencedFrameNumber = "7"
        named = namer(r"%V\0008,1140\0008,1155\%V/0008,1140.1/0008,1155[0,2]\%V*0008,1160/"
                      r"%V\0008,1140.2\0008,1155\%V*0008,1150\%sopuid.dcm")
        self.assertTrue(named.needsDataset)
        self.assertEqual(named.requiredTags, {SOP_INSTANCE_UID})
        self.assertEqual(named.name(ATTRS, dataset=dataset), f"1_2_3/4_5/7/unknown/unknown/{SOP}.dcm")

    def test_aPathEndsBeforeAFolder(self):
        """A sequence path ends before a step naming no tag nor known
        keyword, as in Conquest: the folder after it stays a folder, and
        the file name is the one pacs gave before keywords were read."""
        dataset = Dataset()
        dataset.SOPInstanceUID = SOP
        dataset.ReferencedImageSequence = [Dataset(), Dataset()]
        dataset.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3"
        named = namer(r"%id\%V\0008,1140\0008,1155\images\%V/0008,1140.1/x\%sopuid.dcm")
        self.assertEqual(named.name(ATTRS, dataset=dataset), f"{ID}/1_2_3/images/unknown.1/x/{SOP}.dcm")
        named = namer(r"%id\%V\0008,1140\0008,1155\Date\%sopuid.dcm")  # a folder named like a keyword
        self.assertEqual(named.name(ATTRS, dataset=dataset), f"{ID}/1_2_3/Date/{SOP}.dcm")

    def test_topLevelElementsNeedNoDataset(self):
        self.assertFalse(namer(r"%V0008,0060\%sopuid").needsDataset)
        self.assertFalse(namer("4").needsDataset)

    def test_unsupported(self):
        self.assertRaises(ValueError, FileNamer, r"%V(\0008,1140\0008,1155)0010,0010")
        self.assertRaises(ValueError, FileNamer, "%V*name")
        self.assertRaises(ValueError, FileNamer, "lua:filename()")

    def test_counterPerOccurrence(self):
        named = namer("%counter_%counter.dcm")
        self.assertEqual(named.name(ATTRS), "0000_0001.dcm")
        self.assertEqual(named.name(ATTRS), "0002_0003.dcm")

    def test_compressedV2BecomesDcm(self):
        named = namer("%id/%sopuid.v2")
        self.assertEqual(named.name(ATTRS, transferSyntax=JPEG_BASELINE), f"{ID}/{SOP}.dcm")
        self.assertEqual(namer("%id/%sopuid").name(ATTRS, transferSyntax=JPEG_BASELINE), f"{ID}/{SOP}",
                         "no .v2, nothing to change: the UID keeps its end")

    def test_maxFileNameLength(self):
        named = namer("%id/%seriesuid/%sopuid.dcm", maxFileNameLength=12)
        self.assertEqual(named.name(ATTRS), f"{ID}/_{(SOP + '.dcm')[-11:]}", "'.8.498.3.dcm' would be hidden")


class ObjectFileLengthTests(unittest.TestCase):
    """Whole paths fit the index's 255-character ObjectFile column: mode
    11 and a %id\\%studyuid\\%seriesuid\\%sopuid.dcm template with
    64-character values made 263 and more, which the index refused after
    the file was written (review of the database backends, item 1)."""

    LONG = {
        PATIENT_NAME: "Garcia-Hernandez de la Fuente^Maria de los Angeles Guadalupe",
        PATIENT_ID: "P" * 64,
        STUDY_INSTANCE_UID: "1.2.826.0.1.3680043.9.7784.1." + "7" * 35,
        SERIES_INSTANCE_UID: "1.2.826.0.1.3680043.9.7784.2." + "7" * 35,
        SOP_INSTANCE_UID: "1.2.826.0.1.3680043.9.7784.3." + "7" * 34 + "1",
        MODALITY: "M" * 16, STUDY_ID: "S" * 16, SERIES_NUMBER: "1" * 12,
    }

    def test_longPathsFit(self):
        sop = self.LONG[SOP_INSTANCE_UID]
        for syntax, first in (("11", "Garcia-Hernandez_de_la_Fuente^Maria_de_los_Angeles_Guadalupe"),
                              (r"%id\%studyuid\%seriesuid\%sopuid.dcm", "P" * 64),
                              ("%name_%id/%studyuid/%seriesuid/%sopuid.dcm", None)):
            name = namer(syntax).name(self.LONG)
            self.assertEqual(len(name), 255, syntax)
            self.assertTrue(name.endswith(f"/{sop}.dcm"), (syntax, name))
            if first is not None:
                self.assertEqual(name.split("/")[0], first, "the first directory stays")
            self.assertFalse([part for part in name.split("/") if part.startswith(".")], name)

    def test_shorterPathsAsConquestNamesThem(self):
        attrs = {**self.LONG, PATIENT_NAME: "Short^Name"}
        name = namer("11").name(attrs)
        self.assertEqual(name, f"Short^Name/{attrs[STUDY_INSTANCE_UID]}/{attrs[SERIES_INSTANCE_UID]}/"
                               f"{attrs[SOP_INSTANCE_UID]}.dcm")

    def test_fitPath(self):
        self.assertEqual(fitPath("a/" + "b" * 300, 10), "a/bbbbbbbb")
        self.assertEqual(fitPath("a/x/.b" + "b" * 6, 10), "a/_bbbbbbb", "no name starts with '.'")
        self.assertEqual(fitPath("a" * 8 + "/" + "b" * 20, 10), "b" * 10, "a long first directory is cut too")
        self.assertEqual(fitPath("a/b.c", 10), "a/b.c")

    def test_fitPathMeasuresWhatTheColumnHolds(self):
        """An old Conquest's Latin-1 name of 250 characters is stored as 257
        (U+FFFF, each byte not UTF-8 as %XX): it is cut to fit as stored."""
        name = os.fsdecode(b"M\xfcller/" + b"x" * 237 + b"\xe9\xe9.dcm")
        self.assertEqual((len(name), len(storedPath(name))), (250, 257))
        fitted = fitPath(name)
        self.assertEqual(len(storedPath(fitted)), 255)
        self.assertEqual((fitted[:7], fitted[-6:]), (name[:7], name[-6:]))


class PathSafetyTests(unittest.TestCase):
    """No name escapes the device, whatever the data or the template."""

    def test_absoluteTemplate(self):
        self.assertEqual(namer(r"/%id/%sopuid.dcm").name(ATTRS), f"{ID}/{SOP}.dcm")
        self.assertEqual(namer(r"\\%id\\%sopuid.dcm").name(ATTRS), f"{ID}/{SOP}.dcm")

    def test_dotDirectories(self):
        self.assertEqual(namer("%id/../%sopuid.dcm").name(ATTRS), f"{ID}/__/{SOP}.dcm")
        attrs = dict(ATTRS)
        attrs[STUDY_INSTANCE_UID] = ".."
        attrs[SERIES_INSTANCE_UID] = "."
        self.assertEqual(namer("9").name(attrs), f"__/_/{SOP}.dcm")

    def test_dotDotPatientID(self):
        attrs = dict(ATTRS)
        attrs[PATIENT_ID] = "../.."
        self.assertEqual(namer("4").name(attrs).split("/")[0], "unknown")

    def test_separatorsInUIDs(self):
        attrs = dict(ATTRS)
        attrs[SOP_INSTANCE_UID] = "1.2/../../etc\\passwd"
        attrs[SERIES_INSTANCE_UID] = "/abs"
        self.assertEqual(namer("9").name(attrs), f"{STUDY}/_abs/1.2_.._.._etc_passwd.dcm")

    def test_controlCharacters(self):
        attrs = dict(ATTRS)
        attrs[SOP_INSTANCE_UID] = "1.2\x00.3\n"
        self.assertEqual(namer("10").name(attrs), "Images/1.2_.3_.dcm")
        self.assertEqual(namer("%callingae/x\x01y").name(ATTRS, "A\x00B/C"), "A_B_C/x_y")

    def test_emptyName(self):
        self.assertEqual(namer("%sopuid").name({SOP_INSTANCE_UID: ""}), "unknown")
        self.assertEqual(namer("%sopuid").name({SOP_INSTANCE_UID: "..."}), "___")
