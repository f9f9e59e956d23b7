"""DICOM XML (PS3.19 A.1, the Native DICOM Model) for the answers of
STOW-RS, QIDO-RS and WADO-RS metadata to clients that ask for
``application/dicom+xml`` (``metadataform``): made from the DICOM JSON
object of the answer's data set (``dicomjson.jsonDataset``), each
attribute a ``DicomAttribute`` (tag, VR, keyword) holding numbered
``Value``s, ``Item``s of a sequence or ``PersonName``s, or its binary
value as ``InlineBinary`` (base64) or a ``BulkData`` uri."""

import re
from xml.etree import ElementTree

from pydicom.datadict import keyword_for_tag

DICOM_XML = "application/dicom+xml"
NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
PERSON_NAME_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xmlBytes(found):
    """The encoded NativeDicomModel document of the DICOM JSON object
    ``found``; a carriage return of a text (a report's CR LF) written
    ``&#13;``, as a parser would read it raw as a line feed (XML 1.0 2.11,
    end-of-line handling) and ElementTree does not escape it in text (a
    raw one comes from nothing else: it escapes attributes')."""
    root = ElementTree.Element("NativeDicomModel", xmlns=NAMESPACE)
    _addAttributes(root, found)
    return ElementTree.tostring(root, encoding="UTF-8", xml_declaration=True).replace(b"\r", b"&#13;")


def _addAttributes(parent, found):
    for tag, attribute in found.items():
        element = ElementTree.SubElement(parent, "DicomAttribute", tag=tag, vr=attribute["vr"])
        keyword = keyword_for_tag(int(tag, 16))
        if keyword:
            element.set("keyword", keyword)
        for number, value in enumerate(attribute.get("Value", ()), 1):
            if value is not None:
                _addValue(element, attribute["vr"], str(number), value)
        if "InlineBinary" in attribute:
            ElementTree.SubElement(element, "InlineBinary").text = attribute["InlineBinary"]
        if "BulkDataURI" in attribute:
            ElementTree.SubElement(element, "BulkData", uri=attribute["BulkDataURI"])


def _addValue(element, vr, number, value):
    """Value ``number`` of an attribute: an Item of a sequence, a
    PersonName with its component groups, else a Value's text."""
    if vr == "SQ":
        _addAttributes(ElementTree.SubElement(element, "Item", number=number), value)
    elif vr == "PN":
        name = ElementTree.SubElement(element, "PersonName", number=number)
        for group, text in value.items():
            groupElement = ElementTree.SubElement(name, group)
            for component, part in zip(PERSON_NAME_COMPONENTS, text.split("^")):
                if part:
                    ElementTree.SubElement(groupElement, component).text = _xmlText(part)
    else:
        ElementTree.SubElement(element, "Value", number=number).text = _xmlText(str(value))


def _xmlText(text):
    """``text`` with the control characters XML 1.0 cannot hold (stored
    values may have them, DICOM JSON escapes them) as U+FFFD, so that the
    document stays well formed."""
    return _NOT_XML.sub("\ufffd", text)
