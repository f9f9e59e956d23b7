"""Text values of a decoded data set, and the bytes they were read in.

Text that is not valid in its declared character set is common (a Latin-1
``ü`` in an object that says ISO_IR 192).  pydicom decodes it with U+FFFD in
the place of each bad byte, and writes a data set from its decoded values,
so that any change to an object, even to one unrelated element, would lose
those bytes for good.  ``decodeValues`` reads such text as Latin-1 instead
(``textFits``), with one log line naming the object and the elements
(or given to the caller, which logs one for many objects); a binary value
pydicom cannot decode (an FD of 4 bytes, which storescp takes with a
warning) is, when asked for, kept as its bytes, a UN element, logged,
so that one such value does not make the whole object unreadable;
and keeps the bytes of every text value that is not plain ASCII;
``originalBytes`` writes each of those a change left as it was in the bytes
it was read in, unless its character set changed meanwhile (``ensureUnicode``
made the object ISO_IR 192: its text is then written anew, in UTF-8).
A multi-byte set named as value 1 (``ISO 2022 IR 87`` alone, which devices
send) is read, and text is written, as the code extension it is
(``codeExtensionTerms``): pydicom would take it for value 1 and fail on a
person's name with an empty component.  The (0008,0005) stays as it is.
"""

import copy
from contextlib import contextmanager

from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR, private_dictionary_VR
from pydicom.dataelem import DataElement, convert_raw_data_element
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_PN, write_text
from pydicom.valuerep import CUSTOMIZABLE_CHARSET_VR
from twisted.logger import Logger

from pacscore.dicom import integerstrings, pydicomchecks
from pacscore.dicom.charsetterms import codeExtensionTerms, convert_encodings
from pacscore.storage.codeextensions import LATIN_1, notPlain, textFits

integerstrings.install()  # an IS no integer holds (inf, 1e999) read as text, as abc is
pydicomchecks.install()  # malformed values named by pacs, with the peer or object, not by pydicom

SPECIFIC_CHARACTER_SET = 0x00080005
_READ = "pacs_text_read"  # attribute of a decoded Dataset: {tag: (bytes, value as read, encodings)}
_KEPT = "pacs_kept_raw"  # attribute of a decoded Dataset: {tag: the RawDataElement kept as UN bytes}

log = Logger()


class KeptBytesError(ValueError):
    """A value kept as its bytes cannot be written with its own VR."""


def _encodingsOf(dataset, inherited, extended=True):
    """The Python encodings of ``dataset``'s own (0008,0005), else
    ``inherited``; a multi-byte set named as value 1 as the code extension
    it is (``codeExtensionTerms``), unless not ``extended`` (as pydicom
    writes text)."""
    element = dataset.get(SPECIFIC_CHARACTER_SET)
    if element is None or not element.value:
        return inherited
    terms = [term.strip() for term in ([element.value] if isinstance(element.value, str) else element.value)]
    return convert_encodings(codeExtensionTerms(terms) if extended else terms)


def encodingsOf(dataset):
    """The Python encodings of the text of the top level data set
    ``dataset`` (the default when None), as ``decodeValues`` reads it."""
    return [default_encoding] if dataset is None else _encodingsOf(dataset, [default_encoding])


def _textVR(raw):
    """The VR of the RawDataElement ``raw`` when it is one of text in the
    Specific Character Set, else None."""
    vr = raw.VR
    if vr is None:
        try:
            vr = dictionary_VR(raw.tag)
        except KeyError:
            return None
    return vr if vr in CUSTOMIZABLE_CHARSET_VR else None


def decodeValues(dataset, onUnfit=None, keepBytes=False):
    """Decode every value of ``dataset`` now, sequence items' too, not
    lazily later; text not valid in its character set as Latin-1, logged,
    or given to ``onUnfit(object, elements)`` (texts naming the object and
    its elements: a WADO-RS metadata answer logs one line for all).
    A ValueError names a value pydicom cannot decode; with ``keepBytes``
    one of a binary VR (not text, not a sequence: its length no multiple
    of its VR's size, say) is a UN element of its bytes instead, logged."""
    unfit, kept = [], [] if keepBytes else None
    _decode(dataset, _encodingsOf(dataset, [default_encoding]), unfit, "", kept)
    _logKept(dataset, kept)
    if not unfit:
        return
    described = (_described(dataset), ", ".join(unfit))
    if onUnfit is not None:
        onUnfit(*described)
    else:
        log.warn("{object}: text not valid in its Specific Character Set, read as Latin-1 (its bytes are kept "
                 "unless a change makes the object ISO_IR 192): {elements}", object=described[0],
                 elements=described[1])


def keepUndecodable(dataset):
    """Decode every value of ``dataset`` now, as pydicom's writer does to
    write it in another encoding (text as pydicom reads it), its binary
    values pydicom cannot decode kept as UN elements of their bytes,
    logged, as ``decodeValues`` keeps them; a ValueError names any other
    value that cannot be decoded."""
    kept = []
    _decode(dataset, None, None, "", kept, texts=False)
    _logKept(dataset, kept)


def _logKept(dataset, kept):
    if kept:
        log.warn("{object}: value(s) that cannot be decoded kept as their bytes (UN): {elements}",
                 object=_described(dataset), elements="; ".join(kept))


def _described(dataset):
    return f"SOP Instance {dataset.get('SOPInstanceUID', '')}" if "SOPInstanceUID" in dataset else "A data set"


def _decode(dataset, encodings, unfit, path, kept, texts=True):
    """Decode the values of ``dataset`` (``decodeValues``); ``kept``: a
    list of the binary values kept as their bytes, or None (ValueError);
    not ``texts``: text as pydicom decodes it (``keepUndecodable``)."""
    read = {}
    for tag in list(dataset.keys()):
        place = f"{path}({tag >> 16:04x},{tag & 0xFFFF:04x})"
        try:
            element = (_decodeElement(dataset, tag, encodings, unfit, place, read) if texts
                       else dataset[tag])
        except Exception as e:  # pydicom fails in any way (an IndexError, a BytesLengthException ...)
            error = f"{place} cannot be decoded: {e or type(e).__name__}"
            element = _asBytes(dataset, tag) if kept is not None else None
            if element is None:
                raise ValueError(error) from e
            kept.append(error)
        if element.VR == "SQ":
            for number, item in enumerate(element.value or ()):
                _decode(item, _encodingsOf(item, encodings), unfit, f"{place}.{number}\\", kept, texts)
    if read:
        setattr(dataset, _READ, read)


def _asBytes(dataset, tag):
    """Element ``tag`` of ``dataset``, still raw, made a UN element of its
    bytes; None for text in the character set and sequences (their damage
    is the data set's), and for a value of undefined length."""
    raw = dataset.get_item(tag)
    if not raw.is_raw or raw.value is None or raw.length == 0xFFFFFFFF:
        return None
    vr = raw.VR
    if vr in (None, "UN"):
        vr = _dictionaryVR(dataset, tag)
    if vr == "SQ" or vr in CUSTOMIZABLE_CHARSET_VR:
        return None
    element = DataElement(tag, "OB", bytes(raw.value))
    element.VR = "UN"  # made so: pydicom gives a UN of a known tag its dictionary VR
    dataset[tag] = element
    if not hasattr(dataset, _KEPT):
        setattr(dataset, _KEPT, {})
    getattr(dataset, _KEPT)[tag] = raw  # written again as it was, where it can be (``keptBytes``)
    return element


def _dictionaryVR(dataset, tag):
    """The VR pydicom reads element ``tag`` of ``dataset`` in when none is
    written: a private one's by its private creator's dictionary (Implicit
    VR), UN for a tag no dictionary knows."""
    try:
        if tag >> 16 & 1:
            creator = dataset.get((tag & 0xFFFF0000) | (tag >> 8 & 0xFF))
            return private_dictionary_VR(tag, str(creator.value)) if creator is not None else "UN"
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _decodeElement(dataset, tag, encodings, unfit, place, read):
    """Element ``tag`` of ``dataset`` decoded; its text in ``encodings``,
    or, not valid in them, as Latin-1 (``place`` in ``unfit``)."""
    raw = dataset.get_item(tag)
    vr = _textVR(raw) if raw.is_raw else None
    if vr is None or not raw.value:
        return dataset[tag]
    kept = notPlain(raw.value)
    fits = not kept or textFits(raw.value, encodings)
    if not fits:
        unfit.append(place)
    element = convert_raw_data_element(raw._replace(VR=vr), encoding=encodings if fits else [LATIN_1], ds=dataset)
    dataset[tag] = element
    if kept:
        read[tag] = (raw.value, copy.deepcopy(element.value), encodings)
    return element


def _encoded(element, encodings):
    """The bytes of the text ``element`` in ``encodings``, as pydicom writes them."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    (write_PN if element.VR == "PN" else write_text)(fp, element, encodings)
    return fp.getvalue()


def _textBytes(dataset, encodings, written):
    """``(dataset, element)`` of every text value ``decodeValues`` kept the
    bytes of that is as it was read, in the same character set; and, where
    pydicom would write text in other ``written`` encodings (a multi-byte
    set named as value 1), of every other text value in ``encodings``."""
    read = getattr(dataset, _READ, {})
    for tag in list(dataset.keys()):
        element = dataset.get_item(tag)
        if element.is_raw:
            continue
        raw, value, readIn = read.get(tag, (None, None, None))
        if raw is not None and element.value == value and encodings == readIn:
            yield dataset, DataElement(tag, element.VR, raw)
        elif element.VR == "SQ":
            for item in element.value or ():
                yield from _textBytes(item, _encodingsOf(item, encodings), _encodingsOf(item, written, False))
        elif encodings != written and element.VR in CUSTOMIZABLE_CHARSET_VR and element.value:
            yield dataset, DataElement(tag, element.VR, _encoded(element, encodings))


@contextmanager
def originalBytes(dataset):
    """While it lasts, the text values of ``dataset`` a change left as they
    were are their bytes as read (see ``decodeValues``), and those of an
    object naming a multi-byte set as value 1 their bytes in the code
    extension (``_textBytes``)."""
    with _swapped([(holder, holder.get_item(element.tag), element)
                   for holder, element in _textBytes(dataset, _encodingsOf(dataset, [default_encoding]),
                                                     _encodingsOf(dataset, [default_encoding], False))]):
        yield


@contextmanager
def keptBytes(dataset, implicit, little):
    """While it lasts, each value of ``dataset`` ``decodeValues`` kept as
    UN bytes, and left so, is its element as read (its own VR and bytes)
    when ``dataset`` is written in the encoding it was read in
    (``implicit``, ``little``), its character set unchanged: pydicom writes
    such an element as it is.  Written in Implicit VR Little Endian
    otherwise, the UN element's bytes are the same; in any other encoding
    it would be written with another VR: a KeptBytesError naming it."""
    with _swapped(list(_keptRaw(dataset, (implicit, little)))):
        yield


@contextmanager
def _swapped(swaps):
    """While it lasts, each ``(holder, element, stand-in)`` of ``swaps`` has
    the stand-in in the element's place in its holder; the element after."""
    for holder, _, standIn in swaps:
        holder._dict[standIn.tag] = standIn  # not through pydicom's setter, which decodes a private value
    try:
        yield
    finally:
        for holder, element, _ in swaps:
            holder._dict[element.tag] = element


def _keptRaw(dataset, encoding):
    """``(dataset, UN element, raw element)`` of each value kept as bytes in
    ``dataset`` and its items that is still as kept (``keptBytes``)."""
    kept = getattr(dataset, _KEPT, {})
    raws = dataset.original_encoding == encoding and dataset.original_character_set == dataset._character_set
    for tag in list(dataset.keys()):
        element = dataset.get_item(tag)
        raw = kept.get(tag)
        if raw is not None and not element.is_raw and element.VR == "UN" and element.value == raw.value:
            if raws:
                yield dataset, element, raw
            elif encoding != (True, True):
                raise KeptBytesError(f"({tag >> 16:04x},{tag & 0xFFFF:04x}) cannot be decoded, and cannot be "
                                     "written with its VR in another encoding or character set than it was read in")
        elif not element.is_raw and element.VR == "SQ":
            for item in element.value or ():
                yield from _keptRaw(item, encoding)
