"""PDU framing (PS3.8 9.3): split a byte stream into PDUs, read the PDVs of
a P-DATA-TF and build P-DATA-TF PDUs.

This is the hot path of every transfer, so it is written by hand; the rare
association PDUs are decoded with pynetdicom's codecs (see negotiation.py).
"""

import struct

from pacscore.tls import isTLSHandshake

A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

PDU_NAMES = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ", A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ", P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ", A_RELEASE_RP: "A-RELEASE-RP", A_ABORT: "A-ABORT",
}

_HEADER = struct.Struct(">BxL")
_PDV_HEADER = struct.Struct(">LBB")
SMALL_PIECE = 4096  # pieces of a PDU split across receives copied together below this size (PDUFramer)

# A-ABORT reasons when the service provider aborts (PS3.8 9.3.8).
REASON_NOT_SPECIFIED = 0
REASON_UNRECOGNIZED_PDU = 1
REASON_UNEXPECTED_PDU = 2
REASON_UNRECOGNIZED_PARAMETER = 4
REASON_UNEXPECTED_PARAMETER = 5
REASON_INVALID_PARAMETER = 6

SOURCE_SERVICE_USER = 0
SOURCE_SERVICE_PROVIDER = 2
ABORT_REASONS = {
    REASON_NOT_SPECIFIED: "reason not specified", REASON_UNRECOGNIZED_PDU: "unrecognized PDU",
    REASON_UNEXPECTED_PDU: "unexpected PDU", REASON_UNRECOGNIZED_PARAMETER: "unrecognized PDU parameter",
    REASON_UNEXPECTED_PARAMETER: "unexpected PDU parameter", REASON_INVALID_PARAMETER: "invalid PDU parameter value",
}


class PDUError(Exception):
    """The peer sent bytes that are not a valid PDU; carries the A-ABORT reason."""

    def __init__(self, message, reason=REASON_INVALID_PARAMETER):
        super().__init__(message)
        self.reason = reason


class PDUFramer:
    """Splits received bytes into whole PDUs.

    The PDUs that arrive whole within one received ``bytes`` are handed out
    as views of it, without a copy.  A PDU split across receives (a 256 KB
    P-DATA-TF comes in 64 KB receives) keeps views of the pieces received,
    joined once when its last arrives (one copy; one piece: none); pieces
    under ``SMALL_PIECE`` bytes are copied together instead, so a peer
    trickling a PDU a byte at a time costs its bytes, not a view per byte.
    ``maximumLength(pduType)`` bounds what a length field may announce: a
    larger one is an error before any byte of it is kept.  After a header
    it refuses (``desynchronised``) the stream cannot be framed any more:
    what comes next is discarded unread.
    """

    def __init__(self, maximumLength):
        self._head = bytearray()  # the header bytes (up to 6) of a PDU begun in an earlier receive
        self._parts = []          # the bytes of its body received so far: views, small pieces copied together
        self._have = 0            # how many those are
        self._maximumLength = maximumLength
        self.desynchronised = False

    def feed(self, data):
        """Add received bytes; yield ``(pduType, body)`` for each whole PDU.

        ``body`` is the PDU's variable part: for a P-DATA-TF a read-only
        memoryview of bytes that never change (so it may be kept), for the
        other PDUs ``bytes``.
        """
        if self.desynchronised:
            return
        if not isinstance(data, bytes):
            data = bytes(data)
        if self._head and self._holdsWholePDU():  # left there by an iteration stopped early
            data = b"".join((self._head, *self._parts, data))
            self._clearPending()
        view = memoryview(data)
        offset = 0
        try:
            if self._head:
                offset = self._topUp(view)
                if offset is None:
                    offset = len(data)
                    return
                pduType, body = self._takePending()
                yield pduType, body
            end = len(data)
            while end - offset >= 6:
                pduType, length = self._header(data, offset)
                if end - offset - 6 < length:
                    break
                body = view[offset + 6:offset + 6 + length]
                offset += 6 + length
                yield pduType, body if pduType == P_DATA_TF else bytes(body)
        except PDUError:
            self.desynchronised = True
            self._clearPending()
            offset = len(data)
            raise
        finally:
            self._keep(view[offset:])

    def _keep(self, rest):
        """Keep ``rest``, the start of a PDU (or more, when an iteration
        stopped early), for the next receive."""
        if not rest:
            return
        taken = 6 - len(self._head)
        self._head += rest[:taken]
        if len(rest) > taken:
            self._addPart(rest[taken:])

    def _addPart(self, piece):
        parts = self._parts
        if len(piece) >= SMALL_PIECE:
            parts.append(piece)
        elif parts and isinstance(parts[-1], bytearray):
            parts[-1] += piece
        else:
            parts.append(bytearray(piece))
        self._have += len(piece)

    def _clearPending(self):
        self._head.clear()
        self._parts = []
        self._have = 0

    def _holdsWholePDU(self):
        return len(self._head) == 6 and self._have >= _HEADER.unpack_from(self._head, 0)[1]

    def _topUp(self, view):
        """Take bytes of ``view`` for the PDU begun earlier until it is whole;
        how many it took, or None when ``view`` had too few (all are taken)."""
        head = self._head
        taken = 0
        if len(head) < 6:
            taken = min(6 - len(head), len(view))
            head += view[:taken]
            if len(head) < 6:
                return None
        _, length = self._header(head, 0)
        needed = length - self._have
        if len(view) - taken < needed:
            if len(view) > taken:
                self._addPart(view[taken:])
            return None
        if needed:
            self._parts.append(view[taken:taken + needed])  # the last piece: a view, the body's only one if it came whole
        return taken + needed

    def _takePending(self):
        """The PDU begun earlier, now whole: ``(pduType, body)`` as ``feed``
        gives them."""
        pduType, parts = self._head[0], self._parts
        if pduType == P_DATA_TF and len(parts) == 1 and isinstance(parts[0], memoryview):
            body = parts[0]  # a view of received bytes
        else:
            body = b"".join(parts)
            if pduType == P_DATA_TF:
                body = memoryview(body)
        self._clearPending()
        return pduType, body

    def _header(self, data, offset):
        pduType, length = _HEADER.unpack_from(data, offset)
        if pduType not in PDU_NAMES:
            hint = " (a TLS handshake on the plain DICOM port: the peer uses TLS)" if (
                isTLSHandshake(data[offset:offset + 2])) else ""
            raise PDUError(f"unknown PDU type 0x{pduType:02x}{hint}", REASON_UNRECOGNIZED_PDU)
        limit = self._maximumLength(pduType)
        if length > limit:
            raise PDUError(f"{PDU_NAMES[pduType]} announces {length} bytes, more than the {limit} allowed")
        return pduType, length

    @property
    def pendingBytes(self):
        """How many received bytes do not yet make a whole PDU."""
        return len(self._head) + self._have

    @property
    def pendingType(self):
        """The type of the PDU whose first ``pendingBytes`` arrived; None
        before its first byte did."""
        return self._head[0] if self._head else None

    @property
    def pendingLength(self):
        """The length (header included) of the PDU whose first
        ``pendingBytes`` arrived, once its header did; else None."""
        if len(self._head) < 6:
            return None
        return 6 + _HEADER.unpack_from(self._head, 0)[1]


def iterPDVs(body):
    """Yield ``(contextId, controlHeader, data)`` for each PDV of a P-DATA-TF body.

    ``data`` is a memoryview into ``body``.
    """
    view = memoryview(body)
    offset = 0
    end = len(body)
    if end == 0:
        raise PDUError("P-DATA-TF without any PDV")
    while offset < end:
        if end - offset < 6:
            raise PDUError(f"truncated PDV header at offset {offset}")
        length, contextId, control = _PDV_HEADER.unpack_from(body, offset)
        if length < 2 or offset + 4 + length > end:
            raise PDUError(f"PDV length {length} at offset {offset} does not fit the PDU")
        yield contextId, control, view[offset + 6:offset + 4 + length]
        offset += 4 + length


def encodePData(contextId, control, data):
    """One P-DATA-TF PDU holding one PDV."""
    length = len(data)
    return b"".join((_HEADER.pack(P_DATA_TF, length + 6),
                     _PDV_HEADER.pack(length + 2, contextId, control), data))


def fragmentMessage(contextId, command, dataset, maxPDULength):
    """The PDUs that carry one DIMSE message (command, then optional
    dataset), made one by one as they are taken.

    ``maxPDULength`` is the length of the PDUs sent (``sendingLength``,
    never 0); each PDV then holds at most ``maxPDULength - 6`` bytes of
    data.
    """
    yield from fragments(contextId, command, True, maxPDULength)
    if dataset is not None:
        yield from fragments(contextId, dataset, False, maxPDULength)


def fragments(contextId, data, isCommand, maxPDULength, final=True):
    """The PDUs that carry ``data``, a command set or (a piece of) a data
    set; the last is marked the last fragment when ``final``."""
    chunk = maxPDULength - 6
    view = memoryview(data)
    total = len(view)
    offset = 0
    while True:
        piece = view[offset:offset + chunk]
        offset += len(piece)
        control = (1 if isCommand else 0) | (2 if final and offset >= total else 0)
        yield encodePData(contextId, control, piece)
        if offset >= total:
            break


def sendingLength(peerMaxPDULength, limit):
    """The PDU length we send in: the peer's maximum (0, unlimited), at
    most ``limit``.  The peer's is a maximum, not a size to fill (PS3.8
    D.1): a peer announcing 0x7FFFFFFF still gets PDUs that are written
    and read a batch at a time, never a whole object in one."""
    return min(peerMaxPDULength or limit, limit)


def pieceSize(maxPDULength, batch):
    """How many data set bytes to fragment at a time when a data set is
    read piece by piece: a whole number of the PDVs of ``maxPDULength``
    PDUs, about ``batch`` (at least one PDV)."""
    chunk = maxPDULength - 6
    return chunk * max(1, batch // chunk)


def encodeSimplePDU(pduType, body=b"\x00\x00\x00\x00"):
    """A-RELEASE-RQ/RP: a header and four reserved bytes."""
    return _HEADER.pack(pduType, len(body)) + body


def describeAbort(body):
    """What the body of a peer's A-ABORT says: whether its application (the
    service user: it chose to end the association) or its DICOM layer (the
    service provider, with a reason) aborted."""
    source, reason = (body[2], body[3]) if len(body) >= 4 else (None, None)
    if source == SOURCE_SERVICE_USER:
        return "A-ABORT from the peer's service user"
    if source == SOURCE_SERVICE_PROVIDER:
        return f"A-ABORT from the peer's service provider: {ABORT_REASONS.get(reason, f'reason {reason}')}"
    return f"A-ABORT, source {source}"


def encodeAbort(source, reason):
    """An A-ABORT PDU from ``source`` (0 user, 2 provider) with ``reason``."""
    reason = reason if source == SOURCE_SERVICE_PROVIDER else 0
    return _HEADER.pack(A_ABORT, 4) + bytes((0, 0, source, reason))
