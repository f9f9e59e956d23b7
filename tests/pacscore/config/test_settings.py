"""Tests for pacscore.config.settings: start-up refuses a dicom.ini value
the server cannot use, read at start or at each use."""

import dataclasses
import os
import re
from pathlib import Path

from twisted.trial import unittest

import pacscore
from pacscore.config.errors import ConfigError
from pacscore.config.ini import DicomIni
from pacscore.config.loader import loadConfiguration
from pacscore.config.settings import INTEGER_KEYS, checkSettings
from tests.pacscore.config.test_loader import AMAP, SOPS, SQL, writeFile

NOT_INTEGERS = {"MailPort"}  # a number or a service name (pacscore.errormail)


class CheckSettingsTests(unittest.TestCase):

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        for name, text in (("acrnema.map", AMAP), ("dicom.sql", SQL), ("dgatesop.lst", SOPS)):
            writeFile(self.folder, name, text)

    def load(self, lines):
        writeFile(self.folder, "dicom.ini", "[sscscp]\nMyACRNema = PACS1\n" + lines)
        return loadConfiguration(self.folder, self.folder)

    def test_badValuesStopStartUp(self):
        """A key read only at use (LuaMaxInstructions, ImportExportDragAndDrop)
        stops start-up as one read at start does, naming file, line and key."""
        for lines, message in (("LuaMaxInstructions = abc\n", "LuaMaxInstructions must be an integer, not 'abc'"),
                               ("LuaMaxInstructions = 10,000,000\n", "LuaMaxInstructions must be an integer"),
                               ("ImportExportDragAndDrop = yes\n", "ImportExportDragAndDrop must be an integer"),
                               ("MaxAssociations = lots\n", "MaxAssociations must be an integer"),
                               ("MAGDevices = 1\nMAGDevice0 = d:\\dicomserver\\data\\\n", "is a Windows path"),
                               ("UIDPrefix = 1." + "2" * 60 + "\n", "is not a UID root")):
            error = self.assertRaises(ConfigError, self.load, lines)
            self.assertIn(message, str(error))
            self.assertRegex(str(error), r"dicom\.ini:[34]: ")

    def test_valuesBelowTheirMinimumStopStartUp(self):
        """An HL7DropFolderInterval below 1 (0 would scan without a pause,
        a negative one made the TimerService fail) stops start-up naming it."""
        for value in ("0", "-1"):
            error = self.assertRaises(ConfigError, self.load, f"HL7DropFolderInterval = {value}\n")
            self.assertRegex(str(error), rf"dicom\.ini:3: HL7DropFolderInterval must be at least 1, not {value}$")
        self.assertEqual(self.load("HL7DropFolderInterval = 1\n").ini.getint("HL7DropFolderInterval", None), 1)

    def test_luaCommandTimeoutBelowOneStopsStartUp(self):
        """A LuaCommandTimeout below 1 made every servercommand, dicomquery
        and dicommove of a script fail, though the command ran."""
        for value in ("0", "-1", "-5"):
            error = self.assertRaises(ConfigError, self.load, f"LuaCommandTimeout = {value}\n")
            self.assertRegex(str(error), rf"dicom\.ini:3: LuaCommandTimeout must be at least 1, not {value}$")
        self.assertEqual(self.load("LuaCommandTimeout = 1\n").ini.getint("LuaCommandTimeout", None), 1)

    def test_storageFailedErrorCodeIsAFailureStatus(self):
        """A code that is Success (0), a Warning (0xB000) or no 16-bit
        status stops start-up: a refused object must not be answered
        Success, nor fail the answer itself."""
        for value in ("0", "45056", "70000", "-1", "65535"):
            error = self.assertRaises(ConfigError, self.load, f"StorageFailedErrorCode = {value}\n")
            self.assertRegex(str(error), rf"dicom\.ini:3: StorageFailedErrorCode = {value}: not a Failure status "
                                         r"of a C-STORE \(0x0110, 0x0122, 0x0124, 0xA7xx, 0xA9xx or 0xCxxx\)$")
        for value, code in (("272", 0x0110), ("290", 0x0122), ("292", 0x0124), ("42752", 0xA700), ("43264", 0xA900),
                            ("49152", 0xC000), ("53247", 0xCFFF)):
            self.assertEqual(self.load(f"StorageFailedErrorCode = {value}\n").storageFailedErrorCode, code)
        self.assertEqual(self.load("").storageFailedErrorCode, 0x0110)

    def test_webUsersCheckedOnlyWithTheWebOn(self):
        """A WebUsers file that is not there stops start-up while the web
        interface is served, and not with WebEndpoint = off or empty (a standby host
        with a copy of dicom.ini and no password file)."""
        missing = os.path.join(self.folder, "nosuch.htpasswd")
        error = self.assertRaises(ConfigError, self.load, f"WebUsers = {missing}\n")
        self.assertIn("WebUsers", str(error))
        self.load(f"WebUsers = {missing}\nWebEndpoint = off\n")
        self.load(f"WebUsers = {missing}\nWebEndpoint =\n")  # empty: the web is off too

    def test_negativeSQLTimeOutIsNoLimit(self):
        """SQLTimeOut of 0 or less is no limit, as ARTIMTimeOut's is (a
        negative one made the index writer's watchdog fail at start)."""
        for value in ("0", "-5"):
            self.assertIsNone(self.load(f"SQLTimeOut = {value}\n").sqlTimeout)
        self.assertEqual(self.load("SQLTimeOut = 7\n").sqlTimeout, 7)

    def test_filesNamedAreFoundAndRead(self):
        """The kFactorFile, ACRNemaMap and SOPClassList dicom.ini names (a
        put_param's or read_ini's) are checked as start-up reads them:
        found, and usable."""
        configuration = self.load("")
        writeFile(self.folder, "broken.map", "/* never closed\n")
        for key, value, message in (("ACRNemaMap", "acrnema.mpa", "ACRNemaMap = acrnema.mpa: no such file"),
                                    ("kFactorFile", "missing.sql", "kFactorFile = missing.sql: no such file"),
                                    ("SOPClassList", "missing.lst", "SOPClassList = missing.lst: no such file"),
                                    ("ACRNemaMap", "broken.map", "broken.map:1: comment '/*' is never closed")):
            ini = DicomIni.fromString(configuration.ini.toString(), configuration.iniPath)
            ini.set(key, value)
            error = self.assertRaises(ConfigError, checkSettings, dataclasses.replace(configuration, ini=ini))
            self.assertIn(message, str(error))

    def test_goodValuesLoad(self):
        configuration = self.load("LuaMaxInstructions = 5000\nImportExportDragAndDrop = 1\n")
        self.assertEqual(configuration.ini.getint("LuaMaxInstructions", None), 5000)

    def test_everyIntegerKeyIsChecked(self):
        """Each key the code reads with getint("Key") is in INTEGER_KEYS."""
        read = set()
        for path in Path(pacscore.__file__).parent.rglob("*.py"):
            read.update(re.findall(r'getint\(\s*"(\w+)"', path.read_text()))
        self.assertEqual(read - set(INTEGER_KEYS) - NOT_INTEGERS, set())
