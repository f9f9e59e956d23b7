"""Small data sets (C-FIND identifiers and matches, C-MOVE/C-GET identifiers,
final responses) between bytes in a transfer syntax and pydicom Datasets.

Stored objects travel as the bytes received; those a command or a converter
changes come through here, and keep the bytes of the text they did not
change (``textbytes``).
"""

from io import BytesIO

from pydicom.datadict import dictionary_VR
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from pacscore.dicom.sinks import MEMORY_LIMIT
from pacscore.dicom.textbytes import KeptBytesError, decodeValues, keptBytes, originalBytes
from pacscore.storage.attributes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
    MAX_NESTING, PIXEL_DATA, deflated, inflated, walkDataset)


class IdentifierError(ValueError):
    """A data set that cannot be decoded."""


def _encoding(transferSyntax):
    """``(implicitVR, littleEndian)``; compressed syntaxes encode as explicit LE."""
    if transferSyntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return True, True
    return False, transferSyntax != EXPLICIT_VR_BIG_ENDIAN


def decodeDataset(data, transferSyntax, stopBeforePixels=False, maxInflated=None, boundNesting=False, keepBytes=True):
    """A pydicom Dataset from data set bytes; ``IdentifierError`` if they are
    not one. ``stopBeforePixels``: only the elements before Pixel Data (a
    stored object's attributes, without reading or checking its pixels).
    A deflated one is inflated whole (a stored object, whatever its size),
    or, given ``maxInflated``, one that inflates to more is an
    ``IdentifierError`` found before more is inflated (``decodePeerDataset``).
    ``boundNesting``: sequences nested more than ``MAX_NESTING`` deep are an
    ``IdentifierError`` found before the values are decoded (which recurses
    per level: ``_checkNesting``).  ``keepBytes``: a binary value pydicom
    cannot decode is kept as its bytes (``decodeValues``), not an
    ``IdentifierError``."""
    try:
        if transferSyntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            data, transferSyntax = inflated(data, maxInflated), EXPLICIT_VR_LITTLE_ENDIAN
        if not stopBeforePixels:
            walkDataset(bytes(data), transferSyntax, frozenset(), 0, 0xFFFFFFFF)  # pydicom stops silently at damage
        implicit, little = _encoding(transferSyntax)
        stop = (lambda tag, vr, length: tag >= PIXEL_DATA) if stopBeforePixels else None
        dataset = read_dataset(BytesIO(bytes(data)), implicit, little, stop_when=stop)
        if boundNesting:
            _checkNesting(dataset)
        decodeValues(dataset, keepBytes=keepBytes)
        return dataset
    except IdentifierError:
        raise
    except Exception as e:
        raise IdentifierError(f"undecodable data set: {e}") from e


def decodePeerDataset(data, transferSyntax):
    """``decodeDataset`` of a small data set a peer sent (an identifier, a
    C-FIND match, an N-ACTION or N-CREATE data set), inflated to at most
    ``MEMORY_LIMIT`` bytes, so that it cannot fill the memory.  Slow for a
    big one: call it in a worker thread.  Sequences nested more than
    ``MAX_NESTING`` deep are an ``IdentifierError``, as they are in a stored
    object (its walk does not descend defined-length sequences, which DCMTK
    sends, and what reads a data set recurses per level).  A value that
    cannot be decoded is an ``IdentifierError``: a key is not guessed at."""
    return decodeDataset(data, transferSyntax, maxInflated=MEMORY_LIMIT, boundNesting=True, keepBytes=False)


def _checkNesting(dataset):
    """``IdentifierError`` if sequences in ``dataset``, as ``read_dataset``
    gives it (its elements raw, each sequence's items read as it is taken),
    nest more than ``MAX_NESTING`` deep: level by level, never recursing; as
    many levels as a stored object's walk takes.  Only the sequences are
    taken: the other values stay raw, for ``decodeValues``."""
    items = [dataset]
    for _ in range(MAX_NESTING + 2):
        sequences = [parent[tag] for parent in items for tag in parent.keys() if _isSequence(parent.get_item(tag))]
        if not sequences:
            return
        items = [item for sequence in sequences for item in sequence.value or ()]
    raise IdentifierError(f"sequences nested more than {MAX_NESTING} deep")


def _isSequence(element):
    """Whether ``element``, raw or not, is a sequence (an implicit VR or UN
    one by its tag, as pydicom reads it)."""
    vr = element.VR
    if element.is_raw and vr in (None, "UN"):
        try:
            vr = dictionary_VR(element.tag)
        except KeyError:
            return False
    return vr == "SQ"


def encodeDataset(dataset, transferSyntax):
    """The bytes of ``dataset`` in ``transferSyntax``; a value kept as its
    bytes (``decodeDataset``) written as it was read, its VR too, or an
    ``IdentifierError`` when that cannot be (``keptBytes``)."""
    implicit, little = _encoding(transferSyntax)
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    try:
        with originalBytes(dataset), keptBytes(dataset, implicit, little):
            write_dataset(fp, dataset)
    except KeptBytesError as e:
        raise IdentifierError(f"undecodable data set: {e}") from e
    data = fp.getvalue()
    if transferSyntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        data = deflated([data])
    return data

