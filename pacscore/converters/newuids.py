"""The ``newuids`` converter command (manual 7.2): anonymize every UID.

Every UI value anywhere in the data set (Study, Series and SOP Instance
UIDs, Frame of Reference, the referenced instances in sequences, private
UIDs ...) is replaced through the archive's ``UIDMap``, so one original
UID gives the same new UID in every object.  Kept as they are: standard
UIDs (``1.2.840.10008.``...), the elements naming classes, transfer
syntaxes and coding schemes (``CLASS_TAGS``), and with ``newuids except
gggg,eeee ... UID ...`` the listed elements and literal UIDs.  The file
meta's Media Storage SOP Instance UID follows the new SOP Instance UID.
"""

import re
from typing import NamedTuple

from pydicom.datadict import tag_for_keyword
from pydicom.multival import MultiValue

from pacscore.converters.command import Command
from pacscore.converters.context import ConverterSyntaxError, Outcome
from pacscore.converters.dataset import parseTagArgument
from pacscore.converters.elements import walkElements
from pacscore.converters.uidmap import uidMapOf

STANDARD_PREFIX = "1.2.840.10008."
CLASS_TAGS = frozenset(tag_for_keyword(keyword) for keyword in (
    "SOPClassUID", "ReferencedSOPClassUID", "RelatedGeneralSOPClassUID",
    "OriginalSpecializedSOPClassUID", "SOPClassesInStudy", "ReferencedSOPClassUIDInFile",
    "ReferencedTransferSyntaxUIDInFile", "MediaStorageSOPClassUID", "TransferSyntaxUID",
    "ImplementationClassUID", "PrivateInformationCreatorUID", "CodingSchemeUID",
    "ContextGroupExtensionCreatorUID", "ContextUID", "MappingResourceUID"))
SOP_INSTANCE_UID = tag_for_keyword("SOPInstanceUID")

_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")


class Exceptions(NamedTuple):
    """What ``newuids except ...`` keeps."""

    tags: frozenset
    uids: frozenset


def parseExceptions(arguments, where):
    """``except gggg,eeee 1.2.3 ...`` (or nothing) -> ``Exceptions``."""
    words = arguments.split()
    if not words:
        return Exceptions(frozenset(), frozenset())
    if words[0].lower() != "except" or len(words) < 2:
        raise ConverterSyntaxError(f"{where}: expected 'newuids' or "
                                   f"'newuids except gggg,eeee ... UID ...', got {arguments!r}")
    tags, uids = set(), set()
    for word in words[1:]:
        if "," in word:
            tags.add(parseTagArgument(word, where))
        elif _UID.fullmatch(word):
            uids.add(word)
        else:
            raise ConverterSyntaxError(f"{where}: {word!r} is neither a tag gggg,eeee nor a UID")
    return Exceptions(frozenset(tags), frozenset(uids))


NO_EXCEPTIONS = Exceptions(frozenset(), frozenset())


def replaceUIDs(dataset, uidMap, exceptions=NO_EXCEPTIONS):
    """Replace the UIDs of ``dataset`` in place; True when any changed."""
    changed = False
    for element in _uidElements(dataset, exceptions):
        values = element.value
        many = isinstance(values, (list, MultiValue))
        new = [_newUID(uid, uidMap, exceptions, element.keyword) for uid in (values if many else [values])]
        if new != (list(values) if many else [values]):
            element.value = new if many else new[0]
            changed = True
    meta = getattr(dataset, "file_meta", None)
    if changed and meta is not None and "MediaStorageSOPInstanceUID" in meta and SOP_INSTANCE_UID in dataset:
        meta.MediaStorageSOPInstanceUID = dataset[SOP_INSTANCE_UID].value
    return changed


def uidsOf(dataset):
    """The set of UIDs ``replaceUIDs`` would replace in ``dataset``, as
    they are now (to tell the ones a script then made)."""
    found = set()
    for element in _uidElements(dataset, NO_EXCEPTIONS):
        values = element.value
        found.update(str(uid) for uid in (values if isinstance(values, (list, MultiValue)) else [values]) if uid)
    return found


def _uidElements(dataset, exceptions):
    """The UI elements of ``dataset`` (in sequence items too) whose UIDs
    ``replaceUIDs`` replaces."""
    return [element for _, element in walkElements(dataset)
            if element.VR == "UI" and element.tag not in CLASS_TAGS and element.tag not in exceptions.tags]


def _newUID(uid, uidMap, exceptions, keyword):
    if not uid or uid.startswith(STANDARD_PREFIX) or uid in exceptions.uids:
        return uid
    return uidMap.uidFor(uid, keyword)


class NewUIDsCommand(Command):
    """``newuids`` / ``newuids except gggg,eeee ... UID ...``."""

    name = "newuids"
    scope = "I"

    def parse(self, arguments, where):
        return parseExceptions(arguments, where)

    def run(self, arguments, context):
        if replaceUIDs(context.dataset, uidMapOf(context.services), arguments):
            context.changed = True
        return Outcome.CONTINUE
