"""Tests for pacscore.config.loader and the packaged default etc/ files."""

import os
import site
import sys

from pydicom import uid
from pynetdicom import sop_class
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

import pacscore
from pacscore.config.acrnema import Node
from pacscore.config.errors import ConfigError
from pacscore.config.ini import DicomIni
from pacscore.config.loader import Configuration, defaultConfigDir, loadConfiguration
from pacscore.testing.certificates import Authority

AMAP = "CONQUESTSRV1  127.0.0.1  5678  un\n"
SOPS = "Verification 1.2.840.10008.1.1 sop\nLittleEndianImplicit 1.2.840.10008.1.2 transfer\n"
SQL = """
*Patient* { { 0x0010, 0x0020, "PatientID", 64, SQL_C_CHAR, DT_STR } }
*Study* { { 0x0020, 0x000d, "StudyInstanceUID", 64, SQL_C_CHAR, DT_UI },
          { 0x0010, 0x0020, "PatientID", 64, SQL_C_CHAR, DT_STR } }
*Series* { { 0x0020, 0x000e, "SeriesInstanceUID", 64, SQL_C_CHAR, DT_UI },
           { 0x0020, 0x000d, "StudyInstanceUID", 64, SQL_C_CHAR, DT_UI } }
*Image* { { 0x0008, 0x0018, "SOPInstanceUID", 64, SQL_C_CHAR, DT_UI },
          { 0x0020, 0x000e, "SeriesInstanceUID", 64, SQL_C_CHAR, DT_UI } }
"""


def standardUid(keyword):
    """The UID of a DICOM keyword, from pynetdicom's or pydicom's tables."""
    return str(getattr(sop_class, keyword, None) or getattr(uid, keyword))


def writeFile(folder, name, text):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class LoadTests(unittest.TestCase):
    """loadConfiguration with a Conquest folder."""

    def setUp(self):
        self.configDir = os.path.abspath(self.mktemp())
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        self.ini = writeFile(self.configDir, "dicom.ini",
                             "[sscscp]\nMyACRNema = PACS1\nTCPPort = 11112\n"
                             "ACRNemaMap = acrnema.map\nkFactorFile = dicom.sql\n"
                             "SOPClassList = dgatesop.lst\n")
        writeFile(self.configDir, "acrnema.map", AMAP)
        writeFile(self.configDir, "dicom.sql", SQL)
        writeFile(self.configDir, "dgatesop.lst", SOPS)

    def test_maxFieldLength(self):
        """MaxFieldLength overrules dicom.sql's longer lengths."""
        self.assertEqual({c.length for _, columns in loadConfiguration(self.configDir).layout.levels()
                          for c in columns}, {64})
        with open(self.ini, "a") as f:
            f.write("MaxFieldLength = 40\nAllowTruncate = PatientName, StudyDescription\n")
        configuration = loadConfiguration(self.configDir, self.workdir)
        self.assertEqual({c.length for _, columns in configuration.layout.levels() for c in columns}, {40})
        self.assertEqual(configuration.allowTruncate, {"patientname", "studydescription"})

    def test_folder(self):
        configuration = loadConfiguration(self.configDir, self.workdir)
        self.assertIsInstance(configuration, Configuration)
        self.assertEqual(configuration.configDir, self.configDir)
        self.assertEqual(configuration.iniPath, self.ini)
        self.assertEqual(configuration.workdir, self.workdir)
        self.assertEqual(configuration.aeTitle, "PACS1")
        self.assertEqual(configuration.tcpPort, 11112)
        self.assertEqual(configuration.acrNemaMap.nodes, [Node("CONQUESTSRV1", "127.0.0.1", "5678", "un")])
        self.assertEqual(configuration.acrNemaMap.path, os.path.join(self.configDir, "acrnema.map"))
        self.assertEqual(len(configuration.sopList.sops()), 1)
        self.assertEqual(len(configuration.layout.image), 2)

    def test_byteOrderMarks(self):
        """Files Windows Notepad saved as UTF-8 begin with a BOM, which
        Conquest never notices: each of the four is read as without it."""
        for name in ("dicom.ini", "acrnema.map", "dicom.sql", "dgatesop.lst"):
            path = os.path.join(self.configDir, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            with open(path, "w", encoding="utf-8-sig") as f:
                f.write(text)
        configuration = loadConfiguration(self.configDir, self.workdir)
        self.assertEqual(configuration.aeTitle, "PACS1")
        self.assertEqual(configuration.acrNemaMap.nodes, [Node("CONQUESTSRV1", "127.0.0.1", "5678", "un")])
        self.assertEqual(len(configuration.sopList.sops()), 1)
        self.assertEqual(len(configuration.layout.image), 2)

    def test_windowsAnsiFiles(self):
        """Files Windows Notepad saved as "ANSI" (cp1252, not UTF-8) are
        read as cp1252, each with a warning naming it and its first line
        that is not UTF-8, rather than as undecodable bytes (which a
        converter wrote into objects as "H?pital")."""
        comments = {"dicom.ini": b"# H\xf4pital\n", "acrnema.map": b"/* H\xf4pital */\n",
                    "dicom.sql": b"/* H\xf4pital */\n", "dgatesop.lst": b"# H\xf4pital\n"}
        for name, comment in comments.items():
            path = os.path.join(self.configDir, name)
            with open(path, "rb") as f:
                text = f.read()
            with open(path, "wb") as f:
                f.write(comment + text + (b'PACSName = "Saint-Andr\xe9"\n' if name == "dicom.ini" else b""))
        with capturedLogs() as events:
            configuration = loadConfiguration(self.configDir, self.workdir)
        self.assertEqual(configuration.ini.get("PACSName"), "Saint-Andr\xe9")
        self.assertEqual(configuration.acrNemaMap.nodes, [Node("CONQUESTSRV1", "127.0.0.1", "5678", "un")])
        self.assertEqual(len(configuration.sopList.sops()), 1)
        self.assertEqual(len(configuration.layout.image), 2)
        warned = sorted(formatEvent(e).split(": ")[0] for e in events if "cp1252" in formatEvent(e))
        self.assertEqual(warned, sorted(os.path.join(self.configDir, name) + ":1" for name in comments))

    def test_placeholderInAFileName(self):
        """ACRNemaMap, kFactorFile and SOPClassList are refused as the
        folder keys are when they hold a placeholder."""
        writeFile(self.configDir, "dicom.ini", "ACRNemaMap = ${CONQUEST}/acrnema.map\n")
        error = self.assertRaises(ConfigError, loadConfiguration, self.configDir, self.workdir)
        self.assertEqual((error.path, error.line), (self.ini, 1))
        self.assertTrue(error.message.startswith("ACRNemaMap = ${CONQUEST}/acrnema.map still holds the "
                                                 "placeholder ${CONQUEST}: replace it"), error.message)

    def test_existingFileNamedWithADollar(self):
        """A file key naming an existing file whose path holds $NAME, in the
        configuration's folder, is that file, not a placeholder."""
        path = writeFile(os.path.join(self.configDir, "maps$old"), "acrnema.map", AMAP)
        writeFile(self.configDir, "dicom.ini", "ACRNemaMap = maps$old/acrnema.map\n")
        self.assertEqual(loadConfiguration(self.configDir, self.workdir).acrNemaMap.path, path)

    def test_iniFile(self):
        configuration = loadConfiguration(self.ini, self.workdir)
        self.assertEqual(configuration.configDir, self.configDir)

    def test_relativeConfigPathIsRelativeToCurrentDirectory(self):
        relative = os.path.relpath(self.ini)
        self.assertEqual(loadConfiguration(relative, self.workdir).iniPath, self.ini)

    def test_workdirDefaultsToCurrentDirectory(self):
        self.assertEqual(loadConfiguration(self.configDir).workdir, os.getcwd())

    def test_filesFallBackToWorkdir(self):
        os.rename(os.path.join(self.configDir, "dicom.sql"), os.path.join(self.workdir, "dicom.sql"))
        configuration = loadConfiguration(self.configDir, self.workdir)
        self.assertEqual(configuration.layout.path, os.path.join(self.workdir, "dicom.sql"))

    def test_configDirWinsOverWorkdir(self):
        writeFile(self.workdir, "acrnema.map", "OTHER 1.1.1.1 104\n")
        configuration = loadConfiguration(self.configDir, self.workdir)
        self.assertEqual(configuration.acrNemaMap.nodes[0].ae, "CONQUESTSRV1")

    def test_absoluteAndRenamedFiles(self):
        elsewhere = writeFile(os.path.abspath(self.mktemp()), "nodes.txt", "FAR 10.0.0.1 104\n")
        writeFile(self.configDir, "sops.lst", SOPS)
        writeFile(self.configDir, "dicom.ini",
                  f"[sscscp]\nACRNemaMap = {elsewhere}\nSOPClassList = sops.lst\n")
        configuration = loadConfiguration(self.configDir, self.workdir)
        self.assertEqual(configuration.acrNemaMap.path, elsewhere)
        self.assertEqual(configuration.acrNemaMap.nodes[0].ae, "FAR")
        self.assertEqual(configuration.sopList.path, os.path.join(self.configDir, "sops.lst"))
        self.assertEqual(configuration.layout.path, os.path.join(self.configDir, "dicom.sql"))

    def test_missingFileNamesTheKey(self):
        os.remove(os.path.join(self.configDir, "dgatesop.lst"))
        error = self.assertRaises(ConfigError, loadConfiguration, self.configDir, self.workdir)
        self.assertIn(f"{self.ini}:6:", str(error))
        self.assertIn("SOPClassList = dgatesop.lst", str(error))

    def test_missingIni(self):
        error = self.assertRaises(ConfigError, loadConfiguration, self.workdir, self.workdir)
        self.assertIn(os.path.join(self.workdir, "dicom.ini"), str(error))

    def test_errorsInNamedFilesNameThem(self):
        writeFile(self.configDir, "acrnema.map", AMAP + "BROKEN 1.1.1.1\n")
        error = self.assertRaises(ConfigError, loadConfiguration, self.configDir, self.workdir)
        self.assertIn(os.path.join(self.configDir, "acrnema.map") + ":2:", str(error))

    def test_tlsNodeKeysMatchAsAcrNemaMapEntries(self):
        """A ``[DICOMTLSNodes]`` key ending in ``*`` applies to the AEs it
        matches as an acrnema.map entry would."""
        authority = Authority(os.path.abspath(self.mktemp()), "hospital")
        writeFile(self.configDir, "acrnema.map", AMAP + "SECURE*  127.0.0.1  21112\n")
        with open(self.ini, "a") as f:
            f.write(f"[DICOMTLSNodes]\nSECURE* = caCerts={authority.certificate}\n")
        acrNemaMap = loadConfiguration(self.configDir, self.workdir).acrNemaMap
        authorities = acrNemaMap.lookup("SECURE1").tls.authorities
        self.assertEqual(authorities[0].to_cryptography().subject.rfc4514_string(), "CN=hospital")
        self.assertIsNone(acrNemaMap.lookup("CONQUESTSRV1").tls)

    def withTLSNodes(self, mapLines, nodeLines):
        """The configuration loaded with ``mapLines`` added to acrnema.map
        and a [DICOMTLSNodes] section of ``nodeLines`` (``{hospital}`` and
        ``{other}``: two authorities' certificates), its warning lines, and
        the hospital authority."""
        hospital = Authority(os.path.abspath(self.mktemp()), "hospital")
        other = Authority(os.path.abspath(self.mktemp()), "other")
        writeFile(self.configDir, "acrnema.map", AMAP + mapLines)
        with open(self.ini, "a") as f:
            f.write("[DICOMTLSNodes]\n" + nodeLines.format(hospital=hospital.certificate, other=other.certificate))
        with capturedLogs() as events:
            configuration = loadConfiguration(self.configDir, self.workdir)
        return (configuration, [formatEvent(event) for event in events if event.get("log_level") == LogLevel.warn],
                hospital)

    def test_ofTLSNodeLinesWithTheSameAETheFirstIsUsed(self):
        """As README says and ``DicomIni.get`` and read_ini read them, the
        first of two lines with the same AE (case ignored) is used; the
        other is warned of, naming its line, and a bad one named by its own."""
        configuration, warnings, hospital = self.withTLSNodes(
            "SECUREPACS  127.0.0.1  21112\n",
            "SECUREPACS = caCerts={hospital}\nsecurepacs = caCerts={other}:hostname=evil\n")
        tls = configuration.acrNemaMap.lookup("SECUREPACS").tls
        self.assertEqual(tls.authorities[0].to_cryptography().subject.rfc4514_string(), "CN=hospital")
        self.assertEqual(configuration.ini.get("SECUREPACS", section="DICOMTLSNodes"),
                         f"caCerts={hospital.certificate}")
        self.assertEqual(warnings,
                         [f"{self.ini}:9: [DICOMTLSNodes] securepacs: the earlier line 8 has this AE: this one is "
                          "ignored, the first is used"])
        with open(self.ini, "a") as f:
            f.write("SecurePacs = caCerts=/no/such.pem\n")
        error = self.assertRaises(ConfigError, loadConfiguration, self.configDir, self.workdir)
        self.assertEqual(str(error), f"{self.ini}:10: [DICOMTLSNodes] SecurePacs: caCerts=/no/such.pem: No such "
                                     "file or directory")

    def test_aKeyGivenTwiceInASectionIsWarnedOf(self):
        """``Postgres = 0`` and later ``PostGres = 1``: the first is used, as
        Conquest reads dicom.ini, but no longer silently: a start-up warning
        names the file, both lines and the value used; a key repeated in
        another section is its own."""
        with open(self.ini, "a") as f:
            f.write("Postgres = 0\nTCPPort = 11112\nPostGres = 1\n[lua]\nstartup = print(1)\nPostgres = 1\n")
        with capturedLogs() as events:
            configuration = loadConfiguration(self.configDir, self.workdir)
        self.assertEqual(configuration.ini.get("Postgres"), "0")
        self.assertEqual([formatEvent(event) for event in events if event.get("log_level") == LogLevel.warn], [
            f"{self.ini}:8: [sscscp] TCPPort: TCPPort = '11112' is ignored: the earlier line 3 has this key "
            "(TCPPort = '11112'), the first is used, as Conquest reads it",
            f"{self.ini}:9: [sscscp] PostGres: PostGres = '1' is ignored: the earlier line 7 has this key "
            "(Postgres = '0'), the first is used, as Conquest reads it"])

    def test_aKeyGivenUnderBothSpellingsIsWarnedOf(self):
        """``MAGDeviceThreshHold = 0`` and later ``MAGDeviceThreshold =
        1000`` are one key to pacs (Conquest's spelling is read first): the
        line not used is warned of, naming both lines and the value used,
        whichever of the two comes first."""
        with open(self.ini, "a") as f:
            f.write("MAGDeviceThreshHold = 0\nMAGDeviceThreshold = 1000\n"
                    "NightlyCleanThreshold = 500\nNightlyCleanThreshHold = 600\n")
        with capturedLogs() as events:
            configuration = loadConfiguration(self.configDir, self.workdir)
        self.assertEqual(configuration.ini.get("MAGDeviceThreshold"), "0")
        self.assertEqual(configuration.ini.get("NightlyCleanThreshold"), "600")
        self.assertEqual([formatEvent(event) for event in events if event.get("log_level") == LogLevel.warn], [
            f"{self.ini}:8: [sscscp] MAGDeviceThreshold: MAGDeviceThreshold = '1000' is ignored: the earlier "
            "line 7 has this key as MAGDeviceThreshHold = '0', which is used, as Conquest's code reads that "
            "spelling",
            f"{self.ini}:9: [sscscp] NightlyCleanThreshold: NightlyCleanThreshold = '500' is ignored: the later "
            "line 10 has this key as NightlyCleanThreshHold = '600', which is used, as Conquest's code reads "
            "that spelling"])

    def test_aTLSNodeLineAnEarlierWildcardLineCoversIsWarnedOf(self):
        """A line whose AE an earlier wildcard line matches (``SECUREB``
        after ``SECURE*``) is never used, the first matching line being:
        it is warned of, naming both lines."""
        configuration, warnings, _ = self.withTLSNodes(
            "SECUREB  127.0.0.1  21112\nSECURE*  127.0.0.1  21113\n",
            "SECURE* = caCerts={other}\nSECUREB = caCerts={hospital}\n")
        tls = configuration.acrNemaMap.lookup("SECUREB").tls
        self.assertEqual(tls.authorities[0].to_cryptography().subject.rfc4514_string(), "CN=other")
        self.assertEqual(warnings,
                         [f"{self.ini}:9: [DICOMTLSNodes] SECUREB: the earlier line 8 SECURE* matches every AE "
                          "this one does: this one is never used"])

    def test_aMistypedTLSNodeIsWarnedOf(self):
        """With the shipped acrnema.map (its ``S*`` and ``V*`` entries)
        and an entry SECUREPACS, a key only a wildcard entry matches (the
        typo SECUREPAC) and one no entry matches (a node taken out of the
        map) are warned of, naming their lines; start-up goes on."""
        authority = Authority(os.path.abspath(self.mktemp()), "hospital")
        with open(os.path.join(defaultConfigDir(), "acrnema.map")) as f:
            shipped = f.read()
        amap = writeFile(self.configDir, "acrnema.map", shipped.replace("V*", "SECUREPACS  127.0.0.1  21112\nV*", 1))
        with open(self.ini, "a") as f:
            f.write(f"[DICOMTLSNodes]\nSECUREPAC = caCerts={authority.certificate}\n"
                    f"SECUREPACS = caCerts={authority.certificate}\nORTHTLS = caCerts={authority.certificate}\n"
                    f"SECUREPACX* = caCerts={authority.certificate}\nSECURE* = caCerts={authority.certificate}\n")
        with capturedLogs() as events:
            acrNemaMap = loadConfiguration(self.configDir, self.workdir).acrNemaMap
        self.assertEqual([formatEvent(event) for event in events if event.get("log_level") == LogLevel.warn], [
            f"{self.ini}:8: [DICOMTLSNodes] SECUREPAC: {amap} has no entry SECUREPAC, only the wildcard entry S*: "
            "check the spelling",
            f"{self.ini}:10: [DICOMTLSNodes] ORTHTLS: {amap} has no entry ORTHTLS, nor a wildcard entry matching "
            "it: the line is never used",
            f"{self.ini}:11: [DICOMTLSNodes] SECUREPACX*: {amap} has no entry that SECUREPACX* matches, only the "
            "wildcard entry S*: check the spelling"])
        self.assertIsNotNone(acrNemaMap.lookup("SECUREPAC").tls)  # as written: S* finds it, over TLS


class AccessorTests(unittest.TestCase):
    """The typed accessors of Configuration."""

    def configuration(self, iniText, workdir="/w"):
        ini = DicomIni.fromString(iniText, "/c/dicom.ini")
        return Configuration(ini=ini, acrNemaMap=None, sopList=None, layout=None,
                             configDir="/c", workdir=workdir, iniPath="/c/dicom.ini")

    def test_defaults(self):
        configuration = self.configuration("[sscscp]\nSendUpperCaseAE =\n")
        self.assertEqual(configuration.aeTitle, "CONQUESTSRV1")
        self.assertEqual(configuration.tcpPort, 5678)
        self.assertEqual(configuration.fileNameSyntax, "4")
        self.assertEqual(configuration.maxFileNameLength, 255)
        self.assertEqual(configuration.tcpipTimeout, 300)
        self.assertEqual(configuration.storageFailedErrorCode, 272)
        self.assertEqual(configuration.lossyQuality, 95)
        self.assertEqual(configuration.magDevices, [("MAG0", "/w/data")])
        self.assertEqual(configuration.tableNames, {
            "patient": "DICOMPatients", "study": "DICOMStudies", "series": "DICOMSeries",
            "image": "DICOMImages", "worklist": "DICOMWorkList"})

    def test_values(self):
        configuration = self.configuration(
            "[sscscp]\nMyACRNema = ARCHIVE\nTCPPort = 104\nFileNameSyntax = %id\\%sopuid.dcm\n"
            "MaxFileNameLength = 64\nTCPIPTimeOut = 30\nStorageFailedErrorCode = 42752\n"
            "PatientTableName = P\nStudyTableName = S\nSeriesTableName = E\nImageTableName = I\n"
            "WorkListTableName = W\nLossyQuality = 70\n")
        self.assertEqual(configuration.lossyQuality, 70)
        self.assertEqual(configuration.aeTitle, "ARCHIVE")
        self.assertEqual(configuration.tcpPort, 104)
        self.assertEqual(configuration.fileNameSyntax, "%id\\%sopuid.dcm")
        self.assertEqual(configuration.maxFileNameLength, 64)
        self.assertEqual(configuration.tcpipTimeout, 30)
        self.assertEqual(configuration.storageFailedErrorCode, 42752)
        self.assertEqual(configuration.tableNames, {
            "patient": "P", "study": "S", "series": "E", "image": "I", "worklist": "W"})

    def test_timeoutsOfZeroOrLessAreNoLimit(self):
        """TCPIPTimeOut and ARTIMTimeOut of 0 (or less) mean no limit, as for
        the web side (a timer of 0 would end every association at once)."""
        self.assertEqual(self.configuration("[sscscp]\n").artimTimeout, 30)
        self.assertEqual(self.configuration("[sscscp]\nARTIMTimeOut = 10\n").artimTimeout, 10)
        for value in ("0", "-1"):
            configuration = self.configuration(f"[sscscp]\nTCPIPTimeOut = {value}\nARTIMTimeOut = {value}\n")
            self.assertIsNone(configuration.tcpipTimeout)
            self.assertIsNone(configuration.artimTimeout)

    def test_lossyQualityWithinOneToHundred(self):
        self.assertEqual(self.configuration("[sscscp]\nLossyQuality = 0\n").lossyQuality, 1)
        self.assertEqual(self.configuration("[sscscp]\nLossyQuality = 200\n").lossyQuality, 100)

    def test_uidPrefix(self):
        """The root of the UIDs the server makes (HL7 orders' studies,
        anonymization, genuid): one that can start none stops start-up,
        naming the line, rather than failing every order later."""
        self.assertEqual(self.configuration("[sscscp]\nUIDPrefix = 1.2.826.0.1.3680043.2.135.\n").uidPrefix,
                         "1.2.826.0.1.3680043.2.135.")
        self.assertIsNone(self.configuration("[sscscp]\nUIDPrefix =\n").uidPrefix)
        self.assertIsNone(self.configuration("[sscscp]\n").uidPrefix)
        for bad in ("1.2.03", "1.2.x", "1." * 30):
            error = self.assertRaises(ConfigError,
                                      lambda: self.configuration(f"[sscscp]\nUIDPrefix = {bad}\n").uidPrefix)
            self.assertIn("/c/dicom.ini:2: UIDPrefix", str(error))

    def test_badInteger(self):
        error = self.assertRaises(ConfigError, lambda: self.configuration("[sscscp]\nTCPPort = five\n").tcpPort)
        self.assertIn("/c/dicom.ini:2:", str(error))
        self.assertIn("TCPPort", str(error))

    def test_magDevicesByCount(self):
        configuration = self.configuration(
            "MAGDevices = 2\nMAGDevice0 = ./data/\nMAGDevice1 = /mnt/archive/\nMAGDevice2 = /ignored\n")
        self.assertEqual(configuration.magDevices, [("MAG0", "/w/data"), ("MAG1", "/mnt/archive")])

    def test_magDevicesWithoutCount(self):
        configuration = self.configuration("MAGDevice1 = b\nmagdevice0 = a\nMAGDeviceThreshold = 0\n")
        self.assertEqual(configuration.magDevices, [("MAG0", "/w/a"), ("MAG1", "/w/b")])

    def test_magDeviceMissing(self):
        configuration = self.configuration("# disks\nMAGDevices = 2\nMAGDevice0 = ./data/\n")
        error = self.assertRaises(ConfigError, lambda: configuration.magDevices)
        self.assertIn("/c/dicom.ini:2:", str(error))
        self.assertIn("MAGDevice1", str(error))

    def test_noMagDevice(self):
        configuration = self.configuration("MAGDevices = 0\n")
        error = self.assertRaises(ConfigError, lambda: configuration.magDevices)
        self.assertIn("/c/dicom.ini:1:", str(error))
        self.assertIn("no MAG device", str(error))

    def test_mirrorDevices(self):
        configuration = self.configuration(
            "MAGDevices = 2\nMAGDevice0 = ./data/\nMAGDevice1 = /mnt/archive/\n"
            "MIRRORDevices = 1\nMIRRORDevice0 = /mnt/mirror/\nMIRRORDevice1 = /ignored\n")
        self.assertEqual(configuration.mirrorDevices, [("MIRROR0", "/mnt/mirror")])

    def test_mirrorDevicesWithoutCount(self):
        configuration = self.configuration("mirrordevice1 = /m1\n")
        self.assertEqual(configuration.mirrorDevices, [("MIRROR1", "/m1")])

    def test_noMirrorDevices(self):
        self.assertEqual(self.configuration("").mirrorDevices, [])
        self.assertEqual(self.configuration("MIRRORDevices = 0\nMIRRORDevice0 = /m\n").mirrorDevices, [])

    def test_mirrorDeviceMissing(self):
        configuration = self.configuration("MIRRORDevices = 1\n")
        error = self.assertRaises(ConfigError, lambda: configuration.mirrorDevices)
        self.assertIn("/c/dicom.ini:1:", str(error))
        self.assertIn("MIRRORDevice0", str(error))

    def test_mirrorInsideMagDevice(self):
        for mirror in ("./data/mirror/", "./data/", "."):
            configuration = self.configuration(f"MAGDevice0 = ./data/\nMIRRORDevice0 = {mirror}\n")
            error = self.assertRaises(ConfigError, lambda: configuration.mirrorDevices)
            self.assertIn("/c/dicom.ini:2:", str(error))
            self.assertIn("overlap", str(error))

    def test_mirrorBesideMagDevice(self):
        configuration = self.configuration("MAGDevice0 = ./data/\nMIRRORDevice0 = ./data-mirror/\n")
        self.assertEqual(configuration.mirrorDevices, [("MIRROR0", "/w/data-mirror")])

    def test_windowsPathsStopStartUp(self):
        """A Conquest dicom.ini copied from Windows names d:\\... folders: a
        ConfigError naming line and key, not a folder named after the whole
        path in the working folder."""
        for text, accessor, line, key in (
                ("# disks\nMAGDevice0 = d:\\program files (x86)\\dicomserver\\data\\\n", "magDevices", 2,
                 "MAGDevice0 = d:\\program files (x86)\\dicomserver\\data\\"),
                ("MAGDevice0 = ./data/\nMIRRORDevices = 1\nMIRRORDevice0 = E:/mirror/\n", "mirrorDevices", 3,
                 "MIRRORDevice0 = E:/mirror/")):
            configuration = self.configuration(text)
            error = self.assertRaises(ConfigError, getattr, configuration, accessor)
            self.assertEqual((error.path, error.line), ("/c/dicom.ini", line))
            self.assertEqual(error.message, f"{key} is a Windows path: give the folder or file on this machine")

    def test_backslashPathsStopStartUp(self):
        """Windows paths without a drive letter (Conquest's relative
        ``.\\data\\``, as its own Windows test scripts write, and network
        shares) are refused as those with one are, naming line and key:
        here they would be a folder or file named after the whole path."""
        configuration = self.configuration("MAGDevice0 = .\\data\\\nSQLServer = .\\data\\dbase\\conquest.db3\n"
                                           "MIRRORDevice0 = \\\\fileserver\\dicom\\\nWebUsers = testserver\\users\n")
        for read, line, message in (
                (lambda: configuration.magDevices, 1,
                 "MAGDevice0 = .\\data\\ is a Windows path: write it with forward slashes on this machine "
                 "(./data/)"),
                (lambda: configuration.pathSetting("SQLServer"), 2,
                 "SQLServer = .\\data\\dbase\\conquest.db3 is a Windows path: write it with forward slashes on "
                 "this machine (./data/dbase/conquest.db3)"),
                (lambda: configuration.pathSetting("MIRRORDevice0"), 3,
                 "MIRRORDevice0 = \\\\fileserver\\dicom\\ is a Windows path: give the folder on this machine "
                 "where the share is mounted"),
                (lambda: configuration.pathSetting("WebUsers"), 4,
                 "WebUsers = testserver\\users is a Windows path: write it with forward slashes on this machine "
                 "(testserver/users)")):
            error = self.assertRaises(ConfigError, read)
            self.assertEqual((error.path, error.line, error.message), ("/c/dicom.ini", line, message))

    def test_placeholdersStopStartUp(self):
        """Conquest's Linux templates hold ${CONQUEST}, which its install
        script fills in (envsubst): used as it is, a ConfigError naming line
        and key, not a folder of that name in the working folder; a $ that
        starts no name is part of the path."""
        configuration = self.configuration("# Conquest's linux/conf/dicom.ini.sqlite\n"
                                           "SQLServer = ${CONQUEST}/data/dbase/conquest.db3\n"
                                           "MAGDevices = 1\nMAGDevice0 = ${CONQUEST}/data/\n"
                                           "HL7DropFolder = $PACS_HOME/hl7\nWebUsers = ./cost$5/users\n")
        advice = ("replace it with the folder on this machine, as Conquest's install script does (envsubst); "
                  "environment variables are not expanded")
        for read, line, setting, placeholder in (
                (lambda: configuration.pathSetting("SQLServer"), 2,
                 "SQLServer = ${CONQUEST}/data/dbase/conquest.db3", "${CONQUEST}"),
                (lambda: configuration.magDevices, 4, "MAGDevice0 = ${CONQUEST}/data/", "${CONQUEST}"),
                (lambda: configuration.pathSetting("HL7DropFolder"), 5, "HL7DropFolder = $PACS_HOME/hl7",
                 "$PACS_HOME")):
            error = self.assertRaises(ConfigError, read)
            self.assertEqual((error.path, error.line), ("/c/dicom.ini", line))
            self.assertEqual(error.message, f"{setting} still holds the placeholder {placeholder}: {advice}")
        self.assertEqual(configuration.pathSetting("WebUsers"), "/w/cost$5/users")

    def test_existingFoldersNamedWithADollar(self):
        """A $NAME in the name of an existing folder (relative to the working
        folder or absolute; the file in it may not exist yet) is part of
        the name; one that names nothing existing stays refused, and so
        does ${NAME} whatever exists."""
        workdir = os.path.abspath(self.mktemp())
        for folder in ("images$archive", "pacs$db", "${CONQUEST}"):
            os.makedirs(os.path.join(workdir, folder))
        configuration = self.configuration(f"MAGDevice0 = {workdir}/images$archive/\n"
                                           "SQLServer = pacs$db/dbase.db3\nHL7DropFolder = pacs$hl7/in\n"
                                           "WebUsers = ${CONQUEST}/users\n", workdir)
        self.assertEqual(configuration.magDevices, [("MAG0", os.path.join(workdir, "images$archive"))])
        self.assertEqual(configuration.pathSetting("SQLServer"), os.path.join(workdir, "pacs$db", "dbase.db3"))
        for key, placeholder in (("HL7DropFolder", "$hl7"), ("WebUsers", "${CONQUEST}")):
            error = self.assertRaises(ConfigError, configuration.pathSetting, key)
            self.assertIn(f"still holds the placeholder {placeholder}:", error.message)

    def test_pathSetting(self):
        configuration = self.configuration("HL7DropFolder = incoming/hl7\nWebUsers =\nLogs = C:\\logs\n")
        self.assertEqual(configuration.pathSetting("HL7DropFolder", "./hl7/"), "/w/incoming/hl7")
        self.assertEqual(configuration.pathSetting("WebUsers", "./users"), "/w/users")
        self.assertEqual(configuration.pathSetting("Missing", "/abs/x/"), "/abs/x")
        error = self.assertRaises(ConfigError, configuration.pathSetting, "Logs")
        self.assertEqual(str(error), "/c/dicom.ini:3: Logs = C:\\logs is a Windows path: give the folder or file "
                                     "on this machine")

    def test_resolvePath(self):
        configuration = self.configuration("", workdir="/srv/pacs")
        self.assertEqual(configuration.resolvePath("./data/"), "/srv/pacs/data")
        self.assertEqual(configuration.resolvePath("data"), "/srv/pacs/data")
        self.assertEqual(configuration.resolvePath("./data/dbase/conquest.db3"), "/srv/pacs/data/dbase/conquest.db3")
        self.assertEqual(configuration.resolvePath("/abs/dir/"), "/abs/dir")
        self.assertEqual(configuration.resolvePath("../other"), "/srv/other")


class DefaultConfigDirTests(unittest.TestCase):
    """Finding the packaged etc/."""

    def test_sourceCheckout(self):
        expected = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(pacscore.__file__))), "etc")
        self.assertEqual(defaultConfigDir(), expected)
        self.assertTrue(os.path.isfile(os.path.join(expected, "dicom.ini")))

    def fakeInstall(self):
        """Point ``pacscore.__file__`` at an empty install; returns its folder."""
        folder = os.path.abspath(self.mktemp())
        writeFile(os.path.join(folder, "pacscore"), "__init__.py", "")
        self.patch(pacscore, "__file__", os.path.join(folder, "pacscore", "__init__.py"))
        self.patch(sys, "prefix", os.path.abspath(self.mktemp()))
        self.patch(site, "getuserbase", lambda: os.path.abspath("no-user-base"))
        return folder

    def test_wheelInstall(self):
        self.fakeInstall()
        writeFile(os.path.join(sys.prefix, "share", "pacs", "etc"), "dicom.ini", "")
        self.assertEqual(defaultConfigDir(), os.path.join(sys.prefix, "share", "pacs", "etc"))

    def test_targetInstall(self):
        target = self.fakeInstall()
        writeFile(os.path.join(target, "share", "pacs", "etc"), "dicom.ini", "")
        self.assertEqual(defaultConfigDir(), os.path.join(target, "share", "pacs", "etc"))

    def test_userInstall(self):
        self.fakeInstall()
        userBase = os.path.abspath(self.mktemp())
        self.patch(site, "getuserbase", lambda: userBase)
        writeFile(os.path.join(userBase, "share", "pacs", "etc"), "dicom.ini", "")
        self.assertEqual(defaultConfigDir(), os.path.join(userBase, "share", "pacs", "etc"))

    def test_nothingFound(self):
        self.fakeInstall()
        error = self.assertRaises(ConfigError, defaultConfigDir)
        self.assertIn("dicom.ini", str(error))
        self.assertIn(os.path.join(sys.prefix, "share", "pacs", "etc"), str(error))


class PackagedDefaultsTests(unittest.TestCase):
    """The files in etc/ parse and hold what the product promises."""

    def setUp(self):
        self.workdir = os.path.abspath(self.mktemp())
        self.configuration = loadConfiguration(workdir=self.workdir)

    def test_loads(self):
        configuration = self.configuration
        self.assertEqual(configuration.configDir, defaultConfigDir())
        self.assertEqual(configuration.aeTitle, "CONQUESTSRV1")
        self.assertEqual(configuration.tcpPort, 5678)
        self.assertEqual(configuration.magDevices, [("MAG0", os.path.join(self.workdir, "data"))])
        self.assertEqual(configuration.fileNameSyntax, "4")
        self.assertEqual(configuration.tcpipTimeout, 300)
        self.assertEqual(configuration.storageFailedErrorCode, 272)
        self.assertEqual(configuration.tableNames["worklist"], "DICOMWorkList")
        self.assertEqual(configuration.resolvePath(configuration.ini.get("SQLServer")),
                         os.path.join(self.workdir, "data", "dbase", "conquest.db3"))

    def test_dicomIni(self):
        ini = self.configuration.ini
        self.assertEqual(ini.sectionNames(), ["sscscp", "webdefaults", "DICOMwebServers", "DICOMTLSNodes"])
        self.assertEqual(ini.items("DICOMwebServers") + ini.items("DICOMTLSNodes"), [])  # examples, commented out
        self.assertEqual(dict(ini.items("webdefaults")),
                         {"size": "512", "dsize": "0", "compress": "un", "iconsize": "48", "graphic": "jpg",
                          "viewer": "serversideviewer"})
        expected = {"SQLite": "1", "Postgres": "0", "MySQL": "0", "MAGDevices": "1",
                    "IncomingCompression": "as", "DroppedFileCompression": "as",
                    "EnableComputedFields": "1", "ExportConverters": "0", "ImportConverters": "0",
                    "ACRNemaMap": "acrnema.map", "kFactorFile": "dicom.sql", "SOPClassList": "dgatesop.lst"}
        self.assertEqual({key: ini.get(key) for key in expected}, expected)
        self.assertTrue(ini.get("ExportConverter0").startswith("nop "))
        for key in ("MIRRORDevices", "CACHEDevices", "JUKEBOXDevices"):
            self.assertFalse(ini.has(key))
        with open(self.configuration.iniPath) as f:
            lines = f.read().splitlines()
        ours = lines.index("WorkListTableName        = DICOMWorkList")
        self.assertIn("pacs", lines[ours - 1])

    def test_acrNemaMap(self):
        amap = self.configuration.acrNemaMap
        self.assertEqual(amap.nodes, [Node("CONQUESTSRV1", "127.0.0.1", "5678", "un"),
                                      Node("V*", "*", "1234", "un"), Node("S*", "*", "5678", "un")])
        self.assertEqual(amap.lookup("V10.0.0.7"), Node("V10.0.0.7", "10.0.0.7", "1234", "un"))

    def test_layoutIsTheManuals(self):
        layout = self.configuration.layout
        self.assertEqual([len(columns) for _, columns in layout.levels()], [4, 14, 17, 21])
        self.assertEqual(len(layout.worklist), 26)
        self.assertEqual(layout.study[-1].name, "PatientID")
        self.assertEqual(layout.series[-1].name, "StudyInstanceUID")
        self.assertEqual(layout.image[-1].name, "SeriesInstanceUID")
        self.assertEqual(layout.worklist[-1].hl7, "OBR.27")

    def test_transferSyntaxesWeStoreAsReceived(self):
        enabled = {entry.uid for entry in self.configuration.sopList.transfers()}
        for name in ("ImplicitVRLittleEndian", "ExplicitVRLittleEndian", "ExplicitVRBigEndian",
                     "DeflatedExplicitVRLittleEndian", "JPEGBaseline8Bit", "JPEGExtended12Bit",
                     "JPEGLossless", "JPEGLosslessSV1", "JPEGLSLossless", "JPEGLSNearLossless",
                     "RLELossless", "JPEG2000Lossless", "JPEG2000"):
            self.assertIn(getattr(uid, name), enabled, name)

    def test_modernSopClasses(self):
        enabled = {entry.uid for entry in self.configuration.sopList.sops()}
        for name in ("EnhancedCTImageStorage", "EnhancedMRColorImageStorage", "EnhancedPETImageStorage",
                     "SegmentationStorage", "SecondaryCaptureImageStorage",
                     "DigitalXRayImageStorageForPresentation", "BreastTomosynthesisImageStorage",
                     "EncapsulatedPDFStorage", "XRayRadiationDoseSRStorage", "EnhancedXAImageStorage",
                     "EnhancedXRFImageStorage", "OphthalmicPhotography8BitImageStorage",
                     "OphthalmicPhotography16BitImageStorage", "VLWholeSlideMicroscopyImageStorage",
                     "SpatialRegistrationStorage", "ColorSoftcopyPresentationStateStorage",
                     "PseudoColorSoftcopyPresentationStateStorage", "RTIonPlanStorage",
                     "RTIonBeamsTreatmentRecordStorage", "ModalityWorklistInformationFind",
                     "Verification",
                     "PatientRootQueryRetrieveInformationModelFind",
                     "PatientRootQueryRetrieveInformationModelMove",
                     "PatientRootQueryRetrieveInformationModelGet",
                     "StudyRootQueryRetrieveInformationModelFind",
                     "StudyRootQueryRetrieveInformationModelMove",
                     "StudyRootQueryRetrieveInformationModelGet",
                     "PatientStudyOnlyQueryRetrieveInformationModelGet"):
            self.assertIn(standardUid(name), enabled, name)

    def test_namedStandardUidsAreRight(self):
        # SOP classes we added carry pydicom's keyword as name: their UIDs must agree.
        checked = 0
        for entry in self.configuration.sopList.sops():
            expected = getattr(uid, entry.name, None)
            if isinstance(expected, str):
                self.assertEqual(entry.uid, expected, entry.name)
                checked += 1
        self.assertGreater(checked, 40)

    def test_gemrAndGectStayDisabled(self):
        disabled = {e.name for e in self.configuration.sopList.entries if not e.enabled}
        self.assertTrue({"GEMRStorage", "GECTStorage"} <= disabled)

