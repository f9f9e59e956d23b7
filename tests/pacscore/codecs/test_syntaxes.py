"""Tests for pacscore.codecs.syntaxes: the transfer syntaxes proposed for
an outgoing object, the one an incoming object is stored in, and what this
installation can encode and decode."""

from pydicom.pixels import get_decoder, get_encoder
from pydicom.uid import UID
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.codecs import syntaxes
from pacscore.codecs.downsize import SIZES
from pacscore.codecs.syntaxes import (
    CODE_SYNTAXES, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, DOWNSIZING_CODES, EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, JPEG_2000, JPEG_2000_LOSSLESS,
    JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1, JPEG_LOSSLESS_SYNTAXES, JPEG_LOSSY_SYNTAXES,
    JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS, RLE_LOSSLESS, SUPPORTED_CODES, UNCOMPRESSED,
    canDecode, canEncode, codeOf, isCompressed, isLossy, isSupportedCode, proposals, qualityOf, storedSyntax)

NATIVE = [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN,
          DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN]
LOSSLESS = [JPEG_LOSSLESS, JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS, JPEG_2000_LOSSLESS, RLE_LOSSLESS]
LOSSY = [JPEG_BASELINE, JPEG_EXTENDED, JPEG_LS_NEAR_LOSSLESS, JPEG_2000]
COMPRESSED = LOSSLESS + LOSSY
# NKI and downsizing codes: their syntax proposals are those of "as"
PIXEL_CODES = ["n1", "n2", "n3", "n4", "nj", "uj", "k1", "k2", "k4", "k8", "ka", "kb", "kc"]
SCRIPT_CODES = [f"s{n}" for n in range(10)]  # their converter lines run elsewhere; "as" here
UNSUPPORTED_CODES = ["v2", "zz", "j9", "s10"]
CONQUEST_JPEG = {
    "j1": JPEG_LOSSLESS_SV1, "j2": JPEG_LOSSLESS, "j3": JPEG_BASELINE, "j4": JPEG_EXTENDED,
    "j5": JPEG_BASELINE, "j6": JPEG_EXTENDED, "jk": JPEG_2000_LOSSLESS, "jl": JPEG_2000,
    "js": JPEG_LS_LOSSLESS, "j7": JPEG_LS_NEAR_LOSSLESS,
}
NATIVE_CODE_SYNTAXES = {"ui": IMPLICIT_VR_LITTLE_ENDIAN, "ul": EXPLICIT_VR_LITTLE_ENDIAN,
                        "ub": EXPLICIT_VR_BIG_ENDIAN}


def pydicomCan(syntax, encode):
    """What pydicom itself says, asked directly."""
    try:
        coder = get_encoder(UID(syntax)) if encode else get_decoder(UID(syntax))
    except NotImplementedError:
        return False
    return coder.is_available


class ConstantTests(unittest.TestCase):

    def test_values(self):
        self.assertEqual(IMPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2")
        self.assertEqual(EXPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.1")
        self.assertEqual(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.1.99")
        self.assertEqual(EXPLICIT_VR_BIG_ENDIAN, "1.2.840.10008.1.2.2")
        self.assertEqual(JPEG_BASELINE, "1.2.840.10008.1.2.4.50")
        self.assertEqual(JPEG_EXTENDED, "1.2.840.10008.1.2.4.51")
        self.assertEqual(JPEG_LOSSLESS, "1.2.840.10008.1.2.4.57")
        self.assertEqual(JPEG_LOSSLESS_SV1, "1.2.840.10008.1.2.4.70")
        self.assertEqual(JPEG_LS_LOSSLESS, "1.2.840.10008.1.2.4.80")
        self.assertEqual(JPEG_LS_NEAR_LOSSLESS, "1.2.840.10008.1.2.4.81")
        self.assertEqual(JPEG_2000_LOSSLESS, "1.2.840.10008.1.2.4.90")
        self.assertEqual(JPEG_2000, "1.2.840.10008.1.2.4.91")
        self.assertEqual(RLE_LOSSLESS, "1.2.840.10008.1.2.5")

    def test_pydicomAgrees(self):
        """Each constant is the pydicom UID of the same name and kind."""
        for syntax in NATIVE + COMPRESSED:
            uid = UID(syntax)
            self.assertTrue(uid.is_transfer_syntax, syntax)
            self.assertEqual(uid.is_compressed, isCompressed(syntax), syntax)

    def test_uncompressedPreference(self):
        self.assertEqual(UNCOMPRESSED, (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN))

    def test_codeMapping(self):
        """Conquest's jpegconv.cpp: j1 writes 4.70, j2 4.57, j3/j4 4.50 or
        4.51 by precision; j5/j6 (retired progressive) as j3/j4."""
        self.assertEqual({code: syntaxes[0] for code, syntaxes in CODE_SYNTAXES.items()},
                         {**CONQUEST_JPEG, **NATIVE_CODE_SYNTAXES})
        self.assertEqual(CODE_SYNTAXES["j7"], (JPEG_LS_NEAR_LOSSLESS, JPEG_LS_LOSSLESS))
        self.assertEqual(set(CODE_SYNTAXES["j3"]), {JPEG_BASELINE, JPEG_EXTENDED})
        self.assertEqual(set(CODE_SYNTAXES["j6"]), {JPEG_BASELINE, JPEG_EXTENDED})


class CompressedLossyTests(unittest.TestCase):

    def test_native(self):
        for syntax in NATIVE:
            self.assertFalse(isCompressed(syntax), syntax)
            self.assertFalse(isLossy(syntax), syntax)

    def test_lossless(self):
        for syntax in LOSSLESS:
            self.assertTrue(isCompressed(syntax), syntax)
            self.assertFalse(isLossy(syntax), syntax)

    def test_lossy(self):
        for syntax in LOSSY + ["1.2.840.10008.1.2.4.53", "1.2.840.10008.1.2.4.55",
                               "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.203"]:
            self.assertTrue(isCompressed(syntax), syntax)
            self.assertTrue(isLossy(syntax), syntax)

    def test_otherEncapsulated(self):
        """Any syntax not one of the four native ones encapsulates."""
        for syntax in ["1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.92"]:
            self.assertTrue(isCompressed(syntax))
            self.assertFalse(isLossy(syntax))

    def test_padding(self):
        """A UID as read from a file, NUL padded, is recognised."""
        self.assertFalse(isCompressed(EXPLICIT_VR_LITTLE_ENDIAN + "\x00"))
        self.assertTrue(isLossy(JPEG_BASELINE + "\x00"))


class CodecAvailabilityTests(unittest.TestCase):

    def test_nativeAlways(self):
        for syntax in NATIVE:
            self.assertTrue(canEncode(syntax), syntax)
            self.assertTrue(canDecode(syntax), syntax)

    def test_asPydicomSays(self):
        """The answer is pydicom's for the plugins installed here, but for
        the JPEG (10918) syntaxes, which our own encoders write."""
        for syntax in COMPRESSED:
            if syntax not in JPEG_LOSSLESS_SYNTAXES | JPEG_LOSSY_SYNTAXES:
                self.assertEqual(canEncode(syntax), pydicomCan(syntax, True), syntax)
            self.assertEqual(canDecode(syntax), pydicomCan(syntax, False), syntax)

    def test_jpegByOurEncoders(self):
        """pydicom has no JPEG (10918) encoder at all; pacscore writes the
        lossless ones and the lossy baseline and extended ones."""
        for syntax in [JPEG_LOSSLESS, JPEG_LOSSLESS_SV1, JPEG_BASELINE, JPEG_EXTENDED]:
            self.assertFalse(pydicomCan(syntax, True), syntax)
            self.assertTrue(canEncode(syntax), syntax)
            self.assertTrue(canEncode(syntax + "\x00"), syntax)

    def test_installedPlugins(self):
        """What the project's requirements bring (pylibjpeg, -libjpeg,
        -openjpeg, -rle): every common syntax decodes; RLE and JPEG 2000
        encode."""
        for syntax in COMPRESSED:
            self.assertTrue(canDecode(syntax), syntax)
        for syntax in [RLE_LOSSLESS, JPEG_2000_LOSSLESS, JPEG_2000]:
            self.assertTrue(canEncode(syntax), syntax)

    def test_unknown(self):
        for syntax in ["1.2.840.10008.1.2.4.53", "1.2.3.4", "", "junk"]:
            self.assertFalse(canEncode(syntax), syntax)
            self.assertFalse(canDecode(syntax), syntax)


class ProposalTests(unittest.TestCase):

    def assertProposals(self, stored, code, expected):
        result = proposals(stored, code)
        self.assertEqual(result, expected, f"stored {stored}, code {code!r}")
        self.assertEqual(len(result), len(set(result)))

    def test_asIs(self):
        for code in ["as", None, "", "AS", " as "]:
            self.assertProposals(IMPLICIT_VR_LITTLE_ENDIAN, code,
                                 [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN])
            self.assertProposals(EXPLICIT_VR_LITTLE_ENDIAN, code, list(UNCOMPRESSED))
            self.assertProposals(JPEG_BASELINE, code, [JPEG_BASELINE] + list(UNCOMPRESSED))
            self.assertProposals(EXPLICIT_VR_BIG_ENDIAN, code, [EXPLICIT_VR_BIG_ENDIAN] + list(UNCOMPRESSED))

    def test_uncompressed(self):
        self.assertProposals(JPEG_2000, "un", list(UNCOMPRESSED))
        self.assertProposals(RLE_LOSSLESS, "un", list(UNCOMPRESSED))
        self.assertProposals(EXPLICIT_VR_LITTLE_ENDIAN, "un", list(UNCOMPRESSED))
        self.assertProposals(IMPLICIT_VR_LITTLE_ENDIAN, "un",
                             [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN])
        self.assertProposals(EXPLICIT_VR_BIG_ENDIAN, "UN", [EXPLICIT_VR_BIG_ENDIAN] + list(UNCOMPRESSED))
        self.assertProposals(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, "un",
                             [DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN] + list(UNCOMPRESSED))

    def test_codeWhenProducible(self):
        """A code's syntax first when we can produce it, then as stored,
        then uncompressed."""
        for code, syntax in CONQUEST_JPEG.items():
            for stored in [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS]:
                producible = [s for s in CODE_SYNTAXES[code] if canEncode(s)]
                expected = list(dict.fromkeys(producible + [stored] + list(UNCOMPRESSED)))
                self.assertProposals(stored, code, expected)

    def test_jpeg2000Here(self):
        """With openjpeg installed "jk" and "jl" ask for JPEG 2000."""
        self.assertProposals(EXPLICIT_VR_LITTLE_ENDIAN, "jk", [JPEG_2000_LOSSLESS] + list(UNCOMPRESSED))
        self.assertProposals(IMPLICIT_VR_LITTLE_ENDIAN, "jl",
                             [JPEG_2000, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN])
        self.assertProposals(JPEG_BASELINE, "JK", [JPEG_2000_LOSSLESS, JPEG_BASELINE] + list(UNCOMPRESSED))
        self.assertProposals(JPEG_2000_LOSSLESS, "jl", [JPEG_2000, JPEG_2000_LOSSLESS] + list(UNCOMPRESSED))

    def test_jpegLosslessProducible(self):
        """j1 and j2 ask for the lossless JPEG syntaxes, whatever the stored
        one."""
        for code, syntax in [("j1", JPEG_LOSSLESS_SV1), ("J2", JPEG_LOSSLESS)]:
            self.assertProposals(IMPLICIT_VR_LITTLE_ENDIAN, code,
                                 [syntax, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN])
            self.assertProposals(JPEG_2000, code, [syntax, JPEG_2000] + list(UNCOMPRESSED))
        self.assertProposals(JPEG_LOSSLESS, "j1", [JPEG_LOSSLESS_SV1, JPEG_LOSSLESS] + list(UNCOMPRESSED))

    def test_jpegLossyProducible(self):
        """j3/j5 ask for baseline then extended lossy JPEG, j4/j6 the other
        way round, whatever the stored syntax."""
        for code, first, second in [("j3", JPEG_BASELINE, JPEG_EXTENDED), ("J4", JPEG_EXTENDED, JPEG_BASELINE),
                                    ("j5", JPEG_BASELINE, JPEG_EXTENDED), ("j6", JPEG_EXTENDED, JPEG_BASELINE)]:
            self.assertProposals(IMPLICIT_VR_LITTLE_ENDIAN, code,
                                 [first, second, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN])
            self.assertProposals(JPEG_2000, code, [first, second, JPEG_2000] + list(UNCOMPRESSED))

    def test_alreadyInTheCodesSyntax(self):
        """Stored as the code asks: that first, no conversion needed."""
        self.assertProposals(JPEG_LOSSLESS_SV1, "j1", [JPEG_LOSSLESS_SV1] + list(UNCOMPRESSED))
        self.assertProposals(JPEG_LOSSLESS, "j2", [JPEG_LOSSLESS] + list(UNCOMPRESSED))
        self.assertProposals(JPEG_BASELINE, "j3", [JPEG_BASELINE, JPEG_EXTENDED] + list(UNCOMPRESSED))
        self.assertProposals(JPEG_EXTENDED, "j4", [JPEG_EXTENDED, JPEG_BASELINE] + list(UNCOMPRESSED))
        self.assertProposals(JPEG_2000_LOSSLESS, "jk", [JPEG_2000_LOSSLESS] + list(UNCOMPRESSED))
        self.assertProposals(JPEG_2000, "jl", [JPEG_2000] + list(UNCOMPRESSED))

    def test_otherPrecision(self):
        """j3 on a 12-bit object stored as extended JPEG, j4 on an 8-bit one
        stored as baseline: Conquest would have chosen that syntax too."""
        self.assertProposals(JPEG_EXTENDED, "j3", [JPEG_EXTENDED, JPEG_BASELINE] + list(UNCOMPRESSED))
        self.assertProposals(JPEG_BASELINE, "j4", [JPEG_BASELINE, JPEG_EXTENDED] + list(UNCOMPRESSED))
        self.assertProposals(JPEG_EXTENDED, "j5", [JPEG_EXTENDED, JPEG_BASELINE] + list(UNCOMPRESSED))
        self.assertProposals(JPEG_BASELINE, "j6", [JPEG_BASELINE, JPEG_EXTENDED] + list(UNCOMPRESSED))

    def test_unsupportedCodesAreAsIs(self):
        for code in UNSUPPORTED_CODES + [c.upper() for c in UNSUPPORTED_CODES]:
            for stored in [IMPLICIT_VR_LITTLE_ENDIAN, JPEG_BASELINE, RLE_LOSSLESS, EXPLICIT_VR_BIG_ENDIAN]:
                self.assertProposals(stored, code, proposals(stored, "as"))
            self.assertFalse(isSupportedCode(code), code)

    def test_supportedCodes(self):
        for code in list(CONQUEST_JPEG) + PIXEL_CODES + SCRIPT_CODES + ["as", "un", "UN", None, "", "Jk", "N4"]:
            self.assertTrue(isSupportedCode(code), code)
        self.assertEqual(SUPPORTED_CODES, set(CONQUEST_JPEG) | set(NATIVE_CODE_SYNTAXES) | set(PIXEL_CODES)
                         | set(SCRIPT_CODES) | {"as", "un"})

    def test_jpegCodesWithAQuality(self):
        """Conquest reads digits after a JPEG code's two letters as its quality."""
        self.assertEqual((codeOf("jl50"), qualityOf("jl50", 95)), ("jl", 50))
        self.assertEqual((codeOf("J390"), qualityOf("J390", 95)), ("j3", 90))
        self.assertEqual(qualityOf("j3", 95), 95)
        self.assertEqual(qualityOf("jl0", 95), 95, "0: LossyQuality")
        self.assertEqual(qualityOf("jl500", 95), 100)
        self.assertEqual(qualityOf("n4", 70), 70)
        self.assertEqual(codeOf("n44"), "n44")
        self.assertProposals(IMPLICIT_VR_LITTLE_ENDIAN, "jl50", proposals(IMPLICIT_VR_LITTLE_ENDIAN, "jl"))
        self.assertTrue(isSupportedCode("j475"))

    def test_oneUncompressedSyntax(self):
        """ui, ul, ub: that syntax first, then the uncompressed ones; never a compressed stored one."""
        for code, syntax in NATIVE_CODE_SYNTAXES.items():
            for stored in [JPEG_2000, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]:
                self.assertProposals(stored, code, list(dict.fromkeys([syntax] + list(UNCOMPRESSED))))

    def test_scriptCodesAsIs(self):
        for code in SCRIPT_CODES:
            for stored in [IMPLICIT_VR_LITTLE_ENDIAN, JPEG_BASELINE, RLE_LOSSLESS]:
                self.assertProposals(stored, code, proposals(stored, "as"))

    def test_pixelCodesProposeAsAs(self):
        for code in PIXEL_CODES:
            for stored in NATIVE + COMPRESSED:
                self.assertProposals(stored, code, proposals(stored, "as"))
                self.assertEqual(storedSyntax(stored, code), stored)

    def test_everyCodeEndsUncompressed(self):
        for code in list(SUPPORTED_CODES) + UNSUPPORTED_CODES:
            for stored in NATIVE + COMPRESSED:
                result = proposals(stored, code)
                self.assertEqual(set(result[-2:]), set(UNCOMPRESSED), (stored, code))
                self.assertEqual(len(result), len(set(result)), (stored, code))
                self.assertTrue(stored in result or code in {"un"} | set(NATIVE_CODE_SYNTAXES), (stored, code))

    def test_paddedStoredSyntax(self):
        """The stored syntax as read from a file may carry its NUL pad."""
        self.assertProposals(JPEG_BASELINE + "\x00", "as", [JPEG_BASELINE] + list(UNCOMPRESSED))
        self.assertProposals(IMPLICIT_VR_LITTLE_ENDIAN + "\x00", "un",
                             [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN])


class StoredSyntaxTests(unittest.TestCase):
    """Conquest's IncomingCompression/DroppedFileCompression codes (manual 7.7)."""

    def test_asReceived(self):
        for code in ["as", "is", "", None] + UNSUPPORTED_CODES:
            for syntax in NATIVE + COMPRESSED:
                self.assertEqual(storedSyntax(syntax, code), syntax, (syntax, code))

    def test_uncompressedOnlyChangesCompressedData(self):
        for syntax in NATIVE:
            self.assertEqual(storedSyntax(syntax, "un"), syntax)
        for syntax in COMPRESSED:
            self.assertEqual(storedSyntax(syntax, "un"), EXPLICIT_VR_LITTLE_ENDIAN)

    def test_codesThatCanBeWritten(self):
        self.assertEqual(storedSyntax(EXPLICIT_VR_LITTLE_ENDIAN, "j1"), JPEG_LOSSLESS_SV1)
        self.assertEqual(storedSyntax(IMPLICIT_VR_LITTLE_ENDIAN, "J2"), JPEG_LOSSLESS)
        self.assertEqual(storedSyntax(JPEG_BASELINE, "jk"), JPEG_2000_LOSSLESS)
        self.assertEqual(storedSyntax(EXPLICIT_VR_LITTLE_ENDIAN, "j3"), JPEG_BASELINE)
        self.assertEqual(storedSyntax(EXPLICIT_VR_LITTLE_ENDIAN, "j4"), JPEG_EXTENDED)
        self.assertEqual(storedSyntax(JPEG_EXTENDED, "j3"), JPEG_EXTENDED)  # accepted as the second choice

    def test_downsizingCodesAreThoseWithSizes(self):
        self.assertEqual(set(SIZES), DOWNSIZING_CODES)


def withoutJpegLS(testCase):
    """Make this installation one without a JPEG-LS encoder, with no code
    warned of yet; the warnings ``unencodable`` logs from then on."""
    available = syntaxes._available
    testCase.patch(syntaxes, "_available", lambda syntax, encode: (
        not (encode and syntax in (JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS)) and available(syntax, encode)))
    testCase.patch(syntaxes.unencodable, "warned", set())


class UnencodableTests(unittest.TestCase):
    """A code whose syntaxes no installed encoder writes is as "as", and
    says so once."""

    def setUp(self):
        withoutJpegLS(self)

    def test_warnedOnceAtFirstUse(self):
        with capturedLogs() as events:
            for _ in range(3):
                self.assertEqual(proposals(EXPLICIT_VR_LITTLE_ENDIAN, "js"), list(UNCOMPRESSED))
                self.assertEqual(storedSyntax(IMPLICIT_VR_LITTLE_ENDIAN, "j7"), IMPLICIT_VR_LITTLE_ENDIAN)
            proposals(EXPLICIT_VR_LITTLE_ENDIAN, "jk")  # JPEG 2000: encoded here
        self.assertEqual([formatEvent(e) for e in events], [
            "compression code js: JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80) cannot be encoded "
            "on this installation (no encoder installed); objects are stored and sent in the transfer syntax "
            "they have instead (uncompressed to a peer that does not accept it)",
            "compression code j7: JPEG-LS Lossy (Near-Lossless) Image Compression (1.2.840.10008.1.2.4.81) or "
            "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80) cannot be encoded on this installation "
            "(no encoder installed); objects are stored and sent in the transfer syntax they have instead "
            "(uncompressed to a peer that does not accept it)"])

    def test_theSettingNamed(self):
        with capturedLogs() as events:
            syntaxes.unencodable.check("JS", "IncomingCompression")
            syntaxes.unencodable.check("js")
        self.assertEqual(len(events), 1)
        self.assertTrue(formatEvent(events[0]).startswith("IncomingCompression = js: JPEG-LS Lossless"))

    def test_othersSayNothing(self):
        with capturedLogs() as events:
            for code in ("as", "un", "ul", "j1", "j3", "jk", "jl50", "n4", "k2", "s1", "zz", None):
                syntaxes.unencodable.check(code)
        self.assertEqual(events, [])
