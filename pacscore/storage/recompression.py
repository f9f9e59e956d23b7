"""A whole Part-10 file (or Conquest ".v2" file) converted as a Conquest
compression code asks for (``un``, ``j1`` ... ``jk``, ``n1`` ... ``n4``,
``as`` ...; ``pacscore.codecs.compression``): used when MAG devices'
objects move under ArchiveCompression and by ``dgate -jd``, ``-jc#``,
``-j*##``, ``-nd``, ``-nc#``."""

from io import BytesIO

from pacscore.codecs.compression import recode
from pacscore.codecs.jpeglossy import DEFAULT_QUALITY
from pacscore.codecs.transcode import TranscodeError
from pacscore.dicom.negotiation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from pacscore.storage.part10 import (
    MEDIA_STORAGE_SOP_CLASS_UID, MEDIA_STORAGE_SOP_INSTANCE_UID, SOURCE_APPLICATION_ENTITY_TITLE, encodeFileMeta,
    readFileMeta)


def recompressedFile(content, code, quality=DEFAULT_QUALITY):
    """``(bytes, source syntax, target syntax)``: the file ``content`` as
    ``code`` asks for; ``content`` itself when that changes nothing, or
    when it has no file meta (a ``.v2`` file) and ``code`` asks for
    another transfer syntax.  Raises TranscodeError (naming its SOP
    Instance UID) when the codecs cannot convert it, DatasetError when its
    file meta is broken. ``quality``: LossyQuality."""
    transferSyntax, meta, offset = readFileMeta(BytesIO(content))
    dataset = content[offset:]
    try:
        data, target = recode(dataset, transferSyntax, code, quality)
    except TranscodeError as e:
        raise TranscodeError(f"{meta.get(MEDIA_STORAGE_SOP_INSTANCE_UID, '?')}: {e}") from e
    if data is dataset or (not meta and target != transferSyntax):
        return content, transferSyntax, transferSyntax
    if not meta:
        return data, transferSyntax, target
    header = encodeFileMeta(meta.get(MEDIA_STORAGE_SOP_CLASS_UID, ""), meta.get(MEDIA_STORAGE_SOP_INSTANCE_UID, ""),
                            target, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION,
                            meta.get(SOURCE_APPLICATION_ENTITY_TITLE) or None)
    return header + data, transferSyntax, target
