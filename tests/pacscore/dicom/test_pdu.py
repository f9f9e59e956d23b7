"""PDU framing: whole PDUs out of a byte stream cut anywhere, without
copying the P-DATA that arrives whole."""

from twisted.trial import unittest

from pacscore.dicom import pdu

LIMIT = 1 << 20


def stream():
    """An A-RELEASE-RQ, three P-DATA-TF of different sizes and an A-ABORT:
    ``(bytes, [(pduType, body bytes), ...])``."""
    pdus = [pdu.encodeSimplePDU(pdu.A_RELEASE_RQ),
            pdu.encodePData(1, 0, bytes(range(256)) * 3),
            pdu.encodePData(3, 2, b"x" * 10),
            pdu.encodePData(1, 3, b""),
            pdu.encodeAbort(pdu.SOURCE_SERVICE_USER, 0)]
    return b"".join(pdus), [(raw[0], raw[6:]) for raw in pdus]


def collect(framer, data):
    return [(pduType, bytes(body)) for pduType, body in framer.feed(data)]


class PDUFramerTests(unittest.TestCase):

    def test_cutAnywhere(self):
        """Cut in two at every position, or fed byte by byte, the stream
        gives the same PDUs, and nothing stays buffered."""
        data, expected = stream()
        for cut in range(len(data) + 1):
            framer = pdu.PDUFramer(lambda pduType: LIMIT)
            self.assertEqual(collect(framer, data[:cut]) + collect(framer, data[cut:]), expected, cut)
            self.assertEqual(framer.pendingBytes, 0)
        framer = pdu.PDUFramer(lambda pduType: LIMIT)
        got = [item for i in range(len(data)) for item in collect(framer, data[i:i + 1])]
        self.assertEqual(got, expected)

    def test_wholePDataIsAViewOfWhatArrived(self):
        """A P-DATA-TF that arrives whole is a read-only view of the
        received bytes; the association PDUs are bytes."""
        data, _ = stream()
        bodies = list(pdu.PDUFramer(lambda pduType: LIMIT).feed(data))
        pdata = [body for pduType, body in bodies if pduType == pdu.P_DATA_TF]
        self.assertEqual(len(pdata), 3)
        for body in pdata:
            self.assertIsInstance(body, memoryview)
            self.assertIs(body.obj, data)
            self.assertTrue(body.readonly)
        others = [body for pduType, body in bodies if pduType != pdu.P_DATA_TF]
        self.assertEqual([type(body) for body in others], [bytes, bytes])

    def test_splitPDataIsGathered(self):
        """A P-DATA-TF split across receives comes out once whole, as a
        read-only view of bytes of its own, its pieces joined once."""
        data, expected = stream()
        framer = pdu.PDUFramer(lambda pduType: LIMIT)
        self.assertEqual(collect(framer, data[:100]), expected[:1])
        self.assertEqual(framer.pendingBytes, 100 - 10)
        self.assertEqual((framer.pendingType, framer.pendingLength), (pdu.P_DATA_TF, 6 + len(expected[1][1])))
        self.assertEqual(collect(framer, data[100:300]), [])
        self.assertEqual(framer.pendingBytes, 300 - 10)
        pduType, body = next(framer.feed(data[300:]))
        self.assertEqual((pduType, bytes(body)), expected[1])
        self.assertIsInstance(body.obj, bytes)
        self.assertTrue(body.readonly)

    def test_bodyInOneReceiveIsAViewOfIt(self):
        """A P-DATA-TF whose header came alone (or with part of it) and
        whose body came in one later receive is a view of that receive,
        not a copy; other PDUs so split are bytes."""
        data, expected = stream()
        framer = pdu.PDUFramer(lambda pduType: LIMIT)
        self.assertEqual(collect(framer, data[:10 + 3]), expected[:1])
        rest = data[13:10 + 6 + len(expected[1][1])]
        pduType, body = next(framer.feed(rest))
        self.assertEqual((pduType, bytes(body)), expected[1])
        self.assertIs(body.obj, rest)
        framer = pdu.PDUFramer(lambda pduType: LIMIT)
        release = pdu.encodeSimplePDU(pdu.A_RELEASE_RQ)
        self.assertEqual(list(framer.feed(release[:6])), [])
        self.assertEqual(list(framer.feed(release[6:])), [(pdu.A_RELEASE_RQ, release[6:])])

    def test_aPDUTrickledCostsItsBytes(self):
        """A PDU received a byte at a time (a peer trickling its
        A-ASSOCIATE-RQ, which only ARTIM bounds) is kept as its bytes, not
        as a view per receive holding each received object (about 300
        bytes a byte: 320 MB for a 1 MB PDU); large pieces stay views."""
        body = bytes(range(256)) * 64
        raw = pdu.encodePData(1, 0, body)
        framer = pdu.PDUFramer(lambda pduType: LIMIT)
        for i in range(len(raw) - 1):
            self.assertEqual(list(framer.feed(raw[i:i + 1])), [])
        self.assertEqual(len(framer._parts), 1)
        self.assertEqual(framer.pendingBytes, len(raw) - 1)
        pduType, got = next(framer.feed(raw[-1:]))
        self.assertEqual((pduType, bytes(got)), (pdu.P_DATA_TF, raw[6:]))
        framer = pdu.PDUFramer(lambda pduType: LIMIT)
        pieces = [raw[:10], raw[10:10 + pdu.SMALL_PIECE], raw[10 + pdu.SMALL_PIECE:]]
        self.assertEqual(list(framer.feed(pieces[0])), [])
        self.assertEqual(list(framer.feed(pieces[1])), [])
        self.assertIs(framer._parts[-1].obj, pieces[1])
        pduType, got = next(framer.feed(pieces[2]))
        self.assertEqual(bytes(got), raw[6:])

    def test_bytearrayReceived(self):
        """Bytes that may change later (a bytearray) are copied first."""
        data, expected = stream()
        received = bytearray(data)
        bodies = list(pdu.PDUFramer(lambda pduType: LIMIT).feed(received))
        received[:] = bytes(len(received))
        self.assertEqual([(pduType, bytes(body)) for pduType, body in bodies], expected)

    def test_iterationStoppedEarly(self):
        """PDUs not taken when the reader stopped come out with the next
        bytes received."""
        data, expected = stream()
        framer = pdu.PDUFramer(lambda pduType: LIMIT)
        first = framer.feed(data[:-3])
        self.assertEqual(next(first)[0], pdu.A_RELEASE_RQ)
        first.close()
        self.assertEqual(collect(framer, data[-3:]), expected[1:])

    def test_lengthOverTheLimit(self):
        """A length field above the limit is refused as soon as the header is
        complete, before its body is buffered."""
        framer = pdu.PDUFramer(lambda pduType: 100 if pduType == pdu.P_DATA_TF else LIMIT)
        header = pdu.encodePData(1, 0, b"y" * 200)[:6]
        self.assertEqual(collect(framer, header[:4]), [])
        with self.assertRaises(pdu.PDUError) as raised:
            collect(framer, header[4:] + b"y" * 50)
        self.assertIn("more than the 100 allowed", str(raised.exception))

    def test_nothingKeptAfterABadHeader(self):
        """Once a header is refused the stream cannot be framed: neither the
        rest of that read nor any later one is buffered or framed again."""
        framer = pdu.PDUFramer(lambda pduType: 100)
        with self.assertRaises(pdu.PDUError):
            collect(framer, pdu.encodePData(1, 0, b"y" * 200)[:6] + b"y" * 50)
        self.assertTrue(framer.desynchronised)
        self.assertEqual(framer.pendingBytes, 0)
        data, _ = stream()
        self.assertEqual(collect(framer, b"y" * 1000 + data), [])
        self.assertEqual(framer.pendingBytes, 0)

    def test_unknownType(self):
        with self.assertRaises(pdu.PDUError) as raised:
            collect(pdu.PDUFramer(lambda pduType: LIMIT), b"\x09\x00\x00\x00\x00\x00")
        self.assertEqual(raised.exception.reason, pdu.REASON_UNRECOGNIZED_PDU)
        self.assertEqual(str(raised.exception), "unknown PDU type 0x09")

    def test_tlsHandshakeOnThePlainPort(self):
        """A TLS ClientHello is an unknown PDU, aborted as any other, with a
        hint of what the peer does, whole and with its first byte alone."""
        hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
        for chunks in ([hello], [hello[:1], hello[1:]]):
            framer = pdu.PDUFramer(lambda pduType: LIMIT)
            with self.assertRaises(pdu.PDUError) as raised:
                for chunk in chunks:
                    collect(framer, chunk)
            self.assertEqual(raised.exception.reason, pdu.REASON_UNRECOGNIZED_PDU)
            self.assertEqual(str(raised.exception), "unknown PDU type 0x16 (a TLS handshake on the plain DICOM port: "
                                                    "the peer uses TLS)")
