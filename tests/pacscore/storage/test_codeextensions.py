"""Text decoded under ISO 2022 code extensions, without escape sequences."""

from pydicom.charset import convert_encodings
from twisted.trial import unittest

from pacscore.storage.codeextensions import decodeText, textFits, textOrLatin1, withoutEscapes


class DecodeTextTests(unittest.TestCase):

    def test_iso2022IR58(self):
        """pydicom keeps GB2312's ``ESC $ ) A`` in the text; decodeText does not."""
        raw = b"Wang^XiaoDong=\x1b$)A" + "王".encode("gb2312") + b"^\x1b$)A" + "小东".encode("gb2312")
        self.assertEqual(decodeText(raw, convert_encodings(["", "ISO 2022 IR 58"]), {0x5E, 0x3D}),
                         "Wang^XiaoDong=王^小东")

    def test_iso2022IR87AsPydicomDecodesIt(self):
        raw = b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"
        self.assertEqual(decodeText(raw, convert_encodings(["", "ISO 2022 IR 87"]), {0x5E, 0x3D}),
                         "Yamada^Tarou=山田^太郎")

    def test_withoutEscapes(self):
        self.assertEqual(withoutEscapes("a\x1b$)Ab\x1b(Bc\x1b-Ad"), "abcd")
        self.assertEqual(withoutEscapes("plain\ttext"), "plain\ttext")


class TextOrLatin1Tests(unittest.TestCase):
    """Bytes not valid in the declared set read as Latin-1, not U+FFFD."""

    def test_latin1InUTF8(self):
        encodings = convert_encodings(["ISO_IR 192"])
        self.assertFalse(textFits(b"M\xfcller", encodings))
        self.assertEqual(textOrLatin1(b"M\xfcller", encodings, set()), "Müller")
        self.assertTrue(textFits("Müller".encode(), encodings))
        self.assertEqual(textOrLatin1("Müller".encode(), encodings, set()), "Müller")

    def test_badBytesUnderAnEscapeSequence(self):
        encodings = convert_encodings(["", "ISO 2022 IR 87"])
        self.assertTrue(textFits(b"Yamada=\x1b$B;3ED\x1b(B", encodings))
        self.assertFalse(textFits(b"Yamada=\x1b$B\x80\x80\x1b(B", encodings))
        self.assertNotIn("\ufffd", textOrLatin1(b"Yamada=\x1b$B\x80\x80\x1b(B", encodings, set()))

    def test_theDefaultRepertoireIsASCIIWhenAskedFor(self):
        """ISO_IR 6 (or no value 1 before code extensions) is ASCII: bytes
        beyond it fit it only as pydicom reads it, as Latin-1 (it passed an
        ISO_IR 6 'M\\xfcller' for valid, so storing it logged nothing);
        where a set was designated to G1 (``ESC - A``, ``ESC $ ) C``), high
        bytes after ``ESC ( B`` are that set's."""
        for terms, raw, fits in [
                (["ISO_IR 6"], b"M\xfcller", False), (["ISO_IR 6"], b"Muller", True),
                (["ISO 2022 IR 6"], b"M\xfcller", False),
                (["", "ISO 2022 IR 87"], b"M\xfcller=\x1b$B;3ED\x1b(B", False),
                (["", "ISO 2022 IR 87"], b"Yamada=\x1b$B;3ED\x1b(B^M\xfcller", False),
                (["", "ISO 2022 IR 87"], b"Yamada=\x1b$B;3ED\x1b(B^Tarou", True),
                (["", "ISO 2022 IR 100", "ISO 2022 IR 87"], b"\x1b-AM\xfcller=\x1b$B;3ED\x1b(B\xfc", True),
                (["ISO 2022 IR 100", "ISO 2022 IR 87"], b"M\xfcller=\x1b$B;3ED\x1b(B\xfc", True),
                (["ISO_IR 100"], b"M\xfcller", True),
                (["", "ISO 2022 IR 149"], b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7", True),
                (["", "ISO 2022 IR 149"], b"\xc8\xab^\xb1\xe6", False)]:
            encodings = convert_encodings(terms)
            self.assertEqual(textFits(raw, encodings, asciiDefault=True), fits, (terms, raw))
            self.assertTrue(textFits(raw, encodings), (terms, raw))  # as pydicom reads them, as before
