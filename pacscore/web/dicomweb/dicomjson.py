"""DICOM JSON (PS3.18 annex F) answers: data sets as pydicom writes them
(attributes it cannot write left out), every answer readable by viewers
served from elsewhere (``Access-Control-Allow-Origin: *``)."""

import base64
import json

from pacscore.web.answers import Answer

DICOM_JSON = "application/dicom+json"
ANY_ORIGIN = ("Access-Control-Allow-Origin", "*")


def jsonDataset(dataset, bulkDataURI=None):
    """The DICOM JSON object of ``dataset``; binary values longer than 1 KB
    become ``bulkDataURI(element)``, or stay inline where it gives None
    (and everywhere without it)."""
    if bulkDataURI is None:
        return dataset.to_json_dict(bulk_data_threshold=1 << 62, suppress_invalid_tags=True)
    inline = {}

    def handler(element):
        uri = bulkDataURI(element)
        if uri is None:
            uri = f"\0inline {len(inline)}"
            inline[uri] = element
        return uri
    found = dataset.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=handler,
                                 suppress_invalid_tags=True)
    if inline:
        _inlined(found, inline)
    return found


def _inlined(value, inline):
    """Turn the ``BulkDataURI``s that are keys of ``inline`` back into
    ``InlineBinary`` values, anywhere in the JSON ``value``."""
    if isinstance(value, dict):
        element = inline.get(value.get("BulkDataURI"))
        if element is not None:
            del value["BulkDataURI"]
            value["InlineBinary"] = base64.b64encode(element.value).decode("ascii")
        for inner in value.values():
            _inlined(inner, inline)
    elif isinstance(value, list):
        for inner in value:
            _inlined(inner, inline)


def jsonBytes(value):
    """The JSON text of ``value`` (DICOM JSON objects), encoded; made in a
    worker thread for long answers."""
    return json.dumps(value).encode("utf-8")


def jsonAnswer(body, headers=(), status=200):
    """An Answer with the encoded DICOM JSON ``body``."""
    return Answer(body, DICOM_JSON, (ANY_ORIGIN, *headers), status)
