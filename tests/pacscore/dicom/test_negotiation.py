"""``negotiate`` answering repeated A-ASSOCIATE-RQs from memory, and the
transfer syntax it chooses for a context we only send on."""

from pynetdicom.pdu import A_ASSOCIATE_AC
from twisted.trial import unittest

from pacscore.dicom import negotiation
from pacscore.config.ini import DicomIni
from pacscore.dicom.negotiation import AcceptorPolicy, AssociationRejected, TitleStyle, negotiate
from pacscore.dicom.pdu import PDUError
from tests.pacscore.dicom.requests import (
    CT_STORAGE, EXPLICIT, IMPLICIT, JPEG_LOSSLESS, VERIFICATION, associateRQ)

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
MPEG4_HP41 = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264 High Profile / Level 4.1: no decoder here
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"  # decoded here, not encoded
JPEG_EXTENDED_35 = "1.2.840.10008.1.2.4.55"  # in the shipped dgatesop.lst; neither decoded nor encoded here
VIDEO_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4.1"


def body(**kw):
    """The body (after the 6-byte header) of an A-ASSOCIATE-RQ."""
    kw.setdefault("contexts", [(VERIFICATION, [IMPLICIT]), (CT_STORAGE, [EXPLICIT, IMPLICIT])])
    return associateRQ(kw.pop("contexts"), **kw)[6:]


class RememberedNegotiationTests(unittest.TestCase):

    def setUp(self):
        self.policy = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={VERIFICATION: False, CT_STORAGE: True},
                                     transferSyntaxes={IMPLICIT, EXPLICIT})
        self.decoded = 0
        decode = negotiation._decodePDU

        def counting(*args):
            self.decoded += 1
            return decode(*args)
        self.patch(negotiation, "_decodePDU", counting)

    def test_repeatedRequestNotDecodedAgain(self):
        first = negotiate(body(), self.policy)
        second = negotiate(body(), self.policy)
        self.assertEqual(self.decoded, 1)
        self.assertEqual(second, first)
        self.assertEqual(second.contexts, {1: (VERIFICATION, IMPLICIT), 3: (CT_STORAGE, EXPLICIT)})

    def test_answersAreIndependent(self):
        first = negotiate(body(), self.policy)
        first.contexts.clear()
        first.rolesAsSCU.add(CT_STORAGE)
        second = negotiate(body(), self.policy)
        self.assertEqual(len(second.contexts), 2)
        self.assertEqual(second.rolesAsSCU, set())

    def test_otherRequestsNegotiated(self):
        negotiate(body(), self.policy)
        other = negotiate(body(calling="OTHER"), self.policy)
        self.assertEqual(self.decoded, 2)
        self.assertEqual(other.callingAE, "OTHER")

    def test_newPolicyNegotiatesAgain(self):
        negotiate(body(), self.policy)
        stricter = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={VERIFICATION: False},
                                  transferSyntaxes={IMPLICIT}, callingAETitles={"FRIEND"})
        self.assertRaises(AssociationRejected, negotiate, body(), stricter)

    def test_rejectionsNotRemembered(self):
        for _ in range(2):
            self.assertRaises(AssociationRejected, negotiate, body(called="SOMEONE"), self.policy)
        self.assertEqual(self.decoded, 0, "refused before it is decoded")
        self.assertEqual(self.policy.accepted, {})

    def test_hugeRequestForAnotherAERefusedUndecoded(self):
        """A called AE title not ours (or a calling one not allowed) is
        refused before the request is decoded, however large it is."""
        huge = body(called="WRONGAE", contexts=[(CT_STORAGE, [f"1.2.3.{n}" for n in range(60)])] * 128)
        with self.assertRaises(AssociationRejected) as raised:
            negotiate(huge, self.policy)
        self.assertIn("called AE title 'WRONGAE' is not ours", str(raised.exception))
        strict = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={CT_STORAGE: True}, transferSyntaxes={IMPLICIT},
                                callingAETitles={"FRIEND"})
        self.assertRaises(AssociationRejected, negotiate, body(contexts=[(CT_STORAGE, [IMPLICIT])] * 128), strict)
        self.assertEqual(self.decoded, 0)

    def test_anyCalledAEWithoutTitlesToCheck(self):
        """A policy of no AE titles (dgatesop.lst without LocalAE lines)
        answers to any called AE title, as Conquest does; a ``~xx`` suffix
        still asks for its compression."""
        anyTitle = AcceptorPolicy(aeTitles=[], abstractSyntaxes={VERIFICATION: False, CT_STORAGE: True},
                                  transferSyntaxes={IMPLICIT, EXPLICIT})
        for called, compression in (("pacs", None), ("OLDSERVER", None), ("OLDSERVER~j2", "j2")):
            association = negotiate(body(called=called), anyTitle)
            self.assertEqual((association.calledAE, association.compression), (called, compression))
        self.assertRaises(AssociationRejected, negotiate, body(called="pacs"), self.policy)

    def test_tooManyContextsRefused(self):
        rq = body(contexts=[(VERIFICATION, [IMPLICIT])] * 128)
        start = 68 + 4 + int.from_bytes(rq[70:72], "big")  # the first context, after the application context
        item = rq[start:start + 4 + int.from_bytes(rq[start + 2:start + 4], "big")]
        with self.assertRaises(AssociationRejected) as raised:
            negotiate(rq[:start] + item + rq[start:], self.policy)  # a 129th (pynetdicom would not make it)
        self.assertIn("more than 128 presentation contexts", str(raised.exception))
        self.assertEqual(self.decoded, 0)

    def test_tooManyTransferSyntaxesRefused(self):
        syntaxes = [f"1.2.3.{n}" for n in range(64)]
        with self.assertRaises(AssociationRejected) as raised:
            negotiate(body(contexts=[(VERIFICATION, [IMPLICIT]), (CT_STORAGE, syntaxes + [EXPLICIT])]), self.policy)
        self.assertIn("presentation context 3 proposes 65 transfer syntaxes, more than the 64 taken",
                      str(raised.exception))
        self.assertEqual(self.decoded, 0)

    def test_damagedUserInformationTolerated(self):
        """A User Information sub-item longer than the item (it and what
        follows dropped), or a tail of a few bytes after its last sub-item,
        is tolerated as DCMTK and pacs before did: the request is negotiated."""
        for extra in (b"\x60\x00\x00\x09ab", b"\x00\x00"):
            rq = bytearray(body())
            user = rq.rindex(b"\x50\x00")
            length = int.from_bytes(rq[user + 2:user + 4], "big")
            rq[user + 2:user + 4] = (length + len(extra)).to_bytes(2, "big")
            at = user + 4 if extra.startswith(b"\x60") else user + 4 + length
            rq[at:at] = extra
            self.assertIsNotNone(negotiate(bytes(rq), self.policy), extra)

    def test_onlyTheChosenSyntaxDecoded(self):
        """The largest request taken (128 contexts of 64 transfer syntaxes)
        is decoded with one transfer syntax a context: the one chosen, or
        the first proposed when none is taken, as the A-ASSOCIATE-AC names."""
        others = [f"1.2.3.{n}" for n in range(62)]
        contexts = [(CT_STORAGE, others + [EXPLICIT, IMPLICIT]), (CT_STORAGE, [*others, "1.2.4"])] * 64
        decoded = []
        decode = negotiation._decodePDU
        self.patch(negotiation, "_decodePDU", lambda *args: decoded.append(decode(*args)) or decoded[-1])
        association = negotiate(body(contexts=contexts), self.policy)
        self.assertEqual(association.contexts, {n: (CT_STORAGE, EXPLICIT) for n in range(1, 256, 4)})
        [rq] = decoded
        proposed = rq.to_primitive().presentation_context_definition_list
        self.assertEqual({len(context.transfer_syntax) for context in proposed}, {1})
        self.assertEqual(proposed[1].transfer_syntax, ["1.2.3.0"])

    def test_oldestForgotten(self):
        self.policy.rememberAccepted = 2
        for calling in ("A", "B", "C"):
            negotiate(body(calling=calling), self.policy)
        negotiate(body(calling="C"), self.policy)
        self.assertEqual(self.decoded, 3)
        negotiate(body(calling="A"), self.policy)
        self.assertEqual(self.decoded, 4, "A was the oldest, forgotten when C came")

    def test_largeRequestsNotRemembered(self):
        request = body()
        self.policy.rememberLargest = len(request) - 1
        negotiate(request, self.policy)
        self.assertEqual(self.policy.accepted, {})
        self.assertEqual(negotiate(request, self.policy).callingAE, "SCU")
        self.assertEqual(self.decoded, 2)


class ZeroPaddedTitlesTests(unittest.TestCase):
    """AE titles padded with NULs (Conquest's PadAEWithZeros = 1) are taken
    as if padded with spaces."""

    def test_request(self):
        request = bytearray(body(called="PACS", calling="CONQUEST"))
        request[4:20] = b"PACS".ljust(16, b"\x00")
        request[20:36] = b"CONQUEST".ljust(16, b"\x00")
        policy = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={VERIFICATION: False},
                                transferSyntaxes={IMPLICIT}, callingAETitles={"CONQUEST"})
        association = negotiate(bytes(request), policy)
        self.assertEqual((association.calledAE, association.callingAE), ("PACS", "CONQUEST"))

    def test_acceptance(self):
        request = associateRQ([(VERIFICATION, [IMPLICIT])])
        policy = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={VERIFICATION: False},
                                transferSyntaxes={IMPLICIT})
        answer = bytearray(negotiate(request[6:], policy).acPDU)
        answer[10:26] = b"PACS".ljust(16, b"\x00")
        granted = negotiation.accepted(bytes(answer[6:]), "SCU", "PACS", {1: (VERIFICATION, [IMPLICIT])})
        self.assertEqual(granted.contexts, {1: (VERIFICATION, IMPLICIT)})


class TitleStyleTests(unittest.TestCase):
    """What we write: PadAEWithZeros = 1 pads both AE titles of our
    A-ASSOCIATE-RQ and -AC with NULs, SendUpperCaseAE upper-cases the called
    AE title of our requests."""

    def test_fromIni(self):
        for keys, expected in (({}, (False, False)), ({"PadAEWithZeros": "1"}, (True, False)),
                               ({"SendUpperCaseAE": "1"}, (False, True)), ({"SendUpperCaseAE": "0"}, (False, False)),
                               ({"SendUpperCaseAE": "0 ; off"}, (False, False)),
                               ({"SendUpperCaseAE": "1 # on"}, (False, True))):
            ini = DicomIni.fromString("".join(f"{key} = {value}\n" for key, value in keys.items()))
            self.assertEqual(tuple(TitleStyle.fromIni(ini)), expected)

    def test_request(self):
        contexts = {1: (VERIFICATION, [IMPLICIT])}
        plain = negotiation.requestPDU("ME", "pacs", contexts, 16384)
        self.assertEqual(plain[10:42], b"pacs" + b" " * 12 + b"ME" + b" " * 14)
        styled = negotiation.requestPDU("ME", "pacs", contexts, 16384, titleStyle=TitleStyle(True, True))
        self.assertEqual(styled[10:42], b"PACS" + b"\0" * 12 + b"ME" + b"\0" * 14)
        self.assertEqual(styled[42:], plain[42:])
        policy = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={VERIFICATION: False}, transferSyntaxes={IMPLICIT})
        self.assertEqual(negotiate(styled[6:], policy).calledAE, "PACS")

    def test_acceptance(self):
        request = associateRQ([(VERIFICATION, [IMPLICIT])])
        policy = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={VERIFICATION: False},
                                transferSyntaxes={IMPLICIT}, titleStyle=TitleStyle(zeroPadded=True))
        answer = negotiate(request[6:], policy).acPDU
        self.assertEqual(answer[10:26], b"PACS".ljust(16, b"\0"))
        self.assertNotIn(b" ", answer[10:42])
        granted = negotiation.accepted(answer[6:], "SCU", "PACS", {1: (VERIFICATION, [IMPLICIT])})
        self.assertEqual(granted.contexts, {1: (VERIFICATION, IMPLICIT)})


class MalformedRequestTests(unittest.TestCase):

    def test_contextWithoutAbstractSyntax(self):
        """A presentation context item without its abstract syntax sub-item
        is a malformed PDU (A-ABORT), not an internal error."""
        request = bytearray(body(contexts=[(VERIFICATION, [IMPLICIT])]))
        context = request.index(b"\x20\x00", 68)  # the items follow 68 bytes of fixed fields
        abstract = request.index(b"\x30\x00", context)
        length = int.from_bytes(request[abstract + 2:abstract + 4], "big")
        del request[abstract:abstract + 4 + length]
        itemLength = int.from_bytes(request[context + 2:context + 4], "big") - 4 - length
        request[context + 2:context + 4] = itemLength.to_bytes(2, "big")
        policy = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={VERIFICATION: False},
                                transferSyntaxes={IMPLICIT})
        error = self.assertRaises(PDUError, negotiate, bytes(request), policy)
        self.assertIn("without an abstract syntax", str(error))


class SendingContextTests(unittest.TestCase):
    """A C-GET's storage context, on which we only send: its syntax is
    fixed before any object is known."""

    def setUp(self):
        self.policy = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={CT_STORAGE: True, VIDEO_PHOTOGRAPHIC: True},
                                     transferSyntaxes={IMPLICIT, EXPLICIT, JPEG_BASELINE, JPEG_LOSSLESS})

    def chosen(self, syntaxes, scu, scp=True, abstract=CT_STORAGE):
        association = negotiate(body(contexts=[(abstract, syntaxes)], roles=[(abstract, scu, scp)]), self.policy)
        [(abstract, syntax)] = association.contexts.values()
        [context] = negotiation._decodePDU(A_ASSOCIATE_AC, 0x02, association.acPDU[6:]).to_primitive(
            ).presentation_context_definition_results_list
        self.assertEqual(str(context.transfer_syntax[0]), syntax, "the A-ASSOCIATE-AC says the syntax chosen")
        return syntax

    def test_uncompressedWhenProposed(self):
        """getscu +xy proposes JPEG Baseline, then the uncompressed ones:
        Explicit VR Little Endian, which a 16-bit, 1-bit or float image
        can go in (Orthanc chooses so), where JPEG Baseline would fail them."""
        self.assertEqual(self.chosen([JPEG_BASELINE, EXPLICIT, IMPLICIT], scu=False), EXPLICIT)
        self.assertEqual(self.chosen([JPEG_LOSSLESS, IMPLICIT, EXPLICIT], scu=False), IMPLICIT, "its order")

    def test_compressedWhenOnlyThatIsProposed(self):
        self.assertEqual(self.chosen([JPEG_LOSSLESS, "1.2.3"], scu=False), JPEG_LOSSLESS)

    def test_theFirstWhenWeCannotDecodeItForVideo(self):
        """getscu +xn proposes MPEG-4 AVC, then the uncompressed ones, for
        every storage class: a video storage class keeps it, since a video
        stored in it can go in no other; a CT context (its images, SRs and
        PDFs) gets Explicit VR Little Endian, which they all can go in."""
        self.policy.transferSyntaxes.add(MPEG4_HP41)
        self.assertEqual(self.chosen([MPEG4_HP41, EXPLICIT, IMPLICIT], scu=False, abstract=VIDEO_PHOTOGRAPHIC),
                         MPEG4_HP41)
        self.assertEqual(self.chosen([MPEG4_HP41, EXPLICIT, IMPLICIT], scu=False), EXPLICIT)

    def test_uncompressedWhenWeCanDecodeTheFirst(self):
        """HTJ2K first (decoded here, not encoded) or JPEG 4.55 (enabled in
        the shipped dgatesop.lst) on an image class: what is stored in them
        can go uncompressed too, and every other image can only so."""
        self.policy.transferSyntaxes.update({HTJ2K_LOSSLESS, JPEG_EXTENDED_35})
        for first in (HTJ2K_LOSSLESS, JPEG_EXTENDED_35):
            self.assertEqual(self.chosen([first, EXPLICIT], scu=False), EXPLICIT, first)
        self.assertEqual(self.chosen([HTJ2K_LOSSLESS, EXPLICIT], scu=False, abstract=VIDEO_PHOTOGRAPHIC), EXPLICIT)

    def test_theFirstWhereThePeerMaySendToo(self):
        """The peer keeping the SCU role may store on it: its first, so
        that objects are stored as they arrive."""
        self.assertEqual(self.chosen([JPEG_BASELINE, EXPLICIT, IMPLICIT], scu=True), JPEG_BASELINE)
