"""A whole Part-10 file converted to the transfer syntax a Conquest
compression code asks for (``un``, ``j1`` ... ``jk``, ``as``): used when
MAG devices' objects move under ArchiveCompression and by ``dgate -jd``,
``-jc#``, ``-j*##``."""

from io import BytesIO

from pacscore.codecs.syntaxes import storedSyntax
from pacscore.codecs.transcode import TranscodeError, transcode
from pacscore.dicom.negotiation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from pacscore.storage.part10 import (
    MEDIA_STORAGE_SOP_CLASS_UID, MEDIA_STORAGE_SOP_INSTANCE_UID, SOURCE_APPLICATION_ENTITY_TITLE, encodeFileMeta,
    readFileMeta)


def recompressedFile(content, code):
    """``(bytes, source syntax, target syntax)``: the Part-10 file
    ``content`` in the syntax ``code`` asks for; ``content`` itself when
    that is its own, or when it has no file meta (a ``.v2`` file).  Raises
    TranscodeError (naming its SOP Instance UID) when the codecs cannot
    convert it, DatasetError when its file meta is broken."""
    transferSyntax, meta, offset = readFileMeta(BytesIO(content))
    target = storedSyntax(transferSyntax, code)
    if not meta or target == transferSyntax:
        return content, transferSyntax, transferSyntax
    try:
        data = transcode(content[offset:], transferSyntax, target)
    except TranscodeError as e:
        raise TranscodeError(f"{meta.get(MEDIA_STORAGE_SOP_INSTANCE_UID, '?')}: {e}") from e
    header = encodeFileMeta(meta.get(MEDIA_STORAGE_SOP_CLASS_UID, ""), meta.get(MEDIA_STORAGE_SOP_INSTANCE_UID, ""),
                            target, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION,
                            meta.get(SOURCE_APPLICATION_ENTITY_TITLE) or None)
    return header + data, transferSyntax, target
