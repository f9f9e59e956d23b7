"""WorkListMode (manual, dicom.ini): incoming images filled in from the worklist.

With ``WorkListMode = 1`` an incoming object whose Accession Number is in
the worklist gets the worklist item's non-empty values: every attribute the
object has that the item also holds is replaced, and the item's patient and
study attributes (the columns outside a DT_STARTSEQUENCE/ENDSEQUENCE block
of dicom.sql) are added when the object lacks them.  ``WorkListMode = 2``
does the same and refuses an object whose Accession Number is not in the
worklist.  The amended data set is what is written to disk and indexed.

Runs in the I/O thread that stores the object (see ObjectStore), before
the file is named, so the name and the index row see the new values.
"""

from pydicom.datadict import dictionary_VR

from pacscore.converters.elements import textOf, walkElements
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.dicom.identifiers import SPECIFIC_CHARACTER_SET, responseCharacterSet

ACCESSION_NUMBER = 0x00080050
TEXT_VRS = frozenset(("PN", "LO", "SH", "LT", "ST", "UT", "UC"))


class WorklistRefusal(Exception):
    """WorkListMode 2: the object's Accession Number is not in the worklist."""


def topLevelTags(columns):
    """Tags of the worklist columns outside any sequence block."""
    tags, depth = set(), 0
    for column in columns:
        if column.dicomType == "DT_STARTSEQUENCE":
            depth += 1
        elif column.dicomType == "DT_ENDSEQUENCE":
            depth -= 1
        elif depth == 0:
            tags.add(column.tag)
    return frozenset(tags)


class WorklistAmender:
    """``amend(attrs, data, transferSyntax)`` -> new data set bytes, or
    None when nothing changes (``attrs``: the object's index attributes,
    for its Accession Number); ``lookup(accession)`` is
    ``WorklistItems.lookup``."""

    def __init__(self, mode, lookup, columns):
        self.mode = mode
        self.lookup = lookup
        self.addable = topLevelTags(columns)

    def amend(self, attrs, data, transferSyntax):
        accessionNumber = attrs.get(ACCESSION_NUMBER, "")
        item = self.lookup(accessionNumber) if accessionNumber else None
        if item is None:
            if self.mode == 2:
                raise WorklistRefusal(f"Accession Number {accessionNumber!r} is not in the worklist "
                                      "(WorkListMode = 2)")
            return None
        dataset = decodeDataset(data, transferSyntax)
        changes = {}
        for tag, value in item.items():
            if tag in dataset or tag in self.addable:
                element = dataset.get(tag)
                if element is None or str(element.value or "") != value:
                    changes[tag] = value
        if not changes:
            return None
        current = dataset.get("SpecificCharacterSet", "")
        current = current if isinstance(current, str) else "\\".join(current)
        texts = [v for t, v in changes.items() if _vr(t) in TEXT_VRS]
        kept = [textOf(element) for item, element in walkElements(dataset)
                if element.VR in TEXT_VRS and not (item is dataset and element.tag in changes)]
        characterSet = responseCharacterSet(current, texts + kept)
        if characterSet != current and (current or not all(t.isascii() for t in texts)):
            dataset.add_new(SPECIFIC_CHARACTER_SET, "CS", characterSet)
        for tag, value in changes.items():
            if tag in dataset:
                dataset[tag].value = value
            else:
                dataset.add_new(tag, _vr(tag), value)
        return encodeDataset(dataset, transferSyntax)


def _vr(tag):
    vr = dictionary_VR(tag)
    return vr.split(" or ")[0]

