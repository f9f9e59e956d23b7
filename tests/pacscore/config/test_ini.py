"""Tests for pacscore.config.ini: reading and editing dicom.ini."""

import os
import re

from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.errors import ConfigError
from pacscore.config.ini import DicomIni

# The start of the dicom.ini listed in Conquest's manual, section 7.2.
MANUAL_INI = """\
# This file contains configuration information for the DICOM server
# Do not edit unless you know what you are doing

[sscscp]
MicroPACS           = sscscp
Edition             = Personal

# Network configuration: server name and TCP/IP port#
MyACRNema           = CONQUESTSRV1
TCPPort             = 5678

# Reference to other files: known dicom servers; database layout; sops (do not change)
ACRNemaMap          = acrnema.map
kFactorFile         = dicom.sql
SOPClassList        = dgatesop.lst

# Host, name, username and password for SQL server (host ignored for ODBC)
SQLHost             = localhost
SQLServer           = E:\\Dicomserver\\Data\\ibase\\
Username            = conquest
Password            = conquest
Postgres            = 0
MySQL = 0
SQLite = 0
SendUpperCaseAE =
TCPIPTimeOut = 300
FileNameSyntax = 3

# Configuration of disk(s) to store images
MAGDeviceThreshold     = 0
MAGDevices              = 2
MAGDevice0              = c:\\dicomserver\\data\\
MAGDevice1              = d:\\dicomserver_backup\\

ExportConverters       = 1
ExportModality0       = CT
ExportFilter0           = Rows = 512 and Cols = 512
ExportConverter0        = nop ExportConverter logs filename: %f
ImportConverter2 = ifequal "%V0008,0020[0,3]", "2002"; destroy
exportconverter1 = ifequal "%u", "SERVER2"; stop; between "9", "17"; defer; forward to SERVER2 # not a comment
"""


def withoutSpaces(text):
    """The same file written ``Key=value``, as some Conquest users do."""
    return re.sub(r"^(\w+)[ \t]*=[ \t]*", r"\1=", text, flags=re.MULTILINE)


class ReadTests(unittest.TestCase):
    """Reading Conquest's dicom.ini."""

    def check(self, ini):
        self.assertEqual(ini.get("MyACRNema"), "CONQUESTSRV1")
        self.assertEqual(ini.getint("TCPPort", 104), 5678)
        self.assertEqual(ini.get("SQLServer"), "E:\\Dicomserver\\Data\\ibase\\")
        self.assertEqual(ini.get("ExportFilter0"), "Rows = 512 and Cols = 512")
        self.assertEqual(ini.get("ImportConverter2"), 'ifequal "%V0008,0020[0,3]", "2002"; destroy')
        self.assertEqual(ini.get("ExportConverter1"),
                         'ifequal "%u", "SERVER2"; stop; between "9", "17"; defer; '
                         "forward to SERVER2 # not a comment")
        self.assertEqual(ini.get("SendUpperCaseAE"), "")

    def test_manualWithSpaces(self):
        self.check(DicomIni.fromString(MANUAL_INI))

    def test_manualWithoutSpaces(self):
        text = withoutSpaces(MANUAL_INI)
        self.assertIn("\nMyACRNema=CONQUESTSRV1\n", text)
        self.check(DicomIni.fromString(text))

    def test_keysAreCaseInsensitive(self):
        ini = DicomIni.fromString(MANUAL_INI)
        self.assertEqual(ini.get("myacrnema"), "CONQUESTSRV1")
        self.assertEqual(ini.get("TCPPORT"), "5678")
        self.assertEqual(ini.get("MyACRNema", section="SSCSCP"), "CONQUESTSRV1")
        self.assertTrue(ini.has("kfactorfile"))

    def test_missingKeys(self):
        ini = DicomIni.fromString(MANUAL_INI)
        self.assertIsNone(ini.get("NoSuchKey"))
        self.assertEqual(ini.get("NoSuchKey", "fallback"), "fallback")
        self.assertEqual(ini.getint("NoSuchKey", 7), 7)
        self.assertFalse(ini.has("NoSuchKey"))
        self.assertFalse(ini.has("MyACRNema", section="lua"))

    def test_emptyValueGivesIntDefault(self):
        ini = DicomIni.fromString("[sscscp]\nLossyQuality =\n")
        self.assertEqual(ini.get("LossyQuality"), "")
        self.assertEqual(ini.getint("LossyQuality", 95), 95)

    def test_numbersReadAsConquestReadsThem(self):
        """atoi: a number followed by text (an inline comment, a unit) is
        the number, with one warning naming the line; no number is an error."""
        ini = DicomIni.fromString("[sscscp]\nTCPPort = 5678   # port\nMAGDeviceThreshold = 100MB\nX = -3\n"
                                  "Y = many\n", path="dicom.ini")
        with capturedLogs() as events:
            self.assertEqual([ini.getint(key, 0) for key in ("TCPPort", "MAGDeviceThreshold", "X", "TCPPort")],
                             [5678, 100, -3, 5678])
        self.assertEqual([formatEvent(e) for e in events],
                         ["dicom.ini:2: TCPPort = '5678   # port' read as 5678, as Conquest reads it",
                          "dicom.ini:3: MAGDeviceThreshold = '100MB' read as 100, as Conquest reads it"])
        error = self.assertRaises(ConfigError, ini.getint, "Y", 0)
        self.assertEqual((error.line, error.message), (5, "Y must be an integer, not 'many'"))

    def test_itemsKeepFileOrderAndSpelling(self):
        ini = DicomIni.fromString(MANUAL_INI)
        items = ini.items()
        self.assertEqual(items[:3], [("MicroPACS", "sscscp"), ("Edition", "Personal"),
                                     ("MyACRNema", "CONQUESTSRV1")])
        self.assertEqual(items[-1][0], "exportconverter1")
        self.assertEqual(len(items), 27)

    def test_sections(self):
        ini = DicomIni.fromString(
            "[sscscp]\nMyACRNema = MAIN\n\n[webdefaults]\nsize = 512\nMyACRNema = WEB\n"
            "; a comment\n[lua]\nstartup = print('hi')\n")
        self.assertEqual(ini.sectionNames(), ["sscscp", "webdefaults", "lua"])
        self.assertEqual(ini.get("MyACRNema"), "MAIN")
        self.assertEqual(ini.get("myacrnema", section="WebDefaults"), "WEB")
        self.assertEqual(ini.get("startup", section="lua"), "print('hi')")
        self.assertEqual(ini.items("webdefaults"), [("size", "512"), ("MyACRNema", "WEB")])

    def test_keysBeforeAnySectionAreMain(self):
        ini = DicomIni.fromString("TCPPort = 104\n[other]\nTCPPort = 1\n")
        self.assertEqual(ini.getint("TCPPort", 0), 104)
        self.assertEqual(ini.sectionNames(), ["sscscp", "other"])

    def test_commentsAndUnknownKeys(self):
        ini = DicomIni.fromString("# TCPPort = 1\n; TCPPort = 2\n  \nTCPPort = 3\nMadeUpKey = x=y\n")
        self.assertEqual(ini.get("TCPPort"), "3")
        self.assertEqual(ini.get("MadeUpKey"), "x=y")

    def test_strayLineIgnoredWithAWarning(self):
        """A line that is no setting, header or comment is ignored, as
        Conquest ignores it, with one warning naming file and line; it is
        written back as it was."""
        text = "[sscscp]\nTCPPort = 1\nthis is no setting\nMyACRNema = PACS\n"
        with capturedLogs() as events:
            ini = DicomIni.fromString(text, "conf/dicom.ini")
            DicomIni.fromString(text, "conf/dicom.ini")
        self.assertEqual([formatEvent(e) for e in events],
                         ["conf/dicom.ini:3: 'this is no setting' is no 'Key = value', [section] or comment: "
                          "ignored, as Conquest ignores it"])
        self.assertEqual(ini.items(), [("TCPPort", "1"), ("MyACRNema", "PACS")])
        ini.set("TCPPort", "2")
        self.assertEqual(ini.toString(), text.replace("= 1", "= 2"))

    def test_thresholdKeysInEitherSpelling(self):
        """Conquest's code reads MAGDeviceThreshHold, its manual writes
        MAGDeviceThreshold, and its shipped dicom.ini files say
        MAGDeviceThreshhold: any spelling is found, Conquest's first."""
        ini = DicomIni.fromString("[sscscp]\nMAGDeviceThreshhold = 100\nNightlyCleanThreshhold = 7\n"
                                  "IgnoreMAGDeviceThreshold = 1\nMAGDeviceFullThreshold = 5\n"
                                  "NightlyMoveThreshold = 9\nNightlyMoveThreshHold = 10\n")
        self.assertEqual([ini.getint(key, 0) for key in ("MAGDeviceThreshold", "MAGDeviceThreshHold",
                                                          "NightlyCleanThreshold", "IgnoreMAGDeviceThreshHold",
                                                          "MAGDeviceFullThreshHold", "NightlyMoveThreshold")],
                         [100, 100, 7, 1, 5, 10])
        self.assertEqual(ini.lineOf("NightlyCleanThreshold"), 3)
        ini.set("MAGDeviceThreshold", "200")
        ini.delete("NightlyMoveThreshold")
        self.assertEqual(ini.toString(), "[sscscp]\nMAGDeviceThreshhold = 200\nNightlyCleanThreshhold = 7\n"
                                         "IgnoreMAGDeviceThreshold = 1\nMAGDeviceFullThreshold = 5\n")

    def test_repeatedKeysAreTheLinesGetDoesNotRead(self):
        """A key written again or under its other spelling: each line that
        ``get`` does not read, with the one it reads, Conquest's spelling
        before the manual's even when written after it."""
        ini = DicomIni.fromString("[sscscp]\nMAGDeviceThreshold = 1\nTCPPort = 104\nMAGDeviceThreshHold = 2\n"
                                  "magdevicethreshhold = 3\ntcpport = 105\n[lua]\nTCPPort = 5\n")
        self.assertEqual(ini.repeatedKeys(), [
            (2, "MAGDeviceThreshold", "1", 4, "MAGDeviceThreshHold", "2"),
            (5, "magdevicethreshhold", "3", 4, "MAGDeviceThreshHold", "2"),
            (6, "tcpport", "105", 3, "TCPPort", "104")])
        self.assertEqual([(line, ini.lineOf(key)) for line, key, *_ in ini.repeatedKeys()], [(2, 4), (5, 4), (6, 3)])
        self.assertEqual(ini.repeatedKeys("LUA"), [])

    def test_firstOfTwoEqualKeysWins(self):
        ini = DicomIni.fromString("[sscscp]\nTCPPort = 104\ntcpport = 105\n")
        self.assertEqual(ini.getint("TCPPort", 0), 104)

    def test_quotedValuesAreUnquotedAsConquestDoes(self):
        ini = DicomIni.fromString('A = "with spaces "\nB = \'single\'\nC = "half\n')
        self.assertEqual(ini.get("A"), "with spaces ")
        self.assertEqual(ini.get("B"), "single")
        self.assertEqual(ini.get("C"), '"half')

    def test_crlfFile(self):
        ini = DicomIni.fromString("[sscscp]\r\nTCPPort = 104\r\n")
        self.assertEqual(ini.get("TCPPort"), "104")

    def test_fromFile(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MANUAL_INI)
        ini = DicomIni.fromFile(path)
        self.assertEqual(ini.path, path)
        self.assertEqual(ini.get("TCPPort"), "5678")


class ErrorTests(unittest.TestCase):
    """Every syntax error names the file and the line."""

    def assertError(self, text, line, fragment):
        error = self.assertRaises(ConfigError, DicomIni.fromString, text, "conf/dicom.ini")
        self.assertIn(f"conf/dicom.ini:{line}:", str(error))
        self.assertIn(fragment, str(error))
        self.assertEqual(error.line, line)

    def test_badSectionHeader(self):
        self.assertError("# c\n[sscscp\nA = 1\n", 2, "section header")

    def test_emptySectionHeader(self):
        self.assertError("[]\n", 1, "section header")

    def test_missingKey(self):
        self.assertError("[sscscp]\n = 5678\n", 2, "missing key")

    def test_getintNamesKeyAndLine(self):
        ini = DicomIni.fromString("[sscscp]\n\nTCPPort = 56a8\n", "x/dicom.ini")
        error = self.assertRaises(ConfigError, ini.getint, "tcpport", 5678)
        self.assertIn("x/dicom.ini:3:", str(error))
        self.assertIn("TCPPort", str(error))
        self.assertIn("56a8", str(error))

    def test_unreadableFile(self):
        path = self.mktemp()
        error = self.assertRaises(ConfigError, DicomIni.fromFile, path)
        self.assertIn(path, str(error))

    def test_undecodableBytesAreKept(self):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"# caf\xe9\nPACSName = caf\xe9\n")
        ini = DicomIni.fromFile(path)
        ini.set("TCPPort", "104")
        ini.write()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"# caf\xe9\nPACSName = caf\xe9\nTCPPort = 104\n")

    def test_windowsAnsiFile(self):
        """A dicom.ini Windows Notepad saved as "ANSI" (cp1252, not UTF-8)
        is read as cp1252, with one warning naming the file and its first
        line that is not UTF-8; an edit writes it back in cp1252, the
        bytes of every other line as they were (0x81, which cp1252 leaves
        undefined, too)."""
        path = self.mktemp()
        original = (b"[sscscp]\r\n# \x81 \x80\r\n"
                    b"ImportConverter0 = set 0008,0080 to \"H\xf4pital Saint-Andr\xe9\"\r\n")
        with open(path, "wb") as f:
            f.write(original)
        with capturedLogs() as events:
            ini = DicomIni.fromFile(path)
            DicomIni.fromFile(path)
        self.assertEqual(ini.get("ImportConverter0"), 'set 0008,0080 to "H\xf4pital Saint-Andr\xe9"')
        warnings = [formatEvent(e) for e in events if "cp1252" in formatEvent(e)]
        self.assertEqual(warnings, [f"{path}:2: not UTF-8: the file is read as Windows' cp1252 (\"ANSI\"), "
                                    f"and written back so"])
        ini.set("PACSName", "Andr\xe9")
        ini.write()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), original + b"PACSName = Andr\xe9\r\n")
        ini.set("PACSName", "\u5317\u4eac")
        error = self.assertRaises(ConfigError, ini.write)
        self.assertIn("cp1252", str(error))

    def test_byteOrderMarkKept(self):
        """A UTF-8 file with a byte order mark (Windows Notepad's UTF-8)
        is written back with it."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\xef\xbb\xbfPACSName = caf\xc3\xa9\n")
        ini = DicomIni.fromFile(path)
        self.assertEqual(ini.get("PACSName"), "caf\xe9")
        ini.set("TCPPort", "104")
        ini.write()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"\xef\xbb\xbfPACSName = caf\xc3\xa9\nTCPPort = 104\n")


class WriteTests(unittest.TestCase):
    """Live edits: set, delete, write."""

    def test_untouchedFileIsUnchanged(self):
        self.assertEqual(DicomIni.fromString(MANUAL_INI).toString(), MANUAL_INI)

    def test_setExistingKeepsPlaceSpellingAndAlignment(self):
        ini = DicomIni.fromString(MANUAL_INI)
        ini.set("myacrnema", "NEWAE")
        ini.set("MySQL", "1")
        lines = ini.toString().splitlines()
        self.assertEqual(lines[8], "MyACRNema           = NEWAE")
        self.assertIn("MySQL = 1", lines)
        self.assertEqual(ini.get("MyACRNema"), "NEWAE")
        self.assertEqual(len(lines), len(MANUAL_INI.splitlines()))

    def test_setGivesTheValueAsTheFileReadsIt(self):
        """A value set with quotes or spaces around it is written as given
        and read back as the file would be at the next start (a quoted
        ControlSecret given to the control port with its quotes locked
        every dgate out)."""
        ini = DicomIni.fromString("ControlSecret = a\n")
        for given, read in (("'pa55'", "pa55"), ('"1"', "1"), (" spaced ", "spaced"), ('""', "")):
            ini.set("ControlSecret", given)
            ini.set("NewKey", given)
            self.assertEqual((ini.get("ControlSecret"), ini.get("NewKey")), (read, read))
            again = DicomIni.fromString(ini.toString())
            self.assertEqual((again.get("ControlSecret"), again.get("NewKey")), (read, read))

    def test_setWithoutSpaces(self):
        ini = DicomIni.fromString("TCPPort=104\n")
        ini.set("TCPPort", 11112)
        self.assertEqual(ini.toString(), "TCPPort=11112\n")

    def test_setNewKeyGoesAfterLastKeyOfSection(self):
        ini = DicomIni.fromString("[sscscp]\nA = 1\n\n# about lua\n[lua]\nB = 2\n")
        ini.set("NewKey", "v")
        ini.set("Other", "w", section="lua")
        self.assertEqual(ini.toString(),
                         "[sscscp]\nA = 1\nNewKey = v\n\n# about lua\n[lua]\nB = 2\nOther = w\n")

    def test_setInNewSection(self):
        ini = DicomIni.fromString("[sscscp]\nA = 1\n")
        ini.set("size", "560", section="webdefaults")
        self.assertEqual(ini.toString(), "[sscscp]\nA = 1\n\n[webdefaults]\nsize = 560\n")
        self.assertEqual(ini.sectionNames(), ["sscscp", "webdefaults"])
        self.assertEqual(ini.get("SIZE", section="WEBDEFAULTS"), "560")

    def test_setRejectsMultiLineValuesAndBadKeys(self):
        ini = DicomIni.fromString("")
        self.assertRaises(ValueError, ini.set, "A", "1\nB = 2")
        self.assertRaises(ValueError, ini.set, "A=B", "1")
        self.assertRaises(ValueError, ini.set, "# A", "1")

    def test_delete(self):
        ini = DicomIni.fromString("[sscscp]\n# port\nTCPPort = 1\nAE = X\n")
        ini.delete("tcpport")
        ini.delete("NotThere")
        self.assertFalse(ini.has("TCPPort"))
        self.assertEqual(ini.toString(), "[sscscp]\n# port\nAE = X\n")

    def test_writeAndReadBack(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MANUAL_INI)
        ini = DicomIni.fromFile(path)
        ini.set("TCPPort", "11112")
        ini.set("WorkListTableName", "DICOMWorkList")
        ini.delete("Edition")
        ini.write()
        again = DicomIni.fromFile(path)
        self.assertEqual(again.getint("TCPPort", 0), 11112)
        self.assertEqual(again.get("WorkListTableName"), "DICOMWorkList")
        self.assertFalse(again.has("Edition"))
        with open(path) as f:
            text = f.read()
        self.assertIn("# Network configuration: server name and TCP/IP port#\n", text)
        self.assertIn("TCPPort             = 11112\n", text)
        self.assertEqual(os.listdir(os.path.dirname(path)), [os.path.basename(path)])

    def test_writeKeepsWindowsLineEndings(self):
        path = self.mktemp()
        ini = DicomIni.fromString("[sscscp]\r\nA = 1\r\n", path)
        ini.set("B", "2")
        ini.write()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"[sscscp]\r\nA = 1\r\nB = 2\r\n")

    def test_writeKeepsModeAndFollowsSymlinks(self):
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        real = os.path.join(folder, "real.ini")
        link = os.path.join(folder, "dicom.ini")
        with open(real, "w") as f:
            f.write("A = 1\n")
        os.chmod(real, 0o640)
        os.symlink(real, link)
        ini = DicomIni.fromFile(link)
        ini.set("A", "2")
        ini.write()
        self.assertTrue(os.path.islink(link))
        self.assertEqual(os.stat(real).st_mode & 0o777, 0o640)
        self.assertEqual(DicomIni.fromFile(real).get("A"), "2")

    def test_writeElsewhere(self):
        target = self.mktemp()
        ini = DicomIni.fromString("A = 1\n", "original.ini")
        ini.write(target)
        self.assertEqual(DicomIni.fromFile(target).get("A"), "1")
        self.assertFalse(os.path.exists("original.ini"))
