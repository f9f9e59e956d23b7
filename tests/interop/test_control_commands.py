"""Every control command ``dgate -?`` lists that test_control.py,
test_control_data.py and test_control_configuration.py leave out, run
through the real ``dgate`` console script against a running ``twistd -n
pacs`` and checked where it acts: the SQLite index, the files on the MAG
device, the configuration files on disk, what DCMTK's storescu and echoscu
are let do (the acceptance lists), what a DCMTK storescp receives, and the
log files.

The module is table driven: ``COVERAGE`` names, for every command of
``dgate -?``, the test that runs it (here or in the other three modules),
and ``test_everyListedCommandIsCovered`` fails when a command is listed
without one; ``BAD_ARGUMENTS`` is the table of refused command lines and
the message each must give.

Four servers, one per class (``setUpClass``): the configuration files, the
stored data (a storescp destination, and the server itself known under a
second AE title as a remote archive), maintenance and logging, and
``makespace`` alone, since it deletes the least recently accessed patients
first and nothing else may be older than the patient it should delete.
"""

import importlib
import inspect
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import zlib
from contextlib import closing
from typing import NamedTuple

import pydicom
from pydicom.datadict import DicomDictionary
from pydicom.uid import generate_uid
from twisted.trial import unittest

from pacscore.config.acrnema import AcrNemaMap
from pacscore.config.ini import DicomIni
from pacscore.config.soplist import SopEntry, SopList
from pacscore.testing.corpus import PREFIX, makeDataset
from pacscore.testing.orders import orderMessage, writeMessages
from pacscore.testing.tmpfs import mountTmpfs
from tests.interop.index import snapshot
from tests.interop.peers import StorescpServer
from tests.interop.server import BIN, PacsServer, dcmtk
from tests.interop.test_retrieve import getSeries
from tests.interop.test_worklist import worklistFind

MB = 1 << 20
DESTINATION = "CMDDEST"   # no wildcard entry of the default acrnema.map (V*, S*) matches it
SELF = "CMDSELF"          # the server itself, as a remote archive (a LocalAE entry lets it answer)
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMAGE_TABLES = ("DICOMPatients", "DICOMStudies", "DICOMSeries", "DICOMImages")
SQLDEF_LEVELS = {"patient": "DICOMPatients", "study": "DICOMStudies", "series": "DICOMSeries",
                 "image": "DICOMImages", "worklist": "DICOMWorkList"}
BOOKKEEPING = ("AccessTime", "qTimeStamp", "qFlags", "qSpare", "ObjectFile", "DeviceName")
SEQUENCE_MARKER = "-----"

# Each command of ``dgate -?`` and the test that runs it, as "module.Class.method".
_OTHER = "tests.interop."
_HERE = "tests.interop.test_control_commands."
_MODIFY = "tests.interop.test_control_modify.ControlModifyTests."
_CONVERSION = "tests.interop.test_control_conversion.ConversionCommandTests."
_PICTURES = "tests.interop.test_control_conversion.PictureCommandTests."
COVERAGE = {
    "addimagefile": _OTHER + "test_control_data.ControlDataTests.test_addimagefileWithANewPatientID",
    "attachanytopatient": _MODIFY + "test_attachAnyToPatientStudySeries",
    "attachanytoseries": _MODIFY + "test_attachAnyToPatientStudySeries",
    "attachanytostudy": _MODIFY + "test_attachAnyToPatientStudySeries",
    "attachrtplantortstruct": _MODIFY + "test_attachRTPlanToRTStruct",
    "addrecord": _OTHER + "test_control_data.ControlDataTests.test_addrecordAndDeleterecord",
    "anonymize": _MODIFY + "test_anonymizeWithAConverterScript",
    "copypatid": _MODIFY + "test_copypatidKeepsTheOriginal",
    "count_frames": _CONVERSION + "test_countAndExtractNativeFrames",
    "convert_to_bmp": _PICTURES + "test_toAFileWithWindowAndFrame",
    "convert_to_dicom": _PICTURES + "test_toDicom",
    "convert_to_gif": _PICTURES + "test_toStandardOutput",
    "convert_to_jpg": _PICTURES + "test_cgi",
    "extract_frames": _CONVERSION + "test_countAndExtractNativeFrames",
    "testcompress": _CONVERSION + "test_testcompress",
    "uncompress": _CONVERSION + "test_uncompress",
    "mergeseries": _MODIFY + "test_mergestudyThenMergeseries",
    "mergeseriesfile": _MODIFY + "test_mergestudyThenMergeseries",
    "mergestudy": _MODIFY + "test_mergestudyThenMergeseries",
    "mergestudyfile": _MODIFY + "test_mergestudyThenMergeseries",
    "modifyimage": _MODIFY + "test_modifyimage",
    "modifypatid": _MODIFY + "test_modifypatidGivesNewUIDs",
    "changeuid": _OTHER + "test_control_configuration.ControlConfigurationTests.test_uidRoundTrip",
    "changeuidback": _OTHER + "test_control_configuration.ControlConfigurationTests.test_uidRoundTrip",
    "checksum": _HERE + "ConfigurationCommandTests.test_dictionaryAndChecksum",
    "debuglevel": _HERE + "MaintenanceCommandTests.test_logOnDebugLogOnAndDebugLevel",
    "debuglog_on": _HERE + "MaintenanceCommandTests.test_logOnDebugLogOnAndDebugLevel",
    "delete_amap": _HERE + "ConfigurationCommandTests.test_deleteAmapThenReadAmap",
    "delete_application": _HERE + "ConfigurationCommandTests.test_applicationEntries",
    "delete_localae": _HERE + "ConfigurationCommandTests.test_localAETitles",
    "delete_param": _OTHER + "test_control_configuration.ControlConfigurationTests.test_paramRoundTrip",
    "delete_remoteae": _HERE + "ConfigurationCommandTests.test_remoteAETitles",
    "delete_sop": _HERE + "ConfigurationCommandTests.test_sopClassRefusedThenAccepted",
    "delete_transfer": _HERE + "ConfigurationCommandTests.test_transferSyntaxRefusedThenAccepted",
    "deleteimagefile": _HERE + "DataCommandTests.test_deleteimagefile",
    "deleteimagefromdb": _HERE + "DataCommandTests.test_deleteFromTheDatabaseOnlyThenRegenfile",
    "deletepatient": _OTHER + "test_control_data.ControlDataTests.test_deletestudyAndDeletepatient",
    "deletepatientfromdb": _OTHER + "test_control_data.ControlDataTests.test_deletesFromTheDatabaseOnly",
    "deleteseriesfromdb": _OTHER + "test_control_data.ControlDataTests.test_deletesFromTheDatabaseOnly",
    "deletestudyfromdb": _OTHER + "test_control_data.ControlDataTests.test_deletesFromTheDatabaseOnly",
    "deleterecord": _OTHER + "test_control_data.ControlDataTests.test_addrecordAndDeleterecord",
    "deleteseries": _HERE + "DataCommandTests.test_deleteseries",
    "deleteimage": _HERE + "DataCommandTests.test_conquestsLaterCommands",
    "moveaccession": _HERE + "DataCommandTests.test_conquestsLaterCommands",
    "modifystudy": _HERE + "DataCommandTests.test_conquestsLaterCommands",
    "modifyseries": _HERE + "DataCommandTests.test_conquestsLaterCommands",
    "imagefinder": _HERE + "DataCommandTests.test_conquestsLaterCommands",
    "imagefilelister": _HERE + "DataCommandTests.test_conquestsLaterCommands",
    "luastart": _HERE + "DataCommandTests.test_conquestsLaterCommands",
    "loadanddeletedir": _HERE + "DataCommandTests.test_conquestsLaterCommands",
    "deletesopfromdb": _HERE + "DataCommandTests.test_deleteFromTheDatabaseOnlyThenRegenfile",
    "deletestudies": _HERE + "DataCommandTests.test_deletestudiesByDate",
    "deletestudy": _OTHER + "test_control_data.ControlDataTests.test_deletestudyAndDeletepatient",
    "deletpatient": _HERE + "MaintenanceCommandTests.test_testmode",
    "display_status": _OTHER + "test_control.StatusTests.test_displayStatusAfterAnIngest",
    "dump_header": _HERE + "DataCommandTests.test_dumpHeader",
    "forward": _HERE + "DataCommandTests.test_forwardCompressed",
    "forwardqueue": _OTHER + "test_control.StatusTests.test_forwardQueue",
    "grabimagesfromserver": _OTHER + "test_control_grab.GrabImagesTests.test_grabWhatIsMissing",
    "genuid": _HERE + "ConfigurationCommandTests.test_readIni",
    "get_amap": _HERE + "ConfigurationCommandTests.test_deleteAmapThenReadAmap",
    "get_amaps": _HERE + "ConfigurationCommandTests.test_deleteAmapThenReadAmap",
    "get_application": _HERE + "ConfigurationCommandTests.test_applicationEntries",
    "get_dic": _HERE + "ConfigurationCommandTests.test_dictionaryAndChecksum",
    "get_freestore": _HERE + "MaintenanceCommandTests.test_getFreestore",
    "get_ini": _HERE + "ConfigurationCommandTests.test_iniListings",
    "get_ini_num": _HERE + "ConfigurationCommandTests.test_iniListings",
    "get_ini_param": _HERE + "ConfigurationCommandTests.test_iniListings",
    "get_localae": _HERE + "ConfigurationCommandTests.test_localAETitles",
    "get_param": _HERE + "ConfigurationCommandTests.test_readIni",
    "get_remoteae": _HERE + "ConfigurationCommandTests.test_remoteAETitles",
    "get_sop": _HERE + "ConfigurationCommandTests.test_sopClassRefusedThenAccepted",
    "get_sqldef": _HERE + "ConfigurationCommandTests.test_sqldefMatchesTheIndexTables",
    "get_transfer": _HERE + "ConfigurationCommandTests.test_transferSyntaxRefusedThenAccepted",
    "imagelister": _OTHER + "test_control_data.ControlDataTests.storedFiles",
    "initializetables": _HERE + "MaintenanceCommandTests.test_regendirThenRegendev",
    "loadhl7": _HERE + "MaintenanceCommandTests.test_logOnDebugLogOnAndDebugLevel",
    "log_on": _HERE + "MaintenanceCommandTests.test_logOnDebugLogOnAndDebugLevel",
    "lua": _HERE + "MaintenanceCommandTests.test_luaChunksRunInTheServer",
    "dolua": _HERE + "MaintenanceCommandTests.test_luaChunksRunInTheServer",
    "makespace": _HERE + "MakeSpaceTests.test_makespaceDeletesTheOldestPatient",
    "movepatient": _HERE + "DataCommandTests.test_movepatientAndMoveseries",
    "moveseries": _HERE + "DataCommandTests.test_movepatientAndMoveseries",
    "movestudies": _HERE + "DataCommandTests.test_movestudiesByDate",
    "movestudy": _OTHER + "test_control_data.ControlDataTests.test_movestudyToStorescp",
    "patientfinder": _OTHER + "test_control_data.ControlDataTests.test_queryAndFinders",
    "prefetch": _HERE + "DataCommandTests.test_prefetch",
    "put_amap": _OTHER + "test_control_configuration.ControlConfigurationTests.test_putAmapIsLiveForMove",
    "put_application": _HERE + "ConfigurationCommandTests.test_applicationEntries",
    "put_localae": _HERE + "ConfigurationCommandTests.test_localAETitles",
    "put_param": _OTHER + "test_control_configuration.ControlConfigurationTests.test_paramRoundTrip",
    "put_remoteae": _HERE + "ConfigurationCommandTests.test_remoteAETitles",
    "put_sop": _HERE + "ConfigurationCommandTests.test_sopClassRefusedThenAccepted",
    "put_transfer": _HERE + "ConfigurationCommandTests.test_transferSyntaxRefusedThenAccepted",
    "query": _OTHER + "test_control_data.ControlDataTests.test_queryAndFinders",
    "query2": _HERE + "DataCommandTests.test_query2LimitsTheRows",
    "quit": _OTHER + "test_control.QuitTests.quitDuringIngest",
    "read_amap": _HERE + "ConfigurationCommandTests.test_deleteAmapThenReadAmap",
    "read_ini": _HERE + "ConfigurationCommandTests.test_readIni",
    "regen": _OTHER + "test_control_data.ControlDataTests.test_regenAfterLosingTheDatabase",
    "regendev": _HERE + "MaintenanceCommandTests.test_regendirThenRegendev",
    "regendevice": _HERE + "MaintenanceCommandTests.test_regendirThenRegendev",
    "regendir": _HERE + "MaintenanceCommandTests.test_regendirThenRegendev",
    "regenfile": _HERE + "DataCommandTests.test_deleteFromTheDatabaseOnlyThenRegenfile",
    "retryforwards": _OTHER + "test_control.StatusTests.test_forwardQueue",
    "seriesfinder": _HERE + "DataCommandTests.test_studyfinderAndSeriesfinder",
    "serieslister": _OTHER + "test_control_data.ControlDataTests.test_queryAndFinders",
    "studyfinder": _HERE + "DataCommandTests.test_studyfinderAndSeriesfinder",
    "movedatatodevice": _HERE + "DeviceCommandTests.test_movedatatodeviceThenRenamedevice",
    "renamedevice": _HERE + "DeviceCommandTests.test_movedatatodeviceThenRenamedevice",
    "testimages": _HERE + "MaintenanceCommandTests.test_testimages",
    "testmode": _HERE + "MaintenanceCommandTests.test_testmode",
    "verifymirrordisk": _OTHER + "test_mirror.MirrorTests.test_verifyCopiesDamagedCopiesAgain",
    "write_amap": _OTHER + "test_control_configuration.ControlConfigurationTests.test_putAmapIsLiveForMove",
}

# Refused command lines and what dgate prints after "dgate: " ({workdir}: the server's folder).
BAD_ARGUMENTS = (
    ("--verifymirrordisk:", "there is no mirror device (MIRRORDevices, MIRRORDevice0 ... in dicom.ini)"),
    ("--verifymirrordisk:MAG0", "MAG0 has no mirror device (MIRRORDevice0 in dicom.ini)"),
    ("--verifymirrordisk:MAG7", "no device 'MAG7' (MAG0)"),
    ("--testimages:MAG7", "no device 'MAG7' (MAG0)"),
    ("--get_ini_num:last", "index must be a number, not 'last'"),
    ("--get_sop:first,%s", "index must be a number, not 'first'"),
    ("--delete_sop:9999", "no sop entry 9999: there are "),
    ("--put_transfer:0,,", "usage: --put_transfer:index,UID,name Write/add accepted transfer syntax"),
    ("--put_application:0,not-a-uid,Bad", "cannot write "),
    ("--delete_amap:999", "no entry 999 in {workdir}/acrnema.map"),
    ("--get_sqldef:bogus,0", "level must be one of patient, study, series, image, worklist (or 0-4), not 'bogus'"),
    ("--get_dic:-1", "index must be a number, not '-1'"),
    ("--deletestudies:2024", "date '2024': expected YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD-"),
    ("--deleteseries:PAT*:1.2.3", "deleteseries: no stored object matches 'PAT*:1.2.3'"),  # the ID as written
    ("--deleteimagefile:/etc/hostname", "/etc/hostname is not on a MAG device (MAG0 = {workdir}/data)"),
    ("--deletesopfromdb:CFG,,,", "no SOP instance UID given"),
    ("--movepatient:(local),NOWHERE,CFG", "'NOWHERE' is not in acrnema.map"),
    ("--moveseries:(local),CONQUESTSRV1,", "no series UID given"),
    ("--forward:MAG0:CFG/none.dcm,un,NOWHERE", "'NOWHERE' is not in acrnema.map"),
    ("--dump_header:missing.dcm", "cannot read {workdir}/missing.dcm"),
    ("--prefetch:NOBODY", "no stored object of patient 'NOBODY'"),
    ("--query2:DICOMImages|ImagePat||%s|many|", "max must be a number, not 'many'"),
    ("--studyfinder:NOWHERE|x||", "'NOWHERE' is not in acrnema.map"),
    ("--regendev:MAG9", "no device 'MAG9' (MAG0)"),
    ("--regendir:MAG0,../..", "'../..' is not a folder of MAG0"),
    ("--regenfile:/etc/hostname", "/etc/hostname is not on a MAG device (MAG0 = {workdir}/data)"),
    ("--makespace:lots", "# must be a number, not 'lots'"),
    ("--get_freestore:MAG3", "no device 'MAG3' (devices: MAG0)"),
    ("--debuglevel:high", "debug level must be a number, not 'high'"),
    ("--log_on:1234", "log_on: logging to a UDP port is not supported, give a file"),
    ("--testmode:a/b", "testmode text may not contain a folder separator: 'a/b'"),
)


class Image(NamedTuple):
    path: str
    patientID: str
    studyUID: str
    seriesUID: str
    sopUID: str
    studyDate: str


def writeImages(folder, patientID, studyDates, seriesPerStudy=1, imagesPerSeries=2, size=64):
    """CT images of one patient, one study per date, as Part-10 files."""
    os.makedirs(folder, exist_ok=True)
    images = []
    for studyDate in studyDates:
        studyUID = generate_uid(PREFIX)
        for seriesNumber in range(1, seriesPerStudy + 1):
            seriesUID = generate_uid(PREFIX)
            for instanceNumber in range(1, imagesPerSeries + 1):
                sopUID = generate_uid(PREFIX)
                dataset = makeDataset(patientID, f"{patientID.title()}^Test", studyUID, seriesUID, sopUID,
                                      seriesNumber, instanceNumber, rows=size, columns=size, studyDate=studyDate,
                                      seed=len(images))
                path = os.path.join(folder, f"{patientID}-{len(images):03d}.dcm")
                dataset.save_as(path, enforce_file_format=True)
                images.append(Image(path, patientID, studyUID, seriesUID, sopUID, studyDate))
    return images


def indexQuery(server, sql, *parameters):
    """Rows of ``sql`` on the server's SQLite index."""
    with closing(sqlite3.connect(server.database)) as connection:
        return connection.execute(sql, parameters).fetchall()


def storedFile(server, sopUID):
    """``(ObjectFile, absolute path)`` of a stored SOP instance, or None."""
    rows = indexQuery(server, "SELECT DeviceName, ObjectFile FROM DICOMImages WHERE SOPInstanceUID = ?", sopUID)
    if not rows:
        return None
    device, objectFile = rows[0]
    assert device == "MAG0", device
    return objectFile, os.path.join(server.dataDir, objectFile)


def imageUIDs(server, patientID):
    return {row[0] for row in indexQuery(server, "SELECT SOPInstanceUID FROM DICOMImages WHERE ImagePat = ?",
                                         patientID)}


def readText(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def writeText(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def freeMegabytes(path):
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize // MB


def runDgate(*args):
    return subprocess.run([os.path.join(BIN, "dgate"), *args], capture_output=True, text=True, timeout=600)


def dgateConcurrently(server, commands):
    """One dgate process per command, all at once; their CompletedProcess-like tuples
    ``(returncode, stdout, stderr)`` in order."""
    processes = [subprocess.Popen([os.path.join(BIN, "dgate"), f"-w{server.workdir}", command],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for command in commands]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        results.append((process.returncode, out, err))
    return results


class DgateMixin:
    """``dgate(...)``: stdout lines of commands that must all succeed."""

    def dgate(self, *args):
        result = self.server.dgate(*args)
        self.assertEqual(result.returncode, 0, f"dgate {args}: {result.stdout}{result.stderr}")
        return result.stdout.splitlines()

    def dgateFails(self, command, message, status=1):
        result = self.server.dgate(command)
        self.assertEqual((result.returncode, result.stdout), (status, ""), f"{command}: {result.stderr}")
        self.assertIn(message, result.stderr)
        return result

    def undoUnlessDone(self, undo):
        """Call ``undo()`` at cleanup unless the test called the ``done()``
        returned: a test that puts things back itself (and checks it) spares
        the extra dgate runs."""
        pending = [True]
        self.addCleanup(lambda: pending and undo())
        return pending.clear

    def counts(self):
        return [indexQuery(self.server, f"SELECT count(*) FROM {table}")[0][0] for table in IMAGE_TABLES]

    def store(self, *images, **options):
        result = self.server.store(*(image.path for image in images), **options)
        self.assertEqual(result.returncode, 0, result.stderr)


class CommandListTests(unittest.TestCase):

    def test_everyListedCommandIsCovered(self):
        listing = runDgate("-?")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        listed = set(re.findall(r"^    --([a-z0-9_]+):", listing.stdout, re.MULTILINE))
        self.assertGreater(len(listed), 70)
        self.assertEqual(sorted(listed - set(COVERAGE)), [], "listed by dgate -? without a test")
        self.assertEqual(sorted(set(COVERAGE) - listed), [], "in COVERAGE but not listed by dgate -?")
        for command, where in sorted(COVERAGE.items()):
            moduleName, className, methodName = where.rsplit(".", 2)
            method = getattr(getattr(importlib.import_module(moduleName), className), methodName)
            self.assertIn(f"--{command}:", inspect.getsource(method), f"{where} does not run --{command}")


class ConfigurationCommandTests(DgateMixin, unittest.TestCase):
    """dicom.ini, acrnema.map and dgatesop.lst, the definitions, checksum and the bad arguments."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-controlcommands-config-")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs")).start()
        cls.images = writeImages(os.path.join(cls.workdir, "corpus"), "CFG", ["20240102"], imagesPerSeries=4)
        result = cls.server.store(cls.images[0].path)
        assert result.returncode == 0, result.stderr

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.workdir, True)

    def path(self, name):
        return os.path.join(self.server.workdir, name)

    def sopList(self):
        return SopList.fromFile(self.path("dgatesop.lst"))

    def enabled(self, kind):
        kinds = ("sop", "abstract") if kind == "sop" else (kind,)
        return [entry for entry in self.sopList().entries if entry.enabled and entry.kind in kinds]

    def ensureEntry(self, kind, uid, name):
        """Put an entry back (at the end) when a failed test left it deleted."""
        entries = self.enabled(kind)
        if uid not in [entry.uid for entry in entries]:
            self.server.dgate(f"--put_{kind}:{len(entries)},{uid},{name}")

    def removeEntry(self, kind, uid):
        """Delete an entry a failed test left behind."""
        uids = [entry.uid for entry in self.enabled(kind)]
        if uid in uids:
            self.server.dgate(f"--delete_{kind}:{uids.index(uid)}")

    def echo(self, calling="ECHOSCU", called="PACS"):
        return dcmtk("echoscu", "-aet", calling, "-aec", called, "127.0.0.1", self.server.port, timeout=60)

    def test_iniListings(self):
        items = DicomIni.fromFile(self.path("dicom.ini")).items()
        position = [key for key, _ in items].index("TCPPort")
        output = self.dgate("--get_ini:", "--get_ini_param:MyACRNema,[%s]", f"--get_ini_num:{position}",
                            f"--get_ini_num:{position},%s is %s", f"--get_ini_num:{len(items)}")
        self.assertEqual(output, [f"{key} = {value}" for key, value in items]
                         + ["[PACS]", f"TCPPort = {self.server.port}", f"TCPPort is {self.server.port}"])

    def test_readIni(self):
        path = self.path("dicom.ini")
        original = readText(path)
        prefix = DicomIni.fromFile(path).get("UIDPrefix")
        done = self.undoUnlessDone(lambda: (writeText(path, original), self.server.dgate("--read_ini:")))
        ini = DicomIni.fromFile(path)
        ini.set("ReadIniTestKey", "edited on disk")
        ini.set("UIDPrefix", "1.2.826.0.1.3680043.9.9999")
        ini.write()
        changed = [f"2 parameter(s) changed in {path}", "takes effect when the server restarts: ReadIniTestKey"]
        *report, value, uid = self.dgate("--read_ini:", "--get_param:ReadIniTestKey,[%s]", "--genuid:")
        self.assertEqual(report, changed)
        self.assertEqual(value, "[edited on disk]")
        self.assertTrue(uid.startswith("1.2.826.0.1.3680043.9.9999."), uid)
        writeText(path, original)
        *report, value, uid = self.dgate("--read_ini:", "--get_param:ReadIniTestKey,[%s]", "--genuid:")
        done()
        self.assertEqual((report, value), (changed, "[]"))
        self.assertTrue(uid.startswith(prefix + "."), uid)

    def test_deleteAmapThenReadAmap(self):
        path = self.path("acrnema.map")
        original = readText(path)
        done = self.undoUnlessDone(lambda: (writeText(path, original), self.server.dgate("--read_amap:")))
        nodes = AcrNemaMap.fromFile(path).nodes
        titles = [node.ae for node in nodes]
        servers = [title for title in titles if "*" not in title]
        output = self.dgate("--get_amaps:%s", "--delete_amap:0", "--get_amap:0,%s", "--get_amaps:%s")
        self.assertEqual(output, servers + [titles[1]] + servers[1:])
        self.assertEqual(AcrNemaMap.fromFile(path).nodes, nodes, "delete_amap changes the map in memory only")
        with open(path, "a") as f:
            f.write("READMAP           127.0.0.1        4242      j2\n")
        output = self.dgate("--read_amap:", "--get_amaps:%s %s %s %s")
        self.assertEqual(output, [f"{len(nodes) + 1} entries read from {path}"]
                         + [f"{n.ae} {n.host} {n.port} {n.compression}" for n in nodes if "*" not in n.ae]
                         + ["READMAP 127.0.0.1 4242 j2"])
        writeText(path, original)
        output = self.dgate("--read_amap:", "--get_amaps:%s")
        done()
        self.assertEqual(output, [f"{len(nodes)} entries read from {path}"] + servers)

    def test_sopClassRefusedThenAccepted(self):
        self.addCleanup(self.ensureEntry, "sop", CT_IMAGE_STORAGE, "CTStorage")
        position = [entry.uid for entry in self.enabled("sop")].index(CT_IMAGE_STORAGE)
        self.assertEqual(self.dgate(f"--get_sop:{position}", f"--delete_sop:{position}"),
                         [f"{CT_IMAGE_STORAGE} CTStorage"])
        self.assertNotIn(CT_IMAGE_STORAGE, [entry.uid for entry in self.enabled("sop")], "dgatesop.lst")
        refused = self.server.store(self.images[1].path)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn(f"No presentation context for: (CT) {CT_IMAGE_STORAGE}", refused.stderr)
        self.assertIsNone(storedFile(self.server, self.images[1].sopUID))
        count = len(self.enabled("sop"))
        output = self.dgate(f"--get_sop:{count}", f"--put_sop:{count},{CT_IMAGE_STORAGE},CTStorage",
                            f"--get_sop:{count},%s|%s")
        self.assertEqual(output, [f"{CT_IMAGE_STORAGE}|CTStorage"], "nothing past the last entry, then CT")
        self.assertEqual(self.enabled("sop")[-1], SopEntry("CTStorage", CT_IMAGE_STORAGE, "sop"))
        self.store(self.images[1])
        self.assertIsNotNone(storedFile(self.server, self.images[1].sopUID))

    def test_transferSyntaxRefusedThenAccepted(self):
        self.addCleanup(self.ensureEntry, "transfer", IMPLICIT_VR_LITTLE_ENDIAN, "LittleEndianImplicit")
        position = [entry.uid for entry in self.enabled("transfer")].index(IMPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(self.dgate(f"--get_transfer:{position}", f"--delete_transfer:{position}"),
                         [f"{IMPLICIT_VR_LITTLE_ENDIAN} LittleEndianImplicit"])
        self.assertNotIn(IMPLICIT_VR_LITTLE_ENDIAN, [entry.uid for entry in self.enabled("transfer")])
        refused = self.server.store(self.images[2].path, extra=("-xi",))
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("No Acceptable Presentation Contexts", refused.stderr)
        self.assertIsNone(storedFile(self.server, self.images[2].sopUID))
        count = len(self.enabled("transfer"))
        output = self.dgate(f"--put_transfer:{count},{IMPLICIT_VR_LITTLE_ENDIAN},LittleEndianImplicit",
                            f"--get_transfer:{count}")
        self.assertEqual(output, [f"{IMPLICIT_VR_LITTLE_ENDIAN} LittleEndianImplicit"])
        self.store(self.images[2], extra=("-xi",))
        objectFile, path = storedFile(self.server, self.images[2].sopUID)
        self.assertEqual(pydicom.dcmread(path).file_meta.TransferSyntaxUID, IMPLICIT_VR_LITTLE_ENDIAN)

    def test_applicationEntries(self):
        self.addCleanup(self.removeEntry, "application", DICOM_APPLICATION_CONTEXT)
        self.assertEqual(self.enabled("application"), [], "none enabled in the default dgatesop.lst")
        output = self.dgate("--get_application:0", f"--put_application:0,{DICOM_APPLICATION_CONTEXT},DICOM",
                            "--get_application:0,%s=%s")
        self.assertEqual(output, [f"{DICOM_APPLICATION_CONTEXT}=DICOM"], "nothing, then the entry put")
        self.assertEqual(self.enabled("application"), [SopEntry("DICOM", DICOM_APPLICATION_CONTEXT, "application")])
        self.assertEqual(self.echo().returncode, 0, "DCMTK proposes the DICOM application context")
        self.assertEqual(self.dgate("--delete_application:0", "--get_application:0"), [])
        self.assertEqual(self.enabled("application"), [])

    def test_localAETitles(self):
        self.addCleanup(self.removeEntry, "localae", "ALIAS")
        self.assertEqual(self.echo(called="OTHER").returncode, 0, "any called AE title while there is none")
        self.assertEqual(self.dgate("--put_localae:0,ALIAS,Alias", "--get_localae:0"), ["ALIAS Alias"])
        self.assertEqual(self.enabled("localae"), [SopEntry("Alias", "ALIAS", "localae")])
        self.assertEqual(self.echo(called="ALIAS").returncode, 0, "answered as ALIAS")
        self.assertEqual(self.echo(called="PACS").returncode, 0, "and still as its own AE title")
        refused = self.echo(called="OTHER")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("Called AE Title Not Recognized", refused.stderr)
        self.assertEqual(self.dgate("--delete_localae:0", "--get_localae:0"), [])
        self.assertEqual(self.enabled("localae"), [])
        self.assertEqual(self.echo(called="OTHER").returncode, 0)

    def test_remoteAETitles(self):
        self.addCleanup(self.removeEntry, "remoteae", "GOODSCU")
        self.assertEqual(self.echo(calling="OTHERSCU").returncode, 0, "anyone while the list is empty")
        self.assertEqual(self.dgate("--put_remoteae:0,GOODSCU,Good", "--get_remoteae:0,%s"), ["GOODSCU"])
        self.assertEqual(self.enabled("remoteae"), [SopEntry("Good", "GOODSCU", "remoteae")])
        self.assertEqual(self.echo(calling="GOODSCU").returncode, 0)
        refused = self.echo(calling="OTHERSCU")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("Calling AE Title Not Recognized", refused.stderr)
        self.assertEqual(self.dgate("--delete_remoteae:0", "--get_remoteae:0"), [])
        self.assertEqual(self.enabled("remoteae"), [])
        self.assertEqual(self.echo(calling="OTHERSCU").returncode, 0)

    def test_sqldefMatchesTheIndexTables(self):
        """Every column get_sqldef lists (sequence markers aside) is a column of
        the index table, in order, and nothing after the last."""
        tries = 40
        commands = [f"--get_sqldef:{level},{index},%x %x %s" for level in SQLDEF_LEVELS for index in range(tries)]
        names = iter(line.split()[2] for line in self.dgate(*commands))
        with closing(sqlite3.connect(self.server.database)) as connection:
            for level, table in SQLDEF_LEVELS.items():
                columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")
                           if row[1] not in BOOKKEEPING]
                markers = 2 if level == "worklist" else 0
                listed = [next(names) for _ in range(len(columns) + markers)]
                self.assertEqual([name for name in listed if name != SEQUENCE_MARKER], columns, level)
                self.assertLess(len(listed), tries)
        self.assertEqual(list(names), [])
        self.assertEqual(self.dgate("--get_sqldef:0,0", "--get_sqldef:image,20"),
                         ["0x0010, 0x0020            PatientID   64 SQL_C_CHAR       DT_STR",
                          "0x0020, 0x000e    SeriesInstanceUID   64 SQL_C_CHAR        DT_UI"])

    def test_dictionaryAndChecksum(self):
        tags = sorted(DicomDictionary)
        patientName = tags.index(0x00100010)
        output = self.dgate("--get_dic:0", f"--get_dic:{patientName}", f"--get_dic:{patientName},%04x|%04x|%s|%s",
                            f"--get_dic:{len(tags)}", "--checksum:hello", "--checksum:a,b c")
        self.assertEqual(output, ["(0000,0000) UL CommandGroupLength", "(0010,0010) PN PatientName",
                                  "0010|0010|PN|PatientName",
                                  str(zlib.crc32(b"hello")), str(zlib.crc32(b"a,b c"))])

    def test_badArguments(self):
        """The table in one dgate run (one message per command, in order),
        then a few on their own: each exits 1."""
        files = {name: readText(self.path(name)) for name in ("dicom.ini", "acrnema.map", "dgatesop.lst")}
        counts = self.counts()
        result = self.server.dgate(*(command for command, _ in BAD_ARGUMENTS))
        self.assertEqual((result.returncode, result.stdout), (1, ""))
        messages = result.stderr.splitlines()
        self.assertEqual(len(messages), len(BAD_ARGUMENTS), result.stderr)
        wrong = [f"{command}: {message}" for (command, expected), message in zip(BAD_ARGUMENTS, messages)
                 if not message.startswith("dgate: " + expected.format(workdir=self.server.workdir))]
        self.assertEqual(wrong, [])
        for status, out, err in dgateConcurrently(self.server, [c for c, _ in BAD_ARGUMENTS[::9]]):
            self.assertEqual((status, out), (1, ""), err)
            self.assertTrue(err.startswith("dgate: "), err)
        self.assertEqual({name: readText(self.path(name)) for name in files}, files)
        self.assertEqual(self.counts(), counts)


class DataCommandTests(DgateMixin, unittest.TestCase):
    """Deletes, moves, forward, dump_header, prefetch, query2 and the finders,
    each test on its own patients."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-controlcommands-data-")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        cls.storescp = StorescpServer(os.path.join(cls.workdir, "storescp"), aet=DESTINATION)
        cls.server.addNode(DESTINATION, cls.storescp.port)
        cls.server.addNode(SELF, cls.server.port)
        sopPath = os.path.join(cls.server.workdir, "dgatesop.lst")
        sopList = SopList.fromFile(sopPath)
        sopList.put(len(sopList.entries), SopEntry("Self", SELF, "localae"))
        sopList.write()
        cls.server.start()
        cls.storescp.start()
        corpus = os.path.join(cls.workdir, "corpus")
        cls.patients = {
            "DELFILE": writeImages(corpus, "DELFILE", ["20240102"], imagesPerSeries=3),
            "DELDB": writeImages(corpus, "DELDB", ["20240102"]),
            "DELSERIES": writeImages(corpus, "DELSERIES", ["20240102"], seriesPerStudy=2),
            "DELDATES": writeImages(corpus, "DELDATES", ["20230301", "20230315", "20230501"], imagesPerSeries=1),
            "MOVEPAT": writeImages(corpus, "MOVEPAT", ["20240102"], seriesPerStudy=2),
            "MOVEDATES": writeImages(corpus, "MOVEDATES", ["20220601", "20220701"]),
            "LATER": writeImages(corpus, "LATER", ["20240102"], seriesPerStudy=2),
        }
        result = cls.server.store(*(image.path for images in cls.patients.values() for image in images))
        assert result.returncode == 0, result.stderr

    @classmethod
    def tearDownClass(cls):
        cls.storescp.stop()
        cls.server.stop()
        shutil.rmtree(cls.workdir, True)

    def setUp(self):
        self.storescp.reset()

    def received(self):
        return {dataset.SOPInstanceUID: dataset for dataset in self.storescp.datasets()}

    def assertGone(self, images):
        for image in images:
            self.assertIsNone(storedFile(self.server, image.sopUID), "index row")

    def test_deleteimagefile(self):
        images = self.patients["DELFILE"]
        objectFile0, path0 = storedFile(self.server, images[0].sopUID)
        objectFile1, path1 = storedFile(self.server, images[1].sopUID)
        self.assertTrue(os.path.isfile(path0) and os.path.isfile(path1))
        conquestName = "MAG0\\" + objectFile1.replace("/", "\\")
        self.assertEqual(self.dgate(f"--deleteimagefile:{path0}", f"--deleteimagefile:{conquestName}"),
                         ["1 object(s) removed from the server"] * 2)
        self.assertFalse(os.path.exists(path0) or os.path.exists(path1), "files")
        self.assertGone(images[:2])
        self.assertEqual(imageUIDs(self.server, "DELFILE"), {images[2].sopUID})
        self.assertTrue(os.path.isfile(storedFile(self.server, images[2].sopUID)[1]))
        self.dgateFails(f"--deleteimagefile:{path0}", f"deleteimagefile: no stored object matches {path0!r}")

    def test_deleteFromTheDatabaseOnlyThenRegenfile(self):
        images = self.patients["DELDB"]
        before = indexQuery(self.server, "SELECT * FROM DICOMImages WHERE ImagePat = 'DELDB' ORDER BY ImageNumber")
        objectFile0, path0 = storedFile(self.server, images[0].sopUID)
        objectFile1, path1 = storedFile(self.server, images[1].sopUID)
        image = images[1]
        self.assertEqual(self.dgate(f"--deleteimagefromdb:{path0}",
                                    f"--deletesopfromdb:DELDB,{image.studyUID},{image.seriesUID},{image.sopUID}"),
                         ["1 object(s) removed from the database"] * 2)
        self.assertGone(images)
        self.assertEqual(indexQuery(self.server, "SELECT count(*) FROM DICOMPatients WHERE PatientID = 'DELDB'"),
                         [(0,)], "the emptied patient goes too")
        self.assertTrue(os.path.isfile(path0) and os.path.isfile(path1), "the files stay")
        self.assertEqual(self.dgate(f"--regenfile:{path0}", f"--regenfile:MAG0:{objectFile1}"),
                         ["1 file(s) indexed, 0 failed, 0 duplicate SOP instance(s)"] * 2)
        after = indexQuery(self.server, "SELECT * FROM DICOMImages WHERE ImagePat = 'DELDB' ORDER BY ImageNumber")
        names = [row[1] for row in indexQuery(self.server, "PRAGMA table_info(DICOMImages)")]
        keep = [i for i, name in enumerate(names) if name not in ("AccessTime", "qTimeStamp")]
        self.assertEqual([[row[i] for i in keep] for row in after], [[row[i] for i in keep] for row in before])
        self.assertEqual(indexQuery(self.server, "SELECT PatientName FROM DICOMPatients WHERE PatientID = 'DELDB'"),
                         [("Deldb^Test",)])
        self.dgateFails(f"--regenfile:MAG0:{objectFile0}.missing", "could not be entered")

    def test_deleteseries(self):
        images = self.patients["DELSERIES"]
        first, second = images[:2], images[2:]
        paths = [storedFile(self.server, image.sopUID)[1] for image in images]
        self.assertEqual(self.dgate(f"--deleteseries:DELSERIES:{first[0].seriesUID}"),
                         ["2 object(s) removed from the server"])
        self.assertGone(first)
        self.assertEqual([os.path.exists(path) for path in paths], [False, False, True, True])
        self.assertEqual(indexQuery(self.server, "SELECT SeriesInstanceUID FROM DICOMSeries WHERE SeriesPat = ?",
                                    "DELSERIES"), [(second[0].seriesUID,)])
        self.dgateFails(f"--deleteseries:OTHERPAT:{second[0].seriesUID}", "deleteseries: no stored object matches")
        self.assertEqual(self.dgate(f"--deleteseries:{second[0].seriesUID}"), ["2 object(s) removed from the server"])
        self.assertFalse(any(os.path.exists(path) for path in paths))
        self.assertEqual(indexQuery(self.server, "SELECT count(*) FROM DICOMPatients WHERE PatientID = 'DELSERIES'"),
                         [(0,)])

    def test_deletestudiesByDate(self):
        images = self.patients["DELDATES"]
        may = images[2]
        paths = [storedFile(self.server, image.sopUID)[1] for image in images]
        others = indexQuery(self.server, "SELECT count(*) FROM DICOMImages WHERE ImagePat <> 'DELDATES'")
        self.assertEqual(self.dgate("--deletestudies:20230301-20230331"), ["2 object(s) removed from the server"])
        self.assertEqual(indexQuery(self.server, "SELECT StudyInstanceUID, StudyDate FROM DICOMStudies "
                                                 "WHERE PatientID = 'DELDATES'"), [(may.studyUID, "20230501")])
        self.assertEqual([os.path.exists(path) for path in paths], [False, False, True])
        self.assertEqual(self.dgate("--deletestudies:20230501"), ["1 object(s) removed from the server"])
        self.assertFalse(os.path.exists(paths[2]))
        self.assertEqual(imageUIDs(self.server, "DELDATES"), set())
        self.assertEqual(indexQuery(self.server, "SELECT count(*) FROM DICOMImages WHERE ImagePat <> 'DELDATES'"),
                         others, "no other study is on those dates")
        self.dgateFails("--deletestudies:19990101-19991231", "deletestudies: no stored object matches")

    def test_movepatientAndMoveseries(self):
        images = self.patients["MOVEPAT"]
        self.assertEqual(self.dgate(f"--movepatient:(local),{DESTINATION},MOVEPAT"),
                         [f"4 object(s) sent to {DESTINATION}"])
        received = self.received()
        self.assertEqual(set(received), {image.sopUID for image in images})
        original = pydicom.dcmread(images[0].path)
        self.assertEqual(received[images[0].sopUID].PixelData, original.PixelData)
        self.storescp.reset()
        second = images[2:]
        self.assertEqual(self.dgate(f"--moveseries:(local),{DESTINATION},MOVEPAT:{second[0].seriesUID},"
                                    f"{second[0].studyUID}"), [f"2 object(s) sent to {DESTINATION}"])
        self.assertEqual(set(self.received()), {image.sopUID for image in second})
        self.storescp.reset()
        self.assertEqual(self.dgate(f"--moveseries:,{DESTINATION},{images[0].seriesUID}"),
                         [f"2 object(s) sent to {DESTINATION}"])
        self.assertEqual(set(self.received()), {image.sopUID for image in images[:2]})
        self.storescp.reset()
        self.assertEqual(self.dgate(f"--movepatient:{SELF},{DESTINATION},MOVEPAT"),
                         [f"4 object(s) moved from {SELF} to {DESTINATION} (0 failed, 0 warning(s)) in 1 C-MOVE(s)"])
        self.assertEqual(set(self.received()), {image.sopUID for image in images})
        self.dgateFails(f"--movepatient:(local),{DESTINATION},NOBODY", "movepatient: no stored object to send")

    def test_conquestsLaterCommands(self):
        """The commands of Conquest's later dgate that answered 'unknown
        command', exit 2: imagefinder, imagefilelister, modifyseries,
        modifystudy, moveaccession, deleteimage, luastart, loadanddeletedir."""
        images = self.patients["LATER"]
        first = images[0]
        found = self.dgate("--imagefinder:local|=" + first.seriesUID + "|%0.0s%0.0s%0.0s%0.0s%s")
        self.assertEqual(sorted(found), sorted(image.sopUID for image in images[:2]))
        [path] = self.dgate(f"--imagefilelister:LATER|||{first.sopUID}|")
        self.assertEqual(path, storedFile(self.server, first.sopUID)[1])
        self.assertEqual(self.dgate(f"--modifyseries:LATER,{first.seriesUID},set 0008,103e to 'one'"),
                         [f"2 object(s) of series {first.seriesUID} changed, 0 unchanged"])
        self.assertEqual(self.dgate(f"--modifystudy:,{first.studyUID},set 0008,1030 to \"both\""),
                         [f"4 object(s) of study {first.studyUID} changed, 0 unchanged"])
        self.assertEqual(indexQuery(self.server, "SELECT StudyDescription FROM DICOMStudies WHERE PatientID = 'LATER'"),
                         [("both",)])
        accession = pydicom.dcmread(first.path).AccessionNumber
        self.assertEqual(self.dgate(f"--moveaccession:(local),{DESTINATION},LATER:{accession}"),
                         [f"4 object(s) sent to {DESTINATION}"])
        self.assertEqual({d.SeriesDescription for d in self.received().values() if d.SeriesInstanceUID
                          == first.seriesUID}, {"one"})
        self.assertEqual(self.dgate(f"--deleteimage:LATER:{first.sopUID}"), ["1 object(s) removed from the server"])
        self.assertGone([first])
        self.assertEqual(self.dgate("--luastart:print(1)"), ["Lua chunk started"])
        folder = os.path.join(self.workdir, "loadanddelete")
        os.makedirs(folder)
        copy = shutil.copy(first.path, folder)
        os.utime(copy, (os.stat(copy).st_mtime - 60,) * 2)  # not one perhaps still being written
        self.assertEqual(self.dgate(f"--loadanddeletedir:{folder}"), [f"{folder}: 1 stored, 0 skipped, 0 failed"])
        self.assertEqual(os.listdir(folder), [])
        self.assertIsNotNone(storedFile(self.server, first.sopUID))

    def test_movestudiesByDate(self):
        june = self.patients["MOVEDATES"][:2]
        self.assertEqual(self.dgate(f"--movestudies:(local),{DESTINATION},20220601-20220615"),
                         [f"2 object(s) sent to {DESTINATION}"])
        self.assertEqual(set(self.received()), {image.sopUID for image in june})
        self.assertEqual({dataset.StudyDate for dataset in self.received().values()}, {"20220601"})

    def test_forwardCompressed(self):
        image = self.patients["MOVEPAT"][1]
        objectFile, path = storedFile(self.server, image.sopUID)
        self.assertEqual(self.dgate(f"--forward:{path},j1,{DESTINATION}"),
                         [f"MAG0:{objectFile} sent to {DESTINATION}"])
        [received] = self.storescp.files()
        dataset = pydicom.dcmread(received)
        self.assertEqual((dataset.SOPInstanceUID, dataset.file_meta.TransferSyntaxUID),
                         (image.sopUID, JPEG_LOSSLESS_SV1))
        decompressed = os.path.join(self.workdir, "forwarded-decompressed.dcm")
        dcmtk("dcmdjpeg", received, decompressed, check=True)
        self.assertEqual(pydicom.dcmread(decompressed).PixelData, pydicom.dcmread(image.path).PixelData, "lossless")
        self.storescp.reset()
        self.assertEqual(self.dgate(f"--forward:MAG0:{objectFile},un,{DESTINATION}"),
                         [f"MAG0:{objectFile} sent to {DESTINATION}"])
        [received] = self.storescp.datasets()
        self.assertEqual(received.file_meta.TransferSyntaxUID, EXPLICIT_VR_LITTLE_ENDIAN)

    def test_dumpHeader(self):
        image = self.patients["MOVEPAT"][0]
        objectFile, path = storedFile(self.server, image.sopUID)
        lines = self.dgate(f"--dump_header:{path}")
        self.assertTrue(any(line.startswith("(0010,0020) Patient ID") and "'MOVEPAT'" in line for line in lines),
                        lines)
        self.assertTrue(any(line.startswith("(0008,0018) SOP Instance UID") and image.sopUID in line
                            for line in lines), lines)
        self.assertFalse(any(line.startswith("(7FE0,0010)") for line in lines), "no pixel data")
        target = os.path.join(self.server.workdir, "headers", "dump.txt")
        self.assertEqual(self.dgate(f"--dump_header:data/{objectFile},headers/dump.txt"),
                         [f"{len(lines)} line(s) written to {target}"])
        self.assertEqual(readText(target).splitlines(), lines)

    def test_prefetch(self):
        count = len(imageUIDs(self.server, "MOVEPAT"))
        self.assertEqual(count, 4)
        self.assertEqual(self.dgate("--prefetch:MOVEPAT"), ["4 object(s) of patient MOVEPAT read"])

    def test_query2LimitsTheRows(self):
        uids = imageUIDs(self.server, "MOVEPAT")
        target = os.path.join(self.server.workdir, "query", "rows.txt")
        output = self.dgate("--query2:DICOMImages|SOPInstanceUID|ImagePat = 'MOVEPAT'|%s|3|query/rows.txt",
                            "--query2:DICOMImages|SOPInstanceUID|ImagePat = 'MOVEPAT'|%s|10|",
                            "--query2:DICOMImages|SOPInstanceUID|ImagePat = 'MOVEPAT'|[%s]|1|",
                            "--query2:DICOMImages|SOPInstanceUID|ImagePat = 'MOVEPAT'|%s",  # no max: all
                            "--query2:DICOMImages|SOPInstanceUID|ImagePat = 'MOVEPAT'|%s|0|")
        self.assertEqual(output[0], f"3 line(s) written to {target}")
        written = readText(target).splitlines()
        self.assertEqual(len(written), 3)
        self.assertLessEqual(set(written), uids)
        self.assertEqual(sorted(output[1:5]), sorted(uids))
        self.assertEqual(len(output), 14)
        self.assertRegex(output[5], r"^\[[0-9.]+\]$")
        self.assertEqual(sorted(output[6:10]), sorted(uids))
        self.assertEqual(sorted(output[10:]), sorted(uids))

    def test_studyfinderAndSeriesfinder(self):
        expected = sorted(";".join(row) for row in indexQuery(
            self.server, "SELECT PatientID, PatientName, StudyDate, (SELECT group_concat(DISTINCT Modality) "
                         "FROM DICOMSeries WHERE DICOMSeries.StudyInstanceUID = DICOMStudies.StudyInstanceUID), "
                         "StudyDescription, StudyInstanceUID FROM DICOMStudies WHERE PatientID = 'MOVEDATES'"))
        self.assertEqual(len(expected), 2)
        studies, series = "%s;%s;%s;%s;%s;%s", "%s;%s;%s;%s;%s;%s;%s"
        output = self.dgate(f"--studyfinder:|movedates|{studies}|", f"--studyfinder:(local)|Movedates^T|{studies}|",
                            f"--studyfinder:{SELF}|movedates|{studies}|", f"--seriesfinder:|movepat|{series}|",
                            f"--seriesfinder:{SELF}|movepat|{series}|", "--seriesfinder:|no such text|%s|")
        self.assertEqual(len(output), 10, output)
        self.assertEqual(sorted(output[:4]), sorted(expected * 2))
        self.assertEqual(sorted(output[4:6]), expected, "the same answers through C-FIND")
        expected = sorted(";".join(row) for row in indexQuery(
            self.server, "SELECT SeriesPat, PatientName, SeriesDate, Modality, SeriesDescription, "
                         "DICOMSeries.StudyInstanceUID, SeriesInstanceUID FROM DICOMSeries JOIN DICOMStudies "
                         "USING (StudyInstanceUID) WHERE SeriesPat = 'MOVEPAT'"))
        self.assertEqual(len(expected), 2)
        self.assertEqual(sorted(output[6:8]), expected)
        self.assertEqual(sorted(output[8:]), expected, "through C-FIND")


    def test_remoteFindersDeclareTheirCharacterSet(self):
        """A finder's text outside ASCII goes to the remote archive with a
        Specific Character Set (it went as '?', a wildcard, matching all)."""
        folder = os.path.join(self.workdir, "corpus")
        names = {"CYRILLIC": ("Петров^Пётр", "ISO_IR 192"), "LATIN": ("Müller^Jürgen", "ISO_IR 100")}
        for patientID, (name, characterSet) in names.items():
            image, = writeImages(folder, patientID, ["20240105"], imagesPerSeries=1)
            dataset = pydicom.dcmread(image.path)
            dataset.SpecificCharacterSet = characterSet
            dataset.PatientName = name
            dataset.save_as(image.path)
            self.store(image)
        for server in ("", SELF):
            self.assertEqual(self.dgate(f"--patientfinder:{server}|Петр|%s %s|"), ["CYRILLIC Петров^Пётр"], server)
            self.assertEqual(self.dgate(f"--patientfinder:{server}|ülle|%s %s|"), ["LATIN Müller^Jürgen"], server)

    def test_findersByDate(self):
        """A date as the text (yyyy, yyyymm, yyyymmdd, a range) also finds
        the studies and series of those dates, here and through C-FIND."""
        dates = indexQuery(self.server, "SELECT StudyDate, StudyInstanceUID FROM DICOMStudies WHERE StudyDate <> ''")
        day = dates[0][0]
        for text, where in ((day, f"= '{day}'"), (day[:6], f"LIKE '{day[:6]}%'"), (day[:4], f"LIKE '{day[:4]}%'"),
                            (f"{day}-{day[:4]}1231", f"BETWEEN '{day}' AND '{day[:4]}1231'")):
            expected = sorted(uid for date, uid in dates if passes(date, where))
            self.assertTrue(expected)
            for server in ("", SELF):
                found = self.dgate(f"--studyfinder:{server}|{text}|%s;%s;%s;%s;%s;%s|")
                self.assertEqual(sorted(line.split(";")[5] for line in found), expected, (text, server))
        series = indexQuery(self.server, f"SELECT SeriesInstanceUID FROM DICOMSeries WHERE SeriesDate = '{day}'")
        expected = sorted(uid for (uid,) in series)
        for server in ("", SELF):
            found = self.dgate(f"--seriesfinder:{server}|{day}|%s;%s;%s;%s;%s;%s;%s|")
            self.assertEqual(sorted(line.split(";")[6] for line in found), expected, server)


def passes(date, where):
    """Whether ``date`` passes the SQL condition ``where`` (=, LIKE 'x%', BETWEEN)."""
    if where.startswith("= "):
        return date == where[3:-1]
    if where.startswith("LIKE"):
        return date.startswith(where[6:-2])
    low, high = where[9:].replace("'", "").split(" AND ")
    return low <= date <= high


class DeviceCommandTests(DgateMixin, unittest.TestCase):
    """movedatatodevice and renamedevice on a server with MAG0 and MAG1."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-controlcommands-devices-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.server = PacsServer(os.path.join(self.workdir, "pacs"))
        self.mag1 = os.path.join(self.server.workdir, "data1")
        self.server.setIni(MAGDevices="2", MAGDevice1="./data1/")
        self.server.start()
        self.addCleanup(self.server.stop)
        self.images = writeImages(os.path.join(self.workdir, "corpus"), "MOVED", ["20240105"], imagesPerSeries=3)
        self.store(*self.images)

    def test_movedatatodeviceThenRenamedevice(self):
        before = {uid: objectFile for uid, objectFile in
                  indexQuery(self.server, "SELECT SOPInstanceUID, ObjectFile FROM DICOMImages")}
        self.assertEqual(self.dgate("--movedatatodevice:MAG1,MAG0"), ["3 object(s) moved from MAG0 to MAG1"])
        self.assertEqual(indexQuery(self.server, "SELECT DISTINCT DeviceName FROM DICOMImages"), [("MAG1",)])
        for objectFile in before.values():
            self.assertTrue(os.path.exists(os.path.join(self.mag1, objectFile)))
            self.assertFalse(os.path.exists(os.path.join(self.server.dataDir, objectFile)))
        image = self.images[0]
        self.assertEqual(getSeries(self.server, self.workdir, image.studyUID, image.seriesUID), set(before))
        self.assertEqual(self.dgate("-atMAG1"), ["MAG1: 3 of 3 files read to their end, 0 unusable"])
        folder = os.path.dirname(before[image.sopUID]).split("/")[0]
        os.rename(os.path.join(self.mag1, folder), os.path.join(self.server.dataDir, folder))
        self.assertEqual(self.dgate("--renamedevice:MAG1,MAG0"), ["3 image(s) renamed from MAG1 to MAG0"])
        self.assertEqual(getSeries(self.server, self.workdir, image.studyUID, image.seriesUID), set(before))


class MaintenanceCommandTests(DgateMixin, unittest.TestCase):
    """regendir/regendev, testmode, the log commands and get_freestore."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-controlcommands-maintenance-")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs")).start()
        corpus = os.path.join(cls.workdir, "corpus")
        cls.images = (writeImages(corpus, "REGEN1", ["20240102"], seriesPerStudy=2)
                      + writeImages(corpus, "REGEN2", ["20240103"]))
        result = cls.server.store(*(image.path for image in cls.images))
        assert result.returncode == 0, result.stderr

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.workdir, True)

    def test_luaChunksRunInTheServer(self):
        """Conquest's dgate --lua: and --dolua: (its REST front-ends'
        passthru of --dolua:...): the chunk runs in the server, its print
        output comes back; a failing one exits 1 after what it printed."""
        query = "print(#dbquery('DICOMPatients', 'PatientID', \"PatientID LIKE 'REGEN%'\"))"
        self.assertEqual(self.dgate(f"--lua:{query}", "--dolua:print(Global.MyACRNema)"), ["2", self.server.ae])
        result = self.server.dgate("--dolua:print('half'); error('stopped here')")
        self.assertEqual((result.returncode, result.stdout), (1, "half\n"), result.stderr)
        self.assertIn("stopped here", result.stderr)

    def test_aLuaChunkOfSeveralLines(self):
        """dgate --dolua: and --lua: with a chunk of several lines (as
        "$(cat script.lua)" gives it) run all of it, not its first line."""
        self.assertEqual(self.dgate("--dolua:x = 1\nprint('line two ran', x)"), ["line two ran\t1"])
        result = self.server.dgate("--lua:print('one')\nerror('boom')")
        self.assertEqual((result.returncode, result.stdout), (1, "one\n"), result.stderr)
        self.assertIn("boom", result.stderr)

    def test_regendirThenRegendev(self):
        before = snapshot(self.server.database)
        folders = {os.path.dirname(row["ObjectFile"]) for row in before["DICOMImages"] if row["ImagePat"] == "REGEN1"}
        self.assertEqual(len(folders), 1)
        folder = folders.pop()
        self.assertEqual(self.dgate("--initializetables:"), [f"Initialized {', '.join(IMAGE_TABLES)}"])
        self.assertEqual(self.counts(), [0, 0, 0, 0])
        regen1 = [row for row in before["DICOMImages"] if row["ImagePat"] == "REGEN1"]
        self.assertEqual(self.dgate(f"--regendir:MAG0,{folder}"),
                         [f"{len(regen1)} file(s) indexed, 0 failed, 0 duplicate SOP instance(s)"])
        now = snapshot(self.server.database)
        self.assertEqual(now["DICOMImages"], regen1)
        self.assertEqual(now["DICOMPatients"], [row for row in before["DICOMPatients"] if row["PatientID"] == "REGEN1"])
        result = self.server.dgate("--regendev:mag0")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.splitlines(),
                         [f"{len(before['DICOMImages'])} file(s) indexed, 0 failed, 0 duplicate SOP instance(s)"])
        self.assertIn("MAG0", result.stderr, "progress lines")
        self.assertEqual(snapshot(self.server.database), before)
        self.assertEqual(self.dgate("--regendevice:MAG0"),
                         [f"{len(before['DICOMImages'])} file(s) indexed, 0 failed, 0 duplicate SOP instance(s)"])
        self.assertEqual(snapshot(self.server.database), before)

    def test_testimages(self):
        count = len(self.images)
        self.assertEqual(self.dgate("--testimages:MAG0"),
                         [f"MAG0: {count} of {count} files read to their end, 0 unusable"])
        [(objectFile,)] = indexQuery(self.server, "SELECT ObjectFile FROM DICOMImages WHERE ImagePat = 'REGEN2' "
                                                  "ORDER BY ObjectFile LIMIT 1")
        path = os.path.join(self.server.dataDir, objectFile)
        with open(path, "rb") as f:
            content = f.read()
        with open(path, "r+b") as f:
            f.truncate(len(content) - 100)

        def restore():
            with open(path, "wb") as f:
                f.write(content)
        self.addCleanup(restore)
        result = self.dgateFails("-at", f"MAG0: {count - 1} of {count} files read to their end, 1 unusable")
        self.assertIn(f"MAG0:{objectFile}: ", result.stderr)

    def test_testmode(self):
        images = writeImages(os.path.join(self.workdir, "testmode"), "TESTMODE", ["20240104"])
        done = self.undoUnlessDone(lambda: self.server.dgate("--testmode:"))
        self.assertEqual(self.dgate("--testmode:.t1"), [])
        self.store(images[0])
        self.assertEqual(self.dgate("--testmode:"), [])
        done()
        self.store(images[1])
        marked, markedPath = storedFile(self.server, images[0].sopUID)
        plain, plainPath = storedFile(self.server, images[1].sopUID)
        self.assertTrue(marked.endswith(".dcm.t1"), marked)
        self.assertTrue(plain.endswith(".dcm"), plain)
        self.assertEqual(pydicom.dcmread(markedPath).SOPInstanceUID, images[0].sopUID)
        self.assertTrue(os.path.isfile(plainPath))
        self.assertEqual(self.dgate("--deletpatient:TESTMODE"), ["2 object(s) removed from the server"])
        self.assertFalse(os.path.exists(markedPath) or os.path.exists(plainPath))
        self.assertEqual(imageUIDs(self.server, "TESTMODE"), set())

    def test_logOnDebugLogOnAndDebugLevel(self):
        """log_on writes no debug event; debuglog_on does, and debuglevel
        adds Conquest's dumps: 1 the incoming command sets and worklist
        answers, 2 also the query identifiers."""
        done = self.undoUnlessDone(lambda: self.server.dgate("--log_on:", "--debuglevel:0"))
        orders = []
        for number in range(1, 4):
            path = os.path.join(self.workdir, f"order{number}.hl7")
            writeMessages(path, [orderMessage(f"LOGMSG{number}", f"LOGACC{number}", f"LOGPAT{number}", "Log^Test")])
            orders.append(path)
        normal = os.path.join(self.server.workdir, "logs", "normal.log")
        debug = os.path.join(self.server.workdir, "logs", "debug.log")
        os.makedirs(os.path.dirname(normal))
        self.assertEqual(len(self.dgate("--log_on:logs/normal.log", f"--loadhl7:{orders[0]}")), 1)
        text = readText(normal)
        self.assertIn(f"logging to {normal}", text)
        self.assertIn(f"--loadhl7:{orders[0]}", text)
        self.assertNotIn("worklist values", text, "no debug events in the normal log")
        self.assertEqual(len(self.dgate("--debuglog_on:logs/debug.log", "--debuglevel:0",
                                        f"--loadhl7:{orders[1]}")), 1)
        self.assertEqual(self.server.echo().returncode, 0)
        self.assertNotIn(f"--loadhl7:{orders[1]}", readText(normal), "the normal log is no longer written")
        text = readText(debug)
        self.assertIn(f"logging with debug events to {debug}", text)
        self.assertIn("HL7 NW LOGMSG2: worklist values", text, "level 0: the ordinary debug events")
        self.assertNotIn("C-ECHO-RQ received", text)
        self.assertEqual(len(self.dgate("--debuglevel:1", f"--loadhl7:{orders[2]}")), 1)
        self.assertEqual(self.server.echo().returncode, 0)
        self.assertEqual(len(worklistFind(self.server, ["AccessionNumber=LOGACC3", "PatientName"])), 1)
        text = readText(debug)
        self.assertIn("LOGMSG3: worklist values", text)
        self.assertRegex(text, r"C-ECHO-RQ received \(memory in use \d+\.\d MB\):\n(.*\n)*"
                               r"\s*\(0000,0100\) US CommandField: 0x0030 C-ECHO-RQ")
        self.assertIn("C-FIND-RQ received", text)
        self.assertRegex(text, r"worklist query result:\n(.*\n)*.*Accession Number +SH: 'LOGACC3'")
        self.assertNotIn("query identifier", text)
        self.assertEqual(len(self.dgate("--debuglevel:2")), 0)
        self.assertEqual(len(worklistFind(self.server, ["AccessionNumber=LOGACC2"])), 1)
        self.assertRegex(readText(debug), r"query identifier:\n(.*\n)*.*Accession Number +SH: 'LOGACC2'")
        self.assertEqual(self.dgate("--log_on:", "--debuglevel:0", "--checksum:after the log stopped"),
                         [str(zlib.crc32(b"after the log stopped"))])
        done()
        self.assertNotIn("after the log stopped", readText(debug))
        self.assertEqual(sorted(row[0] for row in indexQuery(self.server, "SELECT AccessionNumber FROM DICOMWorkList")),
                         ["LOGACC1", "LOGACC2", "LOGACC3"])

    def test_getFreestore(self):
        """What get_freestore answers lies between the free space measured
        just before and just after it (within 16 MB: other tests write on
        the same disk)."""
        before = freeMegabytes(self.server.dataDir)
        output = self.dgate("--get_freestore:MAG0", "--get_freestore:mag0,%d MB free")
        after = freeMegabytes(self.server.dataDir)
        self.assertEqual(len(output), 2)
        self.assertRegex(output[1], r"^[0-9]+ MB free$")
        for free in (int(output[0]), int(output[1].split()[0])):
            self.assertTrue(min(before, after) - 16 <= free <= max(before, after) + 16, (output, before, after))


class MakeSpaceTests(DgateMixin, unittest.TestCase):
    """makespace deletes the least recently accessed patients until MAG0 has
    the space asked for: MSA (32 MB, stored first) and MSB (small), on a
    MAG0 of its own (a tmpfs no other test writes on, whose free space
    changes only with what this server does)."""

    def setUp(self):
        self.server = PacsServer(self.mktemp())
        os.makedirs(self.server.dataDir)
        mountTmpfs(self, self.server.dataDir, "128m")
        self.server.start()
        self.addCleanup(self.server.stop)
        corpus = os.path.abspath(self.mktemp())
        self.old = writeImages(corpus, "MSA", ["20200101"], imagesPerSeries=4, size=2048)
        self.young = writeImages(corpus, "MSB", ["20240102"])
        for images in (self.old, self.young):
            result = self.server.store(*(image.path for image in images))
            self.assertEqual(result.returncode, 0, result.stderr)

    def test_makespaceDeletesTheOldestPatient(self):
        paths = {image.sopUID: storedFile(self.server, image.sopUID)[1] for image in self.old + self.young}
        [line] = self.dgate("--makespace:1")
        self.assertRegex(line, r"^[0-9]+ MB free on MAG0$")
        self.assertEqual(self.counts(), [2, 2, 2, 6], "enough space: nothing deleted")
        wanted = freeMegabytes(self.server.dataDir) + 16  # MSA frees 32 MB
        output = self.dgate(f"--makespace:{wanted}")
        self.assertEqual(output[0], "deleted patient MSA: 4 object(s)")
        self.assertEqual(len(output), 2, output)
        free = re.fullmatch(r"([0-9]+) MB free on MAG0", output[1])
        self.assertIsNotNone(free, output)
        self.assertGreaterEqual(int(free.group(1)), wanted)
        self.assertEqual(indexQuery(self.server, "SELECT PatientID FROM DICOMPatients"), [("MSB",)])
        self.assertEqual(self.counts(), [1, 1, 1, 2])
        self.assertEqual([os.path.exists(paths[image.sopUID]) for image in self.old + self.young],
                         [False] * 4 + [True] * 2)


class DebugLevelKeyTests(DgateMixin, unittest.TestCase):
    """dicom.ini's DebugLevel sets the level the debug log starts with."""

    def setUp(self):
        self.server = PacsServer(self.mktemp())
        self.server.setIni(DebugLevel="2")
        self.server.start()
        self.addCleanup(self.server.stop)

    def test_debugLevelKey(self):
        self.dgate("--debuglog_on:debug.log")
        result = dcmtk("findscu", "-P", "-aec", self.server.ae, "-k", "QueryRetrieveLevel=PATIENT",
                       "-k", "PatientID=DEBUGKEY", "127.0.0.1", self.server.port)
        self.assertEqual(result.returncode, 0, result.stderr)
        text = readText(os.path.join(self.server.workdir, "debug.log"))
        self.assertIn("C-FIND-RQ received", text)
        self.assertRegex(text, r"query identifier:\n(.*\n)*.*Patient ID +LO: 'DEBUGKEY'")
