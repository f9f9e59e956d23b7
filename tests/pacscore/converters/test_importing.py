"""Import converter lines on incoming objects (pacscore.converters.importing):
the delayed actions they queue wait in the decision and reach the export
queue only in the stored object's index transaction."""

import os
import sys

from pydicom import dcmread
from sqlalchemy import func, select
from twisted.trial import unittest

from pacscore.codecs.jpeglossless import encodeDataset as compress
from pacscore.codecs.syntaxes import JPEG_LOSSLESS_SV1 as JPEG_LOSSLESS
from pacscore.config.ini import DicomIni
from pacscore.converters.context import ConverterServices
from pacscore.converters.importing import ImportConverters
from pacscore.converters.registry import CommandRegistry
from pacscore.converters.rules import loadRules
from pacscore.db.index import Index
from pacscore.dicom.datasets import IdentifierError, decodeDataset, encodeDataset
from pacscore.dicom.sinks import MEMORY_LIMIT
from pacscore.export.queue import ExportQueue
from pacscore.storage.store import IncomingObject
from pacscore.testing.corpus import makeDataset
from tests.pacscore.db.test_index import makeRecord
from tests.pacscore.converters.test_dataset import PROCESSOR
from tests.pacscore.dicom.test_textbytes import JIS_NAME, withValue1JIS
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout, sqliteEngine

EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
COMPRESSOR = """\
import sys
from pydicom import dcmread
from pacscore.codecs.jpeglossless import encodeDataset
path = sys.argv[-1]
dataset = dcmread(path)
encodeDataset(dataset, "%s")
dataset.save_as(path)
""" % JPEG_LOSSLESS


class ImportActionsTests(unittest.TestCase):

    def setUp(self):
        self.index = Index(sqliteEngine(self), conquestLayout(), TABLE_NAMES)
        self.index.createTables()
        self.queue = ExportQueue(self.index)
        self.queue.createTables()

    def apply(self, lines, syntax=EXPLICIT, dataset=None, damage=None):
        """``damage(data)``: the bytes sent, when given, of those encoded."""
        ini = DicomIni.fromString("[sscscp]\nImportConverters = %d\n" % len(lines) +
                                  "".join(f"ImportConverter{n} = {line}\n" for n, line in enumerate(lines)))
        importers = ImportConverters(loadRules(ini, CommandRegistry()).importRules,
                                     ConverterServices(index=self.index, exportQueue=self.queue))
        dataset = dataset or makeDataset("PAT1", "Test^One", "1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1)
        if syntax not in (EXPLICIT, DEFLATED):
            compress(dataset, syntax)
        incoming = IncomingObject(dataset.SOPClassUID, dataset.SOPInstanceUID, syntax, "MODALITY", "PACS")
        data = encodeDataset(dataset, syntax)
        return importers.apply(incoming, {}, damage(data) if damage else data, syntax)

    def program(self, source):
        """A Python program in a new folder for ``process with``: ``(folder, command)``."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        script = os.path.join(folder, "program.py")
        with open(script, "w") as f:
            f.write(source)
        return folder, f"{sys.executable} {script}"

    def queued(self):
        with self.index.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(self.queue.forwards)).scalar()

    def store(self, record):
        with self.index.engine.begin() as connection:
            self.index.upsertImage(connection, record)
            self.queue.enqueueJobs(connection, [record])

    def test_actionsWaitForTheStoredObject(self):
        decision = self.apply(["forward image to DEST", "forward series to VIEWER"])
        self.assertEqual((decision.data, decision.compression, decision.device), (None, None, None))
        self.assertEqual([(row["Level"], row["Destination"]) for row in decision.actions],
                         [("IMAGE", "DEST"), ("SERIES", "VIEWER")])
        self.assertEqual(self.queued(), 0, "nothing is queued before the object is stored")
        record = makeRecord("1.2.3.1.1")
        record.actions = decision.actions
        self.store(record)
        actions = self.queue.due(self.queue.clock() + 600, 10)
        self.assertEqual(sorted((a.level, a.destination, a.objectPath) for a in actions),
                         [("IMAGE", "DEST", ""), ("SERIES", "VIEWER", "")])

    def test_luaForward(self):
        """Lua's forward(ae) in an import converter queues the image's forward."""
        decision = self.apply(["lua \"forward('DEST')\""])
        self.assertEqual([(row["Level"], row["Destination"]) for row in decision.actions], [("IMAGE", "DEST")])

    def test_whereTheIndexKeepsNoRowsTheImageActionKeepsTheFile(self):
        self.queue.objectPaths = lambda device, objectFile: f"/archive/{device}/{objectFile}"
        record = makeRecord("1.2.3.1.1", objectFile="PAT1/1.dcm")
        record.actions = self.apply(["forward image to DEST"]).actions
        self.store(record)
        [action] = self.queue.due(self.queue.clock(), 10)
        self.assertEqual(action.objectPath, "/archive/MAG0/PAT1/1.dcm")

    def test_largeDeflatedObject(self):
        """A deflated object that inflates past 16 MB (an identifier's
        bound) is changed as any other."""
        dataset = makeDataset("PAT1", "Test^One", "1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1)
        dataset.add_new(0x00091001, "OB", bytes(MEMORY_LIMIT + 2))
        decision = self.apply(["set 0008,1030 to \"CHANGED\""], DEFLATED, dataset)
        stored = decodeDataset(decision.data, DEFLATED)
        self.assertEqual((stored.StudyDescription, len(stored[0x00091001].value)), ("CHANGED", MEMORY_LIMIT + 2))

    def test_processedObjectIsStored(self):
        """``process with``'s object is what is stored, with what the next
        commands and lines set on it."""
        _, command = self.program(PROCESSOR)
        decision = self.apply([f"process with {command} EDITED; set 0008,1030 to \"%V0010,0010\"",
                               "set 0008,0080 to \"%V0008,1030\""])
        stored = decodeDataset(decision.data, EXPLICIT)
        self.assertEqual((str(stored.PatientName), stored.StudyDescription, stored.InstitutionName),
                         ("EDITED", "EDITED", "EDITED"))

    def test_compressedObjectIsHandedOnInItsSyntax(self):
        """A compressed object goes to ``save to`` and a program in its own
        transfer syntax, and is stored in it."""
        folder, command = self.program("import shutil, sys\nshutil.copy(sys.argv[-1], sys.argv[1])\n")
        saved, seen = os.path.join(folder, "saved.dcm"), os.path.join(folder, "seen.dcm")
        decision = self.apply([f"save to {saved}; process with {command} {seen}; set 0008,1030 to \"X\""],
                              JPEG_LOSSLESS)
        for path in (saved, seen):
            written = dcmread(path)
            self.assertEqual(written.file_meta.TransferSyntaxUID, JPEG_LOSSLESS, path)
            self.assertTrue(written["PixelData"].is_undefined_length, path)
        self.assertEqual(decision.transferSyntax, JPEG_LOSSLESS)
        stored = decodeDataset(decision.data, decision.transferSyntax)
        self.assertEqual(stored.StudyDescription, "X")
        self.assertTrue(stored["PixelData"].is_undefined_length)

    def test_processedObjectIsStoredInTheSyntaxItCameBackIn(self):
        """A program that compresses the object: it is stored compressed,
        in the syntax its file names."""
        _, command = self.program(COMPRESSOR)
        decision = self.apply([f"process with {command}"])
        self.assertEqual(decision.transferSyntax, JPEG_LOSSLESS)
        stored = decodeDataset(decision.data, decision.transferSyntax)
        self.assertTrue(stored["PixelData"].is_undefined_length)
        self.assertEqual(stored.Rows, 64)

    def test_aChangeKeepsTheBytesOfTextItDoesNotTouch(self):
        """An ISO_IR 192 object whose name came in Latin-1: setting another
        element stores the name's bytes as they came, not U+FFFD."""
        dataset = makeDataset("PAT1", "Test^One", "1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1)
        dataset.SpecificCharacterSet = "ISO_IR 192"
        dataset["PatientName"].value = b"Ung\xfcltig^Namen"
        decision = self.apply(['set 0008,0080 to "Klinik"'], dataset=dataset)
        self.assertIn(b"Ung\xfcltig^Namen", decision.data)
        self.assertEqual(decodeDataset(decision.data, EXPLICIT).InstitutionName, "Klinik")

    def test_aValuePydicomCannotDecodeIsStoredAsItCame(self):
        """A Diffusion b-value FD of 4 bytes (taken by C-STORE, as storescp
        takes it) was stored rewritten as a UN element by any changing line;
        it is stored with its own VR and bytes, the change made, and in
        another explicit encoding it is refused as it was before."""
        good, bad = b"\x18\x00\x87\x90FD\x08\x00" + bytes(8), b"\x18\x00\x87\x90FD\x04\x00\x01\x00\x02\x00"
        dataset = makeDataset("PAT1", "Test^One", "1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1)
        dataset.add_new(0x00189087, "FD", 0.0)

        def damage(data):
            self.assertIn(good, data)
            return data.replace(good, bad)

        decision = self.apply(['set 0008,0080 to "Klinik"'], dataset=dataset, damage=damage)
        self.assertEqual(decision.data.count(bad), 1)
        decoded = decodeDataset(decision.data, EXPLICIT)
        self.assertEqual(decoded.InstitutionName, "Klinik")
        with self.assertRaisesRegex(IdentifierError, r"\(0018,9087\) cannot be decoded, and cannot be written"):
            encodeDataset(decoded, "1.2.840.10008.1.2.2")

    def test_aPrivateValuePydicomCannotDecodeIsStoredAsItCame(self):
        """A private element of its creator's dictionary whose length does
        not fit its VR (GE's (0043,101A) SL of 6 bytes): a changing line
        failed the store 0x0110 with a critical traceback, pydicom decoding
        the value as the element was put back; it is stored with its own
        bytes, the change made."""
        dataset = makeDataset("PAT1", "Test^One", "1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1)
        dataset.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x1A, "SL", 7)
        good, bad = b"\x43\x00\x1a\x10SL\x04\x00\x07\x00\x00\x00", b"\x43\x00\x1a\x10SL\x06\x00" + bytes(6)

        def damage(data):
            self.assertIn(good, data)
            return data.replace(good, bad)

        decision = self.apply(['set 0008,0080 to "Klinik"'], dataset=dataset, damage=damage)
        self.assertEqual(decision.data.count(bad), 1)
        self.assertEqual(decodeDataset(decision.data, EXPLICIT).InstitutionName, "Klinik")

    def test_multiByteSetAsValue1(self):
        """An object naming ``ISO 2022 IR 87`` alone in (0008,0005), with a
        name holding an empty component, was refused by any line, even a
        ``nop`` ('refused with status 0xC000: undecodable data set: string
        index out of range'); it is read, and a change keeps its (0008,0005)
        and the bytes of its names."""
        dataset = makeDataset("PAT1", "", "1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1)
        withValue1JIS(dataset)
        self.assertIsNone(self.apply(["nop %V0010,0010 %V0008,0090"], dataset=dataset))
        decision = self.apply(['set 0008,0080 to "Klinik"'], dataset=dataset)
        for raw in (b"ISO 2022 IR 87", JIS_NAME, b"^^^^", b"DOE^JOHN^^^", b"Klinik"):
            self.assertIn(raw, decision.data)
        self.assertEqual(str(decodeDataset(decision.data, EXPLICIT).PatientName), "Yamada^Tarou=山田^太郎")

    def test_noActionsNoDecision(self):
        self.assertIsNone(self.apply(["nop nothing to do"]))
