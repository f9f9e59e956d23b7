"""The media type of DICOM metadata answers, QIDO-RS matches and WADO-RS
``metadata`` (PS3.18 8.7.3, Table 8.7.3-2): DICOM JSON, the default
(``application/dicom+json``, or ``application/json`` when asked for), or
DICOM XML, ``multipart/related; type="application/dicom+xml"`` with one
``application/dicom+xml`` part (the Native DICOM Model of PS3.19 A.1,
``dicomxml``) per match or instance, made from its DICOM JSON;
``application/dicom+xml`` alone is taken for it too, as Orthanc takes it.
A search without a match is ``[]`` in DICOM JSON, a 204 No Content in
DICOM XML (a multipart holds at least one part, RFC 2046 5.1.1; PS3.18
8.3.4.4.1 answers a search without match so)."""

import json

from pacscore.web.answers import Answer, WebError
from pacscore.web.dicomweb import multipart
from pacscore.web.dicomweb.dicomjson import JSON_TYPES, jsonBytes
from pacscore.web.dicomweb.dicomxml import DICOM_XML, xmlBytes

METADATA_TYPES = (*JSON_TYPES, DICOM_XML)


class MetadataForm:
    """How an answer of DICOM JSON objects is written in the media type
    ``kind`` (one of METADATA_TYPES): ``whole`` of a list of them, or
    ``opening``, ``separator`` and ``closing`` around ``encoded`` ones."""

    def __init__(self, kind):
        self.xml = kind == DICOM_XML
        self.boundary = multipart.newBoundary() if self.xml else None
        self.contentType = multipart.multipartType(self.boundary, DICOM_XML) if self.xml else kind
        self.opening, self.separator = (b"", b"") if self.xml else (b"[", b",")

    @property
    def closing(self):
        return multipart.closing(self.boundary) if self.xml else b"]"

    def encoded(self, found):
        """The DICOM JSON object ``found`` as it goes in the answer."""
        if not self.xml:
            return jsonBytes(found)
        return multipart.partHeader(self.boundary, DICOM_XML) + xmlBytes(found) + multipart.CRLF

    def fromJSON(self, text):
        """The encoded DICOM JSON object ``text`` (a cached one) as it goes in the answer."""
        return self.encoded(json.loads(text)) if self.xml else text

    def whole(self, objects):
        """The answer of the DICOM JSON ``objects``; None in DICOM XML when
        there are none (no multipart to write: ``answer``)."""
        parts = [self.encoded(found) for found in objects]
        if self.xml and not parts:
            return None
        return self.opening + self.separator.join(parts) + self.closing

    def answer(self, body, headers=()):
        """The Answer of a search whose answer is ``body`` (``whole``'s): a
        204 No Content, with ``headers`` and no Content-Type (there is no
        multipart), for None."""
        if body is None:
            return Answer(b"", None, headers, 204)
        return Answer(body, self.contentType, headers)


def metadataForm(request):
    """The MetadataForm of the media type the request's Accept takes; a
    406 when it takes none."""
    kind = multipart.preferredType(request, METADATA_TYPES)
    if kind is None:
        raise WebError(406, f"pacs answers this as {' or '.join(JSON_TYPES)}, or as multipart/related; "
                            f"type=\"{DICOM_XML}\"")
    return MetadataForm(kind)
