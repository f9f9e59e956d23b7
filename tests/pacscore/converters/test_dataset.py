"""Tests for the data set commands (pacscore.converters.dataset, newuids,
saving) run through the plugin objects of plugins/pacs_commands_dataset.py."""

import os
import sys
from types import SimpleNamespace

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from sqlalchemy import select
from twisted.logger import Logger, LogLevel, capturedLogs, formatEvent
from twisted.plugin import getPlugins
from twisted.trial import unittest

import plugins
from pacscore.config.ini import DicomIni
from pacscore.converters.context import ConverterContext, ConverterServices, ConverterSyntaxError, Outcome
from pacscore.converters import elements
from pacscore.converters.elements import assign
from pacscore.converters.registry import CommandRegistry
from pacscore.converters.script import parseScript
from pacscore.converters.uidmap import UIDMap
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.firstwarned import FirstWarned
from pacscore.interfaces import IConverterCommand
from plugins import pacs_commands_dataset as commands
from plugins import pacs_commands_lua
from tests.pacscore.db.test_schema import sqliteEngine

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def objectDataset():
    dataset = Dataset()
    dataset.PatientID = "01234567"
    dataset.PatientName = "Doe^John"
    dataset.Modality = "CT"
    dataset.SOPClassUID = CT_IMAGE_STORAGE
    dataset.SOPInstanceUID = "1.2.3.1.1"
    dataset.StudyInstanceUID = "1.2.3"
    dataset.SeriesInstanceUID = "1.2.3.1"
    dataset.Rows = 512
    dataset.StudyDescription = ""
    return dataset


def makeContext(dataset=None, variables=None, **services):
    return ConverterContext("import", objectDataset() if dataset is None else dataset,
                            callingAE="SENDER", calledAE="ARCHIVE",
                            services=ConverterServices(**services), converterName="ImportConverter0",
                            variables=variables)


def run(command, arguments, context):
    """Parse ``arguments`` and run ``command`` once on ``context``."""
    parsed = command.parse(arguments, "ImportConverter0, column 1")
    outcome = command.run(parsed, context)
    return outcome


class PluginTests(unittest.TestCase):

    def test_found(self):
        found = {command.name: command for command in getPlugins(IConverterCommand, plugins)}
        for name in ("set", "setifempty", "delete", "newuids", "fixkodak", "unfixkodak",
                     "save to", "process with"):
            self.assertIn(name, found)
            self.assertTrue(IConverterCommand.providedBy(found[name]))
            self.assertFalse(found[name].condition)

    def test_scopes(self):
        self.assertEqual({command.name: command.scope for command in vars(commands).values()
                          if IConverterCommand.providedBy(command)},
                         {"set": "I", "setifempty": "I", "delete": "I", "newuids": "I",
                          "fixkodak": "I", "unfixkodak": "I", "save to": "IE", "process with": "I",
                          "virtualserver": "I", "virtualservermask": "I"})


class SyntaxTests(unittest.TestCase):

    cases = [
        (commands.virtualServerCommand, 'x'),
        (commands.virtualServerMaskCommand, ''),
        (commands.setCommand, '0010,0010'),
        (commands.setCommand, '0010,0010 "x"'),
        (commands.setCommand, '0010,0010 into "x"'),
        (commands.setCommand, '10,10 to "x"'),
        (commands.setCommand, 'w to "x"'),
        (commands.setCommand, '0010,0010 to "unterminated'),
        (commands.setCommand, '0010,0010 to "x" extra'),
        (commands.setCommand, '0040,0275.x\\0040,0007 to "x"'),
        (commands.setIfEmptyCommand, '0040,0275.0\\0040,0007 to "x"'),
        (commands.deleteElementCommand, ''),
        (commands.deleteElementCommand, 'patient'),
        (commands.newUIDsCommand, 'but 0020,000d'),
        (commands.newUIDsCommand, 'except'),
        (commands.newUIDsCommand, 'except 0020,000d, 1.2.3'),
        (commands.newUIDsCommand, 'except study'),
        (commands.fixKodakCommand, 'now'),
        (commands.unfixKodakCommand, '0010,0020'),
        (commands.saveToCommand, ''),
        (commands.processWithCommand, ''),
    ]

    def test_errorsNameThePlace(self):
        for command, arguments in self.cases:
            with self.assertRaises(ConverterSyntaxError, msg=f"{command.name} {arguments}") as raised:
                command.parse(arguments, "ImportConverter0, column 1")
            self.assertIn("ImportConverter0, column 1", str(raised.exception))

    def test_fileMetaElementsAreRefused(self):
        """No data set holds group 0002: set and setifempty refuse it when parsed."""
        for command, arguments in [(commands.setCommand, '0002,0016 to "HACKED"'),
                                   (commands.setIfEmptyCommand, '0002,0010 if "1.2.840.10008.1.2"'),
                                   (commands.setCommand, '0040,0275.0\\0002,0016 to "x"')]:
            with self.assertRaises(ConverterSyntaxError, msg=arguments) as raised:
                command.parse(arguments, "ImportConverter0, column 1")
            self.assertIn("ImportConverter0, column 1: (0002,", str(raised.exception))
            self.assertIn("is a file meta element (group 0002)", str(raised.exception))


class SetTests(unittest.TestCase):

    def test_setExpanded(self):
        context = makeContext()
        self.assertEqual(run(commands.setCommand, '0010,1001 to "id %V0010,0020 from %u"', context),
                         Outcome.CONTINUE)
        self.assertEqual(context.dataset.OtherPatientNames, "id 01234567 from SENDER")
        self.assertEqual(context.dataset[0x00101001].VR, "PN")
        self.assertTrue(context.changed)

    def test_keyword(self):
        """A DICOM keyword names the element as gggg,eeee does (Conquest's
        Lua runs Data.X = v as 'set X to "v"'); x, y and z stay variables,
        a word that is no keyword is refused saying so, and a keyword of
        the file meta refused as its tag is."""
        context = makeContext(variables={})
        run(commands.setCommand, 'PatientName to "A^B"', context)
        run(commands.setIfEmptyCommand, 'StudyDescription to "head"', context)
        run(commands.setCommand, 'x to "%V0010,0010"', context)
        self.assertEqual((str(context.dataset.PatientName), context.dataset.StudyDescription), ("A^B", "head"))
        self.assertEqual(context.variables["x"], "A^B")
        with self.assertRaises(ConverterSyntaxError) as raised:
            commands.setCommand.parse('PatientNme to "A^B"', "ImportConverter0, column 1")
        self.assertEqual(str(raised.exception), "ImportConverter0, column 1: not a tag (gggg,eeee) nor a DICOM "
                                                "keyword (spelt with its case): 'PatientNme'")
        with self.assertRaises(ConverterSyntaxError) as raised:
            commands.setCommand.parse('TransferSyntaxUID to "1.2"', "ImportConverter0, column 1")
        self.assertIn("(0002,0010) is a file meta element", str(raised.exception))

    def test_keywordsOfRepeatingGroupsAndCase(self):
        """A keyword is spelt as the standard spells it (Conquest's dictionary
        lookup is case-sensitive): 'patientname' is refused, saying so; the
        keyword of an element of the overlay or curve groups (60xx, 50xx)
        names no one group, and its refusal says to give the tag, which sets it."""
        for keyword in ("OverlayData", "CurveData", "OverlayRows"):
            with self.assertRaises(ConverterSyntaxError) as raised:
                commands.setCommand.parse(f'{keyword} to "1"', "ImportConverter0, column 1")
            self.assertEqual(str(raised.exception), f"ImportConverter0, column 1: {keyword} is an element of "
                                                    "repeating groups (60xx or 50xx): name it by its tag, such as 6000,3000")
        with self.assertRaises(ConverterSyntaxError) as raised:
            commands.setCommand.parse('patientname to "A^B"', "ImportConverter0, column 1")
        self.assertIn("(spelt with its case): 'patientname'", str(raised.exception))
        context = makeContext()
        self.assertEqual(run(commands.setCommand, '6000,0022 to "overlay one"', context), Outcome.CONTINUE)
        self.assertEqual(context.dataset[0x60000022].value, "overlay one")

    def test_replaces(self):
        context = makeContext()
        run(commands.setCommand, '0010,0010 to "%V0010,0010^"', context)
        self.assertEqual(str(context.dataset.PatientName), "DOE^JOHN")

    def test_numbers(self):
        context = makeContext()
        run(commands.setCommand, '0028,0010 to "256"', context)
        run(commands.setCommand, '0028,0011 to "128"', context)
        run(commands.setCommand, '0028,0030 to "0.5\\0.25"', context)
        run(commands.setCommand, '0020,0013 to "7"', context)
        self.assertEqual(context.dataset.Rows, 256)
        self.assertEqual(context.dataset.Columns, 128)
        self.assertEqual(list(context.dataset.PixelSpacing), [0.5, 0.25])
        self.assertEqual(context.dataset.InstanceNumber, 7)
        encoded = decodeDataset(encodeDataset(context.dataset, ExplicitVRLittleEndian),
                                ExplicitVRLittleEndian)
        self.assertEqual((encoded.Rows, encoded.Columns, encoded.InstanceNumber), (256, 128, 7))

    def test_numbersOfEveryKind(self):
        """Every value of FD, a tag for AT, as ``%V`` reads them back."""
        context = makeContext()
        run(commands.setCommand, '0018,9089 to "0.5\\0.5\\0.7"', context)
        run(commands.setCommand, '0028,0009 to "0018,1063"', context)
        run(commands.setCommand, '0028,0034 to "1\\1"', context)
        self.assertEqual(list(context.dataset[0x00189089].value), [0.5, 0.5, 0.7])
        self.assertEqual(context.dataset[0x00280009].value, 0x00181063)
        self.assertEqual(list(context.dataset.PixelAspectRatio), [1, 1])
        self.assertEqual(context.expand("%V0018,9089 %V0028,0009"), "0.5\\0.5\\0.7 0018,1063")
        encoded = decodeDataset(encodeDataset(context.dataset, ExplicitVRLittleEndian), ExplicitVRLittleEndian)
        self.assertEqual(encoded[0x00280009].value, 0x00181063)

    def test_noNumberLeavesTheElementAndTheLineGoesOn(self):
        """A value a number element cannot hold is a warning; the element
        keeps its value and the rest of the line (anonymising) still runs."""
        events = []
        self.patch(commands.setCommand, "log", Logger(observer=events.append))
        context = makeContext()
        for value in ("1,5", "n/a"):
            run(commands.setCommand, f'0020,0013 to "{value}"', context)
            run(commands.setCommand, f'0028,0010 to "{value}"', context)
        run(commands.setCommand, '0028,0010 to "70000"', context)  # no US
        self.assertEqual((context.dataset.get("InstanceNumber"), context.dataset.Rows), (None, 512))
        self.assertFalse(context.changed)
        self.assertEqual(len(events), 5)
        self.assertIn("(0020,0013) left as it was: '1,5' is no IS value", formatEvent(events[0]))
        self.assertIn("(0028,0010) left as it was: '70000' is no US value", formatEvent(events[4]))

    def test_invalidTextSetWithAWarning(self):
        """A text no value of its VR (CS 'ct', AS '12 years', an 80
        character LO) is set as it is, as Conquest sets it, with a warning
        naming the converter, the command and the object: pydicom, which
        reads without validating (pydicomchecks), said nothing of them;
        valid values (and numbers) are set without one."""
        self.patch(elements, "invalidWarnings", FirstWarned(elements.INVALID_WARNING_PERIOD))
        context = makeContext()
        with capturedLogs() as events:
            run(commands.setCommand, '0008,0060 to "ct"', context)
            run(commands.setCommand, '0010,1010 to "12 years"', context)
            run(commands.setCommand, f'0008,1030 to "{"A" * 80}"', context)
            run(commands.setCommand, '0010,1010 to "012Y"', context)
            run(commands.setCommand, '0020,0013 to "7"', context)
        self.assertEqual((context.dataset.Modality, context.dataset.PatientAge), ("ct", "012Y"))
        further = " (further ones of ImportConverter0: set for ({}) are logged at debug level for an hour)"
        self.assertEqual([formatEvent(e) for e in events],
                         ["ImportConverter0: set: 1.2.3.1.1: (0008,0060) 'ct' is not a valid CS value, set as it is"
                          + further.format("0008,0060"),
                          "ImportConverter0: set: 1.2.3.1.1: (0010,1010) '12 years' is not a valid AS value, set as "
                          "it is" + further.format("0010,1010"),
                          f"ImportConverter0: set: 1.2.3.1.1: (0008,1030) '{'A' * 64}'... is not a valid LO value, "
                          "set as it is" + further.format("0008,1030")])

    def test_invalidTextWarnedOfOnceAnHourPerLineAndElement(self):
        """A converter line setting invalid values in every object (20
        objects, 3 values: were 60 warnings) is one warning per line and
        element an hour, the others debug lines, the next warning saying
        how many; another line has its own."""
        def setInvalid(where, count):
            for n in range(count):
                dataset = makeContext().dataset
                dataset.SOPInstanceUID = f"1.2.3.1.{n}"
                for tag, value in ((0x00080060, "ct"), (0x00101010, "12 years"), (0x00081030, "A" * 80)):
                    assign(dataset, tag, value, where=where)

        with capturedLogs() as events:
            setInvalid("ImportConverter9: set", 20)
        warned = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual([line.split(": ")[3][:11] for line in warned], ["(0008,0060)", "(0010,1010)", "(0008,1030)"])
        self.assertEqual(len(events), 60)
        now = [1000.0]
        self.patch(elements, "invalidWarnings", FirstWarned(3600, lambda: now[0]))
        with capturedLogs() as events:
            setInvalid("ImportConverter0: set", 20)
            setInvalid("ImportConverter1: set", 1)
            now[0] += 3600
            setInvalid("ImportConverter0: set", 1)
        warned = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual([line.split(":")[0] for line in warned], ["ImportConverter0"] * 3 + ["ImportConverter1"] * 3
                         + ["ImportConverter0"] * 3)
        self.assertTrue(warned[-1].endswith("for (0008,1030) are logged at debug level for an hour; 19 since the "
                                            "last warning)"), warned[-1])

    def test_noFiniteNumberIsNoDecimalValue(self):
        """nan and inf (Lua's 0/0, 1/0, as text) are no DS, FL or FD value,
        as 'abc' is not; a large finite one is."""
        context = makeContext()
        for tag, value in (("0018,0050", "nan"), ("0018,0050", "-inf"), ("0018,0050", "1\\nan"),
                           ("0028,1052", "Infinity")):
            with self.assertRaisesRegex(ValueError, "is no DS value"):
                assign(context.dataset, int(tag.replace(",", ""), 16), value, where="test")
        with self.assertRaisesRegex(ValueError, "is no FD value"):
            assign(context.dataset, 0x00189087, "nan", where="test")  # Diffusion b-value
        assign(context.dataset, 0x00180050, "1e+300", where="test")
        self.assertEqual(context.dataset.SliceThickness, 1e300)

    def test_multipleValues(self):
        context = makeContext()
        run(commands.setCommand, '0008,0008 to "DERIVED\\SECONDARY"', context)
        self.assertEqual(list(context.dataset.ImageType), ["DERIVED", "SECONDARY"])

    def test_privateTag(self):
        context = makeContext()
        run(commands.setCommand, '0009,0010 to "MY CREATOR"', context)
        run(commands.setCommand, '0009,1001 to "%m"', context)
        self.assertEqual(context.dataset[0x00091001].VR, "LO")
        self.assertEqual(context.dataset[0x00091001].value, "CT")

    def test_existingVRKept(self):
        """An element keeps its VR; one of unknown VR (UN) becomes LO when private."""
        dataset = objectDataset()
        dataset.add_new(0x00091001, "SH", "short")
        dataset.add_new(0x00091002, "UN", b"raw")
        context = makeContext(dataset)
        run(commands.setCommand, '0009,1001 to "new"', context)
        run(commands.setCommand, '0009,1002 to "text"', context)
        self.assertEqual((dataset[0x00091001].VR, dataset[0x00091001].value), ("SH", "new"))
        self.assertEqual((dataset[0x00091002].VR, dataset[0x00091002].value), ("LO", "text"))

    def test_sequenceTakesNoText(self):
        """The manual's ``set 0010,1002 to "%V0010,0010^"`` names a sequence
        (Other Patient IDs Sequence): a warning, the data set unchanged."""
        events = []
        context = makeContext()
        self.patch(commands.setCommand, "log", Logger(observer=events.append))
        run(commands.setCommand, '0010,1002 to "%V0010,0010^"', context)
        run(commands.setCommand, '0040,0275.0\\0040,0270 to "x"', context)
        self.assertNotIn(0x00101002, context.dataset)
        self.assertNotIn(0x00400275, context.dataset)
        self.assertFalse(context.changed)
        self.assertEqual(len(events), 2)
        self.assertIn("sequence", formatEvent(events[0]))
        self.assertIn("ImportConverter0", formatEvent(events[0]))

    def test_empty(self):
        context = makeContext()
        run(commands.setCommand, '0010,0010 to ""', context)
        self.assertTrue(context.changed)
        decoded = decodeDataset(encodeDataset(context.dataset, ExplicitVRLittleEndian),
                                ExplicitVRLittleEndian)
        self.assertIn(0x00100010, decoded)
        self.assertEqual(decoded.PatientName, "")

    def test_if(self):
        context = makeContext()
        run(commands.setCommand, '0010,0010 if "%V0010,1010"', context)
        self.assertEqual(str(context.dataset.PatientName), "Doe^John")
        self.assertFalse(context.changed)
        run(commands.setCommand, '0010,0010 IF "%m"', context)
        self.assertEqual(str(context.dataset.PatientName), "CT")
        self.assertTrue(context.changed)

    def test_unquoted(self):
        context = makeContext()
        run(commands.setCommand, '0008,1030 to head and neck %m', context)
        self.assertEqual(context.dataset.StudyDescription, "head and neck CT")

    def test_toNilDeletes(self):
        """``set gggg,eeee to nil`` (unquoted, any case) deletes the element,
        as Conquest does, where pacs stored the text 'nil'; quoted, "nil"
        is text; a variable or sequence item is refused when parsed."""
        context = makeContext()
        for arguments in ("0010,0010 to nil", "PatientID TO NIL", "0010,1000 to nil"):
            self.assertEqual(run(commands.setCommand, arguments, context), Outcome.CONTINUE)
        self.assertNotIn("PatientName", context.dataset)
        self.assertNotIn("PatientID", context.dataset)
        self.assertNotIn(0x00101000, context.dataset)
        self.assertTrue(context.changed)
        run(commands.setCommand, '0008,0081 to "nil"', context)
        run(commands.setCommand, '0008,1030 if nil', context)
        self.assertEqual((context.dataset.InstitutionAddress, context.dataset.StudyDescription), ("nil", "nil"))
        untouched = makeContext()
        run(commands.setCommand, "0010,1000 to nil", untouched)
        self.assertFalse(untouched.changed)

    def test_nilOfAVariableOrItemDoesNothing(self):
        """``set x to nil`` and ``set <sequence item> to nil`` do nothing, as
        in Conquest, with a warning when parsed: the line still starts."""
        context = makeContext()
        context.variables["x"] = "kept"
        before = context.dataset.copy()
        for arguments in ("x to nil", "0040,0275.0\\0040,0007 to nil"):
            with capturedLogs() as events:
                self.assertEqual(run(commands.setCommand, arguments, context), Outcome.CONTINUE)
            self.assertIn(f"ImportConverter0, column 1: 'set {arguments}' does nothing, as in Conquest",
                          "".join(formatEvent(event) for event in events))
        self.assertEqual((context.variables["x"], context.dataset, context.changed), ("kept", before, False))

    def test_nonAsciiText(self):
        """Text the data set's character set cannot hold makes it UTF-8."""
        context = makeContext()
        run(commands.setCommand, '0010,0010 to "Müller^Jürgen"', context)
        self.assertEqual(context.dataset.SpecificCharacterSet, "ISO_IR 192")
        decoded = decodeDataset(encodeDataset(context.dataset, ExplicitVRLittleEndian),
                                ExplicitVRLittleEndian)
        self.assertEqual(str(decoded.PatientName), "Müller^Jürgen")

    def test_nonAsciiKeepsOtherValues(self):
        """Values written in the old character set survive the switch."""
        dataset = objectDataset()
        dataset.SpecificCharacterSet = "ISO_IR 100"
        dataset.PatientName = "Gérard^Ève"
        dataset = decodeDataset(encodeDataset(dataset, ExplicitVRLittleEndian), ExplicitVRLittleEndian)
        context = makeContext(dataset)
        run(commands.setCommand, '0008,1030 to "Ελληνικά"', context)
        decoded = decodeDataset(encodeDataset(context.dataset, ExplicitVRLittleEndian),
                                ExplicitVRLittleEndian)
        self.assertEqual((str(decoded.PatientName), decoded.StudyDescription), ("Gérard^Ève", "Ελληνικά"))

    def test_variables(self):
        context = makeContext()
        run(commands.setCommand, 'x to "%V0010,0020[0,3]"', context)
        run(commands.setCommand, 'Y if "%x-%m"', context)
        run(commands.setCommand, 'z if "%V0010,1010"', context)
        self.assertEqual(context.variables, {"x": "0123", "y": "0123-CT", "z": ""})
        self.assertFalse(context.changed)

    def test_itemN(self):
        """An element in item N of a sequence; the sequence and items are created."""
        context = makeContext()
        run(commands.setCommand, '0040,0275.1\\0040,0007 to "second %m"', context)
        items = context.dataset.RequestAttributesSequence
        self.assertEqual(len(items), 2)
        self.assertNotIn("ScheduledProcedureStepDescription", items[0])
        self.assertEqual(items[1].ScheduledProcedureStepDescription, "second CT")
        run(commands.setCommand, '0040,0275.0/0040,0009 to "SPS1"', context)
        self.assertEqual(items[0].ScheduledProcedureStepID, "SPS1")
        self.assertEqual(len(context.dataset.RequestAttributesSequence), 2)
        self.assertTrue(context.changed)

    def test_itemAppend(self):
        context = makeContext()
        run(commands.setCommand, '0008,1140.*\\0008,1155 to "1.2.3.4"', context)
        run(commands.setCommand, '0008,1140.*\\0008,1155 to "1.2.3.5"', context)
        run(commands.setCommand, '0008,1140.1\\0008,1150 to "1.2.840.10008.5.1.4.1.1.2"', context)
        items = context.dataset.ReferencedImageSequence
        self.assertEqual([i.ReferencedSOPInstanceUID for i in items], ["1.2.3.4", "1.2.3.5"])
        self.assertEqual(items[1].ReferencedSOPClassUID, "1.2.840.10008.5.1.4.1.1.2")
        decoded = decodeDataset(encodeDataset(context.dataset, ImplicitVRLittleEndian),
                                ImplicitVRLittleEndian)
        self.assertEqual(decoded.ReferencedImageSequence[1].ReferencedSOPInstanceUID, "1.2.3.5")

    def test_itemIf(self):
        context = makeContext()
        run(commands.setCommand, '0008,1140.*\\0008,1155 if "%V0010,1010"', context)
        self.assertNotIn("ReferencedImageSequence", context.dataset)
        self.assertFalse(context.changed)


class SetIfEmptyTests(unittest.TestCase):

    def test_element(self):
        context = makeContext()
        run(commands.setIfEmptyCommand, '0010,0010 to "OTHER"', context)
        self.assertEqual(str(context.dataset.PatientName), "Doe^John")
        self.assertFalse(context.changed)
        run(commands.setIfEmptyCommand, '0008,1030 to "described %m"', context)
        run(commands.setIfEmptyCommand, '0008,103e to "series"', context)
        self.assertEqual(context.dataset.StudyDescription, "described CT")
        self.assertEqual(context.dataset.SeriesDescription, "series")
        self.assertTrue(context.changed)

    def test_elementIf(self):
        context = makeContext(variables={"x": "", "y": "", "z": ""})
        run(commands.setIfEmptyCommand, '0008,1030 if "%x"', context)
        self.assertEqual(context.dataset.StudyDescription, "")
        self.assertFalse(context.changed)
        context.variables["x"] = "from x"
        run(commands.setIfEmptyCommand, '0008,1030 if "%x"', context)
        self.assertEqual(context.dataset.StudyDescription, "from x")

    def test_variable(self):
        context = makeContext(variables={"x": "", "y": "", "z": "kept"})
        run(commands.setIfEmptyCommand, 'z to "hallo"', context)
        run(commands.setIfEmptyCommand, 'y to "hallo"', context)
        run(commands.setIfEmptyCommand, 'x if "%V0010,1010"', context)
        self.assertEqual(context.variables, {"x": "", "y": "hallo", "z": "kept"})
        run(commands.setIfEmptyCommand, 'x if "%i"', context)
        self.assertEqual(context.variables["x"], "01234567")
        self.assertFalse(context.changed)


class DeleteTests(unittest.TestCase):

    def test_delete(self):
        context = makeContext()
        run(commands.deleteElementCommand, "0010,0010", context)
        self.assertNotIn("PatientName", context.dataset)
        self.assertTrue(context.changed)

    def test_deleteMissing(self):
        context = makeContext()
        run(commands.deleteElementCommand, "0010,1010", context)
        self.assertFalse(context.changed)
        self.assertEqual(len(context.dataset), len(objectDataset()))


def referencingDataset(sop="1.2.3.1.1", sopClass=CT_IMAGE_STORAGE):
    dataset = objectDataset()
    dataset.SOPInstanceUID = sop
    dataset.SOPClassUID = sopClass
    dataset.FrameOfReferenceUID = "1.2.3.7"
    dataset.FailedSOPInstanceUIDList = ["1.2.3.8", "1.2.840.10008.1.2"]
    ref = Dataset()
    ref.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    ref.ReferencedSOPInstanceUID = "1.2.3.1.9"
    series = Dataset()
    series.SeriesInstanceUID = "1.2.3.1"
    series.ReferencedInstanceSequence = [ref]
    dataset.ReferencedSeriesSequence = [series]
    dataset.add_new(0x00091010, "UI", "1.2.3.99")
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = sopClass
    dataset.file_meta.MediaStorageSOPInstanceUID = sop
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dataset


class NewUIDsTests(unittest.TestCase):

    def setUp(self):
        self.engine = sqliteEngine(self)
        self.uidMap = UIDMap(self.engine)

    def newuids(self, dataset, arguments=""):
        context = makeContext(dataset, uidMap=self.uidMap)
        run(commands.newUIDsCommand, arguments, context)
        return context

    def test_replacesEveryUID(self):
        context = self.newuids(referencingDataset())
        dataset = context.dataset
        self.assertTrue(context.changed)
        for old, new in [("1.2.3", dataset.StudyInstanceUID), ("1.2.3.1", dataset.SeriesInstanceUID),
                         ("1.2.3.1.1", dataset.SOPInstanceUID), ("1.2.3.7", dataset.FrameOfReferenceUID),
                         ("1.2.3.8", dataset.FailedSOPInstanceUIDList[0]),
                         ("1.2.3.99", dataset[0x00091010].value),
                         ("1.2.3.1", dataset.ReferencedSeriesSequence[0].SeriesInstanceUID),
                         ("1.2.3.1.9", dataset.ReferencedSeriesSequence[0]
                          .ReferencedInstanceSequence[0].ReferencedSOPInstanceUID)]:
            self.assertEqual(self.uidMap.oldFor(new), old)
        self.assertEqual(dataset.FailedSOPInstanceUIDList[1], "1.2.840.10008.1.2")
        self.assertEqual(dataset.SOPClassUID, CT_IMAGE_STORAGE)
        self.assertEqual(dataset.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
                         .ReferencedSOPClassUID, CT_IMAGE_STORAGE)
        self.assertEqual(dataset.file_meta.MediaStorageSOPInstanceUID, dataset.SOPInstanceUID)
        self.assertEqual(dataset.PatientID, "01234567")

    def test_anOriginalLongerThanTheTableHolds(self):
        """A UID longer than UIDMODS' OldUID column (76 characters in a
        reference of a sequence item) is replaced like any other, in memory
        and on a database, the same each time and after a restart."""
        long = "1.2.3." + "1" * 70
        for uidMap in (self.uidMap, UIDMap()):
            made = []
            for _ in range(2):
                dataset = referencingDataset()
                dataset.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID = long
                context = makeContext(dataset, uidMap=uidMap)
                self.assertEqual(run(commands.newUIDsCommand, "", context), Outcome.CONTINUE)
                made.append(context.dataset.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
                            .ReferencedSOPInstanceUID)
                self.assertEqual(uidMap.oldFor(context.dataset.SOPInstanceUID), "1.2.3.1.1")
            self.assertEqual(made[0], made[1])
            self.assertTrue(UID(made[0]).is_valid, made)
            self.assertIsNone(uidMap.oldFor(made[0]))
            if uidMap is self.uidMap:
                self.assertEqual(UIDMap(self.engine).uidFor(long), made[0])

    def test_anOriginalLongerThanTheTableHoldsRecordedWholeBefore(self):
        """A long UID an earlier version recorded whole (SQLite keeps text
        longer than its column) keeps the UID recorded for it: objects
        anonymised before and after an upgrade still reference one another."""
        long = "1.2.3." + "1" * 70
        self.uidMap._uids.insert(long, "1.2.3.999.4242", "")  # as 2149d21's newFor recorded it
        self.assertEqual(UIDMap(self.engine).uidFor(long), "1.2.3.999.4242")

    def test_sameAcrossObjects(self):
        first = self.newuids(referencingDataset("1.2.3.1.1")).dataset
        second = self.newuids(referencingDataset("1.2.3.1.2")).dataset
        self.assertEqual(first.StudyInstanceUID, second.StudyInstanceUID)
        self.assertEqual(first.SeriesInstanceUID, second.SeriesInstanceUID)
        self.assertNotEqual(first.SOPInstanceUID, second.SOPInstanceUID)
        self.assertEqual(second.ReferencedSeriesSequence[0].SeriesInstanceUID, second.SeriesInstanceUID)

    def test_recordedWithKeyword(self):
        dataset = self.newuids(referencingDataset()).dataset
        with self.engine.connect() as connection:
            row = connection.execute(select(self.uidMap.table).where(
                self.uidMap.table.c.NewUID == dataset.StudyInstanceUID)).first()
        self.assertEqual((row.OldUID, row.MODType), ("1.2.3", "StudyInstanceUID"))

    def test_privateClassKept(self):
        dataset = self.newuids(referencingDataset(sopClass="1.3.12.2.1107.5.9.1")).dataset
        self.assertEqual(dataset.SOPClassUID, "1.3.12.2.1107.5.9.1")
        self.assertEqual(dataset.file_meta.MediaStorageSOPClassUID, "1.3.12.2.1107.5.9.1")

    def test_except(self):
        dataset = self.newuids(referencingDataset(),
                               "except 0020,000d 0020,0052 1.2.3.1.9 1.2.3.1").dataset
        self.assertEqual(dataset.StudyInstanceUID, "1.2.3")
        self.assertEqual(dataset.FrameOfReferenceUID, "1.2.3.7")
        self.assertEqual(dataset.SeriesInstanceUID, "1.2.3.1")
        self.assertEqual(dataset.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
                         .ReferencedSOPInstanceUID, "1.2.3.1.9")
        self.assertEqual(self.uidMap.oldFor(dataset.SOPInstanceUID), "1.2.3.1.1")

    def test_fallbackMap(self):
        context = makeContext(referencingDataset())
        run(commands.newUIDsCommand, "", context)
        again = makeContext(referencingDataset("1.2.3.1.5"))
        run(commands.newUIDsCommand, "", again)
        self.assertNotEqual(context.dataset.StudyInstanceUID, "1.2.3")
        self.assertEqual(context.dataset.StudyInstanceUID, again.dataset.StudyInstanceUID)

    def test_nothingToReplace(self):
        dataset = Dataset()
        dataset.SOPClassUID = CT_IMAGE_STORAGE
        dataset.PatientID = "X"
        self.assertFalse(self.newuids(dataset).changed)


class KodakTests(unittest.TestCase):

    def patientID(self, command, patientID):
        dataset = objectDataset()
        dataset.PatientID = patientID
        context = makeContext(dataset)
        run(command, "", context)
        return context.dataset.PatientID, context.changed

    def test_fixkodak(self):
        for before, after in [("01234567", ("1234567", True)), ("00123456", ("0123456", True)),
                              ("1234567", ("1234567", False)), ("12345678", ("12345678", False)),
                              ("012345678", ("012345678", False)), ("0123456A", ("0123456A", False)),
                              ("", ("", False))]:
            self.assertEqual(self.patientID(commands.fixKodakCommand, before), after)

    def test_unfixkodak(self):
        for before, after in [("1234567", ("01234567", True)), ("0123456", ("00123456", True)),
                              ("01234567", ("01234567", False)), ("123456", ("123456", False)),
                              ("123456A", ("123456A", False)), ("", ("", False))]:
            self.assertEqual(self.patientID(commands.unfixKodakCommand, before), after)

    def test_roundTrip(self):
        fixed, _ = self.patientID(commands.fixKodakCommand, "01234567")
        self.assertEqual(self.patientID(commands.unfixKodakCommand, fixed), ("01234567", True))


class SaveToTests(unittest.TestCase):

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())

    def test_save(self):
        context = makeContext()
        run(commands.saveToCommand, os.path.join(self.folder, "%i", "%o.dcm"), context)
        saved = dcmread(os.path.join(self.folder, "01234567", "1.2.3.1.1.dcm"))
        self.assertEqual(saved.file_meta.TransferSyntaxUID, ExplicitVRLittleEndian)
        self.assertEqual(saved.file_meta.MediaStorageSOPInstanceUID, "1.2.3.1.1")
        self.assertEqual(saved.file_meta.MediaStorageSOPClassUID, CT_IMAGE_STORAGE)
        self.assertEqual((saved.PatientID, str(saved.PatientName), saved.Rows), ("01234567", "Doe^John", 512))
        self.assertFalse(context.changed)

    def test_keepsTransferSyntax(self):
        dataset = referencingDataset()
        dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        run(commands.saveToCommand, os.path.join(self.folder, "object.dcm"), makeContext(dataset))
        saved = dcmread(os.path.join(self.folder, "object.dcm"))
        self.assertEqual(saved.file_meta.TransferSyntaxUID, ImplicitVRLittleEndian)
        self.assertEqual(saved.ReferencedSeriesSequence[0].SeriesInstanceUID, "1.2.3.1")

    def test_relativeToWorkdir(self):
        context = makeContext(configuration=SimpleNamespace(workdir=self.folder))
        run(commands.saveToCommand, "saved/%m.dcm", context)
        self.assertEqual(dcmread(os.path.join(self.folder, "saved", "CT.dcm")).Modality, "CT")


PROCESSOR = """\
import sys
from pydicom import dcmread
path = sys.argv[-1]
dataset = dcmread(path)
dataset.PatientName = sys.argv[1]
dataset.save_as(path)
"""


class ProcessWithTests(unittest.TestCase):

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.script = os.path.join(self.folder, "processor.py")
        with open(self.script, "w") as f:
            f.write(PROCESSOR)

    def test_processed(self):
        context = makeContext()
        outcome = run(commands.processWithCommand, f"{sys.executable} {self.script} NEW^%m", context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(str(context.dataset.PatientName), "NEW^CT")
        self.assertEqual(context.dataset.SOPInstanceUID, "1.2.3.1.1")
        self.assertTrue(context.changed)
        self.assertEqual([name for name in os.listdir(self.folder)], ["processor.py"])

    def test_runsInWorkdir(self):
        context = makeContext(configuration=SimpleNamespace(workdir=self.folder))
        run(commands.processWithCommand, f"{sys.executable} processor.py HERE", context)
        self.assertEqual(str(context.dataset.PatientName), "HERE")

    def test_valuesAreDataForTheShell(self):
        """A Patient Name that is shell syntax reaches the program as one
        argument, and runs nothing."""
        context = makeContext(configuration=SimpleNamespace(workdir=self.folder))
        context.dataset.PatientName = "x;touch pwned $(touch pwned2) 'a  b'"
        run(commands.processWithCommand, f"{sys.executable} processor.py %V0010,0010", context)
        self.assertEqual(str(context.dataset.PatientName), "x;touch pwned $(touch pwned2) 'a  b'")
        self.assertEqual(os.listdir(self.folder), ["processor.py"])

    def test_failingCommand(self):
        context = makeContext()
        original = context.dataset
        run(commands.processWithCommand, f"{sys.executable} -c 'import sys; sys.exit(3)'", context)
        self.assertIs(context.dataset, original)
        self.assertFalse(context.changed)

    def test_luaFile(self):
        """``process with x.lua text`` runs the Lua file on the object (found
        as lua: finds it), command_line the expanded text, not a shell."""
        with open(os.path.join(self.folder, "process.lua"), "w") as f:
            f.write("Data.PatientName = command_line")
        configuration = SimpleNamespace(ini=DicomIni.fromString(""), configDir=self.folder, workdir=self.folder)
        context = makeContext(configuration=configuration)
        registry = CommandRegistry([commands.processWithCommand, pacs_commands_lua.luaColon])
        outcome = parseScript("process with process.lua NEW^%m", "ImportConverter0", registry, "import").run(context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(str(context.dataset.PatientName), "NEW^CT")
        self.assertTrue(context.changed)

    def test_unreadableResult(self):
        context = makeContext()
        original = context.dataset
        run(commands.processWithCommand, "truncate -s 0", context)
        self.assertIs(context.dataset, original)
        self.assertFalse(context.changed)
