"""The marker segments of JPEG (ITU T.81) and JPEG-LS codestreams: where
one is, the frame's sample precision, the first scan's NEAR, whether the
codestream ends with its end of image marker, and the spectral selection
of a sequential DCT stream's scans mended.

T.81 B.2.3 wants Ss = 0 and Se = 63 in every scan of a sequential DCT
stream; some old encoders wrote other values, which libjpeg refuses
(error -1038) where DCMTK's dcmdjpeg only warns and decodes.
``sequentialScansMended`` gives a copy with 0 and 63 in their place,
``hasScansToMend`` says whether it would."""

import re
import struct

SOS = 0xDA  # the second byte of a start of scan marker
# Start of frame markers' second bytes (T.81 table B.1: not DHT C4, JPG
# C8, DAC CC); the sample precision follows the segment length.
SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Sequential DCT: baseline, extended (Huffman, arithmetic), differential.
_SEQUENTIAL_DCT = frozenset({0xC0, 0xC1, 0xC5, 0xC9, 0xCD})
_EOI = 0xD9
_PADDING = (0x00, 0xFF)
_EOI_MARKER = bytes((0xFF, _EOI))
EOI_TAIL = 8  # bytes after the end of image marker taken as padding, whatever they hold
# 0xFF and a byte after it that, in entropy-coded data, is a marker: not a
# stuffed zero, a restart marker or fill.
_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
_FULL_SPECTRUM = b"\x00\x3f"


def segmentAt(codestream, markers, at=2):
    """Where the first marker segment of ``codestream`` from ``at`` (after
    SOI) whose marker's second byte is in ``markers`` starts, looking no
    further than the next scan; None when there is none."""
    while at + 5 <= len(codestream) and codestream[at] == 0xFF:
        if codestream[at + 1] == 0xFF:  # a fill byte before a marker (T.81 B.1.1.2)
            at += 1
            continue
        if codestream[at + 1] in markers:
            return at
        if codestream[at + 1] == SOS:
            return None
        at += 2 + struct.unpack_from(">H", codestream, at + 2)[0]
    return None


def near(codestream):
    """The NEAR parameter of the first scan (SOS: length, Ns, Ns component
    selectors and mapping tables, NEAR) of a JPEG-LS ``codestream``; 0 when
    it has none."""
    at = segmentAt(codestream, (SOS,))
    if at is None:
        return 0
    nearAt = _afterComponents(codestream, at)
    return codestream[nearAt] if nearAt < len(codestream) else 0


def samplePrecision(codestream):
    """The sample precision of a JPEG ``codestream``'s frame; 0 when it has
    no frame header."""
    at = segmentAt(codestream, SOF)
    return codestream[at + 4] if at is not None else 0


def endsWithEOI(codestream):
    """Whether ``codestream`` ends with an end of image marker, but for
    padding after it: 0x00 bytes (PS3.5 A.4 pads a fragment to an even
    length), 0xFF fill bytes (T.81 B.1.1.2), which some encoders write, and
    up to ``EOI_TAIL`` bytes of anything (DCMTK's dcmcjpls +en pads an odd
    frame with an uninitialised byte; some encoders add a line feed), as
    pydicom's frame splitter looks for the marker in a fragment's last
    bytes.  Coded data never holds FF D9 (T.81 and T.87 stuff what follows
    an FF), so a stream cut short does not end in one."""
    end = len(codestream)
    while end and codestream[end - 1] in _PADDING:
        end -= 1
    return bytes(codestream[max(0, end - EOI_TAIL - 2):end]).find(_EOI_MARKER) >= 0


def sequentialScansMended(codestream):
    """``codestream`` with Ss = 0 and Se = 63 in every scan header when it
    is a sequential DCT stream that says otherwise; None when it is not,
    or says so already."""
    spectra = list(_spectraToMend(codestream))
    if not spectra:
        return None
    mended = bytearray(codestream)
    for spectrum in spectra:
        mended[spectrum:spectrum + 2] = _FULL_SPECTRUM
    return bytes(mended)


def hasScansToMend(codestream):
    """Whether ``sequentialScansMended`` mends ``codestream``, found
    without copying it, at its first scan that says otherwise."""
    return next(_spectraToMend(codestream), None) is not None


def _spectraToMend(codestream):
    """Where the Ss and Se of each scan header of a sequential DCT
    ``codestream`` that does not say 0 and 63 are."""
    frame = segmentAt(codestream, SOF)
    if frame is None or codestream[frame + 1] not in _SEQUENTIAL_DCT:
        return
    for at in _scans(codestream):
        spectrum = _afterComponents(codestream, at)
        if codestream[spectrum:spectrum + 2] != _FULL_SPECTRUM:
            yield spectrum


def _afterComponents(codestream, scan):
    """Where the scan header at ``scan`` goes on after its Ns component
    specifications (Ss in JPEG, NEAR in JPEG-LS)."""
    return scan + 5 + 2 * codestream[scan + 4]


def _scans(codestream):
    """Where each scan header of ``codestream`` starts."""
    at = segmentAt(codestream, (SOS,))
    while at is not None:
        yield at
        at = _nextSegment(codestream, at + 2 + struct.unpack_from(">H", codestream, at + 2)[0])
        if at is not None:
            at = segmentAt(codestream, (SOS,), at)


def _nextSegment(codestream, at):
    """The first marker segment after the entropy-coded data at ``at``;
    None at the end of the image."""
    marker = _MARKER.search(codestream, at)
    if marker is None or codestream[marker.start() + 1] == _EOI:
        return None
    return marker.start()
