"""The dicom.ini control commands on a real Archive: what they print, what
they change in memory and in the file on disk."""

import os
import re
from pathlib import Path

from twisted.internet import defer
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.acrnema import Node
from pacscore.config.ini import DicomIni
from pacscore.testing.certificates import Authority
from pacscore.control.context import CommandError
from pacscore.control.protocol import ControlFactory
from plugins import pacs_control_configuration as commands
from plugins import pacs_control_uids as uids
from tests.pacscore.control.running import RunningArchive


class DicomIniCommandTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)
        self.archive = self.running.archive
        self.ini = self.archive.configuration.ini
        self.path = self.archive.configuration.iniPath

    @defer.inlineCallbacks
    def test_getParam(self):
        port = self.ini.get("TCPPort")
        self.assertEqual((yield self.running.run(commands.getParam, "TCPPort")), port)
        self.assertEqual((yield self.running.run(commands.getParam, "tcpport,port=%s;")), f"port={port};")
        self.assertEqual((yield self.running.run(commands.getIniParam, "TCPPort")), port)
        self.assertEqual((yield self.running.run(commands.getParam, "NoSuchKey")), "")
        yield self.assertFailure(self.running.run(commands.getParam, ""), CommandError)

    @defer.inlineCallbacks
    def test_getIniNumAndGetIni(self):
        items = self.ini.items()
        self.assertEqual((yield self.running.run(commands.getIniNum, "0")), "%s = %s" % items[0])
        self.assertEqual((yield self.running.run(commands.getIniNum, "1,%s")), items[1][0])
        self.assertEqual((yield self.running.run(commands.getIniNum, str(len(items)))), "")
        yield self.assertFailure(self.running.run(commands.getIniNum, "x"), CommandError)
        listing = (yield self.running.run(commands.getIni, "%s")).split("\n")
        self.assertEqual(listing, [key for key, _ in items])

    @defer.inlineCallbacks
    def test_putParamWritesFileKeepingComments(self):
        before = Path(self.path).read_text()
        output = yield self.running.run(commands.putParam, "TCPPort, 11112")
        self.assertIn("restart", output)
        self.assertIn("TCPPort", output)
        self.assertEqual(self.ini.get("TCPPort"), "11112")
        after = Path(self.path).read_text()
        self.assertEqual(DicomIni.fromFile(self.path).get("TCPPort"), "11112")
        changed = [line for line in before.splitlines() if line not in after.splitlines()]
        self.assertEqual(len(changed), 1)
        self.assertTrue(changed[0].startswith("TCPPort"))
        self.assertEqual(len(before.splitlines()), len(after.splitlines()))

    @defer.inlineCallbacks
    def test_putParamNewKeyWithCommas(self):
        yield self.running.run(commands.putParam, "ImportConverter0,nop a,b")
        self.assertEqual(DicomIni.fromFile(self.path).get("ImportConverter0"), "nop a,b")
        self.assertEqual((yield self.running.run(commands.getParam, "ImportConverter0")), "nop a,b")

    @defer.inlineCallbacks
    def test_putParamUIDPrefixIsLive(self):
        output = yield self.running.run(commands.putParam, "UIDPrefix,1.2.3.4")
        self.assertEqual(output, "")
        self.assertTrue((yield self.running.run(uids.genUid, "")).startswith("1.2.3.4."))
        self.assertTrue((yield self.running.run(uids.changeUid, "9.8.7")).startswith("1.2.3.4."))

    @defer.inlineCallbacks
    def test_putParamRefusesAUIDPrefixThatMakesNoUIDs(self):
        before = Path(self.path).read_text()
        for value in ("not-a-uid-root", "1." * 40, "1.02.3", "1.2.\u0663", "1" * 54):
            error = yield self.assertFailure(self.running.run(commands.putParam, f"UIDPrefix,{value}"), CommandError)
            self.assertIn("is not a UID root", str(error))
        self.assertEqual(Path(self.path).read_text(), before)
        yield self.running.run(commands.putParam, "UIDPrefix," + "1" * 53 + ".")
        uid = yield self.running.run(uids.genUid, "")
        self.assertTrue(uid.startswith("1" * 53 + "."))
        self.assertLessEqual(len(uid), 64)  # the random suffix may be shorter

    @defer.inlineCallbacks
    def test_putParamRefusesBadValues(self):
        yield self.assertFailure(self.running.run(commands.putParam, ""), CommandError)
        yield self.assertFailure(self.running.run(commands.putParam, "[bad,1"), CommandError)

    @defer.inlineCallbacks
    def test_putParamNotUTF8ChangesNothing(self):
        """A key or value holding bytes that are not UTF-8 (dgate's argument
        M\\xfcller) is refused before dicom.ini is touched; later commands
        work."""
        before = Path(self.path).read_text()
        for arguments in ("WebHeader,M\udcfcller", "Web\udcfcHeader,x"):
            error = yield self.assertFailure(self.running.run(commands.putParam, arguments), CommandError)
            self.assertIn("bytes that are not UTF-8 (\\udcfc)", str(error))
        self.assertFalse(self.ini.has("WebHeader"))
        self.assertEqual(Path(self.path).read_text(), before)
        yield self.running.run(commands.putParam, "WebFooter,Hello")
        yield self.running.run(commands.deleteParam, "WebFooter")
        self.assertEqual(Path(self.path).read_text(), before)

    @defer.inlineCallbacks
    def test_failedSaveChangesNothing(self):
        """put_param and delete_param whose dicom.ini cannot be written
        (a value a Latin-1 file cannot hold, the file unwritable) leave
        dicom.ini in memory, and a live key's value in use, as they were."""
        yield self.running.run(commands.putParam, "UIDPrefix,1.2.3.4")
        with open(self.path, "ab") as f:
            f.write(b"# M\xfcller\n")  # read as cp1252, written back so
        lines = self.ini.toString()
        error = yield self.assertFailure(self.running.run(commands.putParam, "WebHeader,\u65e5\u672c"),
                                         CommandError)
        self.assertIn("cannot write", str(error))
        self.assertEqual(self.ini.toString(), lines)
        path, self.ini.path = self.ini.path, self.mktemp()
        os.mkdir(self.ini.path)
        for command, arguments in ((commands.putParam, "UIDPrefix,1.5"), (commands.deleteParam, "UIDPrefix"),
                                   (commands.deleteParam, "TCPPort")):
            yield self.assertFailure(self.running.run(command, arguments), CommandError)
            self.assertEqual(self.ini.toString(), lines)
            self.assertEqual(self.archive.converterServices.uidMap.prefix, "1.2.3.4.")
        self.ini.path = path
        yield self.running.run(commands.putParam, "WebFooter,Hello")
        self.assertEqual(DicomIni.fromFile(self.path).get("WebFooter"), "Hello")

    @defer.inlineCallbacks
    def test_deleteParam(self):
        self.assertTrue(self.ini.has("FileNameSyntax"))
        output = yield self.running.run(commands.deleteParam, "FileNameSyntax")
        self.assertIn("restart", output)
        self.assertFalse(self.ini.has("FileNameSyntax"))
        self.assertFalse(DicomIni.fromFile(self.path).has("FileNameSyntax"))
        yield self.assertFailure(self.running.run(commands.deleteParam, "FileNameSyntax"), CommandError)

    @defer.inlineCallbacks
    def test_readIniInPlace(self):
        onDisk = DicomIni.fromFile(self.path)
        onDisk.set("TCPPort", "2222")
        onDisk.set("LuaMaxInstructions", "5000")
        onDisk.set("UIDPrefix", "1.9.9")
        onDisk.write()
        output = yield self.running.run(commands.readIni, "")
        self.assertIs(self.archive.configuration.ini, self.ini)
        self.assertEqual(self.ini.get("TCPPort"), "2222")
        self.assertEqual(self.ini.get("LuaMaxInstructions"), "5000")
        self.assertIn("3 parameter(s) changed", output)
        self.assertIn("restarts: TCPPort", output)
        self.assertNotIn("LuaMaxInstructions", output)
        self.assertEqual(self.archive.converterServices.uidMap.prefix, "1.9.9.")

    @defer.inlineCallbacks
    def test_readIniOfBrokenFileKeepsMemory(self):
        port = self.ini.get("TCPPort")
        with open(self.path, "a") as f:
            f.write("[broken section\n")
        error = yield self.assertFailure(self.running.run(commands.readIni, ""), CommandError)
        self.assertIn("dicom.ini", str(error))
        self.assertEqual(self.ini.get("TCPPort"), port)

    def setTLSNode(self, ae, description):
        """Put ``ae = description`` in dicom.ini's [DICOMTLSNodes] on disk."""
        onDisk = DicomIni.fromFile(self.path)
        onDisk.set(ae, description, "DICOMTLSNodes")
        onDisk.write()

    @defer.inlineCallbacks
    def test_readIniAppliesDICOMTLSNodes(self):
        """A node added to [DICOMTLSNodes] goes over TLS from the read_ini
        on, one removed in plain TCP, and both are reported."""
        acrNemaMap = self.archive.configuration.acrNemaMap
        acrNemaMap.put(len(acrNemaMap.nodes), Node("NEWTLS", "127.0.0.1", "21112"))
        authority = Authority(os.path.abspath(self.mktemp()), "hospital")
        self.setTLSNode("NEWTLS", f"caCerts={authority.certificate}")
        output = yield self.running.run(commands.readIni, "")
        self.assertEqual(output, f"1 parameter(s) changed in {self.path}\napplied at once: [DICOMTLSNodes] NEWTLS")
        authorities = acrNemaMap.lookup("NEWTLS").tls.authorities
        self.assertEqual(authorities[0].to_cryptography().subject.rfc4514_string(), "CN=hospital")
        onDisk = DicomIni.fromFile(self.path)
        onDisk.delete("NEWTLS", "DICOMTLSNodes")
        onDisk.write()
        output = yield self.running.run(commands.readIni, "")
        self.assertEqual(output, f"1 parameter(s) changed in {self.path}\napplied at once: [DICOMTLSNodes] NEWTLS")
        self.assertIsNone(acrNemaMap.lookup("NEWTLS").tls)

    @defer.inlineCallbacks
    def test_readIniRefusesADICOMTLSNodesLineStartUpWouldRefuse(self):
        """A [DICOMTLSNodes] line that would stop the next start-up (a
        missing file) refuses the read_ini naming it, keeping the lines
        in use."""
        authority = Authority(os.path.abspath(self.mktemp()), "hospital")
        acrNemaMap = self.archive.configuration.acrNemaMap
        acrNemaMap.put(len(acrNemaMap.nodes), Node("NEWTLS", "127.0.0.1", "21112"))
        self.setTLSNode("NEWTLS", f"caCerts={authority.certificate}")
        yield self.running.run(commands.readIni, "")
        inUse = acrNemaMap.tlsNodes
        self.setTLSNode("SBROKEN", "caCerts=/no/such.pem")
        error = yield self.assertFailure(self.running.run(commands.readIni, ""), CommandError)
        where = f"{self.path}:{DicomIni.fromFile(self.path).lineOf('SBROKEN', 'DICOMTLSNodes')}"
        self.assertEqual(str(error), f"{self.path} not read: the server would not start with it: "
                                     f"{where}: [DICOMTLSNodes] SBROKEN: caCerts=/no/such.pem: No such file or "
                                     "directory")
        self.assertIs(acrNemaMap.tlsNodes, inUse)
        self.assertFalse(self.ini.has("SBROKEN", "DICOMTLSNodes"))

    @defer.inlineCallbacks
    def test_readIniGivesTheExportForwarderDICOMwebServers(self):
        """A [DICOMwebServers] line added or changed is used by the export
        forwards from the read_ini on, and reported; a bad URL refuses the
        read_ini naming its line, keeping the servers in use."""
        forwarder = self.archive.exportService().forwarder  # not started: its servers are looked at
        onDisk = DicomIni.fromFile(self.path)
        onDisk.set("WEB", "http://127.0.0.1:9/dicom-web", "DICOMwebServers")
        onDisk.write()
        output = yield self.running.run(commands.readIni, "")
        self.assertEqual(output, f"1 parameter(s) changed in {self.path}\napplied at once: [DICOMwebServers] WEB")
        self.assertEqual(forwarder.dicomWebServers["WEB"].url, "http://127.0.0.1:9/dicom-web")
        onDisk.set("WEB", "http://127.0.0.1:8042/dicom-web", "DICOMwebServers")
        onDisk.write()
        yield self.running.run(commands.readIni, "")
        self.assertEqual(forwarder.dicomWebServers["WEB"].url, "http://127.0.0.1:8042/dicom-web")
        inUse = forwarder.dicomWebServers
        onDisk.set("BAD", "ftp://nope", "DICOMwebServers")
        onDisk.write()
        error = yield self.assertFailure(self.running.run(commands.readIni, ""), CommandError)
        where = f"{self.path}:{DicomIni.fromFile(self.path).lineOf('BAD', 'DICOMwebServers')}"
        self.assertEqual(str(error), f"{self.path} not read: the server would not start with it: "
                                     f"{where}: [DICOMwebServers] BAD: 'ftp://nope' is not an http:// or https:// URL")
        self.assertIs(forwarder.dicomWebServers, inUse)
        self.assertFalse(self.ini.has("BAD", "DICOMwebServers"))

    @defer.inlineCallbacks
    def test_aDICOMTLSNodesLineTheMapHasNoEntryForIsWarnedOf(self):
        """A [DICOMTLSNodes] line whose AE acrnema.map has no entry for is
        read and warned of, naming it, by read_ini and after the map is
        edited or read again, and refuses no later command."""
        authority = Authority(os.path.abspath(self.mktemp()), "hospital")
        acrNemaMap = self.archive.configuration.acrNemaMap
        acrNemaMap.put(len(acrNemaMap.nodes), Node("NEWTLS", "127.0.0.1", "21112"))  # in memory only
        for ae in ("NEWTLS", "NOSUCHAE"):
            self.setTLSNode(ae, f"caCerts={authority.certificate}")
        lines = DicomIni.fromFile(self.path)
        newTLS, noSuchAE = (f"{self.path}:{lines.lineOf(ae, 'DICOMTLSNodes')}: [DICOMTLSNodes] {ae}: "
                            f"{acrNemaMap.path} has no entry {ae}, nor a wildcard entry matching it: the line is "
                            "never used" for ae in ("NEWTLS", "NOSUCHAE"))

        def warnings(events):
            return [formatEvent(event) for event in events if event.get("log_level") == LogLevel.warn]

        with capturedLogs() as events:
            output = yield self.running.run(commands.readIni, "")
        self.assertEqual(output, f"2 parameter(s) changed in {self.path}\n"
                                 "applied at once: [DICOMTLSNodes] NEWTLS, [DICOMTLSNodes] NOSUCHAE")
        self.assertEqual(warnings(events), [noSuchAE])
        self.assertIsNotNone(acrNemaMap.lookup("NEWTLS").tls)
        with capturedLogs() as events:
            yield self.running.run(commands.readAmap, "")  # the map on disk has no NEWTLS
        self.assertEqual(warnings(events), [newTLS, noSuchAE])
        yield self.running.run(commands.putAmap, "99,NEWTLS,127.0.0.1,21112")
        with capturedLogs() as events:
            yield self.running.run(commands.deleteAmap, str(len(acrNemaMap.nodes) - 1))
        self.assertEqual(warnings(events), [newTLS, noSuchAE])
        yield self.running.run(commands.putParam, "TCPIPTimeOut,25")
        self.assertEqual(DicomIni.fromFile(self.path).get("TCPIPTimeOut"), "25")

    @defer.inlineCallbacks
    def test_readIniRefusesAConverterLineThatDoesNotParse(self):
        """The server would not start with it: the file is refused, naming
        its line and key, and dicom.ini in memory stays as it was."""
        port, line = self.ini.get("TCPPort"), self.ini.get("ImportConverter0")
        onDisk = DicomIni.fromFile(self.path)
        onDisk.set("TCPPort", "2222")
        onDisk.set("ImportConverters", "1")
        onDisk.set("ImportConverter0", "frobnicate 0008,0080")
        onDisk.write()
        error = yield self.assertFailure(self.running.run(commands.readIni, ""), CommandError)
        where = f"{self.path}:{DicomIni.fromFile(self.path).lineOf('ImportConverter0')}"
        self.assertIn(f"{where}: ImportConverter0, column 1: unknown command 'frobnicate'", str(error))
        self.assertEqual((self.ini.get("TCPPort"), self.ini.get("ImportConverter0")), (port, line))

    @defer.inlineCallbacks
    def test_savesLandInOrder(self):
        yield defer.gatherResults([self.running.run(commands.putParam, f"OrderKey,{n}") for n in range(20)])
        self.assertEqual(DicomIni.fromFile(self.path).get("OrderKey"), "19")

    @defer.inlineCallbacks
    def test_putParamAndDeleteParamKeepHandEdits(self):
        """put_param and delete_param change their key in the file as it is
        on disk: the lines edited by hand since it was read stay."""
        text = Path(self.path).read_text()
        self.assertEqual(self.ini.get("FailHoldOff"), "60")
        edited = text.replace("# Network configuration", "# Network configuration (edited by hand)")
        edited = re.sub(r"(?m)^FailHoldOff .*$", "FailHoldOff = 333", edited)
        self.assertIn("(edited by hand)", edited)
        Path(self.path).write_text(edited)
        yield self.running.run(commands.putParam, "RetryDelay,50")
        yield self.running.run(commands.putParam, "TmpKey,1")
        yield self.running.run(commands.deleteParam, "TmpKey")
        expected = DicomIni.fromString(edited, self.path)
        expected.set("RetryDelay", "50")
        self.assertEqual(Path(self.path).read_text(), expected.toString())
        self.assertEqual(self.ini.get("FailHoldOff"), "60")  # in memory after read_ini only
        self.assertEqual(self.ini.get("RetryDelay"), "50")

    @defer.inlineCallbacks
    def test_putParamRefusesValuesTheServerCannotUse(self):
        """A value the server could not use, at once (LuaMaxInstructions) or
        at its next start, is refused naming key and reason: dicom.ini on
        disk and in memory unchanged."""
        before, lines = Path(self.path).read_bytes(), self.ini.toString()
        for arguments, reason in (("LuaMaxInstructions,abc", "LuaMaxInstructions must be an integer, not 'abc'"),
                                  ("ImportExportDragAndDrop,yes", "ImportExportDragAndDrop must be an integer"),
                                  ("MAGDevices,x", "MAGDevices must be an integer, not 'x'"),
                                  ("MaxAssociations,lots", "MaxAssociations must be an integer"),
                                  ("TCPPort,notaport", "TCPPort must be an integer"),
                                  ("MAGDevice0,d:\\dicomserver\\data\\", "is a Windows path"),
                                  ("UIDPrefix,1.2.abc", "is not a UID root"),
                                  ("WebEndpoint,bogus", "WebEndpoint: 'bogus' is not a usable endpoint"),
                                  ("TCPPort,99999", "TCPPort: 'tcp:99999' is not a usable endpoint (port 99999 is "
                                                    "not from 0 to 65535)"),
                                  ("HL7Endpoint,tcp:-1", "port -1 is not from 0 to 65535"),
                                  ("ControlEndpoint,tcp:port=70000:interface=127.0.0.1", "port 70000 is not"),
                                  ("LRUSort,Foo", "LRUSort = Foo: expected StudyDate, PatientBir or AccessTime"),
                                  ("NightlyMoveThreshold,100", "NightlyMoveTarget = MAG1: NightlyMoveThreshold "
                                                               "moves patients from MAG0 to another MAG device"),
                                  ("WebUsers,nosuch.htpasswd", "WebUsers nosuch.htpasswd: No such file"),
                                  ("WebAllowOrigins,foo", "WebAllowOrigins: 'foo' is not an origin"),
                                  ("ForwardAssociationLevel,FOO", "ForwardAssociationLevel must be one of GLOBAL"),
                                  ("LuaCommandTimeout,-5", "LuaCommandTimeout must be at least 1, not -5"),
                                  ("StorageFailedErrorCode,0", "StorageFailedErrorCode = 0: not a Failure status"),
                                  # a typo in a file's name, accepted, stopped the next start
                                  ("ACRNemaMap,acrnema.mpa", "ACRNemaMap = acrnema.mpa: no such file"),
                                  ("kFactorFile,missing.sql", "kFactorFile = missing.sql: no such file"),
                                  ("SOPClassList,missing.lst", "SOPClassList = missing.lst: no such file")):
            error = yield self.assertFailure(self.running.run(commands.putParam, arguments), CommandError)
            self.assertIn(f"{arguments.split(',')[0]} not changed: the server would not start with it", str(error))
            self.assertIn(reason, str(error))
            self.assertEqual(Path(self.path).read_bytes(), before)
            self.assertEqual(self.ini.toString(), lines)

    @defer.inlineCallbacks
    def test_keysReadAtUseNeedNoRestart(self):
        for arguments in ("ImportExportDragAndDrop,1", "QIDOMaxResults,10", "DICOMwebStore,0", "WebWriters,ann",
                          "LuaFileFolder,lf", "LuaFileFolder,"):
            self.assertEqual((yield self.running.run(commands.putParam, arguments)), "")

    @defer.inlineCallbacks
    def test_readIniRefusesValuesTheServerCannotUse(self):
        """read_ini of a dicom.ini the server could not use keeps the running
        configuration, a live UIDPrefix too."""
        yield self.running.run(commands.putParam, "UIDPrefix,1.2.3.4")
        lines, before = self.ini.toString(), Path(self.path).read_bytes()
        for key, value in (("UIDPrefix", "1.2.826.0.1.3680043.2.135.730956.43877812.999999999999999999999999"),
                           ("LuaMaxInstructions", "10,000,000"), ("LRUSort", "Foo"),
                           ("HL7Endpoint", "tcp:99999"), ("ACRNemaMap", "acrnema.mpa")):
            Path(self.path).write_bytes(before)
            onDisk = DicomIni.fromFile(self.path)
            onDisk.set(key, value)
            onDisk.write()
            error = yield self.assertFailure(self.running.run(commands.readIni, ""), CommandError)
            self.assertIn(f"{self.path} not read: the server would not start with it", str(error))
            self.assertIn(key, str(error))
            self.assertEqual(self.ini.toString(), lines)
            self.assertEqual(self.archive.converterServices.uidMap.prefix, "1.2.3.4.")

    @defer.inlineCallbacks
    def test_aControlEndpointOffLoopbackNeedsAControlSecret(self):
        """A ControlEndpoint not bound to loopback, put or read without a
        ControlSecret, is refused as the next start would refuse it, the
        file left as it was; with a ControlSecret it is taken, and so is
        any when ``--control`` overrides ControlEndpoint."""
        before = Path(self.path).read_bytes()
        error = yield self.assertFailure(self.running.run(commands.putParam, "ControlEndpoint,tcp:5679"),
                                         CommandError)
        self.assertEqual(str(error), "ControlEndpoint not changed: the server would not start with it: the control "
                                     "port tcp:5679 is not bound to 127.0.0.1, ::1 or localhost: set ControlSecret, "
                                     "or bind it to loopback")
        self.assertEqual(Path(self.path).read_bytes(), before)
        self.assertEqual(self.ini.get("ControlEndpoint", ""), DicomIni.fromFile(self.path).get("ControlEndpoint", ""))
        onDisk = DicomIni.fromFile(self.path)
        onDisk.set("ControlEndpoint", "tcp6:5679:interface=\\:\\:")
        onDisk.write()
        error = yield self.assertFailure(self.running.run(commands.readIni, ""), CommandError)
        self.assertIn("not read: the server would not start with it: the control port tcp6:5679:interface=\\:\\: "
                      "is not bound", str(error))
        self.assertNotIn("tcp6", self.ini.get("ControlEndpoint", ""))
        Path(self.path).write_bytes(before)
        yield self.running.run(commands.putParam, "ControlSecret,s1")
        self.assertIn("ControlEndpoint", (yield self.running.run(commands.putParam, "ControlEndpoint,tcp:5679")))
        error = yield self.assertFailure(self.running.run(commands.deleteParam, "ControlSecret"), CommandError)
        self.assertIn("ControlSecret not changed: the server would not start with it", str(error))
        self.archive.controlOption = "tcp:5679:interface=127.0.0.1"
        yield self.running.run(commands.deleteParam, "ControlSecret")
        self.assertEqual(DicomIni.fromFile(self.path).get("ControlEndpoint"), "tcp:5679")

    @defer.inlineCallbacks
    def test_aControlEndpointChangedSaysHowDgateReachesTheServer(self):
        """dgate in the working folder reads the ControlEndpoint on disk, not
        the one the server listens on until it restarts: the answer says
        how it reaches the server meanwhile."""
        self.archive.controlPort = ControlFactory(self.archive, None, endpoint="tcp6:21113:interface=\\:\\:1")
        output = yield self.running.run(commands.putParam, "ControlEndpoint,tcp:21114:interface=127.0.0.1")
        self.assertEqual(output, "takes effect when the server restarts: ControlEndpoint; until then dgate in this "
                                 "folder, which reads the new one, reaches this server only with -q::1 -p21113")
        self.assertEqual((yield self.running.run(commands.putParam, "ControlEndpoint,tcp6:21113:interface=\\:\\:1")),
                         "takes effect when the server restarts: ControlEndpoint")
        for sameTarget in ("tcp6:21113:interface=\\:\\:1:backlog=20", "tcp:21113:interface=\\:\\:1"):
            # dgate connects where it did: no note ('... reaches this server only with -q::1 -p21113')
            self.assertEqual((yield self.running.run(commands.putParam, f"ControlEndpoint,{sameTarget}")),
                             "takes effect when the server restarts: ControlEndpoint", sameTarget)
        self.archive.controlPort = ControlFactory(self.archive, None, endpoint="unix:control.sock")
        onDisk = DicomIni.fromFile(self.path)
        onDisk.set("ControlEndpoint", "tcp:21114:interface=127.0.0.1")
        onDisk.write()
        output = yield self.running.run(commands.readIni, "")
        self.assertIn("ControlEndpoint; until then dgate in this folder, which reads the new one, cannot reach this "
                      f"server (its control port is the UNIX socket {self.archive.configuration.workdir}/control.sock)",
                      output)

    @defer.inlineCallbacks
    def test_controlSecretIsLive(self):
        """A ControlSecret put or read is asked of the next request; a control
        port not bound to loopback cannot be left without one."""
        self.archive.controlPort = port = ControlFactory(self.archive, None, "s1", requireSecret=True)
        self.assertEqual((yield self.running.run(commands.putParam, "ControlSecret,s2")), "")
        self.assertTrue(port.authorized("s2"))
        self.assertFalse(port.authorized("s1"))
        onDisk = DicomIni.fromFile(self.path)
        onDisk.set("ControlSecret", "s3")
        onDisk.write()
        yield self.running.run(commands.readIni, "")
        self.assertTrue(port.authorized("s3"))
        before = Path(self.path).read_bytes()
        for command, arguments in ((commands.putParam, "ControlSecret,"), (commands.deleteParam, "ControlSecret")):
            error = yield self.assertFailure(self.running.run(command, arguments), CommandError)
            self.assertIn("not bound to loopback", str(error))
            self.assertEqual(Path(self.path).read_bytes(), before)
        self.assertTrue(port.authorized("s3"))
