"""Small data sets (C-FIND identifiers and matches, C-MOVE/C-GET identifiers,
final responses) between bytes in a transfer syntax and pydicom Datasets.

Stored objects never come through here: they travel as the bytes received.
"""

import zlib
from io import BytesIO

from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from pacscore.storage.attributes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, walkDataset)


class IdentifierError(ValueError):
    """A data set that cannot be decoded."""


def _encoding(transferSyntax):
    """``(implicitVR, littleEndian)``; compressed syntaxes encode as explicit LE."""
    if transferSyntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return True, True
    return False, transferSyntax != EXPLICIT_VR_BIG_ENDIAN


def _decodeValues(dataset):
    """Decode every value now, sequence items' too, not lazily later."""
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                _decodeValues(item)


def decodeDataset(data, transferSyntax):
    """A pydicom Dataset from data set bytes; ``IdentifierError`` if they are not one."""
    try:
        walkDataset(bytes(data), transferSyntax, frozenset(), 0, 0xFFFFFFFF)  # pydicom stops silently at damage
        if transferSyntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            data = zlib.decompress(bytes(data), -zlib.MAX_WBITS)
        implicit, little = _encoding(transferSyntax)
        dataset = read_dataset(BytesIO(bytes(data)), implicit, little)
        _decodeValues(dataset)
        return dataset
    except Exception as e:
        raise IdentifierError(f"undecodable data set: {e}") from e


def encodeDataset(dataset, transferSyntax):
    """The bytes of ``dataset`` in ``transferSyntax``."""
    implicit, little = _encoding(transferSyntax)
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_dataset(fp, dataset)
    data = fp.getvalue()
    if transferSyntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
    return data

