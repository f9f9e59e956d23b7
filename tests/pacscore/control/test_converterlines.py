"""Converter lines changed by put_param, delete_param and read_ini on a
real Archive: which lines the archive then stores and exports with, and
what the commands answer."""

import os

import pydicom
from twisted.internet import defer
from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.control.context import CommandError
from pacscore.testing.corpus import generateCorpus
from plugins import pacs_control_configuration as commands
from tests.pacscore.control.running import RunningArchive


class ConverterLinesTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self, ini={
            "ImportExportDragAndDrop": "1", "ImportConverters": "1", "ImportConverter0": 'set 0008,0080 to "FIRST"',
            "ExportConverters": "1", "ExportConverter0": "nop first"})
        self.archive = self.running.archive
        self.runner = self.archive.exportService()  # not started: its lines are looked at
        self.images = iter(generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                          seriesPerStudy=1, imagesPerSeries=8))

    @defer.inlineCallbacks
    def stored(self):
        """The next image as dgate --addimagefile stores it."""
        image = next(self.images)
        yield self.running.store([image])
        uid = pydicom.dcmread(image.path).SOPInstanceUID
        [stored] = [path for path in self.running.files() if pydicom.dcmread(path).SOPInstanceUID == uid]
        return pydicom.dcmread(stored)

    @defer.inlineCallbacks
    def storedInstitution(self):
        """The InstitutionName of the next image as dgate --addimagefile stores it."""
        return (yield self.stored()).get("InstitutionName")

    def exportLines(self):
        """The export lines the queue and its runner use: ``{key: text}`` of each."""
        lines = {rule.key: rule.script.text for rule in self.archive.exportQueue.rules}
        self.assertEqual({key: rule.script.text for key, rule in self.runner.rules.items()}, lines)
        return lines

    @defer.inlineCallbacks
    def test_importLinesByPutParamAndDeleteParam(self):
        self.assertEqual((yield self.storedInstitution()), "FIRST")
        output = yield self.running.run(commands.putParam, 'ImportConverter0,set 0008,0080 to "SECOND"')
        self.assertEqual(output, "")
        self.assertEqual((yield self.storedInstitution()), "SECOND")
        self.assertEqual((yield self.running.run(commands.putParam, "ImportModality0,MR")), "")
        self.assertNotIn((yield self.storedInstitution()), ("FIRST", "SECOND"))
        self.assertEqual((yield self.running.run(commands.deleteParam, "ImportModality0")), "")
        self.assertEqual((yield self.storedInstitution()), "SECOND")
        self.assertEqual((yield self.running.run(commands.deleteParam, "ImportConverter0")), "")
        self.assertIsNone(self.archive.objectStore.importers)

    @defer.inlineCallbacks
    def test_importAndExportLinesByReadIni(self):
        onDisk = DicomIni.fromFile(self.archive.configuration.iniPath)
        onDisk.set("ImportConverter0", 'set 0008,0080 to "BYHAND"')
        onDisk.set("ExportConverter0", "nop by hand")
        onDisk.set("ExportFilter0", "Modality = 'CT'")
        onDisk.write()
        output = yield self.running.run(commands.readIni, "")
        self.assertEqual(output, f"3 parameter(s) changed in {self.archive.configuration.iniPath}")
        self.assertEqual((yield self.storedInstitution()), "BYHAND")
        self.assertEqual(self.exportLines(), {"ExportConverter0": "nop by hand"})
        self.assertEqual(self.archive.exportQueue.rules[0].filter, "Modality = 'CT'")

    @defer.inlineCallbacks
    def test_exportLineByPutParam(self):
        self.assertEqual((yield self.running.run(commands.putParam, "ExportConverter0,nop second")), "")
        self.assertEqual(self.exportLines(), {"ExportConverter0": "nop second"})

    @defer.inlineCallbacks
    def test_exportLinesStayWhenTheirNumbersChange(self):
        """A line added or emptied, or ExportConverters changed so, waits for
        the next start, and so do the other export lines meanwhile; the
        import lines are taken."""
        self.assertEqual((yield self.running.run(commands.putParam, "ExportConverters,2")), "")
        output = yield self.running.run(commands.putParam, "ExportConverter1,nop added")
        self.assertEqual(output, "takes effect when the server restarts: ExportConverter1")
        output = yield self.running.run(commands.putParam, "ExportConverter0,nop second")
        self.assertEqual(output, "takes effect when the server restarts: ExportConverter0")
        self.assertEqual((yield self.running.run(commands.putParam, 'ImportConverter0,set 0008,0080 to "NEW"')), "")
        self.assertEqual(self.exportLines(), {"ExportConverter0": "nop first"})
        self.assertEqual((yield self.storedInstitution()), "NEW")
        self.assertEqual((yield self.running.run(commands.deleteParam, "ExportConverter1")), "")
        self.assertEqual(self.exportLines(), {"ExportConverter0": "nop second"})
        output = yield self.running.run(commands.putParam, "ExportConverters,0")
        self.assertEqual(output, "takes effect when the server restarts: ExportConverters")
        self.assertEqual(self.exportLines(), {"ExportConverter0": "nop second"})

    @defer.inlineCallbacks
    def test_queryConverterAtTheNextStart(self):
        output = yield self.running.run(commands.putParam, "QueryConverter0,nop query")
        self.assertEqual(output, "takes effect when the server restarts: QueryConverter0")
        self.assertNotIn("QueryConverter0", self.archive.converterHooks)
        self.assertNotIn("QueryConverter0", self.archive.converterRules.special)

    @defer.inlineCallbacks
    def test_failedSaveUsesNothing(self):
        importers = self.archive.objectStore.importers
        ini = self.archive.configuration.ini
        path, ini.path = ini.path, self.mktemp()
        os.mkdir(ini.path)
        error = yield self.assertFailure(
            self.running.run(commands.putParam, 'ImportConverter0,set 0008,0080 to "SECOND"'), CommandError)
        self.assertIn("cannot write", str(error))
        ini.path = path
        self.assertIs(self.archive.objectStore.importers, importers)
        self.assertEqual((yield self.storedInstitution()), "FIRST")

    @defer.inlineCallbacks
    def test_theLastChangeIsUsed(self):
        """Lines put one after the other, the commands not waiting for each
        other, are used in the order they were put."""
        yield defer.gatherResults([self.running.run(commands.putParam, f'ImportConverter0,set 0008,0080 to "N{n}"')
                                   for n in range(10)])
        self.assertEqual((yield self.storedInstitution()), "N9")

    @defer.inlineCallbacks
    def test_overlappingChangesAreAllUsed(self):
        """Commands sent together, none waiting for the answer of the other,
        each start from dicom.ini as the one before left it: the lines in
        use are those of dicom.ini in memory and on disk at the end."""
        yield self.running.run(commands.putParam, "ImportConverters,2")
        yield defer.gatherResults([
            self.running.run(commands.putParam, 'ImportConverter0,set 0008,0080 to "ZERO"'),
            self.running.run(commands.putParam, 'ImportConverter1,set 0008,1010 to "ONE"')])
        stored = yield self.stored()
        self.assertEqual((stored.get("InstitutionName"), stored.get("StationName")), ("ZERO", "ONE"))
        onDisk = DicomIni.fromFile(self.archive.configuration.iniPath)
        onDisk.set("ImportConverter1", 'set 0008,1010 to "BYHAND"')
        onDisk.write()
        yield defer.gatherResults([self.running.run(commands.readIni, ""),
                                   self.running.run(commands.putParam, 'ImportConverter0,set 0008,0080 to "AGAIN"')])
        stored = yield self.stored()
        self.assertEqual((stored.get("InstitutionName"), stored.get("StationName")), ("AGAIN", "BYHAND"))
        self.assertEqual(self.archive.configuration.ini.get("ImportConverter1"), 'set 0008,1010 to "BYHAND"')

    @defer.inlineCallbacks
    def test_aRefusedLineReachesNeitherMemoryNorDisk(self):
        """A line that does not parse, refused while other commands change
        dicom.ini, is never saved nor used, and its refusal undoes none of
        their changes."""
        ini = self.archive.configuration.ini
        bad = self.running.run(commands.putParam, "ImportConverter0,frobnicate 0008,0080")
        others = [self.running.run(commands.putParam, "MaximumExportRetries,3"),
                  self.running.run(commands.putParam, 'ImportConverter1,set 0008,1010 to "ONE"'),
                  self.running.run(commands.putParam, "ImportConverters,2")]
        error = yield self.assertFailure(bad, CommandError)
        self.assertIn("ImportConverter0 not changed", str(error))
        yield defer.gatherResults(others)
        onDisk = DicomIni.fromFile(self.archive.configuration.iniPath)
        for key, value in (("ImportConverter0", 'set 0008,0080 to "FIRST"'), ("MaximumExportRetries", "3"),
                           ("ImportConverter1", 'set 0008,1010 to "ONE"'), ("ImportConverters", "2")):
            self.assertEqual((ini.get(key), onDisk.get(key)), (value, value), key)
        stored = yield self.stored()
        self.assertEqual((stored.get("InstitutionName"), stored.get("StationName")), ("FIRST", "ONE"))
