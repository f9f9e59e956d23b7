"""DICOM JSON (PS3.18 annex F) answers: data sets as pydicom writes them
(attributes it cannot write left out), every answer readable by viewers
served from elsewhere (``Access-Control-Allow-Origin: *``)."""

import json

from pacscore.web.answers import Answer

DICOM_JSON = "application/dicom+json"
ANY_ORIGIN = ("Access-Control-Allow-Origin", "*")


def jsonDataset(dataset, bulkDataURI=None):
    """The DICOM JSON object of ``dataset``; binary values longer than 1 KB
    become ``bulkDataURI(element)`` (None: inline)."""
    if bulkDataURI is None:
        return dataset.to_json_dict(bulk_data_threshold=1 << 62, suppress_invalid_tags=True)
    return dataset.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=bulkDataURI,
                                suppress_invalid_tags=True)


def jsonBytes(value):
    """The JSON text of ``value`` (DICOM JSON objects), encoded; made in a
    worker thread for long answers."""
    return json.dumps(value).encode("utf-8")


def jsonAnswer(body, headers=(), status=200):
    """An Answer with the encoded DICOM JSON ``body``."""
    return Answer(body, DICOM_JSON, (ANY_ORIGIN, *headers), status)
