"""Whether encapsulated Pixel Data holds whole frames, as many as the
object says: the decoders here (pylibjpeg-libjpeg, pyjpegls) decode a
JPEG or JPEG-LS stream cut short into a partly filled image without a
word, and pydicom decodes the frames it finds whatever Number of Frames
says, where DCMTK refuses both; and whether each frame's codestream
header describes the image the object does (``codestreamheader``): the
decoders allocate what the header says, so a tiny frame claiming a huge
image would fill the memory. ``framesFound`` (every frame, with the JPEG
scans to mend found on the way), ``damagedFrames`` (those damaged, for
frames decoded one by one) and ``frameDamage`` (one) say what is wrong
before anything is decoded."""

from pydicom.encaps import generate_frames, get_frame

from pacscore.codecs.codestreamheader import headerMismatch
from pacscore.codecs.jpegmarkers import endsWithEOI, hasScansToMend
from pacscore.codecs.syntaxes import (
    JPEG_LOSSLESS_SYNTAXES, JPEG_LOSSY_SYNTAXES, JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS, isCompressed)

# The syntaxes whose decoders take a codestream cut before its end of image
# marker (T.81 B.2.1, T.87 C.2.1) without an error.
_ENDED_BY_EOI = JPEG_LOSSY_SYNTAXES | JPEG_LOSSLESS_SYNTAXES | {JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS}


def framesFound(syntax, encapsulated, options):
    """``(damage, toMend)`` of the Pixel Data in ``syntax``,
    ``encapsulated`` (bytes or a file, from its Basic Offset Table item; a
    file is read to its end) of the image pydicom's pixel ``options``
    describe (their ``number_of_frames`` and ``extended_offsets``, and the
    image's), read into frames once, as pydicom's decoder reads it:
    ``damage``, what is wrong (a JPEG or JPEG-LS frame that ends before its
    end of image marker, a frame whose codestream header describes another
    image, or more or fewer frames than Number of Frames; None when nothing
    is), and ``toMend``, whether a sequential JPEG frame before any
    damage has scans ``jpegmarkers.sequentialScansMended`` mends."""
    expected, found, toMend = options["number_of_frames"], 0, False
    frames = generate_frames(encapsulated, number_of_frames=expected, extended_offsets=options.get("extended_offsets"))
    for found, frame in enumerate(frames, 1):
        damage = _damage(syntax, frame, found, options)
        if damage:
            return damage, toMend
        toMend = toMend or syntax in JPEG_LOSSY_SYNTAXES and hasScansToMend(frame)
    if found != expected:
        return f"its Pixel Data holds {found} frame(s), its Number of Frames says {expected}", toMend
    return None, toMend


def damagedFrames(syntax, encapsulated, options):
    """``{index: damage}`` of the frames (from 0) of ``encapsulated``
    (bytes, from its Basic Offset Table item) of the image pydicom's pixel
    ``options`` describe that ``framesFound`` would find damaged, found in
    one walk (one per frame would walk fragments again without an offset
    table)."""
    frames = generate_frames(encapsulated, number_of_frames=options["number_of_frames"])
    damages = {index: _damage(syntax, frame, index + 1, options) for index, frame in enumerate(frames)}
    return {index: damage for index, damage in damages.items() if damage}


def frameDamage(syntax, encapsulated, index, options):
    """What ``framesFound`` would say of the frame ``index`` (from 0)
    alone; a file is left where it was."""
    if not isCompressed(syntax):
        return None
    frame = get_frame(encapsulated, index, number_of_frames=options["number_of_frames"],
                      extended_offsets=options.get("extended_offsets"))
    return _damage(syntax, frame, index + 1, options)


def _damage(syntax, frame, number, options):
    """What is wrong with ``frame``, the ``number``th (from 1); None when
    nothing is."""
    if syntax in _ENDED_BY_EOI and not endsWithEOI(frame):
        return f"frame {number} of its Pixel Data is cut short (no end of image marker)"
    mismatch = headerMismatch(syntax, frame, options)
    return f"frame {number} of its Pixel Data does not hold the image the object describes: {mismatch}" \
        if mismatch else None
