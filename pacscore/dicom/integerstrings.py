"""One reading rule for IS values no integer can hold (``inf``, ``1e999``,
``-Infinity``), wherever pacs reads an IS through pydicom: the index's
attributes (``pacscore.storage.attributes``) and the general decoder of
stored objects and peers' identifiers (``pacscore.dicom.textbytes``).

pydicom's IS() raises OverflowError for them, which its retry of a value it
cannot read as its VR (as SH ..., on ValueError only) does not cover: the
whole data set failed ('(0020,0013) cannot be decoded: cannot convert float
infinity to integer').  ``install`` (which those modules call when
imported) wraps pydicom's IS converter so that the OverflowError is that
ValueError: such a value is then read as text, as ``abc`` and ``nan`` are,
and kept as it is.
"""

from pydicom import values

_pydicomIS = values.converters["IS"]


def readIS(byteString, isLittleEndian, structFormat=None):
    """pydicom's IS converter, a ValueError (retried as text by pydicom's
    ``convert_value``) where a value no integer holds overflows it."""
    try:
        return _pydicomIS(byteString, isLittleEndian, structFormat)
    except OverflowError as e:
        raise ValueError(f"IS value {byteString[:32]!r} no integer can hold: {e}") from e


def install():
    """Have pydicom read IS values through ``readIS`` (once)."""
    values.converters["IS"] = readIS
