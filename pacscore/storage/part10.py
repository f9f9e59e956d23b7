"""The Part-10 file header (PS3.10 7.1): write it for a received dataset, read
it back for regeneration.

A stored object is ``encodeFileMeta(...)`` followed by the dataset bytes
exactly as received, so writing needs no pydicom and no re-encoding.
Reading accepts what Conquest leaves on its MAG devices too: ".v2" files
are a bare dataset without preamble or meta.
"""

import struct

from pacscore.dicom.negotiation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from pacscore.storage.attributes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
    LONG_LENGTH, LONG_VRS, DatasetError, readAttributes, walkDataset)
from pacscore.storage.regularfiles import openRegularFile

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"

MEDIA_STORAGE_SOP_CLASS_UID = 0x00020002
MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003
TRANSFER_SYNTAX_UID = 0x00020010
SOURCE_APPLICATION_ENTITY_TITLE = 0x00020016
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018

# Every element PS3.10 defines for group 0002.
META_TAGS = frozenset({
    0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012,
    0x00020013, 0x00020016, 0x00020017, 0x00020018, 0x00020026, 0x00020027,
    0x00020028, 0x00020031, 0x00020032, 0x00020033, 0x00020035, 0x00020100,
    0x00020102,
})

_SHORT = struct.Struct("<HH2sH")
_GROUP_LENGTH = struct.Struct("<HH2sHL")
_PEEK = struct.Struct("<HH2s")
_PIXEL_DATA_LITTLE = struct.pack("<HH", 0x7FE0, 0x0010)
_PIXEL_DATA_BIG = struct.pack(">HH", 0x7FE0, 0x0010)
_VERSION = b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01"
_LITTLE_ENDIAN = (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)  # told apart by the first element
_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN "
                 b"SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split())


def _element(element, vr, value, pad):
    data = value.encode("ascii")
    if len(data) % 2:
        data += pad
    return _SHORT.pack(2, element, vr, len(data)) + data


def encodeFileMeta(sopClassUID, sopInstanceUID, transferSyntax,
                   implementationClassUID, implementationVersionName, sourceAE=None):
    """Preamble, "DICM" and the group 0002 elements, explicit VR little endian.

    UIDs are padded with NUL, the version name and AE title with a space;
    (0002,0013) is left out when ``implementationVersionName`` is empty and
    (0002,0016) when ``sourceAE`` is not given.
    """
    parts = [
        _VERSION,
        _element(0x0002, b"UI", sopClassUID, b"\x00"),
        _element(0x0003, b"UI", sopInstanceUID, b"\x00"),
        _element(0x0010, b"UI", transferSyntax, b"\x00"),
        _element(0x0012, b"UI", implementationClassUID, b"\x00"),
    ]
    if implementationVersionName:
        parts.append(_element(0x0013, b"SH", implementationVersionName, b" "))
    if sourceAE:
        parts.append(_element(0x0016, b"AE", sourceAE, b" "))
    group = b"".join(parts)
    return (bytes(PREAMBLE_LENGTH) + MAGIC
            + _GROUP_LENGTH.pack(2, 0, b"UL", 4, len(group)) + group)


def _guessTransferSyntax(head):
    """The encoding of a dataset with no stated transfer syntax, guessed from
    its first element as pydicom guesses it: a VR means explicit VR, and a
    group that reads as >= 0x0400 then means big endian."""
    if len(head) < 6:
        return IMPLICIT_VR_LITTLE_ENDIAN
    group, _, vr = _PEEK.unpack_from(head)
    if vr not in _VRS:
        return IMPLICIT_VR_LITTLE_ENDIAN
    return EXPLICIT_VR_BIG_ENDIAN if group >= 0x0400 else EXPLICIT_VR_LITTLE_ENDIAN


def readFileMeta(fileobj):
    """``(transferSyntax, metaDict, datasetOffset)`` of a DICOM file.

    ``metaDict`` maps each group 0002 tag present to its value as a string.
    A file without preamble and meta (Conquest's ".v2") gives ({}, 0) and
    the transfer syntax its first element suggests, implicit VR little
    endian for a ".v2". A meta without a preamble is accepted, as pydicom
    does. A data set in the other little endian syntax than its meta says
    (implicit VRs under Explicit VR Little Endian, or the reverse) gives
    the syntax it is in, as pydicom reads it (``sendsAsItIs`` tells).
    Leaves ``fileobj`` positioned at the dataset.

    Raises attributes.DatasetError when the meta group is broken.
    """
    start = fileobj.tell()
    head = fileobj.read(PREAMBLE_LENGTH + len(MAGIC))
    if head[PREAMBLE_LENGTH:] == MAGIC:
        metaOffset = PREAMBLE_LENGTH + len(MAGIC)
    elif head[:2] == b"\x02\x00":
        metaOffset = 0
    else:
        fileobj.seek(start)
        return _guessTransferSyntax(head), {}, 0
    fileobj.seek(start + metaOffset)
    meta, length = walkDataset(fileobj, EXPLICIT_VR_LITTLE_ENDIAN, META_TAGS, 0x00020000, 0x0002FFFF)
    datasetOffset = metaOffset + length
    fileobj.seek(start + datasetOffset)
    transferSyntax = meta.get(TRANSFER_SYNTAX_UID)
    if not transferSyntax or transferSyntax in _LITTLE_ENDIAN:
        first = fileobj.read(_PEEK.size)
        fileobj.seek(start + datasetOffset)
        transferSyntax = _syntaxOfDataset(transferSyntax, first)
    return transferSyntax, meta, datasetOffset


def _syntaxOfDataset(stated, first):
    """The transfer syntax a data set whose meta states ``stated`` ("" for
    none) is in, ``first`` its first bytes: guessed when none is stated; of
    the two little endian ones, the one its first element is in."""
    if not stated:
        return _guessTransferSyntax(first)
    if stated in _LITTLE_ENDIAN and len(first) == _PEEK.size:
        return EXPLICIT_VR_LITTLE_ENDIAN if _PEEK.unpack(first)[2] in _VRS else IMPLICIT_VR_LITTLE_ENDIAN
    return stated


def quickFileMeta(head):
    """``(transferSyntax, datasetOffset)`` of a Part-10 file whose first
    bytes are ``head``, as ``readFileMeta`` gives them, without walking
    the file: for the plain meta every writer makes (preamble, DICM, a
    group length, then group 0002 elements of explicit VR ending where it
    says, a single UI transfer syntax, all within ``head``, the data set's
    first element too); None for any other (``readFileMeta`` then reads it)."""
    metaOffset = PREAMBLE_LENGTH + len(MAGIC)
    start = metaOffset + _GROUP_LENGTH.size
    if len(head) < start or head[PREAMBLE_LENGTH:metaOffset] != MAGIC:
        return None
    group, element, vr, size, length = _GROUP_LENGTH.unpack_from(head, metaOffset)
    end = start + length
    if (group, element, vr, size) != (2, 0, b"UL", 4) or end + _PEEK.size > len(head):
        return None
    stated, position = None, start
    while position < end:
        if position + _SHORT.size > end:
            return None
        group, element, vr, length = _SHORT.unpack_from(head, position)
        position += _SHORT.size
        if group != 2 or vr not in _VRS or vr == b"SQ":
            return None
        if vr in LONG_VRS:
            if position + LONG_LENGTH.size > end:
                return None
            length = LONG_LENGTH.unpack_from(head, position)[0]
            position += LONG_LENGTH.size
        if element == 0x0010:
            stated = head[position:position + length].decode("latin-1").rstrip(" \x00") if vr == b"UI" else None
        position += length
    if position != end or head[end:end + 2] == b"\x02\x00" or not stated or stated != stated.strip() or (
            "\\" in stated):
        return None  # a walk would go on through group 0002, or read the syntax otherwise
    return _syntaxOfDataset(stated, head[end:end + _PEEK.size]), end


def sendsAsItIs(fileobj, transferSyntax, meta):
    """Whether the file ``fileobj`` (``readFileMeta`` gave ``transferSyntax``
    and ``meta``) is a Part-10 file to send as it is (PS3.10 7.1): a
    preamble, ``DICM``, and a meta naming the syntax its data set is in (a
    ``.v2`` that begins with group 0002 elements has none).  Leaves
    ``fileobj`` where it was."""
    position = fileobj.tell()
    fileobj.seek(PREAMBLE_LENGTH)
    magic = fileobj.read(len(MAGIC))
    fileobj.seek(position)
    return magic == MAGIC and meta.get(TRANSFER_SYNTAX_UID) == transferSyntax


def readFileAttributes(path, tags, wholeDataset=False):
    """``(transferSyntax, {tag: str})`` of a stored file, for regeneration;
    with ``wholeDataset`` the data set must read to its end.

    Raises attributes.DatasetError when the file is not a readable DICOM
    object, and OSError when it cannot be read at all.
    """
    transferSyntax, _, attributes = readFile(path, tags, wholeDataset)
    return transferSyntax, attributes


def readFile(path, tags, wholeDataset=False):
    """``(transferSyntax, metaDict, {tag: str})``: ``readFileAttributes``
    with the file's meta (``readFileMeta``)."""
    with openRegularFile(path) as fileobj:
        transferSyntax, meta, _ = readFileMeta(fileobj)
        return transferSyntax, meta, readAttributes(fileobj, transferSyntax, tags, wholeDataset=wholeDataset)


class Damaged(DatasetError):
    """A stored data set that does not read to its end: cut short, or not
    in the transfer syntax it is stored as."""


def checkWhole(source, transferSyntax):
    """Damaged unless the data set ``source`` (bytes, or a file positioned
    at its first byte) in ``transferSyntax`` reads to its end: a walk of its
    element headers, every value's length checked against what follows,
    none decoded.  Bytes holding Pixel Data are walked from its first
    header on (``_pixelDataAt``), the whole of them only when that walk
    fails or finds none: a file cut short ends within its pixels, and the
    many small elements before them (250 in a CT image) would take ten
    times as long as the rest of a C-GET's work on it.  An empty data set
    (an empty file, one that ends with its header) holds no object: Damaged
    too."""
    start = _pixelDataAt(source, transferSyntax)
    if start is not None:
        try:
            walkDataset(memoryview(source)[start:], transferSyntax, frozenset(), 0, 0xFFFFFFFF)
            return
        except DatasetError:
            pass  # a header found in an earlier value, or damage: the whole walk tells
    try:
        _, length = walkDataset(source, transferSyntax, frozenset(), 0, 0xFFFFFFFF)
    except DatasetError as e:
        raise Damaged(f"truncated or damaged: {e}") from e
    if not length:
        raise Damaged("no data set: the file is empty or ends with its header")


def _pixelDataAt(source, transferSyntax):
    """Where the first bytes of a (7FE0,0010) tag are in the data set
    ``source`` when it is bytes (not deflated), else None."""
    if not isinstance(source, bytes) or transferSyntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return None
    found = source.find(_PIXEL_DATA_BIG if transferSyntax == EXPLICIT_VR_BIG_ENDIAN else _PIXEL_DATA_LITTLE)
    return None if found < 0 else found


def checkFile(path):
    """Check that the Part-10 file ``path`` reads to its end: OSError
    (missing, unreadable), DatasetError (not Part-10) or Damaged (its data
    set truncated or damaged) when it does not."""
    with openRegularFile(path) as f:
        syntax, _, offset = readFileMeta(f)
        f.seek(offset)
        checkWhole(f, syntax)


def fileError(path):
    """Why the Part-10 file ``path`` is unusable (``checkFile``), or None
    when it reads to its end."""
    try:
        checkFile(path)
    except (OSError, DatasetError) as e:
        return str(e) or type(e).__name__
    return None


def fileMetaOf(f, syntax):
    """The Part-10 header (preamble, DICM, meta) of the data set in
    ``syntax`` the file ``f`` is positioned at, naming its SOP class and
    instance (``f`` is left anywhere); None when it names no SOP instance
    (no DICOM object).  DatasetError when it cannot be read."""
    uids = readAttributes(f, syntax, {SOP_CLASS_UID, SOP_INSTANCE_UID})
    if not uids.get(SOP_INSTANCE_UID):
        return None
    return encodeFileMeta(uids.get(SOP_CLASS_UID, ""), uids[SOP_INSTANCE_UID], syntax,
                          IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION)
