"""Tests for pacscore.converters.lua: the ``lua "..."`` and ``lua:file``
converter commands, their sandbox and API, and etc/anonymize_script.lua."""

import codecs
import gc
import os
import shutil
import threading
import time
import weakref
from io import BytesIO
from types import SimpleNamespace

import lupa.lua54 as lupa
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.sequence import Sequence
from pydicom.uid import UID, ImplicitVRLittleEndian
from twisted.internet import defer, reactor, task, threads
from twisted.internet.defer import inlineCallbacks
from twisted.logger import LogLevel, capturedLogs
from twisted.python import threadable
from twisted.trial import unittest
from zope.interface import implementer

from pacscore.config.acrnema import AcrNemaMap
from pacscore.config.ini import DicomIni
from pacscore.control.context import CommandError
from pacscore.converters.context import (
    ConverterContext, ConverterServices, ConverterSyntaxError, Outcome)
from pacscore.converters import lua
from pacscore.converters.dicomrequests import DicomRequestError
from pacscore.converters.elements import textOf
from pacscore.converters.lua import DEFAULT_MAX_INSTRUCTIONS, LuaRuntime
from pacscore.converters.registry import CommandRegistry
from pacscore.converters.saving import writePart10
from pacscore.converters.servercommands import ServerCommands
from pacscore.converters.script import parseScript
from pacscore.converters.uidmap import UIDMap
from pacscore.db.index import Index
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.interfaces import IConverterCommand
from pacscore.workers import WorkerPool
from pacscore.export import commands as exportcommands
from plugins import pacs_commands_dataset, pacs_commands_forward, pacs_commands_lua
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.converters.lines import registry
from tests.pacscore.db.test_index import makeRecord
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout, sqliteEngine

ETC = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, "etc")
KEY = "ImportConverter3"
SKIPPED = "; the rest of the line is skipped"  # ends the log line of a Lua command that failed with more after it


@implementer(IConverterCommand)
class RecordingForward:
    """A stand-in 'forward': records what it was given."""

    name = "forward"
    scope = "IE"
    condition = False

    def __init__(self):
        self.destinations = []

    def parse(self, arguments, where):
        return arguments

    def run(self, arguments, context):
        self.destinations.append(arguments)
        return Outcome.CONTINUE


def luaRegistry(*extra):
    """The flow commands, ``mark``, the Lua commands and newuids."""
    return registry(pacs_commands_lua.lua, pacs_commands_lua.luaColon,
                    pacs_commands_dataset.newUIDsCommand, *extra)


def patient():
    dataset = Dataset()
    dataset.PatientName = "DOE^JOHN"
    dataset.PatientID = "123"
    dataset.Rows = 512
    dataset.ImageType = ["ORIGINAL", "PRIMARY"]
    dataset.ReferencedSeriesSequence = Sequence([Dataset(), Dataset()])
    for number, item in enumerate(dataset.ReferencedSeriesSequence):
        item.SeriesInstanceUID = f"1.2.3.{number}"
    return dataset


def makeContext(dataset=None, kind="import", ini="", configDir=None, index=None, uidMap=None,
                filename=None):
    configuration = SimpleNamespace(ini=DicomIni.fromString(ini), configDir=configDir, workdir=configDir or os.getcwd(),
                                    acrNemaMap=AcrNemaMap.fromString(""))
    services = ConverterServices(index=index, configuration=configuration, uidMap=uidMap)
    return ConverterContext(kind, patient() if dataset is None else dataset, callingAE="SENDER",
                            calledAE="ARCHIVE", filename=filename, services=services,
                            converterName=KEY)


def runLine(line, context=None, commands=None):
    """``(outcome, context, log messages)`` of running ``line`` once."""
    context = context or makeContext()
    script = parseScript(line, KEY, commands or luaRegistry(), context.kind if context.kind == "export"
                         else "import")
    with capturedLogs() as events:
        outcome = script.run(context)
    messages = [e["log_format"].format(**e) for e in events if "converter" in e]
    return outcome, context, messages


def runLua(code, context=None, commands=None):
    return runLine(f'lua "{code}"', context, commands)


class PluginTests(unittest.TestCase):

    def test_foundAsPlugins(self):
        commands = CommandRegistry().commands
        self.assertIs(commands["lua"], pacs_commands_lua.lua)
        self.assertIs(commands["lua:"], pacs_commands_lua.luaColon)
        self.assertEqual((commands["lua"].scope, commands["lua:"].scope), ("IE", "IE"))


class DataTests(unittest.TestCase):
    """``Data``: elements by keyword and by tag, sequences, deleting."""

    def test_readByKeywordAndTag(self):
        outcome, context, messages = runLua(
            "print(Data.PatientName, Data['0010,0020'], Data['00100020'], Data['(0010,0020)'], "
            "Data.Rows, type(Data.Rows), Data.ImageType, Data.PatientBirthDate, Data.PatientAddress or 'absent')")
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: DOE^JOHN\t123\t123\t123\t512\tstring\tORIGINAL\\PRIMARY\tnil\tabsent"])

    def test_writeByKeywordAndTag(self):
        outcome, context, _ = runLua(
            "Data.PatientName = 'ROE^JANE'; Data['0010,0020'] = 'X9'; Data['00081030'] = 'CT head'; "
            "Data.Rows = 256; Data.ImageType = 'DERIVED\\\\SECONDARY'")
        dataset = context.dataset
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertTrue(context.changed)
        self.assertEqual((dataset.PatientName, dataset.PatientID, dataset.StudyDescription),
                         ("ROE^JANE", "X9", "CT head"))
        self.assertEqual(dataset.Rows, 256)
        self.assertEqual(dataset["Rows"].VR, "US")
        self.assertEqual(dataset["StudyDescription"].VR, "LO")
        self.assertEqual(list(dataset.ImageType), ["DERIVED", "SECONDARY"])

    def test_numbersAreTextAsInConquest(self):
        """US, SS, UL, SL, FL, FD values are text as Conquest hands every
        element to Lua (its luaSeqindex pushes a string): scripts written
        for it compare with text, look tables up by text and use string
        methods; tonumber() gives the number, and a whole float Lua computes
        sets an integer VR."""
        dataset = patient()
        dataset.Rows = 128
        dataset.PixelRepresentation = 1
        dataset.SmallestImagePixelValue = -5  # SS once PixelRepresentation says signed
        dataset.add_new(0x00181310, "US", [0, 256, 256, 0])  # AcquisitionMatrix
        dataset.add_new(0x00189087, "FD", 1000.5)  # DiffusionBValue
        outcome, context, messages = runLua(
            "local sizes = {['128'] = 'small'}; "
            "print(Data.Rows == '128', type(Data.Rows), sizes[Data.Rows], #Data.Rows, Data.Rows:sub(1, 2), "
            "tonumber(Data.Rows) > 100, Data.SmallestImagePixelValue, Data.DiffusionBValue, Data.AcquisitionMatrix); "
            "Data.Columns = Data.Rows / 2", makeContext(dataset))
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: true\tstring\tsmall\t3\t12\ttrue\t-5\t1000.5\t0\\256\\256\\0"])
        self.assertEqual((context.dataset.Columns, context.dataset["Columns"].VR), (64, "US"))

    def test_numbersAreWrittenAsConquestWritesThem(self):
        """A number Lua computes is set as Conquest's Lua writes it (%.14g):
        a DS of 1/3 is 16 characters, a valid DS, not Python's 18."""
        outcome, context, messages = runLua(
            "Data.SliceThickness = 1/3; Data.PatientWeight = 0.1 + 0.2; Data.SliceLocation = 4/2; "
            "Data.PixelSpacing = 0.5; local x = newdicomobject(); x.SliceThickness = 2^0.5; "
            "print(Data.SliceThickness, x.SliceThickness)")
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: 0.33333333333333\t1.4142135623731"]))
        dataset = context.dataset
        self.assertEqual([str(dataset[keyword].value) for keyword in
                          ("SliceThickness", "PatientWeight", "SliceLocation", "PixelSpacing")],
                         ["0.33333333333333", "0.3", "2", "0.5"])

    def test_decimalStringsFitAndFloatsKeepTheirPrecision(self):
        """A DS takes fewer digits where %.14g would pass its 16 characters;
        an FD or FL keeps every digit of the double."""
        outcome, context, messages = runLua(
            "Data.RescaleSlope = 1/4095; Data.SliceThickness = -1/3; Data.WindowWidth = 1/3*1e-5; "
            "Data.DiffusionBValue = 2^0.5")
        self.assertEqual(outcome, Outcome.CONTINUE)
        dataset = context.dataset
        self.assertEqual([str(dataset[keyword].value) for keyword in ("RescaleSlope", "SliceThickness", "WindowWidth")],
                         ["0.0002442002442", "-0.3333333333333", "3.3333333333e-06"])
        self.assertEqual(dataset.DiffusionBValue, 2 ** 0.5)

    def test_fileMetaElementsAreRefused(self):
        for code in ("Data['0002,0016'] = 'HACKED'", "Data:SetVR(0x0002, 0x0016, 'HACKED')"):
            outcome, context, messages = runLua(code)
            self.assertEqual(outcome, Outcome.STOP)
            self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: (0002,0016) is a file meta element "
                                        "(group 0002): the data set holds none, and the file meta is written "
                                        "from the stored object"], code)
            self.assertNotIn(0x00020016, context.dataset)

    def test_readingChangesNothing(self):
        _, context, _ = runLua("local name = Data.PatientName")
        self.assertFalse(context.changed)

    def test_sequences(self):
        outcome, context, _ = runLua(
            "local s = Data.ReferencedSeriesSequence; "
            "Data.StudyDescription = #s .. '|' .. s[0].SeriesInstanceUID .. '|' .. s[1].SeriesInstanceUID "
            ".. '|' .. tostring(s[3]); "
            "s[1].SeriesInstanceUID = '9.9'; Data.ReferencedSeriesSequence[0].SeriesDescription = 'first'")
        dataset = context.dataset
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(dataset.StudyDescription, "2|1.2.3.0|1.2.3.1|nil")
        self.assertEqual(dataset.ReferencedSeriesSequence[1].SeriesInstanceUID, "9.9")
        self.assertEqual(dataset.ReferencedSeriesSequence[0].SeriesDescription, "first")
        self.assertTrue(context.changed)

    def test_itemNAppends(self):
        """As in Conquest: Data.Seq[N] of a sequence of N items is a new
        item at its end."""
        outcome, context, messages = runLua(
            "local s = Data.ReferencedSeriesSequence; s[#s].SeriesInstanceUID = '1.2.3.2'; "
            "Data.ReferencedImageSequence = {}; Data.ReferencedImageSequence[0].ReferencedSOPInstanceUID = '1.2.9'; "
            "print(#s, tostring(s[4]), #Data.ReferencedImageSequence)")
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: 3\tnil\t1"])
        dataset = context.dataset
        self.assertEqual([item.SeriesInstanceUID for item in dataset.ReferencedSeriesSequence],
                         ["1.2.3.0", "1.2.3.1", "1.2.3.2"])
        self.assertEqual([item.ReferencedSOPInstanceUID for item in dataset.ReferencedImageSequence], ["1.2.9"])

    def test_sequenceNameIsItemZero(self):
        """As in Conquest: Data.Seq.Name reads item 0's element (nil for an
        empty sequence) and sets it, making item 0 when there is none."""
        dataset = patient()
        dataset.ReferencedImageSequence = Sequence()
        outcome, context, messages = runLua(
            "print(Data.ReferencedSeriesSequence.SeriesInstanceUID, "
            "tostring(Data.ReferencedImageSequence.ReferencedSOPInstanceUID)); "
            "Data.ReferencedSeriesSequence.SeriesDescription = 'first'; "
            "Data.ReferencedImageSequence.ReferencedSOPInstanceUID = '1.2.9'", makeContext(dataset))
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: 1.2.3.0\tnil"])
        self.assertEqual(dataset.ReferencedSeriesSequence[0].SeriesDescription, "first")
        self.assertNotIn("SeriesDescription", dataset.ReferencedSeriesSequence[1])
        self.assertEqual([item.ReferencedSOPInstanceUID for item in dataset.ReferencedImageSequence], ["1.2.9"])
        self.assertTrue(context.changed)

    def test_readingANameOfAnEmptySequenceAddsNoItem(self):
        """Data.Seq.Name of an empty sequence is nil and leaves it empty."""
        dataset = patient()
        dataset.ReferencedImageSequence = Sequence()
        outcome, context, messages = runLua(
            "print(tostring(Data.ReferencedImageSequence.ReferencedSOPInstanceUID), "
            "#Data.ReferencedImageSequence)", makeContext(dataset))
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: nil\t0"]))
        self.assertEqual(len(dataset.ReferencedImageSequence), 0)
        self.assertFalse(context.changed)

    def test_emptySequenceFromEmptyTable(self):
        """Conquest's Data.Seq = {}: an empty sequence, filled through Data.Seq.Name."""
        outcome, context, _ = runLua("Data.ReferencedImageSequence = {}; "
                                     "Data.ReferencedImageSequence.ReferencedSOPInstanceUID = '1.2.7'; "
                                     "Data.OtherPatientIDsSequence = {}")
        self.assertEqual(outcome, Outcome.CONTINUE)
        dataset = context.dataset
        self.assertEqual([item.ReferencedSOPInstanceUID for item in dataset.ReferencedImageSequence], ["1.2.7"])
        self.assertEqual(len(dataset.OtherPatientIDsSequence), 0)
        outcome, _, messages = runLua("Data.PatientName = {}")
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: PatientName is no sequence: an empty table "
                                    "makes an empty sequence"])

    def test_delete(self):
        outcome, context, _ = runLua(
            "Data:Delete('0010,0020'); Data.Rows = nil; Data.ReferencedSeriesSequence = nil; "
            "Data:Delete('PatientAddress')")
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertTrue(context.changed)
        self.assertEqual([e.keyword for e in context.dataset], ["ImageType", "PatientName"])

    def test_errorsNameTheLine(self):
        cases = [
            ("local a = 1\nData.Nonsense = 1", "lua:2: unknown DICOM attribute 'Nonsense'"),
            ("local s = Data.ReferencedSeriesSequence[1.5]",
             "lua:1: a sequence is indexed by item number (from 0) or element name, not 1.5"),
            ("local s = Data.ReferencedSeriesSequence.x", "lua:1: no method or DICOM attribute 'x'"),
            ("Data.ReferencedSeriesSequence[0] = 1",
             "lua:1: sequence items cannot be replaced, set their elements"),
            ("Data.PatientName = {1}", "lua:1: cannot set PatientName to a table: give a string, "
                                      "a number or a sequence"),
            ("Data.PixelData = 'x'", "lua:1: PixelData has VR OB: Lua sets only text and numbers"),
        ]
        for code, message in cases:
            outcome, context, messages = runLua(code)
            self.assertEqual(outcome, Outcome.STOP, code)
            self.assertEqual(messages, [f"{KEY}: Lua script failed: {message}"], code)


class LuaStringTests(unittest.TestCase):
    """A value goes to Lua as UTF-8 text in every character set, so the
    script's own (UTF-8) text compares, matches and joins with it; any
    bytes a script makes cross back (UTF-8 where they are that, the others
    as Latin-1), are set and printed."""

    def named(self, name="Öztürk^Ümit", charset="ISO_IR 100", **values):
        dataset = patient()
        dataset.SpecificCharacterSet = charset
        dataset.PatientName = name
        for keyword, value in values.items():
            setattr(dataset, keyword, value)
        return makeContext(dataset)

    def test_byteFunctionsCountUTF8Bytes(self):
        """An initials script on a name starting with Ö (which failed:
        'utf-8' codec can't decode byte 0xc3, and the object kept its name)
        cuts the first of Ö's two UTF-8 bytes, set as Latin-1's 'Ã': the name
        is anonymised; utf8.offset cuts whole characters."""
        code = ("print(#Data.PatientName, string.byte(Data.PatientName, 1), string.sub(Data.PatientName, 1, 1)); "
                "Data.PatientName = string.sub(Data.PatientName, 1, 1) .. '^ANON'; "
                "Data.PatientID = string.sub(Data.OtherPatientIDs, 1, utf8.offset(Data.OtherPatientIDs, 2) - 1)")
        for charset in ("ISO_IR 100", "ISO_IR 192"):
            outcome, context, messages = runLua(code, self.named(charset=charset, OtherPatientIDs="Öz"))
            self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: 14\t195\t\u00c3"]), charset)
            self.assertEqual((str(context.dataset.PatientName), context.dataset.PatientID), ("\u00c3^ANON", "Ö"))

    def test_aValueJoinedWithTheScriptsText(self):
        """A value joined with the script's text, in a character set of
        single bytes, GB18030 and ISO 2022 (which gave '胸部 (鍖垮悕)' and
        '胸部 (å\\x8c¿å\\x90\\x8d)')."""
        for charset in ("ISO_IR 100", "GB18030", "ISO 2022 IR 6\\ISO 2022 IR 87"):
            context = self.named(charset=charset, StudyDescription="胸部")
            outcome, context, _ = runLua("Data.StudyDescription = Data.StudyDescription .. ' (匿名)'; "
                                         "Data.PatientName = Data.PatientName .. ' Müller'", context)
            self.assertEqual(outcome, Outcome.CONTINUE, charset)
            self.assertEqual((context.dataset.StudyDescription, str(context.dataset.PatientName)),
                             ("胸部 (匿名)", "Öztürk^Ümit Müller"), charset)

    def test_multiByteValuesSetBackAsTheyAre(self):
        """Data.PatientName = Data.PatientName in GB18030 turned 谢, whose
        bytes D0 BB happen to be UTF-8, into л."""
        outcome, context, _ = runLua("Data.PatientName = Data.PatientName; "
                                     "Data.StudyDescription = string.sub(Data.StudyDescription, 1, 3) .. ' ANON'",
                                     self.named("谢", "GB18030", StudyDescription="谢娜"))
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual((str(context.dataset.PatientName), context.dataset.StudyDescription), ("谢", "谢 ANON"))

    def test_theScriptsLiteralsCompareAndMatch(self):
        """== and gsub with text beyond ASCII in the script matched nothing
        in an ISO_IR 100 object (its bytes were Latin-1, the script's UTF-8)."""
        code = ("if Data.PatientName == 'Öztürk^Ümit' and string.find(Data.PatientName, 'Ümit', 1, true) then "
                "Data.PatientID = 'MATCH' end; Data.PatientName = string.gsub(Data.PatientName, 'ü', 'ue')")
        for name, charset in (("Öztürk^Ümit", "ISO_IR 100"), ("Öztürk^Ümit", "ISO_IR 192")):
            outcome, context, _ = runLua(code, self.named(name, charset))
            self.assertEqual(outcome, Outcome.CONTINUE, charset)
            self.assertEqual((context.dataset.PatientID, str(context.dataset.PatientName)),
                             ("MATCH", "Öztuerk^Ümit"), charset)

    def test_anyBytesPrint(self):
        """print of bytes that are no UTF-8 (a 'critical' traceback of
        lupa's UnicodeDecodeError) prints them as Latin-1."""
        outcome, _, messages = runLua("print(string.char(255), string.char(0xd6) .. 'z', 'é')")
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: \u00ff\t\u00d6z\té"]))


class VRTests(unittest.TestCase):
    """Conquest's ``Data:GetVR(group, element[, asText])`` and
    ``Data:SetVR(group, element, value)`` (and getvr/setvr)."""

    def test_getVR(self):
        """A table of the value's bytes from index 0, as a string when
        asked (a text VR's text, as Data.X: PatientID's '123 ' as '123'), a
        sequence as a sequence, nil when absent."""
        dataset = patient()
        dataset.PixelData = b"\xff\x00\x01\x02"
        outcome, _, messages = runLua(
            "local rows = Data:GetVR(0x0028, 0x0010); print(#rows, rows[0], rows[1], rows[2]); "
            "print(Data:GetVR(0x0010, 0x0010, true), Data:GetVR(0x0008, 0x0008, true), "
            "getvr(Data, 0x0010, 0x0020, true), Data:GetVR(0x0010, 0x1040)); "
            "local pixels = Data:GetVR(0x7fe0, 0x0010); print(pixels[0], pixels[3], #Data:GetVR(0x7fe0, 0x0010, true)); "
            "local s = Data:GetVR(0x0008, 0x1115); print(#s, s[1].SeriesInstanceUID)", makeContext(dataset))
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: 1\t0\t2\tnil", f"{KEY}: DOE^JOHN\tORIGINAL\\PRIMARY\t123\tnil",
                                    f"{KEY}: 255\t2\t4", f"{KEY}: 2\t1.2.3.1"])

    def test_setVR(self):
        """Text (for a text VR as Data.X sets it: 'CT head ' as it is), a
        byte table (as GetVR gives), bytes that are no UTF-8; an absent
        element is made with the dictionary's VR; a sequence gets copies of
        another's items."""
        outcome, context, _ = runLua(
            "Data:SetVR(0x0010, 0x0020, 'X9'); Data:SetVR(0x0028, 0x0011, {[0] = 0, 1}); "
            "Data:SetVR(0x0028, 0x0010, Data:GetVR(0x0028, 0x0011)); "
            "Data:SetVR(0x0008, 0x1030, 'CT head '); setvr(Data, 0x0018, 0x0050, '2.5'); "
            "Data:SetVR(0x7fe0, 0x0010, string.char(255, 0, 1, 2)); "
            "Data:SetVR(0x0008, 0x1140, Data.ReferencedSeriesSequence); "
            "Data.ReferencedImageSequence[0].SeriesInstanceUID = '9.9'")
        dataset = context.dataset
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertTrue(context.changed)
        self.assertEqual((dataset.PatientID, dataset.Columns, dataset.Rows), ("X9", 256, 256))
        self.assertEqual((dataset["StudyDescription"].VR, dataset.StudyDescription), ("LO", "CT head "))
        self.assertEqual((dataset["SliceThickness"].VR, float(dataset.SliceThickness)), ("DS", 2.5))
        self.assertEqual((dataset["PixelData"].VR, dataset.PixelData), ("OB", b"\xff\x00\x01\x02"))
        self.assertEqual([item.SeriesInstanceUID for item in dataset.ReferencedImageSequence], ["9.9", "1.2.3.1"])
        self.assertEqual(dataset.ReferencedSeriesSequence[0].SeriesInstanceUID, "1.2.3.0")

    def test_multiByteSetAloneAsValue1(self):
        """An object naming ISO 2022 IR 87 alone has its text read and
        written as the code extension it is: SetVR of 'DOE^JOHN^^^' failed
        ('string index out of range'), and GetVR ended its Japanese text
        with ESC $ B, where ESC ( B returns to ASCII; text joined to a value
        stays out of its escapes."""
        dataset = patient()
        dataset.SpecificCharacterSet = "ISO 2022 IR 87"
        dataset.PatientName, dataset.StudyDescription = "DOE^JOHN^^^", "検査"
        outcome, context, messages = runLua(
            "Data:SetVR(0x0008, 0x0090, Data:GetVR(0x0010, 0x0010, true)); "
            "local b = Data:GetVR(0x0008, 0x1030); "
            "print(string.char(table.unpack(b, 0, #b)) == string.char(27) .. '$B8!::' .. string.char(27) .. '(B'); "
            "Data.StudyDescription = Data.StudyDescription .. ' (anon)'", makeContext(dataset))
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: true"]))
        self.assertEqual((str(context.dataset.ReferringPhysicianName), context.dataset.StudyDescription),
                         ("DOE^JOHN^^^", "検査 (anon)"))

    def test_textOfGetVRAndSetVRMixesWithDataX(self):
        """GetVR(g, e, true) and SetVR of a string on a text VR are text
        as Data.X is (UTF-8 in Lua): a value read one way and set the
        other was stored as its UTF-8 bytes read in the object's character
        set ('Ã\\x96ztÃ¼rk' for Öztürk, '璋㈠' for 谢娜), and GetVR's text
        was not Data.X's; a byte table (GetVR without true) stays the
        value's bytes in the object's character set, set back as they are."""
        for charset, name in (("ISO_IR 100", "Öztürk^Ümit"), ("GB18030", "谢娜"),
                              ("ISO 2022 IR 6\\ISO 2022 IR 87", "山田^太郎"), ("ISO 2022 IR 87", "山田^太郎")):
            dataset = patient()
            dataset.SpecificCharacterSet, dataset.PatientName = charset, name
            dataset = decodeDataset(encodeDataset(dataset, ImplicitVRLittleEndian), ImplicitVRLittleEndian)  # as read
            outcome, context, messages = runLua(
                "setvr(Data, 0x0010, 0x1001, getvr(Data, 0x0010, 0x0010)); "
                "print(Data:GetVR(0x0010, 0x0010, true) == Data.PatientName); "
                "Data:SetVR(0x0008, 0x1030, Data.PatientName); "
                "Data.SeriesDescription = Data:GetVR(0x0010, 0x0010, true); "
                "Data:SetVR(0x0008, 0x0090, Data:GetVR(0x0010, 0x0010, true) .. ' (ref)')", makeContext(dataset))
            self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: true"]), charset)
            stored = decodeDataset(encodeDataset(context.dataset, ImplicitVRLittleEndian), ImplicitVRLittleEndian)
            self.assertEqual([str(stored.PatientName), stored.StudyDescription, stored.SeriesDescription,
                              str(stored.OtherPatientNames), str(stored.ReferringPhysicianName)],
                             [name, name, name, name, f"{name} (ref)"], charset)

    def test_setVRRefusals(self):
        cases = [
            ("Data:SetVR(0x0010, 0x0010, true)",
             "lua:1: SetVR wants a string, a table of bytes or a sequence, not a bool"),
            ("Data:SetVR(0x0008, 0x1140, 'x')", "lua:1: (0008,1140) is a sequence: SetVR wants a sequence for it"),
            ("Data:GetVR('PatientName')", "lua:1: a group and an element number are wanted, not 'PatientName', nil"),
        ]
        for code, message in cases:
            outcome, context, messages = runLua(code)
            self.assertEqual(outcome, Outcome.STOP, code)
            self.assertEqual(messages, [f"{KEY}: Lua script failed: {message}"], code)
            self.assertFalse(context.changed)


class GlobalsTests(unittest.TestCase):

    def test_aesAndFilename(self):
        context = makeContext(kind="export", filename="/data/1/2.dcm")
        outcome, context, messages = runLua("print(CallingAE, CalledAE, Filename)", context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: SENDER\tARCHIVE\t/data/1/2.dcm"])

    def test_conquestGlobalsAndHelpers(self):
        """Association.Calling/.Called, Global (dicom.ini), genuid,
        changeuid/changeuidback (one pair per UID, kept) and crc."""
        context = makeContext(ini="MyACRNema = ARCHIVE\n", uidMap=UIDMap(prefix="1.2.826.0.1.3680043.9.7"))
        outcome, _, messages = runLua(
            "local new = changeuid('1.2.3') "
            "print(Association.Calling, Association.Called, Global.MyACRNema, tostring(Global.Nothing), "
            "genuid():sub(1, 24), new == changeuid('1.2.3'), new:sub(1, 24), changeuidback(new), "
            "tostring(changeuidback('9.9')), crc('abc'))", context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        prefix = "1.2.826.0.1.3680043.9.7."
        self.assertEqual(messages, [f"{KEY}: SENDER\tARCHIVE\tARCHIVE\tnil\t{prefix}\ttrue\t{prefix}\t"
                                    f"1.2.3\tnil\t891568578"])

    def test_nilArguments(self):
        """changeuid(nil) and changeuidback(nil) are nil, as in Conquest, and
        record nothing; a function needing an argument given nil (or none)
        fails naming it, never taking the text 'None'."""
        uidMap = UIDMap(prefix="1.2.826.0.1.3680043.9.7")
        context = makeContext(uidMap=uidMap)
        outcome, _, messages = runLua("local x = newdicomobject(); x.FrameOfReferenceUID = changeuid(x.FrameOfReferenceUID); "
                                      "print(x.FrameOfReferenceUID, changeuid(nil), changeuidback(nil), changeuidback())",
                                      context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: nil\tnil\tnil\tnil"]))
        self.assertIsNone(uidMap.lookup("None"))
        for call, reason in (("dicomquery, 'AE', nil, newdicomobject()", "dicomquery: argument 2 (level) is nil"),
                             ("forward", "forward: argument 1 (ae) is nil"), ("sql", "sql: argument 1 (statement) is nil"),
                             ("dofile", "dofile: a file name is wanted, not nil"),
                             ("dofile, nil", "dofile: a file name is wanted, not nil")):
            self.assertEqual(runLua(f"print(pcall({call}))")[2], [f"{KEY}: false\t{reason}"], call)

    def test_nilWhereConquestTakesIt(self):
        """Functions that take nil as Conquest's do: crc(nil) is the empty
        text's checksum (an anonymiser of an object without the element
        goes on, the object anonymised), crc() nil; servercommand(nil),
        get_amap(nil) and get_sqldef(nil, 0) nothing."""
        context = makeContext()
        context.services.configuration.acrNemaMap = AcrNemaMap.fromString("ARCHIVE 127.0.0.1 5678 un\n")
        context.services.configuration.layout = conquestLayout()
        outcome, context, messages = runLua(
            "Data.OtherPatientIDs = crc(Data.OtherPatientIDs); Data.PatientName = 'ANON'; "
            "Data.PatientID = crc(Data.PatientID); "
            "print(crc(nil), crc(), select('#', servercommand(nil)), select('#', get_amap(nil)), "
            "select('#', get_amap()), select('#', get_sqldef(nil, 0)), select('#', get_sqldef(0)))", context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: 0\tnil\t0\t0\t0\t0\t0"]))
        self.assertEqual((str(context.dataset.PatientName), context.dataset.PatientID, context.dataset.OtherPatientIDs),
                         ("ANON", "2286445522", "0"))

    def test_changeuidTo(self):
        """changeuid(uid, to), Conquest's ChangeUIDTo: records uid -> to and
        gives to (changeuidback(to) is uid); a uid given a UID before keeps
        it. Arguments past those a function takes are ignored, and wrong
        ones get messages naming no Python internals."""
        context = makeContext(uidMap=UIDMap(prefix="1.2.826.0.1.3680043.9.7"))
        outcome, _, messages = runLua(
            "print(changeuid('1.2.3.99', '1.2.3.100'), changeuidback('1.2.3.100'), changeuid('1.2.3.99'), "
            "changeuid('1.2.3.99', '1.2.3.101'), crc('abc', 'extra'), type(genuid(1)), type(newdicomobject(1))); "
            "print(pcall(function() return Data[-1] end)); print(pcall(function() return Data[{}] end)); "
            "print(pcall(getvr, Data)); print(pcall(function() return Data.ReferencedSeriesSequence[{}] end))", context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [
            f"{KEY}: 1.2.3.100\t1.2.3.99\t1.2.3.100\t1.2.3.100\t891568578\tstring\ttable",
            f"{KEY}: false\tlua:1: unknown DICOM attribute -1: a keyword or gggg,eeee is wanted",
            f"{KEY}: false\tlua:1: unknown DICOM attribute a table: a keyword or gggg,eeee is wanted",
            f"{KEY}: false\ta group and an element number are wanted, not nil, nil",
            f"{KEY}: false\tlua:1: a sequence is indexed by item number (from 0) or element name, not a table"])

    def test_changeuidAsConquestsAnonymizerCallsIt(self):
        """changeuid(from, to, stage, type), as Conquest's anonymize_script.lua
        calls it: any text for to (a pseudonym), one to for several originals
        (two spellings of one patient's name), the stage giving each target
        its own values, changeuidback(new, stage, type) the first original
        recorded; an empty to is an error, nothing recorded."""
        context = makeContext(uidMap=UIDMap(prefix="1.2.826.0.1.3680043.9.7"))
        outcome, _, messages = runLua(
            "print(changeuid('DOE^JOHN', 'PAT2345723590', '', 'PatientName'), "
            "changeuid('DOE^J', 'PAT2345723590', '', 'PatientName'), changeuid('PID123', '2345723590.1234'), "
            "changeuidback('PAT2345723590'), changeuidback('2345723590.1234')); "
            "local a, b = changeuid('1.2.777', nil, 'stageA'), changeuid('1.2.777', nil, 'stageB'); "
            "print(a ~= b, a == changeuid('1.2.777', nil, 'stageA'), changeuidback(a, 'stageA'), "
            "changeuidback(a, 'stageB'), changeuid('PID123', 'PATX', 'stageA', 'PatientID'), "
            "changeuidback('PATX', 'stageA', 'PatientID'), changeuidback('PATX', 'stageA', 'PatientName')); "
            "print(pcall(changeuid, '1.2.3.5', '')); print(changeuidback('1.2.3.5')); "
            "print(pcall(changeuid, string.rep('9', 58)..'.bd.'..'ORG', 'PAT9'))", context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [
            f"{KEY}: PAT2345723590\tPAT2345723590\t2345723590.1234\tDOE^JOHN\tPID123",
            f"{KEY}: true\ttrue\t1.2.777\tnil\tPATX\tPID123\tnil",
            f"{KEY}: false\tchangeuid: '' cannot be recorded: 1 to 64 characters are wanted",
            f"{KEY}: nil",
            f"{KEY}: false\tchangeuid: '{'9' * 58}.bd.ORG' (stage '') cannot be recorded: at most 64 characters "
            "of original and of stage are kept"]))

    def test_newuidsAfterChangeuidGivesEachInstanceAUIDOfItsOwn(self):
        """A text changeuid recorded for a UID is no UID for newuids: two
        instances each given 'PAT.SAME', then newuids, come out with two
        valid UIDs of their own (not 'PAT.SAME' twice, the second stored in
        the place of the first), the same for the same original again."""
        uidMap = UIDMap(prefix="1.2.826.0.1.3680043.9.7")
        made = []
        for sop in ("1.2.3.100", "1.2.3.101", "1.2.3.100"):
            dataset = Dataset()
            dataset.SOPInstanceUID = sop
            outcome, _, messages = runLua(f"changeuid('{sop}', 'PAT.SAME'); script('newuids'); "
                                          "print(Data.SOPInstanceUID, changeuid(Data.SOPInstanceUID) ~= nil)",
                                          makeContext(dataset, uidMap=uidMap))
            self.assertEqual(outcome, Outcome.CONTINUE, messages)
            made.append(dataset.SOPInstanceUID)
        self.assertTrue(all(UID(uid).is_valid and uid.startswith("1.2.826.0.1.3680043.9.7.") for uid in made), made)
        self.assertNotEqual(made[0], made[1])
        self.assertEqual(made[0], made[2])

    def test_conquestConfigurationItems(self):
        """Global holds Conquest's BaseDir (the working folder, with its
        slash), ConfigFile and RootConfig, every name found whatever its
        case: the [lua] association line of Conquest's Linux dicom.ini runs."""
        folder = os.path.abspath(self.mktemp())
        context = makeContext(ini="MyACRNema = ARCHIVE\n", configDir=folder)
        context.services.configuration.iniPath = os.path.join(folder, "dicom.ini")
        outcome, _, messages = runLua(
            "print(Global.basedir, Global.BaseDir, Global.ConfigFile, Global.rootconfig, Global.myacrnema)",
            context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: {folder}/\t{folder}/\t{folder}/dicom.ini\tsscscp\tARCHIVE"])

    def test_conquestPackagePath(self):
        """Conquest's ``package.path=package.path..';'..Global.basedir..'lua/?.lua'``
        runs silently, sandboxed (a package table of the script's own, no
        loader) and unsafe (Lua's own, as it was again once the run ends:
        the state serves every script of its thread)."""
        line = "package.path=package.path..';'..Global.basedir..'lua/?.lua'"
        probe = "print(type(require), type(package.loadlib), type(package.searchers), package.path:sub(-9))"
        outcome, _, messages = runLua(f"{line} {probe}")
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: nil\tnil\tnil\tlua/?.lua"])
        _, _, [before] = runLua("print(package.path)", makeContext(ini="LuaAllowUnsafe = 1\n"))
        outcome, _, messages = runLua(f"{line} {probe}", makeContext(ini="LuaAllowUnsafe = 1\n"))
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: function\tfunction\ttable\tlua/?.lua"])
        self.assertEqual(runLua("print(package.path)", makeContext(ini="LuaAllowUnsafe = 1\n"))[2], [before])

    def test_printReachesTheLog(self):
        _, _, messages = runLua("print('patient', Data.PatientID, 42, nil, true)")
        self.assertEqual(messages, [f"{KEY}: patient\t123\t42\tnil\ttrue"])

    def test_scriptRunsALine(self):
        outcome, context, _ = runLua("Data.StudyDescription = script('mark a; mark b'); "
                                     "Data.SeriesDescription = script('mark c; stop; mark d')")
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(context.variables["x"], "abc")
        self.assertEqual((context.dataset.StudyDescription, context.dataset.SeriesDescription),
                         ("continue", "stop"))

    def test_scriptDecidesTheObjectsFate(self):
        """destroy, reject or defer from script() is the script's outcome
        unless it returns one itself."""
        self.assertEqual(runLua("script('destroy'); print('after')")[0], Outcome.DESTROY)
        self.assertEqual(runLua("script('reject'); return 'stop'")[0], Outcome.STOP)

    def test_scriptSyntaxError(self):
        outcome, _, messages = runLua("script('nosuchcommand')")
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: {KEY} (Lua script()), "
                                    "column 1: unknown command 'nosuchcommand'"])

    def test_forward(self):
        forward = RecordingForward()
        outcome, _, _ = runLua("forward('PEER1'); forward('PEER2')", commands=luaRegistry(forward))
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(forward.destinations, ["image to PEER1", "image to PEER2"])

    def test_anObjectMadeFromAFetchedOneIsNotFromItsArchive(self):
        """A converter run on an object a virtual server fetched from BACK
        keeps a forward of that object (Data, and a copy with its SOP
        Instance UID) from going back to BACK, and one of the study of an
        object the script made in that study (it would send the fetched
        objects back), but not an image forward of an object the script
        made (newdicomobject()), which BACK never held: that one was dropped
        as 'fetched from there' (diff reviews d4, d7)."""
        queued = []
        self.patch(exportcommands, "enqueue",
                   lambda context, action, request: queued.append((request.level, context.dataset.SOPInstanceUID))
                   or Outcome.CONTINUE)
        context = makeContext()
        context.fetchedFrom = "BACK"
        fetched = context.dataset.SOPInstanceUID = "1.2.3.1.1"
        context.dataset.StudyInstanceUID = "1.2.3"
        outcome, _, messages = runLua(
            "local x = newdicomobject(); x.SOPInstanceUID = '1.2.3.4.5'; x.StudyInstanceUID = Data.StudyInstanceUID; "
            "x:Script('forward image to BACK'); x:Script('forward study to BACK'); "
            "local y = newdicomobject(); y.SOPInstanceUID = Data.SOPInstanceUID; y:Script('forward image to BACK'); "
            "local z = newdicomobject(); z.SOPInstanceUID = '1.2.3.4.6'; z.StudyInstanceUID = '1.2.3.9'; "
            "z:Script('forward study to BACK'); Data:Script('forward image to BACK'); "
            "Data:Script('forward image to THIRD')", context,
            commands=luaRegistry(pacs_commands_forward.forwardCommand))
        self.assertEqual(outcome, Outcome.CONTINUE, messages)
        self.assertEqual(queued, [("IMAGE", "1.2.3.4.5"), ("STUDY", "1.2.3.4.6"), ("IMAGE", fetched)])
        self.assertEqual(sum("not queued: a virtual server fetched it from there" in m for m in messages), 3, messages)

    def test_forwardRefusesWhatIsNoAETitle(self):
        for destination in ("A; destroy", "[fe80::1%eth0;destroy]:104"):
            forward = RecordingForward()
            outcome, _, messages = runLua(f"forward('{destination}')", commands=luaRegistry(forward))
            self.assertEqual((outcome, forward.destinations), (Outcome.STOP, []))
            self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: forward: '{destination}' is not "
                                        "an AE title nor host:port"])

    def test_forwardToHostAndPort(self):
        """``forward(ae)`` takes the ``ip:port`` destinations ``forward to`` does
        (splitHostPort's), a link-local address with its zone too (refused
        before: '... is not an AE title nor host:port')."""
        forward = RecordingForward()
        outcome, _, _ = runLua("forward('192.168.100.200:11112'); forward('127.000.000.001:104'); "
                               "forward('[fd00:1234:5678::2]:104'); forward('[fe80::fc:ff:fe00:1%eth0]:104')",
                               commands=luaRegistry(forward))
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(forward.destinations, ["image to 192.168.100.200:11112", "image to 127.000.000.001:104",
                                                "image to [fd00:1234:5678::2]:104",
                                                "image to [fe80::fc:ff:fe00:1%eth0]:104"])

    def test_errorWithoutText(self):
        """error() of a table or of nil is logged as such, not as nothing
        or as Lua's stack traceback."""
        for code in ("error({code=1})", "error()"):
            self.assertEqual(runLua(code)[2], [f"{KEY}: Lua script failed: error() with no message "
                                                "(its value was nil or a table)"], code)

    def test_forwardWithoutForwardCommand(self):
        outcome, _, messages = runLua("forward('PEER1')")
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: forward: there is no "
                                    "'forward' command"])


class Lua51NamesTests(unittest.TestCase):
    """The Lua 5.1 names Conquest's scripts use (Conquest runs Lua 5.1,
    pacs 5.4), sandboxed and not; loadstring only where load is."""

    def names(self, code, ini=""):
        outcome, _, messages = runLua(code, makeContext(ini=ini))
        self.assertEqual(outcome, Outcome.CONTINUE, messages)
        return messages

    def test_tableGetn(self):
        for ini in ("", "LuaAllowUnsafe = 1\n"):
            self.assertEqual(self.names("print(table.getn({1, 2, 3}))", ini), [f"{KEY}: 3"], ini)

    def test_unpack(self):
        for ini in ("", "LuaAllowUnsafe = 1\n"):
            self.assertEqual(self.names("print(unpack({1, 'b'}))", ini), [f"{KEY}: 1\tb"], ini)

    def test_mathMod(self):
        for ini in ("", "LuaAllowUnsafe = 1\n"):
            self.assertEqual(self.names("print(math.mod(7, 3), math.mod(-7, 3))", ini), [f"{KEY}: 1\t-1"], ini)

    def test_stringGfind(self):
        for ini in ("", "LuaAllowUnsafe = 1\n"):
            self.assertEqual(self.names("local t = {} for w in string.gfind('a,b', '%a') do t[#t + 1] = w end "
                                        "for w in ('c'):gfind('%a') do t[#t + 1] = w end print(table.concat(t))", ini),
                             [f"{KEY}: abc"], ini)

    def test_loadstring(self):
        """Unsafe, loadstring's chunk runs with the script's globals (Data);
        sandboxed, as load, there is none."""
        self.assertEqual(self.names("loadstring('Data.PatientID = \\'X\\'')(); print(Data.PatientID)",
                                    "LuaAllowUnsafe = 1\n"), [f"{KEY}: X"])
        self.assertEqual(self.names("print(loadstring, load)"), [f"{KEY}: nil\tnil"])
        self.assertEqual(self.names("print(loadstring(string.dump(function() return 'bin ok' end))())",
                                    "LuaAllowUnsafe = 1\n"), [f"{KEY}: bin ok"])


class ConquestFunctionTests(unittest.TestCase):
    """debuglog, get_amap, dictionary, Data.Storage, x:Dump and x:Script,
    as Conquest's lua/overview.lua uses them."""

    def test_debuglogGoesToTheDebugLog(self):
        with capturedLogs() as events:
            runLua("debuglog('priority', 3, nil)")
        logged = [(e["log_level"], e["log_format"].format(**e)) for e in events if "converter" in e]
        self.assertEqual(logged, [(LogLevel.debug, f"{KEY}: priority\t3\tnil")])

    def test_getAmap(self):
        context = makeContext()
        context.services.configuration.acrNemaMap = AcrNemaMap.fromString(
            "ARCHIVE 127.0.0.1 5678 un\nCT* 10.0.0.% 104 j2\n")
        _, _, messages = runLua("print(get_amap(0)); print(get_amap(1)); print(get_amap(2)); "
                                "print(get_amap(-1))", context)
        self.assertEqual(messages, [f"{KEY}: ARCHIVE\t127.0.0.1\t5678\tun", f"{KEY}: CT*\t10.0.0.%\t104\tj2",
                                    f"{KEY}: ", f"{KEY}: "])

    def test_dictionary(self):
        _, _, messages = runLua("print(dictionary(0x0009, 0x0010), dictionary(0x0010, 0x0020), dictionary(16, 16)); "
                                "print(dictionary('PatientID')); print(dictionary('Nonsense'))")
        self.assertEqual(messages, [f"{KEY}: nil\tPatientID\tPatientName", f"{KEY}: 16\t32", f"{KEY}: "])

    def test_storage(self):
        """Data.Storage: set in import converters as 'storage MAGn' sets it
        (read back); in export converters the device the object is on."""
        outcome, context, messages = runLua("print(Data.Storage); Data.Storage = 'MAG1'; print(Data.Storage)")
        self.assertEqual((outcome, context.storageDevice), (Outcome.CONTINUE, "MAG1"))
        self.assertEqual(messages, [f"{KEY}: nil", f"{KEY}: MAG1"])
        context = makeContext(kind="export")
        context.storageDevice = "MAG2"
        self.assertEqual(runLua("print(Data.Storage)", context)[2], [f"{KEY}: MAG2"])
        self.assertEqual(runLua("Data.Storage = 'MAG1'", context)[2],
                         [f"{KEY}: Lua script failed: lua:1: Data.Storage is set only in import converters"])
        self.assertEqual(runLua("local x = newdicomobject(); x.Storage = 'MAG1'")[2],
                         [f"{KEY}: Lua script failed: lua:1: unknown DICOM attribute 'Storage'"])

    def test_dump(self):
        workdir = os.path.abspath(self.mktemp())
        context = makeContext(ini="LuaFileFolder = luafiles\n", configDir=workdir)
        outcome, _, messages = runLua("print(Data:Dump('dumps/data.txt')); "
                                      "local x = newdicomobject(); x.PatientID = 'P9'; x:Dump('x.txt')", context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: true"]))
        with open(os.path.join(workdir, "luafiles", "dumps", "data.txt")) as f:
            dumped = f.read()
        self.assertIn("(0010,0010) Patient's Name", dumped)
        self.assertIn("DOE^JOHN", dumped)
        with open(os.path.join(workdir, "luafiles", "x.txt")) as f:
            self.assertIn("P9", f.read())
        self.assertIn("sandboxed Lua scripts reach no file without LuaFileFolder",
                      runLua("Data:Dump('x.txt')")[2][0])

    def test_scriptSetsByKeyword(self):
        """script('set PatientName to ...'), as Conquest's scripts write it."""
        outcome, context, messages = runLua("local q = string.char(34); print(script('set PatientName to ' .. q .. "
                                            "'X^Y' .. q))",
                                            commands=luaRegistry(pacs_commands_dataset.setCommand))
        self.assertEqual((outcome, messages, str(context.dataset.PatientName)),
                         (Outcome.CONTINUE, [f"{KEY}: continue"], "X^Y"))

    def test_gpps(self):
        """gpps(section, key[, default]) in converter scripts, as on web
        pages: a dicom.ini value, the default when absent; sandboxed, a
        secret gives the default."""
        ini = "MyACRNema = ARCHIVE\nControlSecret = s3cret\n[lua]\nmine = 42\n"
        code = "print(gpps('sscscp', 'MyACRNema'), gpps('lua', 'mine'), gpps('lua', 'none', 'dflt'), " \
               "gpps('sscscp', 'ControlSecret', 'hidden'))"
        self.assertEqual(runLua(code, makeContext(ini=ini))[2], [f"{KEY}: ARCHIVE\t42\tdflt\thidden"])
        self.assertEqual(runLua(code, makeContext(ini="LuaAllowUnsafe = 1\n" + ini))[2],
                         [f"{KEY}: ARCHIVE\t42\tdflt\ts3cret"])

    def test_scriptOnAnObject(self):
        """x:Script(rule) and script(x, rule) run a line on x, whose destroy
        is not Data's; Data:Script(rule) is script(rule)."""
        commands = luaRegistry(pacs_commands_dataset.setCommand)
        outcome, context, messages = runLua(
            "local x = newdicomobject(); x.PatientID = 'P9'; "
            "print(x:Script('set 0010,0010 to %V0010,0020'), script(x, 'destroy'), x.PatientName); "
            "Data:Script('set 0008,1030 to %V0010,0020')", commands=commands)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: continue\tdestroy\tP9"])
        self.assertEqual(context.dataset.StudyDescription, "123")
        self.assertEqual(runLua("Data:Script('destroy')", commands=commands)[0], Outcome.DESTROY)


class OutcomeTests(unittest.TestCase):

    def test_returnValues(self):
        cases = [("local a = 1", Outcome.CONTINUE), ("return", Outcome.CONTINUE),
                 ("return 'destroy'", Outcome.DESTROY), ("return 'reject'", Outcome.REJECT),
                 ("return 'stop'", Outcome.STOP), ("return 'Destroy', 'ignored'", Outcome.DESTROY)]
        for code, outcome in cases:
            self.assertEqual(runLua(code)[0], outcome, code)
        self.assertEqual(runLua("return 'defer'", makeContext(kind="export"))[0], Outcome.DEFER)

    def test_tickcountAndSleep(self):
        """Conquest's tickcount() (milliseconds) and sleep(ms), in a worker
        thread; in the reactor's thread, or for more than a minute, sleep
        is refused."""
        self.patch(threadable, "ioThread", threadable.getThreadID())  # this thread is the reactor's
        ran = []
        worker = threading.Thread(target=lambda: ran.append(runLua(
            "local t = tickcount(); sleep(50); print(math.type(t), tickcount() - t >= 50)")))
        worker.start()
        worker.join()
        self.assertEqual([(outcome, messages) for outcome, _, messages in ran],
                         [(Outcome.CONTINUE, [f"{KEY}: integer\ttrue"])])
        outcome, _, messages = runLua("print(pcall(sleep, 1)); print(pcall(sleep, 60001)); print(pcall(sleep, 'x'))")
        self.assertEqual(messages, [
            f"{KEY}: false\tsleep: a script run by the server's main thread does not sleep",
            f"{KEY}: false\tsleep: 0 to 60000 milliseconds are wanted, not 60001",
            f"{KEY}: false\tsleep: 0 to 60000 milliseconds are wanted, not 'x'"])

    def test_sleepsOfARunLastAMinuteInAll(self):
        """MAX_SLEEP (a minute) is what all the sleep(ms) calls of one run
        may last together, a script it runs through script('lua ...')
        included, not each: a loop of sleeps is stopped with an error
        saying so; the next run has its own."""
        self.patch(lua, "MAX_SLEEP", 100)
        ran = []
        code = ("sleep(40); script('lua \"sleep(40)\"'); print(pcall(sleep, 30)); sleep(20); "
                "for i = 1, 1000 do sleep(60) end")
        worker = threading.Thread(target=lambda: ran.extend((runLua(code), runLua("sleep(60); print('again')"))))
        worker.start()
        worker.join()
        self.assertEqual([(outcome, messages) for outcome, _, messages in ran], [
            (Outcome.STOP, [f"{KEY}: false\tsleep: a run sleeps at most 100 milliseconds in all: 80 slept, 30 more "
                            "refused",
                            f"{KEY}: Lua script failed: lua:1: sleep: a run sleeps at most 100 milliseconds in all: "
                            "100 slept, 60 more refused"]),
            (Outcome.CONTINUE, [f"{KEY}: again"])])

    def test_rejectAndDestroyCalled(self):
        """Conquest's scripts call reject() or destroy() ('reject on
        error': print(...); reject(); return): the outcome is that of
        returning 'reject' or 'destroy', the script going on after the call,
        unless it returns another."""
        outcome, _, messages = runLua(
            "if Data.PatientID ~= 'KNOWN' then print('** patient '..Data.PatientID..' was not anonymized on this "
            "system **'); reject(); return end; Data.PatientName = 'X'")
        self.assertEqual((outcome, messages), (Outcome.REJECT, [
            f"{KEY}: ** patient 123 was not anonymized on this system **"]))
        outcome, context, _ = runLua("destroy(); Data.StudyDescription = 'after'")
        self.assertEqual((outcome, context.dataset.StudyDescription), (Outcome.DESTROY, "after"))
        self.assertEqual(runLua("reject(); return 'stop'")[0], Outcome.STOP)
        self.assertEqual(runLua("reject(); destroy()")[0], Outcome.DESTROY)

    def test_deferOutsideExportConverters(self):
        """'defer' (an export converter's retry) stops an import line, with a
        log line saying so, not silently."""
        outcome, _, messages = runLua("return 'defer'")
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: the Lua script asked to 'defer', which only export converters "
                                    "do; the line stops here"])

    def test_unknownReturnValue(self):
        outcome, _, messages = runLua("return 'destory'")
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: the script returned 'destory', not one "
                                    "of continue, stop, silentstop, destroy, reject, defer"])

    def test_errorIsLoggedAndStopsTheLine(self):
        """Unlike Conquest, which goes on with the line, a failing script
        ends it (a forward after it would send what it failed to change;
        a destroy after it is skipped too), and the log line says so."""
        outcome, context, messages = runLine("mark a; lua \"Data.PatientID = 'new'; error('boom')\"; "
                                             "mark b; destroy")
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(context.variables["x"], "a")
        self.assertEqual(context.dataset.PatientID, "new")
        self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: boom" + SKIPPED])

    def test_theLogLineSaysTheRestIsSkippedOnlyWhenThereIsOne(self):
        """A failing script that nothing follows on its line (``lua:``
        always, a last ``lua "..."``, also in a block or after a condition,
        whatever blanks, ';' or '}' close the line) skips nothing, and its
        log line does not say it does; one followed by a statement, also
        after the block holding it, does."""
        boom = f"{KEY}: Lua script failed: lua:1: boom"
        for line, message in (("lua:error('boom')", boom),
                              ("mark a; lua \"error('boom')\"", boom),
                              ("lua \"error('boom')\" ; ", boom),
                              ("ifequal \"%m\",\"\"; { mark a; lua \"error('boom')\" } ;", boom),
                              ("ifequal \"%m\",\"\"; lua \"error('boom')\"", boom),
                              ("lua \"error('boom')\"; mark b", boom + SKIPPED),
                              ("{ lua \"error('boom')\" }; destroy", boom + SKIPPED)):
            outcome, _, messages = runLine(line)
            self.assertEqual((outcome, messages), (Outcome.STOP, [message]), line)

    def test_syntaxErrorWhenParsed(self):
        with self.assertRaises(ConverterSyntaxError) as raised:
            parseScript("nop; lua \"local = 1\"", KEY, luaRegistry(), "import")
        self.assertEqual(str(raised.exception), f"{KEY}, column 6: lua:1: <name> expected near '='")
        with self.assertRaises(ConverterSyntaxError) as raised:
            parseScript("lua print(1)", KEY, luaRegistry(), "import")
        self.assertIn('lua wants its code in double quotes', str(raised.exception))
        self.assertRaises(ConverterSyntaxError, parseScript, "lua:", KEY, luaRegistry(), "import")

    def test_luaColonRunsTheRestOfTheLineAsCode(self):
        """As Conquest's ``lua:``: the rest of the line, semicolons and all,
        is Lua code, also when it mentions a .lua name (``=`` makes it code)."""
        dataset = patient()
        dataset.StudyDescription = "before"
        outcome, context, messages = runLine(
            "mark a; lua:Data.PatientName='LUA^CHANGED'; Data.PatientID='LUAID'", makeContext(dataset))
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, []))
        self.assertEqual((context.variables["x"], str(context.dataset.PatientName), context.dataset.PatientID),
                         ("a", "LUA^CHANGED", "LUAID"))
        outcome, context, messages = runLine("lua:Data.StudyDescription=string.lua", context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, []))
        self.assertNotIn("StudyDescription", context.dataset)

    def test_luaColonSyntaxErrorWhenParsed(self):
        """Code after ``lua:`` is compiled when the line is parsed, as ``lua
        "..."``: a syntax error stops start-up naming the key and column."""
        with self.assertRaises(ConverterSyntaxError) as raised:
            parseScript("nop; lua:Data.PatientID = ", KEY, luaRegistry(), "import")
        self.assertEqual(str(raised.exception), f"{KEY}, column 6: lua:1: unexpected symbol near <eof>")


class SandboxTests(unittest.TestCase):

    probe = ("print(type(io), type(os.execute), type(require), type(load), type(dofile), "
             "type(debug), type(package), type(python), type(os.time()), type(os.date), "
             "type(os.clock), type(string.format), ('x'):rep(2), table.unpack({7}), type(unpack), "
             "math.max(1, 2))")

    def test_sandboxedByDefault(self):
        _, _, messages = runLua(self.probe)
        self.assertEqual(messages, [f"{KEY}: nil\tnil\tnil\tnil\tfunction\tnil\ttable\tnil\tnumber\tfunction"
                                    "\tfunction\tfunction\txx\t7\tfunction\t2"])

    def test_allowUnsafe(self):
        _, _, messages = runLua(self.probe, makeContext(ini="LuaAllowUnsafe = 1\n"))
        self.assertEqual(messages, [f"{KEY}: table\tfunction\tfunction\tfunction\tfunction\ttable"
                                    "\ttable\tnil\tnumber\tfunction\tfunction\tfunction\txx\t7\tfunction\t2"])

    def test_unsafeScriptCanUseIo(self):
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "out.txt")
        outcome, _, _ = runLua(f"local f = io.open('{path}', 'w'); f:write(Data.PatientID); f:close()",
                               makeContext(ini="LuaAllowUnsafe = 1\n"))
        self.assertEqual(outcome, Outcome.CONTINUE)
        with open(path) as f:
            self.assertEqual(f.read(), "123")

    def test_globalsDoNotLeakBetweenRuns(self):
        self.assertEqual(runLua("counter = (counter or 0) + 1; string.upper = nil")[0], Outcome.CONTINUE)
        _, _, messages = runLua("print(counter, string.upper('a'))")
        self.assertEqual(messages, [f"{KEY}: nil\tA"])

    def test_noPythonAttributes(self):
        """Even an unsafe script that digs out the Python functions behind
        the API cannot reach their attributes."""
        for attribute in ("__globals__", "__self__", "__class__"):
            outcome, _, messages = runLua(
                "local i, name, value = 1, debug.getupvalue(dbquery, 1) "
                "while type(value) ~= 'userdata' do i = i + 1; name, value = debug.getupvalue(dbquery, i) end "
                f"local x = value.{attribute}", makeContext(ini="LuaAllowUnsafe = 1\n"))
            self.assertEqual(outcome, Outcome.STOP, attribute)
            self.assertEqual(messages, [f"{KEY}: Lua script failed: Python attributes are not "
                                        f"accessible from Lua (tried {attribute!r})"])

    def test_scriptRunsNoProgramNorFile(self):
        """script() of a sandboxed script refuses the commands that run a
        program or write a file it names (the sandbox would be gone); the
        line after the Lua goes on as usual; unsafe scripts may."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        marker = os.path.join(folder, "escaped")
        commands = CommandRegistry()
        for rule in (f"system touch {marker}", f"write \\34x\\34 to {marker}", f"save to {marker}",
                     f"process with touch {marker}", f"process study by touch {marker}"):
            with capturedLogs() as events:
                outcome, _, messages = runLine(f"lua \"print(script('{rule}'))\"; system echo after",
                                               makeContext(), commands)
            self.assertEqual(outcome, Outcome.CONTINUE, rule)
            self.assertFalse(os.path.exists(marker), rule)
            [refusal] = [e for e in events if e.get("log_level") == LogLevel.error]
            self.assertIn("refused: sandboxed Lua scripts cannot run programs or write files through script() "
                          "(LuaAllowUnsafe = 1 allows it)", refusal["log_format"], rule)
            self.assertEqual(messages, [f"{KEY}: stop", f"{KEY}: system 'echo after' exited with status 0"], rule)
        outcome, _, messages = runLine(f"lua \"print(script('system touch {marker}'))\"",
                                       makeContext(ini="LuaAllowUnsafe = 1\n"), commands)
        self.assertTrue(os.path.exists(marker))

    def test_instructionLimit(self):
        self.assertEqual(DEFAULT_MAX_INSTRUCTIONS, 10_000_000)
        started = time.monotonic()
        outcome, _, messages = runLua("local i = 0\nwhile true do i = i + 1 end")
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:2: script stopped after 10000000 "
                                    "instructions (LuaMaxInstructions)"])

    def test_instructionLimitFromIniAndPcall(self):
        """pcall does not save a script over its limit."""
        context = makeContext(ini="LuaMaxInstructions = 1000\n")
        outcome, _, messages = runLua(
            "while true do pcall(function() for i = 1, 1000000 do end end) end", context)
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: script stopped after 1000 "
                                    "instructions (LuaMaxInstructions)"])
        context = makeContext(ini="LuaMaxInstructions = 1000\n")
        self.assertEqual(runLua("for i = 1, 10 do end", context)[0], Outcome.CONTINUE)

    def test_nestedScriptsShareTheLimit(self):
        """A script that runs Lua through script() gets no fresh count."""
        folder = self.mktemp()
        os.makedirs(folder)
        with open(os.path.join(folder, "inner.lua"), "w") as f:
            f.write("local x = 1\n")
        context = makeContext(ini="LuaMaxInstructions = 100000\nLuaFileFolder = .\n", configDir=folder)
        outcome, _, messages = runLua(
            "local n = 0 for i = 1, 200000 do n = n + i; if i % 1000 == 0 then "
            "script('lua:inner.lua') end end print('finished')", context)
        self.assertEqual(outcome, Outcome.STOP)
        [message] = messages
        self.assertTrue(message.endswith(": script stopped after 100000 instructions (LuaMaxInstructions)"),
                        message)

    def test_patternMatchingOfLongValues(self):
        """LuaMaxInstructions counts Lua instructions, not pattern matching
        (C): the usual trims and line splits of a long text value run,
        whatever its length; string.rep of an empty string does not loop."""
        context = makeContext(ini="LuaMaxInstructions = 100000\n")
        context.dataset.ImageComments = "  " + "line of a report \n" * 500 + "  "
        outcome, _, messages = runLua(
            "local c = Data.ImageComments; local n = 0; for l in c:gmatch('(.-)\\n') do n = n + 1 end; "
            "for l in c:gmatch('[^\\n]*\\n') do n = n + 1 end; "
            "print(#c:match('^%s*(.-)%s*$'), #c:gsub('%s+$', ''), n, string.match(Data.PatientName, '^(.-)%^(.*)$'), "
            "('' ):rep(1e15), ('a'):rep(3, ','))", context)
        self.assertEqual(messages, [f"{KEY}: 8998\t9000\t1000\tDOE\t\ta,a,a"])
        self.assertEqual(outcome, Outcome.CONTINUE)

    def test_memoryLimit(self):
        """A script that asks for gigabytes fails (logged), and the next runs."""
        outcome, _, messages = runLua("local s = string.rep('x', 2^30)")
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: script stopped: it needed more than 256 MB "
                                    "of memory"])
        self.assertEqual(runLua("local s = string.rep('x', 2^20)")[0], Outcome.CONTINUE)

    def test_memoryLimitCoversWhatGoesIntoObjects(self):
        """What a run puts into DICOM objects (values, sequence items),
        which its Lua state does not hold, has a 256 MB limit of its own:
        past it the script fails (logged), and the next run starts afresh."""
        code = ("local big = string.rep('x', 50 * 1024 * 1024); local keep = {} "
                "for i = 1, 12 do local o = newdicomobject(); o.PatientComments = big; keep[i] = o end")
        outcome, _, messages = runLua(code)
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: script stopped: what it put into DICOM "
                                    "objects (or a page) passed 256 MB"])
        outcome, _, messages = runLua("local s = Data.ReferencedSeriesSequence; for i = 2, 300000 do local _ = s[i] end",
                                      makeContext(ini="LuaMaxInstructions = 0\n"))
        self.assertEqual(outcome, Outcome.STOP)
        self.assertIn("passed 256 MB", messages[0])
        self.assertEqual(runLua("local o = newdicomobject(); o.PatientComments = string.rep('x', 2^20)")[0],
                         Outcome.CONTINUE)

    def test_memoryLimitOfNestedRunsWithoutInstructionLimit(self):
        """With LuaMaxInstructions = 0 the runs a script starts through
        script('lua ...') still add to its 256 MB, not start it afresh."""
        code = ("local big = string.rep('x', 50 * 1024 * 1024); local keep = {} "
                "for i = 1, 12 do local o = newdicomobject(); o.PatientComments = big; keep[i] = o; "
                "script('lua \"local a = 1\"') end")
        outcome, _, messages = runLua(code, makeContext(ini="LuaMaxInstructions = 0\n"))
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: script stopped: what it put into DICOM "
                                    "objects (or a page) passed 256 MB"])

    def test_noLimit(self):
        context = makeContext(ini="LuaMaxInstructions = 0\n")
        outcome, _, _ = runLua("local n = 0; for i = 1, 5000000 do n = n + 1 end; "
                               "Data.StudyDescription = n", context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(context.dataset.StudyDescription, "5000000")


class FileTests(unittest.TestCase):

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.folder, "scripts"))
        self.path = os.path.join(self.folder, "scripts", "tag.lua")

    def write(self, text, mtime):
        with open(self.path, "w") as f:
            f.write(text)
        os.utime(self.path, (mtime, mtime))

    def test_noFileNameIsNoFile(self):
        """readdicom, writedicom, x:Write, x:Dump and writeheader with no
        file name (nil) fail saying so; nothing is written (no file 'None')."""
        lf = os.path.join(self.folder, "lf")
        context = makeContext(configDir=self.folder, ini="LuaFileFolder = lf\n")
        for call in ("writedicom()", "writedicom(nil)", "newdicomobject():Write()", "Data:Dump(nil)",
                     "writeheader()", "readdicom()", "Data:Write(Data.StudyID)"):
            outcome, _, messages = runLua(call, context)
            self.assertEqual((outcome, messages),
                             (Outcome.STOP, [f"{KEY}: Lua script failed: lua:1: a file name is wanted, "
                                             "not nil"]), call)
        self.assertFalse(os.path.exists(lf) and os.listdir(lf))

    def test_relativeToConfigurationFolder(self):
        self.write("Data.StudyDescription = 'one'\nreturn 'destroy'\n", 1000)
        context = makeContext(configDir=self.folder)
        self.assertEqual(runLine("lua:scripts/tag.lua", context)[0], Outcome.DESTROY)
        self.assertEqual(context.dataset.StudyDescription, "one")

    def test_changedFileIsReadAgain(self):
        self.write("Data.StudyDescription = 'one'", 1000)
        context = makeContext(configDir=self.folder)
        runLine("lua:scripts/tag.lua", context)
        self.write("Data.StudyDescription = 'two'", 2000)
        runLine("lua:scripts/tag.lua", context)
        self.assertEqual(context.dataset.StudyDescription, "two")

    def test_sandboxedDofile(self):
        """A sandboxed dofile runs a Lua file of LuaFileFolder with the
        script's globals; none without it, nor outside it."""
        self.write("shared = Data.Rows\nreturn 'from file'\n", 1000)
        context = makeContext(configDir=self.folder, ini="LuaFileFolder = scripts\n")
        _, _, messages = runLua("print(dofile('tag.lua'), shared)", context)
        self.assertEqual(messages, [f"{KEY}: from file\t512"])
        for ini, name, reason in (
                ("", "tag.lua", "tag.lua: sandboxed Lua scripts reach no file without LuaFileFolder "
                                "(or LuaAllowUnsafe = 1)"),
                ("LuaFileFolder = scripts\n", "../other.lua",
                 "../other.lua: sandboxed Lua scripts reach only the files in LuaFileFolder"),
                ("LuaFileFolder = scripts\n", "missing.lua",
                 "cannot read missing.lua: No such file or directory")):
            outcome, _, messages = runLua(f"dofile('{name}')", makeContext(configDir=self.folder, ini=ini))
            self.assertEqual(outcome, Outcome.STOP)
            self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: {reason}"])
        self.write("local x = \n", 2000)
        outcome, _, messages = runLua("dofile('tag.lua')", context)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: tag.lua:2: unexpected symbol near <eof>"])

    def test_unsafeDofile(self):
        """With LuaAllowUnsafe = 1, dofile runs any file with the script's
        globals too: an anonymiser file changes Data, a function it defines
        sees Data when called later, and its print goes to the log."""
        self.write("Data.PatientName = 'ANONYMOUS'; Data.PatientID = 'ANON' .. crc(Data.PatientID)\n"
                   "function tag() Data.StudyDescription = 'tagged' end\nprint('helper ran')\n", 1000)
        context = makeContext(configDir=self.folder, ini="LuaAllowUnsafe = 1\n")
        outcome, _, messages = runLua(f"dofile('{self.path}'); tag()", context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: helper ran"]))
        self.assertEqual((str(context.dataset.PatientName), context.dataset.StudyDescription),
                         ("ANONYMOUS", "tagged"))
        self.assertRegex(context.dataset.PatientID, r"^ANON\d+$")

    def test_dofileReadsTheFileAsLuaDoes(self):
        """dofile loads a file's bytes as Lua's own dofile: a Latin-1
        (Windows-1252) text, a UTF-8 byte order mark and a first '#' line
        (line numbers kept) in both modes, a precompiled chunk only with
        LuaAllowUnsafe = 1 (as loadstring takes one), and a lua: file alike."""
        binary = lupa.LuaRuntime(encoding=None).eval("string.dump(load('x = \\'binary\\'; return #x'))")
        files = {"latin1.lua": b"x = 'caf\xe9'; return #x", "bom.lua": codecs.BOM_UTF8 + b"x = 'bom'; return 3",
                 "shebang.lua": b"#!/usr/bin/lua\nx = 'shebang'; return #x", "bin.luac": binary,
                 "shebin.luac": b"#!/usr/bin/lua\n" + binary, "line.lua": b"#!/usr/bin/lua\n\nlocal x = = 1"}
        for name, data in files.items():
            with open(os.path.join(self.folder, "scripts", name), "wb") as f:
                f.write(data)
        runs = {"latin1.lua": "4", "bom.lua": "3", "shebang.lua": "7", "bin.luac": "6", "shebin.luac": "6"}
        for ini, prefix in (("LuaAllowUnsafe = 1\n", "scripts/"), ("LuaFileFolder = scripts\n", "")):
            for name, returned in runs.items():
                context = makeContext(configDir=self.folder, ini=ini)
                outcome, _, messages = runLua(f"print(dofile('{prefix}{name}'), x)", context)
                if ini.startswith("LuaFileFolder") and name.endswith(".luac"):
                    self.assertEqual(messages, [f"{KEY}: Lua script failed: attempt to load a binary chunk "
                                                "(mode is 't')"], name)
                    continue
                value = {"latin1.lua": "caf\xe9", "bin.luac": "binary", "shebin.luac": "binary"}.get(name, name[:-4])
                self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: {returned}\t{value}"]),
                                 (ini, name))
            outcome, _, messages = runLua(f"dofile('{prefix}line.lua')", makeContext(configDir=self.folder, ini=ini))
            self.assertEqual(messages, [f"{KEY}: Lua script failed: {prefix}line.lua:3: unexpected symbol "
                                        "near '='"])
        with open(self.path, "wb") as f:
            f.write(codecs.BOM_UTF8 + b"#!/usr/bin/lua\nData.StudyDescription = 'caf\xc3\xa9'\n")
        context = makeContext(configDir=self.folder)
        runLine("lua:scripts/tag.lua", context)
        self.assertEqual(context.dataset.StudyDescription, "caf\xe9")

    def test_aScriptRunningItselfKeepsItsGlobals(self):
        """A script that runs its own file again (``script('lua:...')``,
        ``x:Script('lua:...')``) goes on with its own globals and Data,
        not those of the run within it: an anonymiser running itself on a
        derived object still anonymises the incoming one."""
        self.write("local depth = tonumber(command_line) or 0\n"
                   "mine = depth\n"
                   "if depth == 0 then script('lua:tag.lua(1)') end\n"
                   "print(depth, mine, command_line)\n"
                   "if Data.Modality ~= 'OT' then\n"
                   "  local x = newdicomobject(); x.Modality = 'OT'; x:Script('lua:tag.lua(2)')\n"
                   "end\n"
                   "Data.PatientName = 'ANON^ANON'\n", 1000)
        context = makeContext(configDir=self.folder, ini="LuaFileFolder = scripts\n")
        _, _, messages = runLine("lua:scripts/tag.lua", context)
        self.assertEqual(messages, [f"{KEY}: 1\t1\t1", f"{KEY}: 2\t2\t2", f"{KEY}: 0\t0\tnil", f"{KEY}: 2\t2\t2"])
        self.assertEqual(str(context.dataset.PatientName), "ANON^ANON")

    def test_sandboxedScriptRunsNoOtherFile(self):
        """script() of a sandboxed script runs a Lua file or calls converter
        lines only from the files its dofile may run."""
        self.write("Data.StudyDescription = 'inside'", 1000)
        outside = os.path.join(self.folder, "outside")
        with open(outside + ".lua", "w") as f:
            f.write("Data.StudyDescription = 'outside'")
        with open(outside + ".cq", "w") as f:
            f.write("lua:outside.lua\n")
        context = makeContext(configDir=self.folder, ini="LuaFileFolder = scripts\n")
        self.assertEqual(runLua("print(script('lua:tag.lua'))", context)[2], [f"{KEY}: continue"])
        self.assertEqual(context.dataset.StudyDescription, "inside")
        refusals = {"lua:../outside.lua": "../outside.lua: sandboxed Lua scripts reach only the files in LuaFileFolder",
                    "../outside.lua": "../outside.lua: sandboxed Lua scripts reach only the files in LuaFileFolder",
                    f"lua:{outside}.lua": f"'{outside}.lua': sandboxed Lua scripts name files relative to LuaFileFolder",
                    "call ../outside.cq": "../outside.cq: sandboxed Lua scripts reach only the files in LuaFileFolder",
                    f"call {outside}.cq": f"'{outside}.cq': sandboxed Lua scripts name files relative to LuaFileFolder"}
        for rule, reason in refusals.items():
            outcome, context, messages = runLua(f"print(script('{rule}'))", makeContext(
                configDir=self.folder, ini="LuaFileFolder = scripts\n"))
            self.assertNotIn("StudyDescription", context.dataset, rule)
            self.assertEqual(len(messages), 2, messages)
            self.assertIn(reason, messages[0], rule)
            self.assertEqual(messages[1], f"{KEY}: stop", rule)
        context = makeContext(configDir=self.folder)
        runLine(f"call {outside}.cq", context)
        self.assertEqual(context.dataset.StudyDescription, "outside")

    def test_errorsNameTheFile(self):
        self.write("local a = 1\nerror('bad')\n", 1000)
        outcome, _, messages = runLine("lua:scripts/tag.lua", makeContext(configDir=self.folder))
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: scripts/tag.lua:2: bad"])

    def test_statementNamingAFileRunsIt(self):
        """As Conquest: ``x.lua(text)`` as a statement runs the file with the
        global command_line the %-expanded text; ``x.lua`` alone, and in an
        export converter too (not a program)."""
        self.write("Data.StudyDescription = (Data.StudyDescription or '') .. (command_line or 'none') .. ';'", 1000)
        for kind in ("import", "export"):
            context = makeContext(kind=kind, configDir=self.folder)
            outcome, _, messages = runLine(
                "scripts/tag.lua(E:/in::%i,%V0010,0010); mark x; scripts/tag.lua", context)
            self.assertEqual((outcome, messages), (Outcome.CONTINUE, []))
            self.assertEqual(context.dataset.StudyDescription, "E:/in::123,DOE^JOHN;none;")
            self.assertEqual(context.variables["x"], "x")

    def test_fileWithTextAfterLuaColon(self):
        self.write("Data.StudyDescription = command_line", 1000)
        context = makeContext(configDir=self.folder)
        runLine("lua:scripts/tag.lua(%i)", context)
        self.assertEqual(context.dataset.StudyDescription, "123")

    def test_quotedFileNameAfterLuaColon(self):
        """``lua:"x.lua"`` runs the file (a lone string is no Lua code), its
        name holding what an unquoted one may not, with ``(text)`` too."""
        os.makedirs(os.path.join(self.folder, "my scripts"))
        with open(os.path.join(self.folder, "my scripts", "a=b.lua"), "w") as f:
            f.write("Data.StudyDescription = 'quoted ' .. (command_line or 'none')")
        for line, description in (('lua:"my scripts/a=b.lua"', "quoted none"),
                                  ('lua: "my scripts/a=b.lua"(%i) ', "quoted 123")):
            outcome, context, messages = runLine(line, makeContext(configDir=self.folder))
            self.assertEqual((outcome, messages, context.dataset.StudyDescription),
                             (Outcome.CONTINUE, [], description), line)

    def test_processWithTakesItsFirstWordAsTheFile(self):
        """``process with NAME.lua text`` runs the file NAME.lua with
        command_line the text, whatever NAME holds ('=', braces): it is not
        parsed again as ``lua:``, which would take it for Lua code."""
        for name in ("my=x.lua", "{site}.lua"):
            with open(os.path.join(self.folder, name), "w") as f:
                f.write(f"Data.StudyDescription = '{name} ' .. command_line")
            for text in ("a", "a b"):
                context = makeContext(configDir=self.folder)
                outcome, _, messages = runLine(f"process with {name} {text}", context,
                                               luaRegistry(pacs_commands_dataset.processWithCommand))
                self.assertEqual((outcome, messages, context.dataset.StudyDescription),
                                 (Outcome.CONTINUE, [], f"{name} {text}"), (name, text))

    def test_otherWordsAreNoLuaFile(self):
        for line in ("scripts/tag.luax", "tag.lua x", "tag.lua(x) y"):
            with self.assertRaises(ConverterSyntaxError, msg=line) as raised:
                parseScript(line, KEY, luaRegistry(), "import")
            self.assertIn("unknown command", str(raised.exception))

    def test_missingFile(self):
        outcome, _, messages = runLine("lua:scripts/none.lua", makeContext(configDir=self.folder))
        self.assertEqual(outcome, Outcome.STOP)
        self.assertTrue(messages[0].startswith(
            f"{KEY}: Lua script failed: cannot read {self.folder}/scripts/none.lua: "), messages)


class ObjectTests(unittest.TestCase):
    """newdicomobject(), newdicomarray(), DicomObject:new(), x:Read/Write,
    readdicom and writedicom, and where sandboxed scripts may reach files."""

    def setUp(self):
        self.workdir = os.path.abspath(self.mktemp())
        self.files = os.path.join(self.workdir, "luafiles")
        os.makedirs(self.files)

    def context(self, ini="LuaFileFolder = luafiles\n", dataset=None):
        return makeContext(dataset, ini=ini, configDir=self.workdir)

    def writeFile(self, name, dataset):
        writePart10(dataset, os.path.join(self.files, name))

    def test_newObjectWrittenAndReadBack(self):
        """A new object is the script's own: changing it changes nothing
        stored; written as Part-10, read into another object."""
        context = self.context()
        outcome, _, messages = runLua(
            "local x = newdicomobject(); x.PatientID = 'P1'; x.SOPInstanceUID = '1.2.3'; "
            "x.SOPClassUID = '1.2.840.10008.5.1.4.1.1.7'; print(x:Write('out/x.dcm')); "
            "local y = DicomObject:new(); print(y:Read('out/x.dcm'), y.PatientID, y.SOPInstanceUID)", context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: true", f"{KEY}: 1\tP1\t1.2.3"])
        self.assertFalse(context.changed)
        written = dcmread(os.path.join(self.files, "out", "x.dcm"))
        self.assertEqual((written.PatientID, written.file_meta.MediaStorageSOPInstanceUID), ("P1", "1.2.3"))

    def test_newArray(self):
        outcome, context, _ = runLua(
            "local a = newdicomarray(); a[0].ReferencedSOPInstanceUID = '1.2.1'; "
            "a[#a].ReferencedSOPInstanceUID = '1.2.2'; Data:SetVR(0x0008, 0x1140, a); "
            "local b = DicomObject:newarray(); Data:SetVR(0x0008, 0x1115, b)")
        self.assertEqual(outcome, Outcome.CONTINUE)
        dataset = context.dataset
        self.assertEqual([item.ReferencedSOPInstanceUID for item in dataset.ReferencedImageSequence],
                         ["1.2.1", "1.2.2"])
        self.assertEqual(len(dataset.ReferencedSeriesSequence), 0)

    def test_arrayAssignedAndAddedTo(self):
        """Conquest's r = DicomObject:newarray(); r:Add(x) (a copy of x
        appended) and Data.Seq = r (copies of its items), as SetVR does; a
        sequence set to an element that is none is an error."""
        outcome, context, messages = runLua(
            "local a, x = DicomObject:newarray(), newdicomobject(); x.ReferencedSOPInstanceUID = '1.2.1'; "
            "a:Add(x); x.ReferencedSOPInstanceUID = '1.2.2'; a:Add(x); Data.ReferencedImageSequence = a; "
            "a[0].ReferencedSOPInstanceUID = '1.2.9'; print(#a, #Data.ReferencedImageSequence); "
            "print(pcall(function() Data.PatientName = a end)); print(pcall(function() a:Add(a) end))")
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [
            f"{KEY}: 2\t2", f"{KEY}: false\tlua:1: PatientName is no sequence: a sequence (newdicomarray()) is set "
                            "only to one",
            f"{KEY}: false\tlua:1: Add wants a sequence (newdicomarray()) and a DICOM object: array:Add(x)"]))
        self.assertEqual([item.ReferencedSOPInstanceUID for item in context.dataset.ReferencedImageSequence],
                         ["1.2.1", "1.2.2"])
        self.assertTrue(context.changed)

    def test_copy(self):
        """Conquest's x:Copy(): a deep copy, whose changes (of its
        sequences' items too) leave the original as it was; an export
        converter's Data is copied whole, pixels included."""
        dataset = patient()
        dataset.ReferencedImageSequence = [Dataset()]
        dataset.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.1"
        outcome, context, messages = runLua(
            "local x = Data:Copy(); x.PatientName = 'COPY'; x.ReferencedImageSequence[0].ReferencedSOPInstanceUID "
            "= '1.2.9'; local y = x:Copy(); y.PatientName = 'COPY2'; "
            "print(Data.PatientName, x.PatientName, y.PatientName, y.ReferencedImageSequence[0].ReferencedSOPInstanceUID)",
            makeContext(dataset))
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: DOE^JOHN\tCOPY\tCOPY2\t1.2.9"]))
        self.assertFalse(context.changed)
        self.assertEqual(context.dataset.ReferencedImageSequence[0].ReferencedSOPInstanceUID, "1.2.1")
        stored = os.path.join(self.workdir, "stored.dcm")
        withPixels = patient()
        withPixels.add_new(0x7FE00010, "OW", b"\x01\x02" * 4)
        self.writeFile("stored.dcm", withPixels)
        os.rename(os.path.join(self.files, "stored.dcm"), stored)
        context = makeContext(Dataset(), kind="export", ini="LuaFileFolder = luafiles\n", configDir=self.workdir,
                              filename=stored)
        outcome, _, messages = runLua("local x = Data:Copy(); print(x.PatientName, #x.PixelData)", context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: DOE^JOHN\t8"]))

    def test_copiesAreChargedWhatTheyCopy(self):
        """a:Add(x), Data.Seq = a and x:Copy() count what the copy holds
        towards the 256 MB of values a run may make (an item, its elements
        and their values): a loop doubling Data (Add it, set the array back)
        with 1 MB of text is stopped with the limit's error after a few
        passes, where a flat 1 KB an item let it grow without end; pixel
        bytes the copy shares are not counted: 20 copies of an object with
        20 MB of pixels are made."""
        dataset = patient()
        dataset.add_new(0x00204000, "LT", "x" * (1 << 20))
        outcome, context, messages = runLua(
            "local b = newdicomarray(); for i=1,10 do b:Add(Data); Data.ReferencedImageSequence = b; "
            "print(i) end", makeContext(dataset))
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages[-1], f"{KEY}: Lua script failed: lua:1: script stopped: what it put into DICOM "
                                       "objects (or a page) passed 256 MB")
        self.assertLess(len(messages), 10)
        dataset = patient()
        dataset.add_new(0x7FE00010, "OW", b"\x00" * (20 << 20))
        outcome, context, messages = runLua(
            "local n = 0; for i=1,20 do n = n + #Data:Copy().PixelData end; print(n)", makeContext(dataset))
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: {20 * (20 << 20)}"]))

    def test_anUnknownMethod(self):
        """x:AddImage() (a Conquest method pacs has not) says there is no
        such method (or attribute), not only that it is no DICOM attribute."""
        outcome, _, messages = runLua("Data:AddImage()")
        self.assertEqual((outcome, messages), (Outcome.STOP, [
            f"{KEY}: Lua script failed: lua:1: no method or DICOM attribute 'AddImage'"]))

    def test_writeData(self):
        outcome, _, messages = runLua(
            "print(Data:Write('data.dcm'), writedicom('copy.dcm'), writedicom(Data, 'sub/copy2.dcm'))",
            self.context())
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: true\ttrue\ttrue"])
        for name in ("data.dcm", "copy.dcm", os.path.join("sub", "copy2.dcm")):
            self.assertEqual(dcmread(os.path.join(self.files, name)).PatientName, "DOE^JOHN")

    def test_exportDataWritesTheStoredObject(self):
        """An export converter's Data stops before the pixels: Write writes
        the whole stored file, as save to does."""
        stored = os.path.join(self.workdir, "stored.dcm")
        self.writeFile("stored.dcm", patient())
        os.rename(os.path.join(self.files, "stored.dcm"), stored)
        context = makeContext(Dataset(), kind="export", ini="LuaFileFolder = luafiles\n", configDir=self.workdir,
                              filename=stored)
        outcome, _, messages = runLua("print(Data:Write('copy.dcm'))", context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: true"]))
        self.assertEqual(dcmread(os.path.join(self.files, "copy.dcm")).PatientName, "DOE^JOHN")

    def test_exportDataHasItsPixels(self):
        """An export converter's Data, read up to its pixels, gives the
        stored object's Pixel Data when asked, as an import converter's does."""
        dataset = patient()
        dataset.BitsAllocated, dataset.PixelData = 16, b"\x01\x02" * 8
        stored = os.path.join(self.workdir, "stored.dcm")
        writePart10(dataset, stored)
        context = makeContext(dcmread(stored, stop_before_pixels=True), kind="export", filename=stored)
        outcome, _, messages = runLua("print(#Data.PixelData, #Data:GetVR(0x7fe0, 0x10, true), Data.Rows)", context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: 16\t16\t512"]))
        self.assertFalse(context.changed)

    def test_exportDataWithoutPixelsReadsTheFileOnce(self):
        """An export converter's Data of an object with no pixel data (an
        SR) reads the stored file once, however often a script asks."""
        stored = os.path.join(self.workdir, "stored.dcm")
        writePart10(patient(), stored)
        context = makeContext(dcmread(stored, stop_before_pixels=True), kind="export", filename=stored)
        reads = []
        self.patch(lua, "readObject", lambda filename: reads.append(filename) or dcmread(filename))
        outcome, _, messages = runLua(
            "for i = 1, 5 do local x = Data.PixelData end print(Data:GetVR(0x7fe0, 0x10))", context)
        self.assertEqual((outcome, messages, reads), (Outcome.CONTINUE, [f"{KEY}: nil"], [stored]))

    def test_exportDataWritesWhatTheScriptChanged(self):
        """Data:Write, writedicom and a later ``save to`` of an export
        converter write the stored object with the elements the script set
        or deleted on Data."""
        stored = os.path.join(self.workdir, "stored.dcm")
        original = dcmread(get_testdata_file("CT_small.dcm"))
        original.save_as(stored)
        context = makeContext(dcmread(stored, stop_before_pixels=True), kind="export",
                              ini="LuaFileFolder = luafiles\n", configDir=self.workdir, filename=stored)
        outcome, _, messages = runLine(
            "lua \"Data.PatientName = 'ANON^X'; Data.PatientID = nil; "
            "print(Data:Write('copy.dcm'), writedicom('copy2.dcm'))\"; save to luafiles/copy3.dcm",
            context, luaRegistry(pacs_commands_dataset.saveToCommand))
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: true\ttrue"]))
        for name in ("copy.dcm", "copy2.dcm", "copy3.dcm"):
            written = dcmread(os.path.join(self.files, name))
            self.assertEqual((written.PatientName, "PatientID" in written), ("ANON^X", False))
            self.assertEqual(written.PixelData, original.PixelData)

    def test_readdicomReplacesData(self):
        other = Dataset()
        other.PatientName = "ROE^JANE"
        other.PatientID = "9"
        self.writeFile("other.dcm", other)
        context = self.context()
        outcome, _, messages = runLua("print(readdicom('other.dcm'), Data.PatientName, Data.Rows)", context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: 1\tROE^JANE\tnil"])
        self.assertTrue(context.changed)
        self.assertEqual([e.keyword for e in context.dataset], ["PatientName", "PatientID"])

    def contextWithoutObject(self):
        """A context with no object (dgate --lua:, the [lua] scripts) and
        other.dcm, of ROE^JANE, to read."""
        other = Dataset()
        other.PatientName = "ROE^JANE"
        self.writeFile("other.dcm", other)
        context = self.context()
        context.dataset = None
        return context

    def test_emptyDataWhereThereIsNoObject(self):
        """Where there is no object (dgate --lua:, the [lua] scripts) Data
        is an empty one, as Conquest's dummyddo: readdicom(path) fills it."""
        context = self.contextWithoutObject()
        outcome, _, messages = runLua(
            "print(type(Data), Data.PatientName); print(readdicom('other.dcm'), Data.PatientName)", context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: table\tnil", f"{KEY}: 1\tROE^JANE"]))
        self.assertIsNone(context.dataset)

    def test_scriptRunsOnTheEmptyData(self):
        """script(rule) runs on that Data, as Data:Script(rule) does."""
        context = self.contextWithoutObject()
        outcome, _, messages = runLua(
            "readdicom('other.dcm'); print(script('set 0010,0010 to \"DOE^JANE\"'), Data.PatientName)", context,
            commands=luaRegistry(pacs_commands_dataset.setCommand))
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: continue\tDOE^JANE"]))

    def test_compressedObjects(self):
        """A compressed object is read into and written from a new object in
        its own syntax; it cannot replace the converter's object."""
        source = get_testdata_file("JPEG2000.dcm")
        with open(source, "rb") as f, open(os.path.join(self.files, "j2k.dcm"), "wb") as g:
            g.write(f.read())
        context = self.context()
        outcome, _, messages = runLua(
            "local ok, reason = readdicom('j2k.dcm'); print(ok, reason, Data.PatientName); "
            "local x = newdicomobject(); print(readdicom(x, 'j2k.dcm'), x:Write('copy.dcm'))", context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: nil\tj2k.dcm: compressed pixel data cannot replace the converter's "
                                    "object (read it into newdicomobject())\tDOE^JOHN", f"{KEY}: 1\ttrue"])
        self.assertFalse(context.changed)
        copy, original = dcmread(os.path.join(self.files, "copy.dcm")), dcmread(source)
        self.assertEqual(copy.file_meta.TransferSyntaxUID, original.file_meta.TransferSyntaxUID)
        self.assertEqual(copy.PixelData, original.PixelData)

    def test_missingOrDamagedFileIsNil(self):
        with open(os.path.join(self.files, "junk.dcm"), "wb") as f:
            f.write(b"")
        outcome, context, messages = runLua(
            "local ok, reason = readdicom('missing.dcm'); print(ok, reason); "
            "local x = newdicomobject(); print(x:Read('junk.dcm')); print(Data.PatientName)", self.context())
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(len(messages), 3)
        self.assertTrue(messages[0].startswith(f"{KEY}: nil\tcannot read missing.dcm: [Errno 2]"), messages[0])
        self.assertTrue(messages[1].startswith(f"{KEY}: nil\tcannot read junk.dcm: "), messages[1])
        self.assertEqual(messages[2], f"{KEY}: DOE^JOHN")
        self.assertFalse(context.changed)

    def test_fileThatIsNoDicomIsNil(self):
        """Text, random bytes or zeros are no object (Conquest's readdicom gives
        nothing): nil and the reason, Data unchanged; a bare implicit VR
        data set (Conquest's .v2) is one."""
        with open(os.path.join(self.files, "text.txt"), "w") as f:
            f.write("hello world this is a text file\n")
        with open(os.path.join(self.files, "random.bin"), "wb") as f:
            f.write(bytes(range(256)[::-1]) * 8)
        with open(os.path.join(self.files, "zeros.bin"), "wb") as f:
            f.write(bytes(4096))
        with open(os.path.join(self.files, "bare.v2"), "wb") as f:
            f.write(encodeDataset(dcmread(get_testdata_file("CT_small.dcm")), ImplicitVRLittleEndian))
        outcome, context, messages = runLua(
            "print(readdicom('text.txt')); print(Data:Read('random.bin')); print(Data:Read('zeros.bin')); "
            "print(Data.PatientName); local x = newdicomobject(); print(x:Read('bare.v2'), x.PatientName)",
            self.context())
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages[3:], [f"{KEY}: DOE^JOHN", f"{KEY}: 1\tCompressedSamples^CT1"])
        for message, name in zip(messages, ("text.txt", "random.bin", "zeros.bin")):
            self.assertTrue(message.startswith(f"{KEY}: nil\tcannot read {name}: "), message)
            self.assertTrue(message.endswith(f"{name} holds no DICOM object"), message)
        self.assertFalse(context.changed)

    def test_sandboxedScriptsReachOnlyLuaFileFolder(self):
        outside = os.path.join(self.workdir, "outside")
        os.makedirs(outside)
        os.symlink(outside, os.path.join(self.files, "link"))
        cases = [
            (self.context(ini=""), "readdicom('x.dcm')",
             "lua:1: x.dcm: sandboxed Lua scripts reach no file without LuaFileFolder (or LuaAllowUnsafe = 1)"),
            (self.context(), "writedicom('../x.dcm')",
             "lua:1: ../x.dcm: sandboxed Lua scripts reach only the files in LuaFileFolder"),
            (self.context(), "writedicom('link/x.dcm')",
             "lua:1: link/x.dcm: sandboxed Lua scripts reach only the files in LuaFileFolder"),
            (self.context(), f"Data:Write('{outside}/x.dcm')",
             f"lua:1: '{outside}/x.dcm': sandboxed Lua scripts name files relative to LuaFileFolder"),
        ]
        for context, code, message in cases:
            outcome, _, messages = runLua(code, context)
            self.assertEqual(outcome, Outcome.STOP, code)
            self.assertEqual(messages, [f"{KEY}: Lua script failed: {message}"], code)
        self.assertEqual(os.listdir(outside), [])
        self.assertEqual(sorted(os.listdir(self.workdir)), ["luafiles", "outside"])

    def test_unsafeScriptsReachAnyFile(self):
        """LuaAllowUnsafe = 1: any file, relative names in the working folder."""
        target = os.path.join(os.path.abspath(self.mktemp()), "x.dcm")
        outcome, _, messages = runLua(f"print(Data:Write('{target}'), writedicom('here.dcm'))",
                                      self.context(ini="LuaAllowUnsafe = 1\n"))
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: true\ttrue"]))
        self.assertEqual(dcmread(target).PatientID, "123")
        self.assertEqual(dcmread(os.path.join(self.workdir, "here.dcm")).PatientID, "123")


class RecordingRequests:
    """A stand-in DicomRequests: records what it was asked, 'DOWN' fails."""

    def __init__(self):
        self.calls = []

    def _check(self, ae):
        if ae == "DOWN":
            raise DicomRequestError("'DOWN' is not in acrnema.map")

    def find(self, ae, level, identifier):
        self.calls.append(("find", ae, level, identifier.PatientID, "StudyInstanceUID" in identifier))
        self._check(ae)
        matches = [Dataset(), Dataset()]
        for number, match in enumerate(matches, 1):
            match.StudyInstanceUID = f"1.2.{number}"
        return defer.succeed(matches)

    def move(self, source, destination, identifier, patientRoot):
        self.calls.append(("move", source, destination, identifier.StudyInstanceUID, patientRoot))
        self._check(source)
        return defer.succeed(None)


class ServerCommandTests(unittest.TestCase):
    """servercommand('name:arguments') in a converter: the command runs in
    the reactor while the script's worker thread waits."""

    @inlineCallbacks
    def test_servercommand(self):
        def run(line, sandboxed):
            if line == "nosuch:":
                return defer.fail(CommandError("unknown command --nosuch"))
            return defer.succeed("" if line == "quiet:" else f"output of {line}")

        context = makeContext()
        context.services.serverCommands = ServerCommands(reactor, run, slots=1)
        outcome, _, messages = yield threads.deferToThread(
            runLua, "print(servercommand('display_status:')); print(servercommand('quiet:')); "
                    "print(servercommand('nosuch:'))", context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: output of display_status:", f"{KEY}: nil",
                                    f"{KEY}: nil\tnosuch:: unknown command --nosuch"])

    @inlineCallbacks
    def test_dicomqueryAndDicommove(self):
        """The query object's keys go to the request, the matches come back
        as an array; a failure is an empty array (or nil) and the reason."""
        requests = RecordingRequests()
        context = makeContext()
        context.services.serverCommands = ServerCommands(reactor, None, slots=1, requests=requests)
        outcome, _, messages = yield threads.deferToThread(
            runLua, "local q = newdicomobject(); q.PatientID = '123'; q.StudyInstanceUID = ''; "
                    "local studies = dicomquery('REMOTE', 'study', q); "
                    "print(#studies, studies[0].StudyInstanceUID, studies[1].StudyInstanceUID, tostring(studies[3])); "
                    "local none, reason = dicomquery('DOWN', 'STUDY', q); print(#none, reason); "
                    "q.QueryRetrieveLevel = 'STUDY'; q.StudyInstanceUID = studies[1].StudyInstanceUID; "
                    "print(dicommove('REMOTE', 'DEST', q), dicommove('REMOTE', 'DEST', q, 1)); "
                    "print(dicommove('DOWN', 'DEST', q))", context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: 2\t1.2.1\t1.2.2\tnil",
                                    f"{KEY}: 0\tdicomquery: 'DOWN' is not in acrnema.map",
                                    f"{KEY}: true\ttrue", f"{KEY}: nil\tdicommove: 'DOWN' is not in acrnema.map"])
        self.assertEqual(requests.calls, [("find", "REMOTE", "study", "123", True),
                                          ("find", "DOWN", "STUDY", "123", True),
                                          ("move", "REMOTE", "DEST", "1.2.2", False),
                                          ("move", "REMOTE", "DEST", "1.2.2", True),
                                          ("move", "DOWN", "DEST", "1.2.2", False)])
        self.assertFalse(context.changed)

    @inlineCallbacks
    def test_ipairsOverMatchesEnds(self):
        """ipairs over dicomquery's matches ends after the last (it ran
        until LuaMaxInstructions, reading item #r appended one): past the
        last item, one is nil and none is added."""
        context = makeContext(ini="LuaMaxInstructions = 100000\n")
        context.services.serverCommands = ServerCommands(reactor, None, slots=1, requests=RecordingRequests())
        outcome, _, messages = yield threads.deferToThread(
            runLua, "local q = newdicomobject(); q.PatientID = '1'; local r = dicomquery('REMOTE', 'STUDY', q); "
                    "local n = 0; for i, match in ipairs(r) do n = n + 1 end; print(n, tostring(r[2]), #r)", context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: 1\tnil\t2"]))

    def test_queryWantsAnObject(self):
        context = makeContext()
        context.services.serverCommands = ServerCommands(reactor, None, slots=1, requests=RecordingRequests())
        outcome, _, messages = runLua("dicomquery('REMOTE', 'STUDY', Data.PatientID)", context)
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: dicomquery wants a DICOM object "
                                    "(newdicomobject()) for its query"])

    def test_withoutServerCommands(self):
        outcome, _, messages = runLua("servercommand('display_status:')")
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: servercommand: there are no server "
                                    "commands here"])


class SandboxedServerCommandTests(unittest.TestCase):
    """A sandboxed script cannot turn its sandbox off or learn dicom.ini's
    secrets, through servercommand or Global; with LuaAllowUnsafe = 1 it can."""

    def setUp(self):
        self.running = RunningArchive(self, ini={"ControlSecret": "s3cret", "Password": "dbpass"})
        self.ini = self.running.archive.configuration.ini

    def runScript(self, code):
        context = ConverterContext("import", patient(), "SENDER", "ARCHIVE",
                                   services=self.running.archive.converterServices, converterName=KEY)
        return threads.deferToThread(runLua, code, context)

    @inlineCallbacks
    def test_cannotSwitchTheSandboxOff(self):
        for _ in range(2):
            _, _, messages = yield self.runScript(
                "print(type(os.execute)); print(servercommand('put_param:LuaAllowUnsafe,1'))")
            self.assertEqual(messages, [f"{KEY}: nil", f"{KEY}: nil\tput_param:LuaAllowUnsafe,1: --put_param failed: "
                                        "sandboxed Lua scripts run only commands that change nothing "
                                        "(LuaAllowUnsafe = 1 allows every one)"])
        self.assertIsNone(self.ini.get("LuaAllowUnsafe"))
        self.assertIsNone(DicomIni.fromFile(self.running.archive.configuration.iniPath).get("LuaAllowUnsafe"))

    @inlineCallbacks
    def test_readOnlyCommandAndNoSecrets(self):
        _, _, messages = yield self.runScript(
            "print(servercommand('get_param:MyACRNema'), Global.MyACRNema, Global.ControlSecret, Global.Password); "
            "print(servercommand('get_param:ControlSecret'))")
        self.assertEqual(messages, [f"{KEY}: PACS\tPACS\tnil\tnil",
                                    f"{KEY}: nil\tget_param:ControlSecret: --get_param failed: ControlSecret is a "
                                    "secret: sandboxed Lua scripts cannot read it"])

    @inlineCallbacks
    def test_unsafeScriptRunsEveryCommand(self):
        self.ini.set("LuaAllowUnsafe", "1")
        _, _, messages = yield self.runScript(
            "print(Global.ControlSecret, servercommand('get_param:Password')); "
            "print(servercommand('put_param:LuaMaxInstructions,5000000'))")
        self.assertEqual(messages, [f"{KEY}: s3cret\tdbpass", f"{KEY}: nil"])
        self.assertEqual(self.ini.get("LuaMaxInstructions"), "5000000")


class DbQueryTests(unittest.TestCase):
    """dbquery on a real SQLite index."""

    def setUp(self):
        self.engine = sqliteEngine(self)
        self.index = Index(self.engine, conquestLayout(), TABLE_NAMES)
        self.index.createTables()
        self.index.storeMany([makeRecord("1.2.3.1.1"), makeRecord("1.2.3.1.2"),
                              makeRecord("1.2.4.1.1", series="1.2.4.1", study="1.2.4",
                                         patient="PAT2")])
        UIDMap(self.engine)  # creates UIDMODS beside the index tables

    def query(self, code):
        return runLua(code, makeContext(index=self.index))

    def test_rows(self):
        outcome, _, messages = self.query(
            "local rows = dbquery('DICOMImages', 'SOPInstanceUID, ImagePat', [[ImagePat = 'PAT1']]) "
            "for _, row in ipairs(rows) do print(row[1], row[2]) end "
            "print(#dbquery('dicomstudies', 'StudyInstanceUID'), #dbquery('DICOMPatients', 'PatientID', "
            "[[PatientID = 'nobody']]))")
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(sorted(messages), sorted([f"{KEY}: 1.2.3.1.1\tPAT1", f"{KEY}: 1.2.3.1.2\tPAT1",
                                                   f"{KEY}: 2\t0"]))

    def test_namesCutShort(self):
        """Columns named cut to TruncateFieldNames characters, as Conquest's
        scripts may name them."""
        _, _, messages = self.query("for _, row in ipairs(dbquery('DICOMImages', 'SOPInstanc', "
                                    "[[SeriesInst = '1.2.4.1']], 'SOPInstanc')) do print(row[1]) end")
        self.assertEqual(messages, [f"{KEY}: 1.2.4.1.1"])

    def test_sortOrder(self):
        """Conquest's fourth argument: the ORDER BY."""
        _, _, messages = self.query("for _, row in ipairs(dbquery('DICOMImages', 'SOPInstanceUID', '', "
                                    "'SOPInstanceUID desc')) do print(row[1]) end")
        self.assertEqual(messages, [f"{KEY}: 1.2.4.1.1", f"{KEY}: 1.2.3.1.2", f"{KEY}: 1.2.3.1.1"])

    def test_nullsAreEmptyStrings(self):
        _, _, messages = self.query("local r = dbquery('DICOMPatients', 'PatientID, qSpare', "
                                    "[[PatientID = 'PAT2']]) print(r[1][1], '[' .. r[1][2] .. ']')")
        self.assertEqual(messages, [f"{KEY}: PAT2\t[]"])

    def test_refusals(self):
        cases = [
            ("dbquery('UIDMODS', 'OldUID')", "dbquery: 'UIDMODS' is not one of the index tables "
             "(DICOMPatients, DICOMStudies, DICOMSeries, DICOMImages, DICOMWorkList)"),
            ("dbquery('sqlite_master', 'name')", "dbquery: 'sqlite_master' is not one of the index "
             "tables (DICOMPatients, DICOMStudies, DICOMSeries, DICOMImages, DICOMWorkList)"),
            ("dbquery('DICOMPatients', 'PatientID, count(*)')", "dbquery: DICOMPatients has no "
             "column 'count(*)'"),
            ("dbquery('DICOMPatients', 'PatientID', [[1=1; DROP TABLE DICOMPatients]])",
             "dbquery: the where clause may not hold ';' or comments"),
            ("dbquery('DICOMPatients', 'PatientID', [[1=1) --]])",
             "dbquery: the where clause may not hold ';' or comments"),
            ("dbquery('DICOMPatients', 'PatientID', '', [[1; DELETE FROM DICOMPatients]])",
             "dbquery: the sort order may not hold ';' or comments"),
        ]
        for code, message in cases:
            outcome, _, messages = self.query(code)
            self.assertEqual(outcome, Outcome.STOP, code)
            self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: {message}"], code)
        self.assertEqual(self.index.storeMany([]), [])
        with self.engine.connect() as connection:
            self.assertEqual(len(connection.exec_driver_sql("SELECT * FROM DICOMPatients").all()), 2)

    def test_colonsInWhere(self):
        _, _, messages = self.query("print(#dbquery('DICOMPatients', 'PatientID', "
                                    "[[PatientName <> 'a:b']]))")
        self.assertEqual(messages, [f"{KEY}: 2"])

    def test_withoutIndex(self):
        outcome, _, messages = runLua("dbquery('DICOMPatients', 'PatientID')")
        self.assertEqual(outcome, Outcome.STOP)
        self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: dbquery: there is no index "
                                    "database"])


class ThreadTests(unittest.TestCase):

    def test_oneRuntimePerThread(self):
        runtimes, outcomes = {}, {}

        def work(name):
            runtimes[name] = (LuaRuntime.forThread(), LuaRuntime.forThread())
            context = makeContext()
            outcomes[name] = (runLua(f"for i = 1, 200000 do end; Data.StudyDescription = '{name}'",
                                     context)[0], context.dataset.StudyDescription)

        threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertIs(runtimes["a"][0], runtimes["a"][1])
        self.assertIsNot(runtimes["a"][0], runtimes["b"][0])
        self.assertIsNot(runtimes["a"][0], LuaRuntime.forThread())
        self.assertEqual(outcomes, {"a": (Outcome.CONTINUE, "a"), "b": (Outcome.CONTINUE, "b")})


class AssociationGlobalsTests(unittest.TestCase):
    """As in Conquest, whose Lua state lives as long as its association: the
    scripts on one association's contexts (one ``session``) share their
    globals, those of other associations and of none do not."""

    def runOn(self, code, session, patientID="123", commands=None):
        """The printed lines and outcome of ``code`` on an object of ``session``."""
        context = makeContext()
        context.session = session
        context.dataset.PatientID = patientID
        outcome, _, messages = runLua(code, context, commands)
        return [m.removeprefix(KEY + ": ") for m in messages], outcome

    def test_globalsLastForTheAssociation(self):
        count = "n = (n or 0) + 1; print(n)"
        first, second = {}, {}
        self.assertEqual([self.runOn(count, first)[0] for _ in range(3)], [["1"], ["2"], ["3"]])
        self.assertEqual(self.runOn(count, second)[0], ["1"])
        self.assertEqual(self.runOn(count, None)[0], ["1"])
        self.assertEqual(self.runOn(count, None)[0], ["1"])
        self.assertEqual(self.runOn(count, first)[0], ["4"])

    def test_aFunctionOfAnEarlierRunSeesThisRunsData(self):
        """A helper defined by an earlier script (the association's) sees the
        object of the run that calls it, and its functions."""
        session = {}
        self.runOn("function tagit(x) return Data.PatientID .. '-' .. x .. '-' .. crc('a') end; seen = {}", session)
        self.assertEqual(self.runOn("print(tagit('x'), Data.PatientID)", session, "P2")[0], ["P2-x-3904355907\tP2"])

    def test_aScriptWithinKeepsItsRunsBindings(self):
        """A script('lua ...') run within another, on the same association,
        shares its globals but leaves the outer run its own Data and
        functions: its script('destroy') still decides its object's fate."""
        session = {}
        lines, outcome = self.runOn("local q = string.char(34); script('lua ' .. q .. 'inner = Data.PatientID' .. q); "
                                  "print(inner); script('destroy')",
                                  session, "P4")
        self.assertEqual((lines, outcome), (["P4"], Outcome.DESTROY))
        self.assertEqual(self.runOn("print(inner, Data.PatientID)", session, "P5")[0], ["P4\tP5"])

    def test_aStoppedRunLeavesTheNextOneOfItsAssociationWhole(self):
        """A run stopped by LuaMaxInstructions fails alone, at its script's
        line: the next object of the association is converted again."""
        session, ini = {}, "LuaMaxInstructions = 100000\n"
        code = "if Data.PatientID == 'P2' then while true do end end; Data.PatientName = 'ANON^ANON'"
        for patientID, expected in (("P1", Outcome.CONTINUE), ("P2", Outcome.STOP), ("P3", Outcome.CONTINUE)):
            context = makeContext(ini=ini)
            context.session = session
            context.dataset.PatientID = patientID
            outcome, _, messages = runLua(code, context)
            self.assertEqual(outcome, expected, messages)
            if expected is Outcome.STOP:
                self.assertEqual(messages, [f"{KEY}: Lua script failed: lua:1: script stopped after 100000 "
                                            "instructions (LuaMaxInstructions)"])
            else:
                self.assertEqual((messages, str(context.dataset.PatientName)), ([], "ANON^ANON"))

    def test_aStoppedRunWithinARunIsReportedAtItsLine(self):
        """A run started by script('lua ...') and stopped by the limit is
        reported at its own line, not in pacs's setup code (the run around
        it, sharing its budget, stops too); the association goes on."""
        session, ini = {}, "LuaMaxInstructions = 100000\n"
        code = "if Data.PatientID == 'P2' then script('lua \"while true do end\"') end; Data.PatientName = 'ANON^ANON'"
        for patientID in ("P1", "P2", "P3"):
            context = makeContext(ini=ini)
            context.session = session
            context.dataset.PatientID = patientID
            outcome, _, messages = runLua(code, context)
            if patientID == "P2":
                self.assertEqual(outcome, Outcome.STOP, messages)
                self.assertEqual(messages[0], f"{KEY}: Lua script failed: lua:1: script stopped after 100000 "
                                              "instructions (LuaMaxInstructions)")
            else:
                self.assertEqual((outcome, messages, str(context.dataset.PatientName)),
                                 (Outcome.CONTINUE, [], "ANON^ANON"))

    def test_aReleasedSessionsLuaStateIsFreedAtOnce(self):
        """The Lua state of an association released at its end is freed at
        once, not by a later cyclic garbage collection, which does not see
        what it holds; even one whose script used x:Script and kept Data."""
        gc.disable()
        self.addCleanup(gc.enable)
        session = {}
        for patientID in ("P1", "P2"):
            self.runOn("big = string.rep('x', 1000000) .. Data.PatientID; seen = Data; Data:Script('nop')",
                       session, patientID)
        state = weakref.ref(session["lua"])
        LuaRuntime.release(session)
        self.assertEqual(session, {})
        del session
        self.assertIsNone(state())

    @inlineCallbacks
    def test_aRunWaitingForItsAssociationsTurnLeavesItsPoolAWorker(self):
        """A run waiting for another of its association, which waits for a
        server command needing the pool they are in, is stood in for: the
        command runs (not cancelled after LuaCommandTimeout), then both runs."""
        pool = WorkerPool(reactor, 1, "lua-turn-pool")
        pool.start()
        self.addCleanup(pool.stop, 5)
        session = {}
        first, second = makeContext(), makeContext()
        first.session = second.session = session
        ran = []

        def run(line, sandboxed):  # the second run waits for the first's turn before the command's work comes
            ran.append(pool.deferToWorker(runLua, "Data.StudyDescription = 'second'", second))
            return task.deferLater(reactor, 0.2, pool.deferToWorker, lambda: "answered")

        first.services.serverCommands = ServerCommands(reactor, run, slots=1, timeout=5)
        outcome = (yield pool.deferToWorker(runLua, "Data.StudyDescription = servercommand('x:')", first))[0]
        self.assertEqual((outcome, (yield ran[0])[0]), (Outcome.CONTINUE, Outcome.CONTINUE))
        self.assertEqual((first.dataset.get("StudyDescription"), second.dataset.get("StudyDescription")),
                         ("answered", "second"))

    def test_associationsRunAtOnce(self):
        """Two associations' scripts in two threads each keep their own count."""
        sessions, results = ({}, {}), {}

        def work(number):  # the log is captured for all threads: each picks its own lines
            results[number] = [
                [line for line in self.runOn(f"for i = 1, 20000 do end; n = (n or 0) + 1; print('{number}', n)",
                                             sessions[number])[0] if line.startswith(f"{number}\t")][0][2:]
                for _ in range(5)]

        workers = [threading.Thread(target=work, args=(number,)) for number in (0, 1)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        self.assertEqual(results, {0: ["1", "2", "3", "4", "5"], 1: ["1", "2", "3", "4", "5"]})


class AnonymizerTests(unittest.TestCase):
    """etc/anonymize_script.lua on pydicom's CT_small.dcm."""

    blanked = ("ReferringPhysicianName", "AccessionNumber", "StudyID")

    def setUp(self):
        self.uidMap = UIDMap()
        self.original = dcmread(get_testdata_file("CT_small.dcm"))

    def anonymize(self, dataset):
        context = makeContext(dataset, configDir=os.path.abspath(ETC), uidMap=self.uidMap)
        outcome, context, messages = runLine("lua:anonymize_script.lua", context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, []))
        self.assertTrue(context.changed)
        return context.dataset

    def test_noPatientIdentifiersLeft(self):
        dataset = dcmread(get_testdata_file("CT_small.dcm"))
        dataset.PatientBirthDate = "19610427"
        dataset.ReferringPhysicianName = "WELBY^MARCUS"
        dataset.AccessionNumber = "A123"
        dataset.PatientAddress = "1 Main Street"
        dataset = self.anonymize(dataset)
        self.assertNotIn("OtherPatientIDsSequence", dataset)
        self.assertNotIn("InstitutionName", dataset)
        self.assertNotIn("StationName", dataset)
        self.assertNotIn("PatientAddress", dataset)
        self.assertEqual(dataset.PatientBirthDate, "19610101")
        self.assertEqual([textOf(dataset[keyword]) for keyword in self.blanked], ["", "", ""])
        self.assertRegex(dataset.PatientID, r"^[0-9A-F]{12}$")
        self.assertEqual(str(dataset.PatientName), "ANON^" + dataset.PatientID)
        self.assertEqual(dataset.PatientIdentityRemoved, "YES")
        # The new PatientID is random hex and the new UIDs random digits: take
        # them out so that they cannot spell one of the old values by chance.
        text = repr(dataset).replace(dataset.PatientID, "<new id>")
        for value in ("CompressedSamples", "1CT1", "JFK IMAGING", "CT01_OC0", "WELBY", "A123",
                      "Main Street", "19610427"):
            self.assertNotIn(value, text)
        output = BytesIO()
        dataset.save_as(output, enforce_file_format=True)
        self.assertEqual(dcmread(BytesIO(output.getvalue())).PatientID, dataset.PatientID)

    def test_consistentAcrossObjectsOfOneStudy(self):
        first = dcmread(get_testdata_file("CT_small.dcm"))
        second = dcmread(get_testdata_file("CT_small.dcm"))
        second.SOPInstanceUID = first.SOPInstanceUID + ".2"
        first, second = self.anonymize(first), self.anonymize(second)
        original = self.original
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                        "FrameOfReferenceUID"):
            self.assertNotEqual(first[keyword].value, original[keyword].value, keyword)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID"):
            self.assertEqual(first[keyword].value, second[keyword].value, keyword)
        self.assertNotEqual(first.SOPInstanceUID, second.SOPInstanceUID)
        self.assertEqual(first.file_meta.MediaStorageSOPInstanceUID, first.SOPInstanceUID)
        self.assertEqual(first.SOPClassUID, original.SOPClassUID)
        self.assertEqual(self.uidMap.oldFor(first.StudyInstanceUID), original.StudyInstanceUID)

    def test_otherPatientOtherPseudonym(self):
        other = dcmread(get_testdata_file("CT_small.dcm"))
        other.PatientID = "1CT2"
        self.assertNotEqual(self.anonymize(other).PatientID,
                            self.anonymize(dcmread(get_testdata_file("CT_small.dcm"))).PatientID)


class ChunkCacheTests(unittest.TestCase):
    """Inline code is compiled once, but a thread keeps at most
    ``MAX_CHUNKS`` chunks: code built at run time (dgate --lua:, script()
    of a line made by the script) does not grow the server for ever."""

    def test_chunksRunOnceDoNotPileUp(self):
        runtime = LuaRuntime()
        pad = "x" * 20000
        for number in range(3 * lua.MAX_CHUNKS):
            runtime.compile(f"local s = '{pad}{number}'")
        runtime.lua.execute("collectgarbage()")
        self.assertEqual(len(runtime._sources), lua.MAX_CHUNKS)
        self.assertLess(runtime.lua.get_memory_used(), 2 * lua.MAX_CHUNKS * len(pad))

    def test_recentChunksStay(self):
        """The least recently used chunk goes first: a converter's own code,
        run for every object, stays compiled."""
        runtime = LuaRuntime()
        kept = runtime.compile("return 1")
        for number in range(2 * lua.MAX_CHUNKS):
            runtime.compile(f"return {number}")
            self.assertIs(runtime.compile("return 1"), kept)


class PixelTests(unittest.TestCase):
    """Conquest's getpixel, setpixel, getrow ... and x:GetPixel ..."""

    def image(self, samples=1, bits=16, rows=2, columns=3):
        dataset = patient()
        dataset.Rows, dataset.Columns, dataset.SamplesPerPixel, dataset.BitsAllocated = rows, columns, samples, bits
        dataset.PixelData = bytes(i % 256 for i in range(rows * columns * samples * bits // 8))
        return makeContext(dataset)

    def test_read(self):
        outcome, context, messages = runLua(
            "print(getpixel(1, 0), Data:GetPixel(2, 1, 0), getpixel(3, 0), getpixel(0, 0, 1)); "
            "local r, c = getrow(1), Data:GetColumn(1); print(r[0], r[1], r[2], r[3], c[0], c[1]); "
            "print(#getimage(), getimage(1))", self.image())
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: 770\t2826\tnil", f"{KEY}: 1798\t2312\t2826\tnil\t770\t2312", f"{KEY}: 12"])
        self.assertFalse(context.changed)

    def test_write(self):
        """setpixel takes x, y, z and the samples; setrow and setcolumn a
        table from index 0 (z optional); setimage a string of the frame's length."""
        outcome, context, messages = runLua(
            "setpixel(0, 0, 0, 65535); setrow(1, {[0] = 1, 2, 3}); Data:SetColumn(2, 0, {[0] = 7, 8}); "
            "print(getpixel(0, 0), getpixel(1, 1), getpixel(2, 0), getpixel(2, 1)); "
            "local x = newdicomobject(); x.Rows, x.Columns, x.BitsAllocated = 1, 2, 8; x.PixelData = nil; "
            "setimage(x, 'ab'); print(x:GetPixel(0, 0)); x:SetVR(0x7fe0, 0x10, {[0] = 1, 2}); "
            "x:SetImage('xy'); x:SetImage('toolong'); print(getpixel(x, 0, 0), getpixel(x, 1, 0))", self.image())
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: 65535\t2\t7\t8", f"{KEY}: ", f"{KEY}: 120\t121"])
        self.assertTrue(context.changed)
        self.assertEqual(context.dataset.PixelData[:4], b"\xff\xff\x02\x03")

    def test_colourAndSignedSamples(self):
        outcome, _, messages = runLua("setpixel(1, 0, 0, 1, 2, 3); print(getpixel(1, 0)); print(getpixel(0, 0))",
                                      self.image(samples=3, bits=8))
        self.assertEqual(messages, [f"{KEY}: 1\t2\t3", f"{KEY}: 0\t1\t2"])
        outcome, _, messages = runLua("setpixel(0, 0, 0, -2); print(getpixel(0, 0))", self.image(bits=32))
        self.assertEqual(messages, [f"{KEY}: -2"])

    def test_settersWriteInPlace(self):
        """A setter changes the bytes where they are: loops over a real
        image neither copy nor count the whole pixel data each call."""
        outcome, context, messages = runLua("for i = 0, 1999 do setpixel(i % 512, i // 512, 0, 7) end; "
                                            "print(getpixel(1999 % 512, 1999 // 512))", self.image(rows=512, columns=512))
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: 7"]))
        outcome, context, messages = runLua(
            "for y = 0, 1023 do local r = getrow(y, 0); r[5] = 9; setrow(y, 0, r) end; print(getpixel(5, 1023))",
            self.image(rows=1024, columns=1024))
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: 9"]))
        self.assertEqual(context.dataset.PixelData[2 * (1023 * 1024 + 5):][:2], b"\x09\x00")
        outcome, _, messages = runLua("setpixel(0, 0, 0, 7); print(#Data.PixelData, Data:GetVR(0x7fe0, 0x10)[0])",
                                      self.image())
        self.assertEqual(messages, [f"{KEY}: 12\t7"])

    def test_bigEndianPixels(self):
        """Pixel data of a big endian object is read and written in its byte order."""
        dataset = dcmread(get_testdata_file("MR_small_bigendian.dcm"))
        expected = dataset.pixel_array
        outcome, context, messages = runLua("print(getpixel(1, 2), getrow(2)[1], getcolumn(1)[2]); setpixel(1, 2, 0, 1000)",
                                            makeContext(dataset))
        self.assertEqual(messages, [f"{KEY}: {expected[2][1]}\t{expected[2][1]}\t{expected[2][1]}"])
        expected[2][1] = 1000
        self.assertTrue((context.dataset.pixel_array == expected).all())
        files = os.path.abspath(self.mktemp())
        os.makedirs(files)
        shutil.copy(get_testdata_file("MR_small_bigendian.dcm"), os.path.join(files, "be.dcm"))
        outcome, _, messages = runLua("local x = newdicomobject(); x:Read('be.dcm'); x:SetPixel(1, 2, 0, 1000); "
                                      "print(x:GetPixel(1, 2), x:Write('out.dcm'))",
                                      makeContext(ini="LuaFileFolder = .\n", configDir=files))
        self.assertEqual(messages, [f"{KEY}: 1000\ttrue"])
        self.assertEqual(dcmread(os.path.join(files, "out.dcm")).pixel_array[2][1], 1000)


class ConquestExtrasTests(unittest.TestCase):
    """x:free() and deletedicomobject, writeheader, heapinfo, get_sqldef,
    and sql, dicomdelete and Global assignments, refused when sandboxed."""

    def test_objects(self):
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(workdir, "luafiles"))
        context = makeContext(ini="LuaFileFolder = luafiles\n", configDir=workdir)
        outcome, _, messages = runLua(
            "local x = newdicomobject(); x.PatientID = 'X'; x:free(); local a = newdicomarray(); "
            "a[0].PatientID = 'A'; deletedicomobject(a); Data:free(); print(x.PatientID, #a, Data.PatientID); "
            "writeheader('data.txt'); writeheader(Data, 'data2.txt'); print(type(heapinfo()))", context)
        self.assertEqual((outcome, messages), (Outcome.CONTINUE, [f"{KEY}: nil\t0\t123", f"{KEY}: string"]))
        for name in ("data.txt", "data2.txt"):
            with open(os.path.join(workdir, "luafiles", name)) as f:
                self.assertIn("DOE^JOHN", f.read())

    def test_get_sqldef(self):
        context = makeContext()
        context.services.configuration.layout = conquestLayout()
        outcome, _, messages = runLua("print(get_sqldef(0, 0)); print(get_sqldef(3, 0)); print(get_sqldef(0, 99)); "
                                      "print(get_sqldef(5, 0))", context)
        self.assertEqual(messages, [f"{KEY}: 16\t32\tPatientID\t64\tSQL_C_CHAR\tDT_STR",
                                    f"{KEY}: 8\t24\tSOPInstanceUID\t64\tSQL_C_CHAR\tDT_UI", f"{KEY}: ", f"{KEY}: "])

    def test_refusedWhenSandboxed(self):
        for code in ("sql('DELETE FROM DICOMImages')", "dicomdelete(newdicomobject())", "Global.DebugLevel = 3"):
            outcome, _, messages = runLua(code, makeContext(ini="DebugLevel = 0\n"))
            self.assertEqual(outcome, Outcome.STOP, code)
            self.assertIn("sandboxed Lua scripts change no data nor setting (LuaAllowUnsafe = 1 allows it)",
                          messages[0], code)

    @inlineCallbacks
    def test_sql(self):
        """sql runs in the index writer, which then re-reads the rows it
        caches (a patient row it deleted is written again by the next store
        of that patient), with the index's names as the control commands
        (a column's name cut short as Conquest's TruncateFieldNames); a
        failing statement gives nil and the reason."""
        engine = sqliteEngine(self)
        index = Index(engine, conquestLayout(), TABLE_NAMES, reactor=reactor)
        index.createTables()
        index.start()
        self.addCleanup(index.stop)
        yield index.store(makeRecord("1.2.3.1.1"))
        yield index.store(makeRecord("1.2.3.1.2"))
        context = makeContext(ini="LuaAllowUnsafe = 1\n", index=index)
        context.services.serverCommands = ServerCommands(reactor, None, slots=1)
        outcome, _, messages = yield threads.deferToThread(
            runLua, "print(sql([[DELETE FROM DICOMImages WHERE SOPInstanc = '1.2.3.1.1']])); "
                    "print(sql('NONSENSE')); print(sql('DELETE FROM DICOMPatients')); "
                    "print(#dbquery('DICOMImages', 'SOPInstanceUID'))", context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual((messages[0], messages[2], messages[3]), (f"{KEY}: 1", f"{KEY}: 1", f"{KEY}: 1"))
        self.assertTrue(messages[1].startswith(f"{KEY}: nil\tsql: "), messages[1])
        yield index.store(makeRecord("1.2.3.1.3"))
        with engine.connect() as connection:
            self.assertEqual(len(connection.exec_driver_sql("SELECT * FROM DICOMPatients").all()), 1)

    @inlineCallbacks
    def test_dicomdeleteAndGlobal(self):
        """dicomdelete deletes the images all the keys of its query match
        (none without a value, none by a key the index does not hold);
        Global.Key = value of a dicom.ini key is put_param and read_ini
        (DebugLevel at once too), of another key nothing."""
        lines, deletes = [], []

        def run(line, sandboxed):
            lines.append((line, sandboxed))
            return defer.succeed("")

        def deleteMatching(keys):
            deletes.append({f"{key.tag:08X}": key.value for key in keys})
            return defer.succeed(len(deletes) - 1)

        context = makeContext(ini="LuaAllowUnsafe = 1\nDebugLevel = 0\n")
        context.services.configuration.layout = conquestLayout()
        context.services.serverCommands = ServerCommands(reactor, run, slots=1, deleteMatching=deleteMatching)
        outcome, _, messages = yield threads.deferToThread(
            runLua, "local q = newdicomobject(); q.PatientID = 'P1'; print(select(2, dicomdelete(q))); "
                    "q.SOPInstanceUID = '1.2.3'; q.Modality = 'CT'; print(#dicomdelete(q)); "
                    "print(select(2, dicomdelete(newdicomobject()))); q.DeviceSerialNumber = '1'; "
                    "print(select(2, dicomdelete(q))); "
                    "Global.debuglevel = 3; Global.NoSuchKey = 1; print(Global.DebugLevel, Global.nosuchkey)", context)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(messages, [f"{KEY}: dicomdelete: no stored object matches the query", f"{KEY}: 0",
                                    f"{KEY}: dicomdelete: the query has no value to select images by",
                                    f"{KEY}: dicomdelete: the index holds no (0018,1000): the query would select more",
                                    f"{KEY}: 3\t1"])
        self.assertEqual(deletes, [{"00100020": "P1"},
                                   {"00080018": "1.2.3", "00080060": "CT", "00100020": "P1"}])
        self.assertEqual(lines, [("put_param:debuglevel,3", False),
                                 ("read_ini:", False), ("debuglevel:3", False)])
