"""Tests for pacscore.control.output: commands that write a file never
write over the archive's own files; commands that read one never open the
index database's (closing it would drop SQLite's locks in the server); a
listing's rows in a web page are formatted, then made inert."""

import os

from twisted.internet import defer
from twisted.trial import unittest

from pacscore.control import output
from pacscore.control.context import CommandError, Format
from pacscore.control.data import AddImageFile, DumpHeader, LoadHL7
from pacscore.control.maintenance import RegenFile
from pacscore.control.queries import Query
from pacscore.control.server import DisplayStatus
from pacscore.control.serverlog import LogOn
from pacscore.testing.certificates import Authority
from pacscore.testing.corpus import generateCorpus
from tests.interop.server import PacsServer
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.web.htpasswd import writeUsers


class FormatRowTests(unittest.TestCase):

    def test_widthsAndPrecisionsCountTheValueNotItsEscapes(self):
        """In a web page a conversion's width and precision apply to the
        listed value, then the formatted text is made inert: ``%.3s`` of
        ``A B&C`` shows ``A B``, not the start of a character reference."""
        row = output.formatRow(Format("<b>%.3s</b>[%-5s]<a href=x?p=%.3s>%%</a>"), ["A B&C", "x", "a b c"], html=True)
        self.assertEqual(row, "<b>A&#32;B</b>[x&#32;&#32;&#32;&#32;]<a href=x?p=a%20b>%</a>")

    def test_tooFewValuesIsABadFormat(self):
        with self.assertRaises(CommandError) as caught:
            Format("%s %s").apply(["x"], made=lambda conversion, value, start: conversion % (value,))
        self.assertIn("bad format", str(caught.exception))


class OwnFilesTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)

    @defer.inlineCallbacks
    def test_ownFilesRefused(self):
        configuration = self.running.configuration
        workdir = configuration.workdir
        database = os.path.join(workdir, "data", "dbase", "conquest.db3")
        before = {path: os.path.getsize(path) for path in (configuration.iniPath, database)}
        own = [configuration.iniPath, configuration.acrNemaMap.path, configuration.sopList.path,
               configuration.layout.path, "data/dbase/conquest.db3", "data/dbase/conquest.db3-wal",
               "./data/dbase/../notes.txt", os.path.join(workdir, "data", "any.txt")]
        for command, arguments in [(DisplayStatus(), path) for path in own] + [
                (LogOn(), "dicom.ini"), (Query(), "DICOMPatients|PatientID||%s|data/dbase/conquest.db3")]:
            error = yield self.assertFailure(self.running.run(command, arguments), CommandError)
            self.assertIn("is one of the archive's own files", str(error))
        self.assertEqual({path: os.path.getsize(path) for path in before}, before)

    @defer.inlineCallbacks
    def test_hardLinksToOwnFilesRefused(self):
        """A hard link to dicom.ini or the index database (cp -al, a
        backup) is the same file: not written through (dicom.ini got the
        listing), nor the database opened."""
        workdir = self.running.configuration.workdir
        database = os.path.join(workdir, "data", "dbase", "conquest.db3")
        before = {path: os.path.getsize(path) for path in (self.running.configuration.iniPath, database)}
        os.link(self.running.configuration.iniPath, os.path.join(workdir, "hlini"))
        os.link(database, os.path.join(workdir, "hldb"))
        for name in ("hlini", "hldb"):
            error = yield self.assertFailure(self.running.run(Query(), f"DICOMPatients|PatientID||%s|{name}"),
                                             CommandError)
            self.assertIn("is one of the archive's own files", str(error))
        error = yield self.assertFailure(self.running.run(DumpHeader(), "hldb"), CommandError)
        self.assertIn("is the archive's index database, not a file to read", str(error))
        self.assertEqual({path: os.path.getsize(path) for path in before}, before)

    @defer.inlineCallbacks
    def test_filesTheArchiveUsesRefused(self):
        """Not only the configuration, index and MAG devices: the mirror
        devices, the WebUsers file, the log files, the HL7 drop folder, the
        scripts and an endpoint's key files, and with a configuration folder
        of its own (not the working folder) anything in it."""
        server = PacsServer(self.mktemp(), ini={"MIRRORDevices": "1", "MIRRORDevice0": "./mirror/",
                                                "WebUsers": "./webusers", "HL7DropFolder": "./hl7in/"})
        web = Authority(server.workdir, "hospital").issue("web", server=True)
        server.setIni(WebEndpoint=f"ssl:8443:privateKey={web.key}:certKey={web.certificate}")
        writeUsers(os.path.join(server.workdir, "webusers"), {"alice": "secret"})
        running = RunningArchive(self, workdir=server.workdir)
        workdir = running.configuration.workdir
        for name in ("anonymize_script.lua", "webusers"):
            with open(os.path.join(workdir, name), "w") as f:
                f.write("kept\n")
        os.makedirs(os.path.join(workdir, "conf"))
        own = ["mirror/PAT1/x.dcm", "webusers", "PacsTrouble.log", "PacsUser.log", "anonymize_script.lua",
               "hl7in/a.hl7", "web.key", "web.pem"]
        for path in own:
            error = yield self.assertFailure(running.run(DisplayStatus(), path), CommandError)
            self.assertIn("is one of the archive's own files", str(error))
        error = yield self.assertFailure(running.run(LogOn(), "PacsTrouble.log"), CommandError)
        self.assertIn("is one of the archive's own files", str(error))
        # after put_param:TroubleLog,... and the like (restart keys) the files in use are still the archive's
        for key in ("TroubleLog", "UserLog", "WebUsers"):
            running.configuration.ini.set(key, f"next-{key}")
        for path in ("webusers", "PacsTrouble.log", "PacsUser.log", "next-TroubleLog", "next-WebUsers"):
            error = yield self.assertFailure(running.run(DisplayStatus(), path), CommandError)
            self.assertIn("is one of the archive's own files", str(error))
        running.configuration.configDir = os.path.join(workdir, "conf")
        error = yield self.assertFailure(running.run(DisplayStatus(), "conf/status.txt"), CommandError)
        self.assertIn("is one of the archive's own files", str(error))
        yield running.run(DisplayStatus(), "status.txt")
        with open(os.path.join(workdir, "webusers")) as f:
            self.assertEqual(f.read(), "kept\n")

    @defer.inlineCallbacks
    def test_keyFilesOfTheEndpointsServingAndOfTLSNodesRefused(self):
        """README's TLS set-up: ``--dicom-tls mtls:...`` (recorded in
        ``Archive.endpoints``, not in dicom.ini) and a [DICOMTLSNodes] node
        with a client key; their key and certificate files are refused (a
        display_status overwrote them, and the server could not start again)."""
        server = PacsServer(self.mktemp())
        authority = Authority(os.path.join(server.workdir, "tls"), "clients")
        party = authority.issue("pacs", server=True)
        key, certificate, ca = (os.path.relpath(path, server.workdir)
                                for path in (party.key, party.certificate, authority.certificate))
        server.setIni("DICOMTLSNodes", SECUREPACS=f"caCerts={ca}:privateKey={key}:certKey={certificate}")
        running = RunningArchive(self, workdir=server.workdir)
        running.archive.endpoints = [f"mtls:0:privateKey={party.key}:certKey={party.certificate}:caCerts={ca}"]
        for path in (key, certificate, ca):
            error = yield self.assertFailure(running.run(DisplayStatus(), path), CommandError)
            self.assertIn("is one of the archive's own files", str(error))
        running.archive.endpoints = []
        running.configuration.acrNemaMap.tlsNodes = {}
        yield running.run(DisplayStatus(), key)

    @defer.inlineCallbacks
    def test_pipesRefused(self):
        """An output file that is a FIFO is refused at once (its open waited
        for a reader, holding an I/O worker: four stopped every store)."""
        fifo = os.path.join(self.running.configuration.workdir, "fifo")
        os.mkfifo(fifo)
        error = yield self.assertFailure(self.running.run(DisplayStatus(), "fifo"), CommandError)
        self.assertIn(f"cannot write {fifo}: not a regular file", str(error))
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        error = yield self.assertFailure(self.running.run(Query(), "DICOMPatients|PatientID||%s|fifo"), CommandError)
        self.assertIn(f"cannot write {fifo}: not a regular file", str(error))
        self.assertEqual(os.read(reader, 10), b"")

    @defer.inlineCallbacks
    def test_otherFilesWritten(self):
        yield self.running.run(DisplayStatus(), "status.txt")
        with open(os.path.join(self.running.configuration.workdir, "status.txt")) as f:
            self.assertIn("Run time", f.read())


class AnswerSizeTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)

    @defer.inlineCallbacks
    def test_aListingIsAtMostMaxAnswer(self):
        """A listing's formatted rows, to the output or to a file, are at
        most MAX_ANSWER bytes: past them the command fails, saying so."""
        yield self.running.store(generateCorpus(os.path.abspath(self.mktemp()), patients=3, studiesPerPatient=1, seriesPerStudy=1,
                                                imagesPerSeries=1))
        arguments = "DICOMPatients|PatientID||%s|"
        self.assertEqual((yield self.running.run(Query(), arguments)), "PAT0000\nPAT0001\nPAT0002")
        self.patch(output, "MAX_ANSWER", 20)
        for path in ("", "listing.txt"):
            error = yield self.assertFailure(self.running.run(Query(), arguments + path), CommandError)
            self.assertIn("more than 20 bytes", str(error))
        self.assertFalse(os.path.exists(os.path.join(self.running.workdir, "listing.txt")))


class IndexDatabaseReadTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)

    @defer.inlineCallbacks
    def test_indexDatabaseNeverOpened(self):
        for command in (AddImageFile(), LoadHL7(), DumpHeader()):
            for path in ("data/dbase/conquest.db3", "./data/dbase/conquest.db3-wal"):
                error = yield self.assertFailure(self.running.run(command, path), CommandError)
                self.assertIn("is the archive's index database, not a file to read", str(error))
        error = yield self.assertFailure(self.running.run(RegenFile(), "MAG0:dbase/conquest.db3"), CommandError)
        self.assertEqual(str(error), "MAG0:dbase/conquest.db3 could not be entered")
        self.assertIn("conquest.db3 -FAILED: the index database, not an object", self.running.progress[-1])
