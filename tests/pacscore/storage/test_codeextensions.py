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
