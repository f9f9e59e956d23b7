"""Tests for pacscore.hl7.message: parsing HL7 v2, splitting files, building ACKs."""

import re

from twisted.trial import unittest

from pacscore.hl7.message import (
    Batch, HL7Error, UniqueNumbers, ack, charsetCodec, isBatch, isHL7, parseMessage, readBatch, refusal, salvage,
    splitMessages)
from tests.pacscore.hl7.samples import PID, encoded, msh, obr, orc, orm, segment


def parseText(*segments, charset="8859/1"):
    """A message from ``segments`` after an MSH declaring ``charset``."""
    return parseMessage(encoded("\r".join((msh(charset=charset),) + segments), charset))


class ParseTests(unittest.TestCase):

    def test_typicalOrder(self):
        message = parseMessage(encoded(orm(), "8859/1"))
        self.assertEqual([s.id for s in message.segments], ["MSH", "PID", "PV1", "ORC", "OBR"])
        self.assertEqual((message.messageType, message.triggerEvent), ("ORM", "O01"))
        self.assertEqual(message.controlId, "MSG00001")
        self.assertEqual(message.version, "2.5")
        self.assertEqual((message.charset, message.encoding), ("8859/1", "iso8859-1"))
        self.assertEqual(message.raw, encoded(orm(), "8859/1"))
        self.assertEqual(message.value("PID", 5), "Müller^Hans^^^Dr")

    def test_lineEnds(self):
        """CR, LF and CR LF all end segments; blank lines are ignored."""
        text = orm().rstrip("\r")
        for separator in ("\r", "\n", "\r\n", "\r\n\r\n"):
            message = parseMessage(encoded(text.replace("\r", separator) + separator, "8859/1"))
            self.assertEqual([s.id for s in message.segments], ["MSH", "PID", "PV1", "ORC", "OBR"],
                             separator)
            self.assertEqual(message.value("OBR", 27), "1^once^^20261201103000^^R")

    def test_aLoneLineFeedInAFieldOfACRMessageIsData(self):
        """A line break a RIS user typed into a free-text field (OBR-13),
        sent as a bare LF in a message whose segments end in CR (or CR LF),
        cut the segment there: OBR-16 and OBR-21 were lost, the order
        accepted without them.  Only CR ends such a message's segments; an
        LF before a header (a file of messages one a line) still does, and
        so does any line end of a message whose MSH ends in LF."""
        note = segment("OBR", {1: "1", 3: "ACC100", 13: "Patient claustrophobic.\nPlease sedate.",
                               16: "1234^SMITH^ANNA", 21: "CT"})
        for end in ("\r", "\r\n"):
            message = parseMessage(encoded(end.join((msh(), PID, note)) + end, "8859/1"))
            self.assertEqual([s.id for s in message.segments], ["MSH", "PID", "OBR"], repr(end))
            obrSegment = message.segment("OBR")
            self.assertEqual(obrSegment.value(13), "Patient claustrophobic.\nPlease sedate.")
            self.assertEqual((obrSegment.value(16), obrSegment.value(21)), ("1234^SMITH^ANNA", "CT"))
        lines = parseMessage(encoded("\n".join((msh(), PID, orc(), obr())) + "\n", "8859/1"))
        self.assertEqual([s.id for s in lines.segments], ["MSH", "PID", "ORC", "OBR"])
        blank = parseMessage(b"MSH|^~\\&|R||||||ORM^O01|M1\r\n\nPID|1|x\n\r\n\rOBR|1\r")
        self.assertEqual([s.fields for s in blank.segments][1:], [["PID", "1", "x"], ["OBR", "1"]])

    def test_aMessageWhoseMSHEndsInCRAndItsOtherSegmentsInLF(self):
        """An order whose MSH ended in CR (or CR LF) and its other segments
        in LF lost them ('HL7 MIX1 not applied (AE): ORM^O01 without ORC or
        OBR segment': PID held ORC and OBR as text), and a segment after an
        LF-ended one was folded into its last field: read as before again,
        a lone LF ending a segment where a segment ID and the message's
        field separator follow it (``PID|``, ``NTE|``, ``ZDS#``) or a
        segment ID alone on its line (``NTE``: it was folded into PID-5,
        'Müller^Hans^^^Dr\\nNTE'), and staying data in a field elsewhere."""
        segments = (PID, orc(), obr(), "NTE|1||see\nbelow", "ZDS|1.2.3")
        for first in ("\r", "\r\n"):
            message = parseMessage(encoded(msh() + first + "\n".join(segments) + "\n", "8859/1"))
            self.assertEqual([s.id for s in message.segments], ["MSH", "PID", "ORC", "OBR", "NTE", "ZDS"],
                             repr(first))
            self.assertEqual(message.value("OBR", 16), "1234^Welby^Marcus^^^Dr")
            self.assertEqual(message.value("NTE", 3), "see\nbelow")
            self.assertEqual(message.value("ZDS", 1), "1.2.3")
        for empty in ("NTE", "ZDS  "):  # no fields, alone on its line (spaces after it kept, as CR-ended): was in PID-5
            message = parseMessage(encoded(msh() + "\r" + "\n".join((PID, empty, orc(), obr())) + "\n", "8859/1"))
            self.assertEqual([s.id for s in message.segments], ["MSH", "PID", empty, "ORC", "OBR"], empty)
            self.assertEqual(message.value("PID", 5), "Müller^Hans^^^Dr")
        oneLater = "\r".join((msh(), PID, orc(), obr())) + "\nNTE|1||note\r"
        self.assertEqual([s.id for s in parseMessage(encoded(oneLater, "8859/1")).segments],
                         ["MSH", "PID", "ORC", "OBR", "NTE"])
        other = parseMessage(b"MSH#^~\\&#R######ORM^O01#M1\rPID#1\nOBR#1##A1\nNTE|1 is text\r")
        self.assertEqual([s.fields for s in other.segments][1:], [["PID", "1"], ["OBR", "1", "", "A1\nNTE|1 is text"]])
        self.assertEqual(splitMessages(b"BHS|^~\\&\rMSH|^~\\&|A|1\rPID|1\nMSH|^~\\&|A|2\rPID|2\nOBR|2\nBTS|2\n"),
                         [b"MSH|^~\\&|A|1\rPID|1", b"MSH|^~\\&|A|2\rPID|2\rOBR|2"])

    def test_aFreeTextLineOfThreeCapitalsStaysText(self):
        """A line of three capitals or digits a RIS user typed into a
        free-text field of a message whose segments end in CR (OBR-13
        'History:' LF 'CVA' LF 'R/O bleed') was taken for a segment with no
        fields: OBR-13 was cut to 'History:' and 'CVA\\nR/O bleed' became a
        segment.  A segment ID alone on its line starts a segment only where
        the line after it starts one too or the message ends there; before
        free text, a CR or a blank line and a CR it is text."""
        history = segment("OBR", {1: "1", 3: "ACC100", 13: "History:\nCVA\nR/O bleed", 16: "1234^SMITH^ANNA"})
        allergies = segment("OBR", {1: "2", 3: "ACC101", 13: "Allergies:\nNKA"})  # its last field
        note = segment("NTE", {1: "1", 3: "Prior:\nMRI  \n\nCT"})
        for end in ("\r", "\r\n"):
            raw = end.join((msh(), PID, history, allergies + "\n", note, "NTE|2||Done:\nMRI\n")) + end
            message = parseMessage(encoded(raw, "8859/1"))
            self.assertEqual([s.id for s in message.segments], ["MSH", "PID", "OBR", "OBR", "NTE", "NTE"], repr(end))
            self.assertEqual(message.value("OBR", 13), "History:\nCVA\nR/O bleed")
            self.assertEqual(message.value("OBR", 16), "1234^SMITH^ANNA")
            self.assertEqual(message.value(message.segment("OBR", 1), 13), "Allergies:\nNKA")
            self.assertEqual(message.value("NTE", 3), "Prior:\nMRI  \n\nCT")
            self.assertEqual(message.value(message.segment("NTE", 1), 3), "Done:\nMRI")
        fieldless = parseMessage(encoded(msh() + "\r" + "\n".join((PID, "NTE", "ZDS", "", orc(), "ZDS")), "8859/1"))
        self.assertEqual([s.id for s in fieldless.segments], ["MSH", "PID", "NTE", "ZDS", "ORC", "ZDS"])
        self.assertEqual(fieldless.value("PID", 5), "Müller^Hans^^^Dr")

    def test_threeCapitalsThatAreNoSegmentIdStayText(self):
        """A last line of three capitals a RIS user typed into a free-text
        field of a message whose segments end in CR, the field separator
        after it (OBR-13 'Allergies:' LF 'NKA', then '|'), was taken for a
        segment 'NKA|...': OBR-13 was cut to 'Allergies:' and OBR-16 and
        OBR-21 were lost; a line 'CVA' last in a message with no final CR
        was a segment too.  Only an HL7 v2 segment ID or a Z-segment's
        starts a segment after a lone LF; ``NTE|`` and ``ZDS|`` still do."""
        allergies = segment("OBR", {1: "1", 3: "ACC100", 13: "Allergies:\nNKA", 16: "1234^SMITH^ANNA", 21: "CT"})
        history = segment("OBR", {1: "2", 3: "ACC101", 13: "History:\nCVA"})
        for end in ("\r", "\r\n"):
            message = parseMessage(encoded(end.join((msh(), PID, allergies, history)), "8859/1"))
            self.assertEqual([s.id for s in message.segments], ["MSH", "PID", "OBR", "OBR"], repr(end))
            self.assertEqual(message.value("OBR", 13), "Allergies:\nNKA")
            self.assertEqual((message.value("OBR", 16), message.value("OBR", 21)), ("1234^SMITH^ANNA", "CT"))
            self.assertEqual(message.value(message.segment("OBR", 1), 13), "History:\nCVA")
        notes = parseMessage(encoded(msh() + "\r" + "\n".join((PID, obr(), "NTE|1||note", "ZDS|1.2.3")), "8859/1"))
        self.assertEqual([s.id for s in notes.segments], ["MSH", "PID", "OBR", "NTE", "ZDS"])

    def test_segmentIdsOfOtherMessagesStayText(self):
        """A last line of a free-text field that is a clinical abbreviation
        and also a segment ID of some HL7 v2 message (OBR-13 'Fall, head
        injury' LF 'LOC', loss of consciousness, then '|': LOC is a
        location master file segment; PAC, premature atrial contraction;
        ABS, abscess) was still taken for a segment of a message whose
        segments end in CR: OBR-13 cut, OBR-16 and OBR-21 lost, the order
        answered AA.  Only the segment IDs of the order messages pacs reads
        (and Z-segments') start a segment after a lone LF there."""
        for word in ("LOC", "PAC", "ABS", "EVN", "MRG"):
            history = segment("OBR", {1: "1", 3: "ACC100", 13: f"Fall, head injury\n{word}",
                                      16: "1234^SMITH^ANNA", 21: "CT"})
            message = parseMessage(encoded("\r".join((msh(), PID, orc(), history)) + "\r", "8859/1"))
            self.assertEqual([s.id for s in message.segments], ["MSH", "PID", "ORC", "OBR"], word)
            self.assertEqual(message.value("OBR", 13), f"Fall, head injury\n{word}")
            self.assertEqual((message.value("OBR", 16), message.value("OBR", 21)), ("1234^SMITH^ANNA", "CT"))
        for first in ("TQ1|1", "ZDS|1.2.3", "IPC|1.2.3"):  # of OMI^O23, a site's own: still a segment
            later = "\r".join((msh(), PID, orc(), obr())) + f"\n{first}\r"
            self.assertEqual([s.id for s in parseMessage(encoded(later, "8859/1")).segments],
                             ["MSH", "PID", "ORC", "OBR", first[:3]])

    def test_anyIdStartsASegmentWhereTheSegmentsAfterTheMSHEndInLF(self):
        """A message whose MSH ends in CR and its other segments in LF: a
        segment ID not in the list of the order messages' (IMM, a sender's
        own, or EVN of an ADT) was folded into the segment before it (NTE-3
        'b\nIMM|1') since a lone LF started a segment only before a listed
        ID.  With no CR after its MSH, any three capitals and the field
        separator (or alone on the line before a segment) start a segment
        again, as before; free text after an LF stays text."""
        segments = (PID, "PV1||O", orc(), obr(), "OBX|1|TX|||a", "NTE|1||b\nsee below", "IMM|1", "EVN|A01",
                    "OBR|2|A2||MR^Knee")
        message = parseMessage(encoded(msh() + "\r" + "\n".join(segments) + "\n", "8859/1"))
        self.assertEqual([s.id for s in message.segments],
                         ["MSH", "PID", "PV1", "ORC", "OBR", "OBX", "NTE", "IMM", "EVN", "OBR"])
        self.assertEqual(message.value("NTE", 3), "b\nsee below")

    def test_conquestNumbering(self):
        message = parseText(PID, segment("ZDS", {1: "1.2.3^RIS^Application^DICOM"}))
        pid = message.segment("PID")
        cases = [
            ("MSH", 1, None, "|"),
            ("MSH", 2, None, "^~\\&"),
            ("MSH", 3, None, "RIS"),
            ("MSH", 9, None, "ORM^O01^ORM_O01"),
            ("MSH", 9, 0, "ORM"),
            ("MSH", 9, 1, "O01"),
            ("MSH", 10, None, "MSG00001"),
            ("PID", 3, 0, "4711"),
            ("PID", 3, 3, "KLINIKUM"),
            ("PID", 4, None, "P-0815"),
            ("PID", 5, 1, "Hans"),
            ("PID", 5, 4, "Dr"),
            ("PID", 5, 9, ""),
            ("PID", 30, None, ""),
            ("PID", 30, 2, ""),
            ("ZDS", 1, 0, "1.2.3"),
            ("PV1", 1, None, ""),
        ]
        for segmentId, field, component, expected in cases:
            self.assertEqual(message.value(segmentId, field, component), expected,
                             (segmentId, field, component))
        self.assertEqual(message.value(pid, 7), "198001011230")
        self.assertEqual(message.value(None, 7), "")

    def test_repetitionsAndSubcomponents(self):
        message = parseText(segment("PID", {3: "111^^^A~222^^^B", 5: "van&der Berg^Jan~Alias^Bob"}))
        self.assertEqual(message.value("PID", 3), "111^^^A")
        self.assertEqual(message.value("PID", 3, 3), "A")
        self.assertEqual(message.value("PID", 5, 0), "van")
        self.assertEqual(message.value("PID", 5), "van&der Berg^Jan")
        self.assertEqual(message.segment("PID").components(5), ["van", "Jan"])

    def test_occurrences(self):
        message = parseText(orc(), obr("A1"), obr("A2", setId="2"))
        self.assertEqual(message.value(message.segment("OBR", 1), 3), "A2")
        self.assertEqual(message.segment("OBR").value(3), "A1")
        self.assertIsNone(message.segment("OBR", 2))
        self.assertIsNone(message.segment("NTE"))

    def test_escapes(self):
        cases = [
            ("a\\F\\b", "a|b"),
            ("a\\S\\b", "a^b"),
            ("a\\T\\b", "a&b"),
            ("a\\R\\b", "a~b"),
            ("a\\E\\b", "a\\b"),
            ("\\X41424344\\", "ABCD"),
            ("\\XE4\\rger", "ärger"),
            ("line 1\\.br\\line 2", "line 1\r\nline 2"),
            ("\\H\\bold\\N\\ text", "bold text"),
            ("\\Zvendor\\x", "x"),
            ("C:\\temp", "C:\\temp"),
            ("C:\\temp\\F\\x", "C:\\temp|x"),
            ('""', ""),
        ]
        for raw, expected in cases:
            message = parseText(segment("NTE", {3: raw}))
            self.assertEqual(message.value("NTE", 3), expected, raw)
            self.assertEqual(message.value("NTE", 3, 0), expected, raw)

    def test_formattedTextLineBreaks(self):
        """HL7 v2.5 2.7.6's ``\\.sp\\`` and ``\\.ce\\`` end the output line
        as ``\\.br\\`` does (``Claustrophobic.\\.sp\\Sedate before scan``
        read ``Claustrophobic.Sedate before scan``); ``\\.sp <number>\\`` skips
        that many lines (at most ten), other formatting is dropped."""
        cases = [
            ("Claustrophobic.\\.sp\\Sedate before scan", "Claustrophobic.\r\nSedate before scan"),
            ("Line one\\.sp2\\Line two", "Line one\r\n\r\nLine two"),
            ("Line one\\.sp 3\\Line two", "Line one" + "\r\n" * 3 + "Line two"),
            ("Line one\\.sp 0\\Line two", "Line one\r\nLine two"),
            ("a\\.sp 99999999999999999999999999\\b", "a" + "\r\n" * 10 + "b"),
            ("\\.ce\\HEADING\\.sp\\body", "\r\nHEADING\r\nbody"),
            ("\\.in+4\\indented\\.ti-4\\\\.sk 2\\\\.fi\\\\.nf\\x", "indentedx"),
        ]
        for raw, expected in cases:
            self.assertEqual(parseText(segment("NTE", {3: raw})).value("NTE", 3), expected, raw)

    def test_hexEscapesInTheCharset(self):
        """``\\Xhh\\`` bytes are decoded as the message's raw bytes would be:
        without MSH-18 as UTF-8, else Latin-1; adjacent sequences together,
        so a character of several bytes may be split over them."""
        cases = [
            ("", "M\\XDC\\LLER", "MÜLLER"),
            ("", "M\\XC39C\\LLER", "MÜLLER"),
            ("", "M\\XC3\\\\X9C\\LLER", "MÜLLER"),
            ("UNICODE UTF-8", "M\\XC3\\\\X9C\\LLER", "MÜLLER"),
            ("8859/1", "M\\XDC\\LLER\\XC3\\\\F\\\\X9C\\", "MÜLLERÃ|œ"),  # 0x9C: Windows-1252's (below)
        ]
        for charset, raw, expected in cases:
            message = parseMessage(f"{msh(charset=charset)}\rPID|1||||{raw}^J".encode("ascii"))
            self.assertEqual(message.value("PID", 5, 0), expected, (charset, raw))

    def test_escapedDelimitersDoNotSplit(self):
        message = parseText(segment("OBR", {4: "CT1^Head \\S\\ neck\\T\\spine"}))
        self.assertEqual(message.value("OBR", 4, 1), "Head ^ neck&spine")
        self.assertEqual(message.value("OBR", 4, 2), "")

    def test_otherDelimiters(self):
        raw = b"MSH!@*#$!RIS!!PACS!!!!ADT@A08!X1!P!2.3\rPID!1!!12@@@H*34@@@I!!Doe#S#x\\y@John$Jr"
        message = parseMessage(raw)
        self.assertEqual(message.value("MSH", 1), "!")
        self.assertEqual(message.value("MSH", 2), "@*#$")
        self.assertEqual((message.messageType, message.triggerEvent), ("ADT", "A08"))
        self.assertEqual(message.value("PID", 3), "12@@@H")
        self.assertEqual(message.value("PID", 5, 1), "John")
        self.assertEqual(message.value("PID", 5, 0), "Doe@x\\y")
        self.assertEqual(message.segment("PID").components(5), ["Doe@x\\y", "John"])

    def test_charsets(self):
        name = "Müller-Łódź"
        cases = [
            ("8859/1", "Müller", "latin-1", "iso8859-1"),
            ("8859/15", "€ Müller", "iso8859-15", "iso8859-15"),
            ("8859/2", name, "iso8859-2", "iso8859-2"),
            ("UNICODE UTF-8", name, "utf-8", "utf-8"),
            ("UNICODE", name, "utf-8", "utf-8"),
            ("UTF-8", name, "utf-8", "utf-8"),
            ("unicode  utf-8", name, "utf-8", "utf-8"),
            ("ASCII", "Mueller", "ascii", "ascii"),
        ]
        for charset, text, codec, encoding in cases:
            raw = "\r".join([msh(charset=charset), segment("PID", {5: text})]).encode(codec)
            message = parseMessage(raw)
            self.assertEqual(message.charset, charset)
            self.assertEqual(message.encoding, encoding, charset)
            self.assertEqual(message.value("PID", 5), text, charset)

    def test_multiByteCharsetWithDelimiterBytes(self):
        """BIG-5 trail bytes may be 0x7C or 0x5C: the message is decoded before it is split."""
        name = "吜么^Ming"
        raw = "\r".join([msh(charset="BIG-5"), segment("PID", {5: name, 8: "F"})]).encode("big5")
        self.assertIn(b"\xca|", raw)
        message = parseMessage(raw)
        self.assertEqual(message.value("PID", 5, 0), "吜么")
        self.assertEqual(message.value("PID", 8), "F")
        self.assertIn("吜么".encode("big5"), ack(message, "AE", "吜么 unknown"))

    def test_isoIr6IsAscii(self):
        message = parseMessage(f"{msh(charset='ISO IR6')}\rPID|1||||Mueller".encode("ascii"))
        self.assertEqual((message.charset, message.encoding), ("ISO IR6", "ascii"))
        self.assertEqual(message.value("PID", 5), "Mueller")

    def test_japaneseAlternateCharsets(self):
        """MSH-18 ``~ISO IR87`` (ASCII, with JIS X 0208 switched in by ISO 2022
        escapes; HL7 table 0211) and ``ISO IR6~ISO IR87~ISO IR159`` are
        decoded; the ACK repeats every repetition."""
        for charset in ("~ISO IR87", "ISO IR6~ISO IR87", "~ISO IR87~ISO IR159", "ISO IR87"):
            raw = "\r".join([msh(charset=charset), segment("PID", {5: "山田^太郎", 8: "M"})]).encode("iso2022_jp")
            message = parseMessage(raw)
            self.assertEqual(message.charset, charset)
            self.assertEqual([message.value("PID", 5, 0), message.value("PID", 5, 1), message.value("PID", 8)],
                             ["山田", "太郎", "M"], charset)
            reply = parseMessage(ack(message, "AE", "山田 unknown"))
            self.assertEqual(reply.charset, charset)
            self.assertEqual(reply.value("MSA", 3), "山田 unknown")

    def test_unsupportedCharsetCombination(self):
        """A repetition that cannot be decoded with the first (ISO 2022 only
        extends ASCII) is refused, not decoded wrong."""
        for charset in ("8859/1~ISO IR87", "UNICODE UTF-8~8859/1", "~8859/1"):
            error = self.assertRaises(HL7Error, parseMessage, msh(charset=charset).encode("ascii"))
            self.assertEqual(error.code, 207, charset)
            self.assertIn(repr(charset), str(error))

    def test_undeclaredCharsetIsGuessed(self):
        """Without MSH-18: ASCII, else UTF-8, else Windows-1252; never an error."""
        for text, codec, encoding in [("Mueller", "ascii", "ascii"), ("Müller", "utf-8", "utf-8"),
                                      ("Müller", "latin-1", "cp1252"), ("O’Brien^Zoë", "cp1252", "cp1252")]:
            message = parseMessage("\r".join([msh(), segment("PID", {5: text})]).encode(codec))
            self.assertEqual((message.charset, message.encoding), ("", encoding))
            self.assertEqual(message.value("PID", 5), text)

    def test_windows1252ReadAsItIs(self):
        """Text of a Windows RIS ('O’Brien', 'Knie – links'), without MSH-18
        or declared 8859/1, was read as Latin-1: its 0x92 and 0x96 became
        the C1 controls U+0092 and U+0096, stored and answered so.  Without
        MSH-18 it is now read as Windows-1252, and so are the bytes 0x80 to
        0x9F (C1 controls, in no Latin-1 text) of declared Latin-1, which
        the message says (``windows1252``); the five bytes Windows-1252
        leaves undefined stay as in Latin-1; another declared character
        set is read as it says."""
        pid = segment("PID", {5: "O’Brien^Zoë", 8: "F"}).encode("cp1252") + b"\rOBR|1||A1|CT1^Knie \x96 links\x81"
        for charset in ("", "8859/1", "ISO_IR 100"):
            message = parseMessage(msh(charset=charset).encode("ascii") + b"\r" + pid)
            self.assertEqual((message.value("PID", 5), message.value("OBR", 4, 1)),
                             ("O’Brien^Zoë", "Knie – links\x81"), charset)
            self.assertEqual(message.windows1252, charset != "", charset)
        latin1 = parseMessage("\r".join([msh(charset="8859/1"), segment("PID", {5: "Müller"})]).encode("latin-1"))
        self.assertEqual((latin1.value("PID", 5), latin1.windows1252), ("Müller", False))
        declared = parseMessage(msh(charset="8859/2").encode("ascii") + b"\rPID|1||||O\x92Brien")
        self.assertEqual((declared.value("PID", 5), declared.windows1252), ("O\x92Brien", False))

    def test_bytesInvalidInTheDeclaredCharset(self):
        for charset, raw in [("UNICODE UTF-8", "Müller".encode("latin-1")),
                             ("ASCII", "Müller".encode("latin-1"))]:
            error = self.assertRaises(HL7Error, parseMessage,
                                      f"{msh(charset=charset)}\rPID|1||||".encode("ascii") + raw)
            self.assertEqual(error.code, 102)
            self.assertIn(charset, str(error))

    def test_usualSpellingsOfTheCharsets(self):
        """MSH-18 ``ISO-8859-1`` (the IANA name) or ``ISO IR100`` refused the
        order (AR: 'unsupported character set 'ISO-8859-1' in MSH-18'); the
        usual other spellings of table 0211's character sets are read as it."""
        cases = [("ISO-8859-1", "iso8859-1"), ("iso8859-1", "iso8859-1"), ("ISO 8859/1", "iso8859-1"),
                 ("ISO_8859-1", "iso8859-1"), ("ISO IR100", "iso8859-1"), ("ISO_IR 100", "iso8859-1"),
                 ("ISO-IR 100", "iso8859-1"), ("ISO IR 101", "iso8859-2"), ("ISO-8859-2", "iso8859-2"),
                 ("ISO-8859-15", "iso8859-15"), ("ISO_IR 203", "iso8859-15"), ("ISO_IR 144", "iso8859-5"),
                 ("UTF8", "utf-8"), ("UNICODE UTF8", "utf-8"), ("ISO_IR 192", "utf-8"),
                 ("windows-1252", "cp1252"), ("CP1250", "cp1250"), ("GB18030", "gb18030"), ("BIG5", "big5"),
                 ("EUC-KR", "euc_kr"), ("US-ASCII", "ascii"), ("ISO_IR 6", "ascii")]
        for charset, codec in cases:
            text = {"ascii": "Mueller", "iso8859-5": "Мюллер", "big5": "吜么", "euc_kr": "김민"}.get(codec, "Müller")
            message = parseMessage("\r".join([msh(charset=charset), segment("PID", {5: text})]).encode(codec))
            self.assertEqual((message.charset, message.encoding, message.charsetKnown), (charset, codec, True))
            self.assertEqual(message.value("PID", 5), text, charset)
            self.assertEqual(parseMessage(ack(message, "AA")).charset, charset)

    def test_unknownCharsetIsReadAsWithoutOne(self):
        """MSH-18 naming no character set pacs knows (Conquest reads none)
        is read as a message without MSH-18 where that cannot be wrong, as
        ASCII or UTF-8, not refused; the ACK repeats it.  Other bytes
        (Latin-1 is a guess) and ISO 2022 escapes are refused (207)."""
        for charset in ("KLINGON", "8859/99", "UNICODE UTF-16", "ISO IR 42", "ISO 2022 IR 42"):
            for text, codec in (("Mueller", "ascii"), ("Müller", "utf-8")):
                message = parseMessage("\r".join([msh(charset=charset), segment("PID", {5: text})]).encode(codec))
                self.assertEqual((message.charset, message.encoding, message.charsetKnown), (charset, codec, False))
                self.assertEqual(message.value("PID", 5), text)
                self.assertEqual(parseMessage(ack(message, "AE", text)).value("MSA", 3), text)
            for raw in ("Müller".encode("latin-1"), "山田".encode("iso2022_jp"), "ﾔﾏﾀﾞ".encode("shift_jis")):
                error = self.assertRaises(HL7Error, parseMessage,
                                          f"{msh(charset=charset)}\rPID|1||||".encode("ascii") + raw)
                self.assertEqual(error.code, 207)
                self.assertIn(f"unsupported character set {charset!r} in MSH-18", str(error))
        self.assertIsNone(charsetCodec("8859/99"))
        self.assertEqual(charsetCodec("8859/5"), "iso8859-5")

    def test_iso2022SpellingsAndJISX0201(self):
        """DICOM's spellings of ISO 2022 (``ISO 2022 IR 87``) were read as
        ASCII with their escapes kept in the names, table 0211's ``ISO IR14``
        (JIS X 0201) as Latin-1: the Japanese ones are now read as
        ``ISO IR87``, the others as their ISO-IR number; an ISO 2022 escape
        in a character set without them is refused (102)."""
        name = "山田^太郎"
        for charset in ("ISO 2022 IR 87", "ISO 2022 IR 6~ISO 2022 IR 87", "~ISO 2022 IR 87", "ISO 2022 IR 159"):
            message = parseMessage("\r".join([msh(charset=charset), segment("PID", {5: name})]).encode("iso2022_jp"))
            self.assertEqual(message.value("PID", 5), name, charset)
        for charset, text, codec in (("ISO 2022 IR 100", "Müller", "iso8859-1"), ("ISO IR 166", "สมชาย", "tis-620")):
            message = parseMessage("\r".join([msh(charset=charset), segment("PID", {5: text})]).encode(codec))
            self.assertEqual((message.encoding, message.value("PID", 5)), (codec, text))
        for charset in ("8859/1", "ISO 2022 IR 100", "UNICODE UTF-8", "ISO IR6"):
            error = self.assertRaises(HL7Error, parseMessage,
                                      f"{msh(charset=charset)}\rPID|1||||".encode("ascii") + name.encode("iso2022_jp"))
            self.assertEqual(error.code, 102)
            self.assertIn("byte 0x1b (an ISO 2022 escape) at offset", str(error))

    def test_koreanChineseAndJISX0201ByISOIRNumber(self):
        """``ISO 2022 IR 149`` and ``ISO 2022 IR 58`` (DICOM's Korean and
        Chinese) were refused (207) even for ASCII text, and JIS X 0201
        (``ISO IR14``, ``ISO IR13``) whatever its text: KS X 1001 is read as
        table 0211's ``KS X 1001`` is, GB 2312 as itself, JIS X 0201 as
        ASCII and half-width katakana; a byte of a two-byte Shift JIS
        character is no JIS X 0201 (102), and JIS X 0201 with another set
        is a combination pacs does not read (207)."""
        for charsets, text, codec in (
                (("ISO 2022 IR 149", "ISO IR149", "ISO_IR 149"), "홍길동", "euc_kr"),
                (("ISO 2022 IR 58", "ISO IR 58", "ISO IR58"), "张^伟", "gb2312"),
                (("ISO IR14", "ISO IR13", "ISO_IR 13", "ISO 2022 IR 13"), "ﾔﾏﾀﾞ^ﾀﾛｳ", "shift_jis")):
            for charset in charsets:
                for value in ("DOE^JOHN", text):
                    message = parseMessage("\r".join([msh(charset=charset), segment("PID", {5: value})]).encode(codec))
                    self.assertEqual((message.encoding, message.charsetKnown, message.value("PID", 5)),
                                     (codec, True, value), charset)
                    self.assertEqual(parseMessage(ack(message, "AE", value)).value("MSA", 3), value)
        raw = f"{msh(charset='ISO IR13')}\rPID|1||||".encode("ascii")
        error = self.assertRaises(HL7Error, parseMessage, raw + "山田".encode("shift_jis"))
        self.assertEqual((error.code, str(error)),
                         (102, f"byte 0x8e at offset {len(raw)} is not valid in character set 'ISO IR13' (MSH-18)"))
        error = self.assertRaises(HL7Error, parseMessage, f"{msh(charset='8859/1~ISO IR14')}\rPID|1".encode("ascii"))
        self.assertEqual((error.code, str(error)),
                         (207, "unsupported combination of character sets '8859/1~ISO IR14' in MSH-18"))

    def test_unusableMessages(self):
        cases = [
            (b"", 100),
            (b"PID|1||123\rMSH|^~\\&|A", 100),
            (b"\r\n\r\n", 100),
            (b"MSHA^~\\&|RIS", 102),
            (b"MSH|^^\\&|RIS||||||ORM^O01|1", 102),
            (b"MSH\xc6^~\\&\xc6RIS\xc6\xc6\xc6\xc6\xc6\xc6ORM^O01\xc61", 102),
            (b"MSH|^\xe9\\&|RIS||||||ORM^O01|1", 102),
            (b"MSH|^~\\&|RIS||PACS|||||X1|P|2.5\rPID|1", 101),
            (b"MSH|^~\\&|RIS||PACS||||ORM^O01||P|2.5\rPID|1", 101),
            (b"MSH|^~\\&|RIS||PACS||||^O01|X1|P|2.5", 101),
            (b"MSH|^~\\&|RIS||PACS||||ORM^O01|X1|P|2.5\rPID|1\rMSH|^~\\&|RIS||PACS||||ORM^O01|X2|P|2.5", 100),
        ]
        for raw, code in cases:
            error = self.assertRaises(HL7Error, parseMessage, raw)
            self.assertEqual(error.code, code, raw)

    def test_byteOrderMark(self):
        """A UTF-8 byte order mark before MSH (as MLLP may deliver it) is dropped."""
        raw = b"\xef\xbb\xbf" + encoded(orm("UNICODE UTF-8"), "UNICODE UTF-8")
        message = parseMessage(raw)
        self.assertEqual([s.id for s in message.segments], ["MSH", "PID", "PV1", "ORC", "OBR"])
        self.assertEqual(message.value("PID", 5), "Müller^Hans^^^Dr")

    def test_errorText(self):
        error = HL7Error("patient unknown", 204)
        self.assertIsInstance(error, ValueError)
        self.assertEqual((error.text, error.code, str(error)), ("patient unknown", 204, "patient unknown"))
        self.assertEqual(HL7Error("x").code, 207)


class SplitTests(unittest.TestCase):

    def test_severalMessages(self):
        data = b"MSH|^~\\&|A|1\nPID|1\n\nMSH|^~\\&|A|2\r\nPV1|1\r\nOBR|1\r\n"
        self.assertEqual(splitMessages(data), [b"MSH|^~\\&|A|1\rPID|1", b"MSH|^~\\&|A|2\rPV1|1\rOBR|1"])

    def test_aLoneLineFeedInAFieldOfACRFileIsData(self):
        """A file of messages whose segments end in CR LF, a bare LF inside
        OBR-13: one message, its OBR whole; messages one a line (segments
        ending in CR, messages in LF) are still apart."""
        data = b"MSH|^~\\&|A|1\r\nOBR|1||ACC1|||||||||||Claustrophobic.\nSedate.|||1234^SMITH\r\nMSH|^~\\&|A|2\r\n"
        self.assertEqual(splitMessages(data), [b"MSH|^~\\&|A|1\rOBR|1||ACC1|||||||||||Claustrophobic.\nSedate.|||"
                                               b"1234^SMITH", b"MSH|^~\\&|A|2"])
        data = b"MSH|^~\\&|A|1\rPID|1\nMSH|^~\\&|A|2\rPID|2\nBTS|2\n"
        self.assertEqual(splitMessages(data), [b"MSH|^~\\&|A|1\rPID|1", b"MSH|^~\\&|A|2\rPID|2"])

    def test_batchFile(self):
        """HL7's batch file layout: FHS, BHS, the messages, BTS, FTS."""
        data = (b"FHS|^~\\&|RIS\r\nBHS|^~\\&|RIS\r\nMSH|^~\\&|A|1\r\nPID|1\r\nMSH|^~\\&|A|2\r\n"
                b"BTS|2\r\nFTS|1\r\n")
        self.assertEqual(splitMessages(data), [b"MSH|^~\\&|A|1\rPID|1", b"MSH|^~\\&|A|2"])

    def test_batchesOfAFile(self):
        """``readBatch``: the file header, and each batch's header and
        messages; segments before a batch's first MSH are a piece of their own."""
        data = (b"FHS|^~\\&|RIS\r\nBHS|^~\\&|RIS||||||||B1\r\nMSH|^~\\&|A|1\r\nBTS|1\r\n"
                b"BHS|^~\\&|RIS||||||||B2\r\nPID|0\r\nMSH|^~\\&|A|2\r\nPID|2\r\nBTS|1\r\nFTS|2\r\n")
        batch = readBatch(data)
        self.assertEqual(batch, Batch(b"FHS|^~\\&|RIS", [
            (b"BHS|^~\\&|RIS||||||||B1", [b"MSH|^~\\&|A|1"]),
            (b"BHS|^~\\&|RIS||||||||B2", [b"PID|0", b"MSH|^~\\&|A|2\rPID|2"])]))
        self.assertEqual(splitMessages(data), [b"MSH|^~\\&|A|1", b"PID|0", b"MSH|^~\\&|A|2\rPID|2"])
        self.assertEqual(readBatch(b"MSH|^~\\&|A|1\r"), Batch(b"", [(b"", [b"MSH|^~\\&|A|1"])]))
        self.assertTrue(isBatch(b"\xef\xbb\xbf\r\nBHS|^~\\&") and isBatch(b"FHS|"))
        self.assertFalse(isBatch(b"MSH|^~\\&|A|1\rBHS|"))

    def test_framingAndBOM(self):
        data = b"\xef\xbb\xbf\x0bMSH|^~\\&|A|1\rPID|1\r\x1c\r\x0bMSH|^~\\&|A|2\r\x1c\r\n"
        self.assertEqual(splitMessages(data), [b"MSH|^~\\&|A|1\rPID|1", b"MSH|^~\\&|A|2"])

    def test_isHL7(self):
        """The first bytes of a file that ``splitMessages`` finds messages in."""
        msh = b"MSH|^~\\&|RIS|H|PACS|H|20240101||ORM^O01|M1|P|2.3\rPID|1"
        for head in (msh, b"\r\n  " + msh, b"\xef\xbb\xbf" + msh, b"\x0b\xef\xbb\xbf" + msh,
                     b"\xef\xbb\xbf\x0b" + msh, b"MSH#*$/@#RIS#H#PACS#H#2024##ORM*O01#M1\n",
                     b"FHS|^~\\&|RIS\r", b"\xef\xbb\xbfBHS|^~\\&"):
            self.assertTrue(isHL7(head), head)
            self.assertTrue(splitMessages(head + b"\rMSH|^~\\&|")[-1].startswith(b"MSH"), head)
        for head in (b"", b"\x00" * 128 + b"DICM", b"PID|1", b"BTS|1", b"mSH|"):
            self.assertFalse(isHL7(head), head)

    def test_aTextStartingWithMSHIsNoHL7(self):
        """A text file whose first letters are MSH was taken for HL7: a
        folder import then failed on it ('1 of 1 message(s) not accepted:
        message 1: AR MSH-1 b'E' is not a usable field separator') where it
        skipped it before.  Its header is now read as ``parseMessage``
        reads it: usable delimiters, and an MSH's message type and control
        ID."""
        for head in (b"MSHELL script notes\n", b"MSH: notes on the scanner\n", b"MSH|^~\\&|RIS|H\rPID|1",
                     b"MSH|^^^^|RIS|H|PACS|H|2024||ORM^O01|M1"):
            self.assertFalse(isHL7(head), head)

    def test_anHL7FileWithAnEmptyMSH9OrMSH10IsHL7(self):
        """A file whose first MSH has an empty message type or control ID is
        HL7 that ``parseMessage`` refuses with an AR, its other messages
        applied: isHL7 took it for no HL7 at all (a folder import skipped
        its valid orders as 'not a readable DICOM object')."""
        for head in (b"MSH|^~\\&|RIS|H|PACS|H|2024||ORM^O01||P|2.3\rPID|1", b"MSH|^~\\&|RIS|H|PACS|H|2024|||M1|P\r"):
            self.assertTrue(isHL7(head), head)

    def test_onlyMSHAtTheStartOfALineSplits(self):
        data = b"MSH|^~\\&|A|1\rNTE|1||see MSH|x\rNTE|2||MSH\r"
        self.assertEqual(splitMessages(data), [b"MSH|^~\\&|A|1\rNTE|1||see MSH|x\rNTE|2||MSH"])

    def test_leadingJunkIsKeptForTheCallerToReject(self):
        pieces = splitMessages(b"hello\nMSH|^~\\&|A|1\r")
        self.assertEqual(pieces, [b"hello", b"MSH|^~\\&|A|1"])
        self.assertEqual(self.assertRaises(HL7Error, parseMessage, pieces[0]).code, 100)

    def test_nothing(self):
        self.assertEqual(splitMessages(b""), [])
        self.assertEqual(splitMessages(b"\r\n \n\x1c\r"), [])

    def test_piecesParse(self):
        data = (orm(controlId="A") + "\n" + orm(controlId="B")).encode("latin-1")
        self.assertEqual([parseMessage(raw).controlId for raw in splitMessages(data)], ["A", "B"])


class AckTests(unittest.TestCase):

    def parseAck(self, raw):
        self.assertTrue(raw.endswith(b"\r"))
        self.assertNotIn(b"\n", raw)
        return parseMessage(raw)

    def test_accept(self):
        message = parseMessage(encoded(orm(), "8859/1"))
        raw = ack(message, "AA")
        reply = self.parseAck(raw)
        self.assertEqual([s.id for s in reply.segments], ["MSH", "MSA"])
        msh = reply.segment("MSH")
        self.assertEqual([msh.value(n) for n in (3, 4, 5, 6, 8, 9, 11, 12, 17, 18)],
                         ["PACS", "", "RIS", "KLINIKUM", "", "ACK^O01^ACK", "P", "2.5", "", "8859/1"])
        self.assertRegex(msh.value(7), r"^\d{14}$")
        self.assertRegex(reply.controlId, r"^\d{16}$")
        self.assertNotEqual(reply.controlId, message.controlId)
        self.assertEqual(raw.split(b"\r")[1], b"MSA|AA|MSG00001")
        self.assertEqual(reply.charset, "8859/1")

    def test_theEchoedFieldsAreTheBytesSent(self):
        """An ACK echoed MSH-3 and MSH-10 bytes its decoding could not encode
        back as '?' ('MSA|AA|CU4?' for an MSH-10 of 'CU4\\x81', 'Zo?s RIS'
        for a declared 8859/1 MSH-3 of 'Zo\\x92s RIS'): the sender could not
        match it to its message.  They are now the bytes sent, in an ACK of
        a message parsed and of one that was not."""
        undeclared = b"MSH|^~\\&|R\x81IS\x92|HOSP|PACS|H|20240101||ORM^O01|CU4\x81|P|2.3\rPID|1||P1||O\x92Brien"
        latin1 = (b"MSH|^~\\&|Zo\x92s RIS|HOSP|PACS|H|20240101||ORM^O01|C\x92U|P|2.3||||||8859/1\r"
                  b"PID|1||P1||O\x92Brien")
        for raw, sender, controlId in ((undeclared, b"R\x81IS\x92", b"CU4\x81"), (latin1, b"Zo\x92s RIS", b"C\x92U")):
            for message, code in ((parseMessage(raw), "AA"), (salvage(raw + b"\rMSH|^~\\&"), "AR")):
                msh, msa = ack(message, code).split(b"\r")[:2]
                self.assertEqual(msh.split(b"|")[4], sender, raw)
                self.assertEqual(msa.split(b"|")[1:3], [code.encode(), controlId], raw)

    def test_controlIdsAreUnique(self):
        message = parseMessage(encoded(orm(), "8859/1"))
        ids = {parseMessage(ack(message, "AA")).controlId for _ in range(200)}
        self.assertEqual(len(ids), 200)

    def test_errorWithEscapedText(self):
        message = parseMessage(encoded(orm(), "8859/1"))
        raw = ack(message, "AE", "no patient | ID^x\nsecond line", errorCode=204,
                  application="PACS^X", facility="Röntgen")
        lines = raw.split(b"\r")
        self.assertEqual(lines[1], b"MSA|AE|MSG00001|no patient \\F\\ ID\\S\\x\\.br\\second line")
        self.assertEqual(lines[2], b"ERR|^^^204&Unknown key identifier&HL70357||204^Unknown key identifier^HL70357|"
                                   b"E||||no patient \\F\\ ID\\S\\x\\.br\\second line")
        self.assertEqual(lines[3], b"")
        reply = self.parseAck(raw)
        self.assertEqual(reply.value("MSH", 3), "PACS^X")
        self.assertEqual(reply.value("MSH", 4), "Röntgen")
        self.assertIn("Röntgen".encode("latin-1"), raw)
        self.assertEqual(reply.value("MSA", 3), "no patient | ID^x\r\nsecond line")
        self.assertEqual(reply.value("ERR", 3, 0), "204")

    def test_rejectDefaultsTo207(self):
        message = parseMessage(encoded(orm(), "8859/1"))
        reply = self.parseAck(ack(message, "AR", "broken"))
        self.assertEqual(reply.value("MSA", 1), "AR")
        self.assertEqual(reply.segment("ERR").field(1), "^^^207&Application internal error&HL70357")
        self.assertEqual(reply.value("ERR", 3), "207^Application internal error^HL70357")
        self.assertEqual(reply.value("ERR", 4), "E")
        self.assertEqual(reply.value("ERR", 8), "broken")

    def test_errorCodeInERR1ForV23AndV24(self):
        """ERR-1 (error code and location, the only ERR field of v2.3 and
        v2.4) carries the code as the subcomponents of its fourth component."""
        for version in ("2.3", "2.4", "2.5"):
            message = parseMessage(encoded(orm(), "8859/1").replace(b"|P|2.5", f"|P|{version}".encode()))
            err = self.parseAck(ack(message, "AE", "unknown", errorCode=204)).segment("ERR")
            self.assertEqual(err.value(1, 3), "204", version)
            self.assertEqual(err.field(1).split("^")[3].split("&"), ["204", "Unknown key identifier", "HL70357"])

    def test_utf8(self):
        message = parseMessage(encoded(orm("UNICODE UTF-8"), "UNICODE UTF-8"))
        raw = ack(message, "AE", "Łódź unbekannt", errorCode=204)
        self.assertIn("Łódź".encode("utf-8"), raw)
        self.assertEqual(self.parseAck(raw).charset, "UNICODE UTF-8")

    def test_defaultsForAMinimalMessage(self):
        message = parseMessage(b"MSH|^~\\&|||||||ADT|7")
        reply = self.parseAck(ack(message, "AA"))
        self.assertEqual(reply.value("MSH", 9), "ACK")
        self.assertEqual(reply.value("MSH", 11), "P")
        self.assertEqual(reply.value("MSH", 12), "2.5")
        self.assertEqual(reply.value("MSA", 2), "7")
        self.assertEqual(reply.charset, "")

    def test_componentsOfTheSenderKept(self):
        message = parseMessage(b"MSH|^~\\&|RIS^1.2.3^ISO|HOSP\\T\\X|||||ORM^O01|9|T|2.3")
        reply = self.parseAck(ack(message, "AA"))
        self.assertEqual(reply.segment("MSH").field(5), "RIS^1.2.3^ISO")
        self.assertEqual(reply.value("MSH", 6), "HOSP&X")
        self.assertEqual(reply.value("MSH", 11), "T")
        self.assertEqual(reply.value("MSH", 12), "2.3")

    def test_salvagedFromRawBytes(self):
        raw = (b"MSH|^~\\&|LAB|WARD 3|PACS||2026||ORM^O01|CTRL42|P|2.4|||||DEU|8859/1\r"
               b"PID|1||\xff\xfe||M\xfcller")
        reply = self.parseAck(ack(salvage(raw), "AR", "bad", 102))
        self.assertEqual(reply.value("MSA", 2), "CTRL42")
        self.assertEqual([reply.value("MSH", n) for n in (5, 6, 9, 12, 18)],
                         ["LAB", "WARD 3", "ACK^O01^ACK", "2.4", "8859/1"])
        self.assertEqual(reply.value("ERR", 3, 0), "102")

    def test_theSalvagedEchoIsTheFieldSent(self):
        """The AR of a message that did not parse escaped MSH-10 a second
        time: an MSH-10 ``ID\\F\\8`` (the control ID ``ID|8``) came back as
        ``MSA|AR|ID\\E\\F\\E\\8``, which the sender could not match; MSH-3
        and MSH-4 too.  They are read unescaped, with the message's own
        delimiters, as in a message that parses."""
        header = b"MSH|^~\\&|R\\T\\D|H\\S\\1|PACS||2024||ORM^O01|ID\\F\\8|P|2.3||||||8859/1"
        raw = header + b"\rPID|1||||\x1b(B"
        self.assertRaises(HL7Error, parseMessage, raw)
        salvaged = salvage(raw)
        self.assertEqual((salvaged.sender, salvaged.senderFacility, salvaged.controlId), (["R&D"], ["H^1"], "ID|8"))
        msh, msa = ack(salvaged, "AR", "bad", 102).split(b"\r")[:2]
        self.assertEqual(msa.split(b"|")[:3], [b"MSA", b"AR", b"ID\\F\\8"])
        self.assertEqual(msh.split(b"|")[4:6], [b"R\\T\\D", b"H\\S\\1"])
        self.assertEqual(msa, ack(parseMessage(header), "AR", "bad", 102).split(b"\r")[1])
        other = salvage(b"MSH#^~!&#R!T!D#H#PACS##2024##ORM^O01#ID!F!8!E!#P#2.3\rPID#1####\x1b(B")
        self.assertEqual((other.sender, other.controlId), (["R&D"], "ID#8!"))

    def test_salvageOtherSeparator(self):
        reply = self.parseAck(ack(salvage(b"junk\x0bMSH#@~\\&#SRC##X##9##ADT@A01#ID7#P#2.3"), "AR", "x"))
        self.assertEqual(reply.value("MSA", 2), "ID7")
        self.assertEqual(reply.value("MSH", 5), "SRC")
        self.assertEqual(reply.value("MSH", 9), "ACK^A01^ACK")

    def test_unsupportedCharsetNotRepeated(self):
        """A combination pacs cannot read is not repeated; a name it does
        not know is, as in the ACK of a message parsed."""
        for charset, repeated in (("8859/1~ISO IR87", ""), ("KLINGON", "KLINGON")):
            reply = self.parseAck(ack(salvage(msh(charset=charset).encode("ascii")), "AR", "charset", 207))
            self.assertEqual((reply.value("MSA", 1), reply.value("MSH", 18)), ("AR", repeated))

    def test_salvageNeverRaises(self):
        for raw in [None, b"", b"garbage", b"MSH", b"MSH|", b"MSH|^~\\&|\xff|||||||\xff\xfe|||||||KLINGON",
                    b"\x00" * 50, b"MSHX^~\\&|A"]:
            reply = self.parseAck(ack(salvage(raw), "AR", "unreadable"))
            self.assertEqual(reply.value("MSA", 1), "AR", raw)


    def test_aRefusedBatchIsAnsweredByAnAcknowledgmentBatch(self):
        """``refusal``: a frame refused whole, its every message AR, in an
        acknowledgment batch when it holds a batch (segments before the
        first MSH neither acknowledged nor counted, but said in BTS-2), else
        in the ACK of its first MSH."""
        batch = b"FHS|^~\\&|||||||||F1\rBHS|^~\\&|||||||||B1\rZDS|x\rMSH|^~\\&|A||||||ORM^O01|M1\rPID|1\r"
        answer = refusal(batch + b"MSH|^~\\&|A||||||ORM^O01|M2", "too large", 207, "PACSAE")
        segments = answer.split(b"\r")
        self.assertEqual([s.split(b"|")[0] for s in segments], [b"FHS", b"BHS", b"MSH", b"MSA", b"ERR", b"MSH", b"MSA",
                                                                 b"ERR", b"BTS", b"FTS", b""])
        self.assertEqual((segments[0].split(b"|")[-1], segments[1].split(b"|")[-1]), (b"F1", b"B1"))
        self.assertEqual([(m.value("MSH", 3), m.value("MSA", 1), m.value("MSA", 2), m.value("MSA", 3))
                          for m in map(parseMessage, splitMessages(answer))],
                         [("PACSAE", "AR", "M1", "too large"), ("PACSAE", "AR", "M2", "too large")])
        self.assertEqual(segments[-3:], [b"BTS|2|1 segment(s) before the first MSH refused: in no message",
                                         b"FTS|1", b""])
        single = self.parseAck(refusal(b"MSH|^~\\&|A||||||ORM^O01|M3\rPID|1", "too large"))
        self.assertEqual((single.value("MSA", 1), single.value("MSA", 2)), ("AR", "M3"))

class UniqueNumberTests(unittest.TestCase):

    def test_stuckClock(self):
        numbers = UniqueNumbers(now=lambda: 1_800_000_000.0)
        values = [numbers() for _ in range(1000)]
        self.assertEqual(len(set(values)), 1000)
        self.assertTrue(all(re.fullmatch(r"\d{16}", v) for v in values))
        self.assertEqual(values[0], "1800000000000000")
        self.assertEqual(values[-1], "1800000000000999")

    def test_clockGoingBackDoesNotRepeat(self):
        times = iter([1_800_000_000.5, 1_700_000_000.0, 1_800_000_000.5])
        numbers = UniqueNumbers(now=lambda: next(times))
        self.assertEqual([numbers() for _ in range(3)],
                         ["1800000000500000", "1800000000500001", "1800000000500002"])
