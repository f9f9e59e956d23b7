"""The work WADO-RS does on stored files, in the I/O pool: an instance's
metadata as DICOM JSON, its frames (as stored or as native little-endian
pixels), the value of a bulk data attribute, and a large object converted
file to file into little endian."""

import errno
import os
import struct
from functools import partial
from typing import NamedTuple

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.filereader import _read_file_meta_info, read_dataset, read_partial, read_preamble
from pydicom.pixels import pixel_array
from pydicom.pixels.utils import as_pixel_options
from pydicom.tag import Tag

from pacscore.codecs.syntaxes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
    JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS, JPEG_2000,
    JPEG_2000_LOSSLESS, RLE_LOSSLESS, SYNTAX_OF_ENCODING, UNCOMPRESSED, isCompressed)
from pacscore.codecs import nki
from pacscore.codecs.filetranscode import NotStreamed, streams
from pacscore.codecs.encapsulatedframes import damagedFrames
from pacscore.codecs.fragmentplaces import framePlaces
from pacscore.codecs.nkipixels import NKI_PIXEL_DATA, decompressDecoded, nkiStream
from pacscore.codecs.pixeldescription import checkPixelDescription
from pacscore.codecs.transcode import (
    _UNDEFINED_LENGTH, INFLATED_IN_MEMORY, WORD_SIZES, TranscodeError, _atPixelData, checkFrameSize,
    codedPrecision, pixelDataHeader, swapBytes)
from pacscore.dicom.storeddata import STREAMED_OBJECT, StoredData, openDataset
from pacscore.dicom.textbytes import decodeValues, keepUndecodable
from pacscore.storage.attributes import LONG_VRS, readAttributes
from pacscore.storage.inflatedreads import InflatedReads
from pacscore.storage.part10 import fileMetaOf, readFileMeta, sendsAsItIs
from pacscore.storage.regularfiles import openRegularFile
from pacscore.web.dicomweb.dicomjson import jsonDataset

PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = (0x7FE00008, 0x7FE00009)  # Float and Double Float Pixel Data (Parametric Maps)
PIXEL_ELEMENTS = (*FLOAT_PIXEL_DATA, PIXEL_DATA)
AVAILABLE_TRANSFER_SYNTAX = "00083002"
OCTET_STREAM = "application/octet-stream"
# PS3.18 table 8.7.3-2: the media type of a frame in a compressed syntax.
FRAME_TYPES = {JPEG_BASELINE: "image/jpeg", JPEG_EXTENDED: "image/jpeg", JPEG_LOSSLESS: "image/jpeg",
               JPEG_LOSSLESS_SV1: "image/jpeg", JPEG_LS_LOSSLESS: "image/jls", JPEG_LS_NEAR_LOSSLESS: "image/jls",
               JPEG_2000_LOSSLESS: "image/jp2", JPEG_2000: "image/jp2", RLE_LOSSLESS: "image/dicom-rle"}


class NoSuchFrame(LookupError):
    """A frame number the object does not have."""


class NoSuchAttribute(LookupError):
    """A bulk data attribute the object does not have."""


def startAsStored(path, wanted, size, deferToWorker):
    """``(transfer syntax, first bytes, StoredData)`` of the stored file
    when it can be sent as it is in ``wanted`` (a syntax or ``*``): a Part-10
    file whose meta names that syntax, its data set's (``sendsAsItIs``: a
    preamble and DICM, which a ``.v2`` beginning with group 0002 elements
    lacks), that holds no NKI pixel data (7FDF,0010); the first bytes are
    at most ``size`` of them, the StoredData the whole file, left open (its
    reads run with ``deferToWorker``): the rest goes from it even when the
    object is stored again meanwhile.  None (the file closed) when it
    cannot."""
    f = openRegularFile(path)
    try:
        syntax, meta, offset = readFileMeta(f)
        if (not sendsAsItIs(f, syntax, meta) or wanted not in ("*", syntax)
                or NKI_PIXEL_DATA in readAttributes(f, syntax, {NKI_PIXEL_DATA})):
            f.close()
            return None
        f.seek(0)
        return syntax, f.read(size), StoredData(f, 0, os.fstat(f.fileno()).st_size, deferToWorker)
    except BaseException:
        f.close()
        raise


def startConverted(path, wanted, deferToWorker, change=None):
    """``(file meta bytes, StoredData)`` of the stored file converted to
    ``wanted`` (and changed by ``change(dataset)`` when given) in a
    temporary file (``StoredData.transcoded``) when it is a
    large one (``openDataset``: over ``STREAMED_OBJECT``, or decoding to
    more) that ``filetranscode`` converts,
    without NKI pixel data; None when it is not. The file meta names the
    SOP class and instance of the converted data set."""
    with openRegularFile(path) as f:
        syntax, meta, offset = readFileMeta(f)
    stored = openDataset(path, offset, syntax, deferToWorker) if meta and streams(syntax, wanted, change is not None) else None
    if stored is None:
        return None
    try:
        converted = stored.transcoded(syntax, wanted, os.path.dirname(path), change)
    except NotStreamed:
        return None
    finally:
        stored.close()
    converted.file.seek(0)
    return fileMetaOf(converted.file, wanted), converted


def _readHead(path, keep=None):
    """``(data set, pixel elements)`` of the stored file ``path`` read by
    pydicom up to its first pixel element, Float, Double Float Pixel Data
    (7FE0,0008, 7FE0,0009: a Parametric Map's) or Pixel Data (7FE0,0010);
    the pixel elements ``_pixelElements`` finds there, their values never
    read but that of ``keep`` (a tag; ``_PixelElement.value``): a 100 MB
    Parametric Map's metadata does not read its 100 MB.  Nothing after
    them is read.  A deflated file is inflated only up to the last pixel
    element's header, ``INFLATED_IN_MEMORY`` bytes at most
    (``InflatedReads``; a DatasetError past that), not whole as pydicom
    inflates it: a 1 MB file may inflate to a gigabyte."""
    with openRegularFile(path) as f:
        read_preamble(f, True)
        meta = _read_file_meta_info(f)
        if meta.get("TransferSyntaxUID") == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            source = InflatedReads(f.read, INFLATED_IN_MEMORY)
            dataset = read_dataset(source, False, True, stop_when=_atPixelElement)
            dataset.file_meta = meta
            return dataset, _pixelElements(source, False, True, keep)
        f.seek(0)
        dataset = read_partial(f, stop_when=_atPixelElement, force=True)
        implicit, little = dataset.original_encoding
        return dataset, _pixelElements(f, implicit, little, keep)


def _atPixelElement(tag, vr, length):
    return tag in PIXEL_ELEMENTS


class _PixelElement(NamedTuple):
    """A pixel element of a stored file (``_pixelElements``)."""

    vr: str  # as stored; in implicit VR its dictionary's (OF, OD; OB for Pixel Data, which is not used)
    length: int  # of its value; 0xFFFFFFFF: undefined (encapsulated)
    value: bytes = None  # read only when asked for


def _pixelElements(f, implicit, little, keep=None):
    """``{tag: _PixelElement}`` of the pixel elements (``PIXEL_ELEMENTS``)
    whose headers follow one another in tag order from the position of
    ``f``, in the encoding ``implicit`` and ``little`` say; the value of
    ``keep`` read, the others stepped over (``_stepOver``; Pixel Data,
    the last, never); ``f`` left after the last header read."""
    found, order = {}, "<" if little else ">"
    while True:
        header = f.read(8)
        tag = _tag(header, order) if len(header) == 8 else None
        if tag not in PIXEL_ELEMENTS or tag <= max(found, default=0):  # none, or out of order
            return found
        if implicit:
            vr, length = dictionary_VR(tag).split(" ")[0], struct.unpack(order + "L", header[4:])[0]
        else:
            long = f.read(4) if header[4:6] in LONG_VRS else header[6:]
            vr = header[4:6].decode("latin-1")
            length = struct.unpack(order + ("L" if len(long) == 4 else "H"), long)[0] if len(long) in (2, 4) else 0
        value = f.read(length) if tag == keep and length != _UNDEFINED_LENGTH else None
        found[tag] = _PixelElement(vr, length, value)
        if tag == PIXEL_DATA or length == _UNDEFINED_LENGTH:
            return found
        if value is None:
            _stepOver(f, length)


def _stepOver(f, length):
    """``f`` moved ``length`` bytes on a megabyte at a time, each read
    there (none): an ``InflatedReads`` inflates them so, never holding
    more than a megabyte of them."""
    while length > 0:
        step = min(length, 1 << 20)
        f.seek(step, 1)
        f.read(0)
        length -= step


def _tag(header, order):
    """The tag of the element header ``header`` in the byte ``order`` of struct."""
    group, element = struct.unpack(order + "HH", header[:4])
    return group << 16 | element


def _readLittleEndian(path):
    """``_readHead`` of the stored file ``path``, the binary values of its
    data set (OW, OL, OF, OD, OV, in sequence items too) little endian when
    it is Explicit VR Big Endian (``swapBytes``; one that is no whole
    number of words left as it is): DICOM JSON's InlineBinary and bulk
    data hold them as Explicit VR Little Endian does (PS3.18 8.7.3), as
    the object's frames do (``_nativeFrame``); a value pydicom cannot
    decode kept as UN bytes, as stored (``keepUndecodable``)."""
    dataset, pixels = _readHead(path)
    if _storedSyntax(dataset) == EXPLICIT_VR_BIG_ENDIAN:
        keepUndecodable(dataset)  # a value swapBytes cannot decode is UN bytes, as decodeValues keeps it
        swapBytes(dataset, strict=False)
    return dataset, pixels


def instanceMetadata(path, url, onUnfit=None):
    """The DICOM JSON of the stored file ``path`` whose WADO-RS address is
    ``url``: every attribute before its pixel elements (``_readHead``) but
    the bulk data (binary values over 1 KB, and the Float and Double Float
    Pixel Data and Pixel Data the file holds, none when it holds none, no
    value when empty, never read), which are
    ``BulkDataURI``s of ``url/bulk/{tag}``; with the Available Transfer
    Syntax UID it is stored in.  Binary values in sequence items (an icon's
    pixels) stay inline: ``bulk/{tag}`` names a top-level attribute.  Binary
    values go little endian (``_readLittleEndian``).  NKI compressed pixel
    data (7FDF,0010) is left out: its frames and Pixel Data go expanded
    (``instanceFrames``), a Pixel Data ``BulkDataURI``.  Text not valid in
    its character set is read as Latin-1, logged or given to ``onUnfit``, and a binary
    value pydicom cannot decode is given as UN bytes, logged (``decodeValues``)."""
    dataset, pixels = _readLittleEndian(path)
    nki = nkiStream(dataset) is not None
    if nki:
        del dataset[NKI_PIXEL_DATA]
    decodeValues(dataset, onUnfit, keepBytes=True)  # text not valid in its character set as Latin-1, as the index reads it
    syntax = _storedSyntax(dataset)
    found = jsonDataset(dataset, lambda element: f"{url}/bulk/{int(element.tag):08X}"
                        if dataset.get(element.tag) is element else None)
    for tag in FLOAT_PIXEL_DATA:  # bulk data however short, as Pixel Data is
        if tag in pixels:
            found[f"{tag:08X}"] = {"vr": pixels[tag].vr}
            if pixels[tag].length not in (0, _UNDEFINED_LENGTH):  # an OF or OD cannot be undefined
                found[f"{tag:08X}"]["BulkDataURI"] = f"{url}/bulk/{tag:08X}"
    if PIXEL_DATA in pixels or nki:
        wide = not isCompressed(syntax) and (dataset.get("BitsAllocated") or 8) > 8
        found[f"{PIXEL_DATA:08X}"] = {"vr": "OW" if wide else "OB"}
        if nki or pixels[PIXEL_DATA].length:  # an empty one has no value (PS3.18 F.2.5), nor frames to send
            found[f"{PIXEL_DATA:08X}"]["BulkDataURI"] = f"{url}/bulk/{PIXEL_DATA:08X}"
    if syntax:
        found[AVAILABLE_TRANSFER_SYNTAX] = {"vr": "UI", "Value": [syntax]}
    return dict(sorted(found.items()))


def _storedSyntax(dataset):
    """The transfer syntax UID the file meta of ``dataset`` names; for a
    bare data set (Conquest's .v2) the one it was read in (``SYNTAX_OF_ENCODING``)."""
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    return str(syntax) if syntax else SYNTAX_OF_ENCODING.get(dataset.original_encoding, "")


def frameCount(dataset):
    return int(dataset.get("NumberOfFrames") or 1)


def _storedSamples(dataset):
    """The samples a pixel holds as stored: 4:2:2 colour (YBR_FULL_422,
    YBR_PARTIAL_422) has two, a Y of its own and a Cb and a Cr to each two."""
    if str(dataset.get("PhotometricInterpretation", "")).endswith("_422"):
        return 2
    return dataset.get("SamplesPerPixel") or 1


def _nativeFrame(dataset, syntax, damaged, index):
    """Frame ``index`` (from 0) as native little-endian pixels, as the
    object's metadata describes them: the bytes of a native frame as stored
    (its planes and 4:2:2 subsampling kept), those of big endian words
    swapped; pixel_array's (one a byte) where frames do not start on a byte
    (1-bit pixels) or the data is compressed, decoded in the stored colour
    space (no YCbCr made RGB), at the precision coded (the stored words,
    bits above High Bit kept: ``codedPrecision``) and ``_storedLayout``.
    The frame must be one the Pixel Data holds (``_checkHeld``); a damaged
    one (in ``damaged``: ``damagedFrames``: a JPEG or JPEG-LS one cut
    short, one whose codestream header describes another image) is a
    ValueError, never decoded."""
    length = _storedLength(dataset, syntax)
    if length is not None:
        start, end = index * length, (index + 1) * length
        if syntax != EXPLICIT_VR_BIG_ENDIAN:
            return bytes(dataset.PixelData[start:end])
        size = _wordSize(dataset)  # the words that hold the frame swapped, then it cut out of them:
        first = start // size * size  # 8-bit OW frames of an odd length begin or end within one
        words = _littleEndian(bytes(dataset.PixelData[first:-(-end // size) * size]), size)
        return words[start - first:end - first]
    if index in damaged:
        raise ValueError(damaged[index])
    frame = _storedLayout(dataset, pixel_array(dataset, index=index, as_rgb=False,
                                               **codedPrecision(syntax, dataset.PixelData, dataset)))
    return frame.astype(frame.dtype.newbyteorder("<"), copy=False).tobytes()


def _storedLength(dataset, syntax):
    """The bytes of a frame of native Pixel Data stored in ``syntax``, whose
    frames are copied as they are; None for compressed ones and those that
    do not start on a byte (1-bit pixels), which are decoded."""
    bits = dataset.Rows * dataset.Columns * _storedSamples(dataset) * dataset.BitsAllocated
    return bits // 8 if not isCompressed(syntax) and bits % 8 == 0 else None


def _storedLayout(dataset, frame):
    """A decoded frame (rows, columns[, samples], colour by pixel) laid out
    as native pixels of the object's Photometric Interpretation and Planar
    Configuration: 4:2:2 (``_subsampled``) for YBR_FULL_422, colour by
    plane for Planar Configuration 1.  JPEG 2000's YBR_ICT and YBR_RCT,
    which have no native form, come out of its decoder RGB."""
    if str(dataset.get("PhotometricInterpretation", "")).endswith("_422"):
        return _subsampled(frame)
    if frame.ndim == 3 and dataset.get("PlanarConfiguration") == 1:
        return frame.transpose(2, 0, 1)
    return frame


def _subsampled(frame):
    """A full YCbCr frame (rows, columns, 3) as 4:2:2 native pixels: each
    two Y of a row followed by the Cb and Cr of the first (PS3.3
    C.7.6.3.1.2); ValueError for an odd number of columns, which that
    layout cannot hold."""
    rows, columns, _ = frame.shape
    if columns % 2:
        raise ValueError(f"native 4:2:2 pixels need an even number of columns, not {columns}: "
                         "ask for the frames as stored (transfer-syntax=*)")
    pairs = frame.reshape(rows, columns // 2, 2, 3)
    return np.concatenate((pairs[:, :, :, 0], pairs[:, :, 0, 1:]), axis=2)


def _wordSize(dataset):
    """The bytes of a word of big endian Pixel Data: a sample's, or two for
    8-bit samples in OW (which big endian stores as 16-bit words)."""
    if dataset.BitsAllocated == 8 and dataset["PixelData"].VR == "OW":
        return 2
    return dataset.BitsAllocated // 8


def _littleEndian(data, size):
    """The big endian words of ``size`` bytes in ``data`` as little endian."""
    if size < 2:
        return data
    return np.frombuffer(data, dtype=f">u{size}").astype(f"<u{size}").tobytes()


class Frames(NamedTuple):
    """Frames of an object to send (``instanceFrames``)."""

    kind: str  # their media type
    syntax: str  # their transfer syntax
    numbers: object  # their numbers, from 1
    first: bytes  # the first one's bytes
    frame: object  # frame(index): another's (from 0), made when called


class _PixelsInFile(NamedTuple):
    """The Pixel Data of a stored file where it is (``_pixelsInFile``)."""

    head: object  # the data set before it
    syntax: str
    offset: int  # of its value in the file
    length: int  # of its value; 0xFFFFFFFF: undefined (encapsulated)
    file: tuple  # the file's device, inode, size and time: the same one read again (``_frameInFile``)


def instanceFrames(path, numbers, choose):
    """The ``Frames`` ``numbers`` (from 1; None: all) of the stored file ``path``:
    ``choose(stored syntax)`` gives ``(as stored, media type)``; as stored
    a compressed frame is its codestream, else native pixels in Explicit VR
    Little Endian.  ``first`` is the bytes of the first of ``numbers``,
    ``frame(index)`` (in the I/O pool; from 0) those of another, each read
    or decoded only when asked for.  Frames sent as stored of a little
    endian file, not deflated (``_pixelsInFile``), are read from the file
    where they are, native ones by their offset, encapsulated ones at the
    places ``framePlaces`` finds once for the answer, so that an answer
    holds one frame at a time; those decoded (compressed or 1-bit) and
    those of other files from the Pixel Data read whole.
    NKI compressed pixel data is expanded first, as stored too
    (``_expandedNKI``).  NoSuchFrame for a number beyond its frames or the
    frames its Pixel Data holds (none when it is empty); FrameTooLarge
    (``checkFrameSize``) for frames to decode too large to be."""
    pixels = _pixelsInFile(path)
    dataset = _wholeDataset(path) if pixels is None else pixels.head
    if not (dataset.get("PixelData") if pixels is None else pixels.length):
        raise NoSuchFrame("the object has no Pixel Data")  # absent, or empty: pydicom reads an empty OW as None
    checkPixelDescription(dataset)  # else frames cannot be told apart nor decoded: no object a viewer can show (a 422)
    syntax = str(dataset.file_meta.TransferSyntaxUID) if pixels is None else pixels.syntax
    asStored, kind = choose(syntax)
    count = frameCount(dataset)
    numbers = numbers or range(1, count + 1)
    for number in numbers:
        if not 1 <= number <= count:
            raise NoSuchFrame(f"the object has {count} frame(s), not a frame {number}")
    sent = frameSyntax(asStored, syntax)
    length = _storedLength(dataset, syntax)
    if pixels is not None and (sent != EXPLICIT_VR_LITTLE_ENDIAN or length is not None
                               and pixels.length != _UNDEFINED_LENGTH):  # length None: encapsulated
        places = _placesInFile(path, pixels, count, length, max(numbers))
        _checkHeld(len(places), "frame(s)" if length is None else f"whole frame(s) of {length} bytes", max(numbers))
        frame = partial(_frameInFile, path, pixels, places)
    elif sent != EXPLICIT_VR_LITTLE_ENDIAN:  # compressed, as stored: codestreams, no larger than the file
        frames = list(generate_frames(dataset.PixelData, number_of_frames=count))
        _checkHeld(len(frames), "frame(s)", max(numbers))
        frame = frames.__getitem__
    else:
        if pixels is not None:  # decoded from the Pixel Data in memory
            dataset = _wholeDataset(path)
        damaged = {}
        if length is not None:
            _checkHeld(len(dataset.PixelData) // length, f"whole frame(s) of {length} bytes", max(numbers))
        else:  # decoded
            checkPixelDescription(dataset, decoding=True)
            checkFrameSize(dataset.Rows, dataset.Columns, dataset.get("SamplesPerPixel"))
            if isCompressed(syntax):
                damaged = damagedFrames(syntax, dataset.PixelData, as_pixel_options(dataset))
        frame = partial(_nativeFrame, dataset, syntax, damaged)
    return Frames(kind, sent, numbers, frame(numbers[0] - 1), frame)


def _wholeDataset(path):
    """The stored file ``path`` read with its Pixel Data, NKI compressed
    pixel data expanded, its file meta naming the syntax it is stored in
    (``_storedSyntax``), where pydicom's decoders look for it."""
    with openRegularFile(path) as f:
        dataset = pydicom.dcmread(f, force=True)
    dataset.file_meta.TransferSyntaxUID = _storedSyntax(dataset)
    _expandedNKI(dataset)
    return dataset


def _pixelsInFile(path):
    """The ``_PixelsInFile`` of the stored file ``path`` in a little endian
    syntax, not deflated, without NKI pixel data (as ``renderFile`` reads
    a frame); one without Pixel Data has its length 0.  None for others,
    whose Pixel Data is read whole."""
    with openRegularFile(path) as f:
        syntax = readFileMeta(f)[0]
        if syntax not in UNCOMPRESSED and not isCompressed(syntax):
            return None
        head = read_dataset(f, syntax == IMPLICIT_VR_LITTLE_ENDIAN, True, stop_when=_atPixelData)
        if NKI_PIXEL_DATA in head:
            return None
        found = pixelDataHeader(f, head.original_encoding[0])
        head.file_meta = FileMetaDataset()
        head.file_meta.TransferSyntaxUID = syntax
        return _PixelsInFile(head, syntax, f.tell(), found[1] if found else 0, _fileIdentity(f))


def _fileIdentity(f):
    stat = os.fstat(f.fileno())
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _frameInFile(path, pixels, places, index):
    """Frame ``index`` (from 0) of the ``pixels`` of the stored file
    ``path``, read where it is: its fragments at their ``places``
    (``_placesInFile``; the bytes of a native frame are one, little endian
    as they are).  OSError when the file is no longer the one ``pixels``
    describes (stored again since), ValueError when it ends within the
    frame."""
    with openRegularFile(path) as f:
        if _fileIdentity(f) != pixels.file:
            raise OSError(errno.ESTALE, "the stored file changed while its frames were sent")
        parts = []
        for offset, length in places[index]:
            f.seek(offset)
            parts.append(f.read(length))
            if len(parts[-1]) < length:
                raise ValueError(f"the stored file ends within frame {index + 1}")
    return b"".join(parts)


def _placesInFile(path, pixels, count, length, wanted):
    """``[(offset, length) of each of its fragments]`` of each frame the
    ``pixels`` of the stored file ``path`` hold: whole native frames of
    ``length`` bytes, one fragment each, those in its length and in the
    file (a file cut short holds fewer); encapsulated ones (``length``
    None) as ``framePlaces`` finds them, those an offset table places up
    to frame ``wanted`` (from 1)."""
    if length is not None:
        held = min(pixels.length, pixels.file[2] - pixels.offset)
        return _NativePlaces(pixels.offset, length, held // length)
    with openRegularFile(path) as f:
        f.seek(pixels.offset)
        return framePlaces(f, count, _extendedOffsets(pixels.head), wanted)


class _NativePlaces:
    """The places of ``count`` native frames of ``length`` bytes from
    ``offset`` (``_placesInFile``), made when asked for."""

    def __init__(self, offset, length, count):
        self.offset, self.length, self.count = offset, length, count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return [(self.offset + index * self.length, self.length)]


def _extendedOffsets(head):
    """The Extended Offset Table and its lengths of ``head``; None without them."""
    if "ExtendedOffsetTable" in head and "ExtendedOffsetTableLengths" in head:
        return head.ExtendedOffsetTable, head.ExtendedOffsetTableLengths
    return None


def _expandedNKI(dataset):
    """The NKI compressed pixel data of ``dataset`` expanded
    (``decompressDecoded``), all frames at once, as its stream runs over
    them all; TranscodeError (a 422) when they would be larger than
    ``STREAMED_OBJECT``."""
    stream = nkiStream(dataset)
    if stream is None:
        return
    size = nki.expandedSize(stream)
    if size > STREAMED_OBJECT:
        raise TranscodeError(f"its NKI compressed pixels expand to {size} bytes, more than the "
                             f"{STREAMED_OBJECT} bytes WADO-RS expands in memory")
    decompressDecoded(dataset, stream)


def _checkHeld(held, what, number):
    """NoSuchFrame unless frame ``number`` is one of the ``held`` the Pixel Data holds."""
    if number > held:
        raise NoSuchFrame(f"the object's Pixel Data holds {held} {what}, not a frame {number}")


def frameSyntax(asStored, syntax):
    """The transfer syntax of the frames ``instanceFrames`` sends of an
    object stored in ``syntax``: its own when sent as stored compressed,
    else Explicit VR Little Endian (native pixels)."""
    return syntax if asStored and isCompressed(syntax) else EXPLICIT_VR_LITTLE_ENDIAN


def bulkValue(path, tag):
    """The bytes of the top-level attribute ``tag`` (not Pixel Data, which
    goes as frames) of the stored file ``path``, as stored, but little
    endian (``_readLittleEndian``); Float and Double Float Pixel Data
    (``_floatPixels``) read alone."""
    if tag in FLOAT_PIXEL_DATA:
        return _floatPixels(path, tag)
    element = _readLittleEndian(path)[0].get(Tag(tag))
    if element is None or element.VR == "SQ":
        raise NoSuchAttribute(f"the object has no bulk data attribute ({tag >> 16:04X},{tag & 0xFFFF:04X})")
    value = element.value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return str(value).encode("utf-8")


def _floatPixels(path, tag):
    """The value of the Float or Double Float Pixel Data ``tag`` of the
    stored file ``path``, little endian (its words swapped in Explicit VR
    Big Endian, as ``swapBytes`` does); NoSuchAttribute when the file has
    none with a value, ValueError when it ends within it."""
    dataset, pixels = _readHead(path, keep=tag)
    element = pixels.get(tag)
    if element is None or element.value is None:
        raise NoSuchAttribute(f"the object has no bulk data attribute ({tag >> 16:04X},{tag & 0xFFFF:04X})")
    if len(element.value) < element.length:
        raise ValueError(f"the stored file ends within its ({tag >> 16:04X},{tag & 0xFFFF:04X}), "
                         f"{len(element.value)} of its {element.length} bytes")
    size = WORD_SIZES.get(element.vr, 1)
    if _storedSyntax(dataset) == EXPLICIT_VR_BIG_ENDIAN and len(element.value) % size == 0:
        return _littleEndian(element.value, size)
    return element.value
