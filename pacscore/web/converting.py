"""The query converters of dicom.ini applied to the web's searches, as to a
C-FIND: ``QueryConverter0`` to the keys (as an identifier; ``%u`` the
WebUsers login, else empty; ``reject`` is a 403, ``destroy`` no match,
``virtualserver N`` the virtual servers asked) and ``QueryResultConverter0``
to each match.  Used by QIDO-RS (pacscore.web.dicomweb.search) and the
browse pages (pacscore.web.browse).
"""

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from twisted.internet import threads

from pacscore.codecs.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN
from pacscore.dicom.datasets import encodeDataset
from pacscore.dicom.find import DESTROYED, RequestRejected, convertRequest, readIdentifier, resultFilterFor
from pacscore.dicom.identifiers import BadIdentifier, findIdentifier
from pacscore.web.answers import WebError


async def convertedKeys(archive, caller, level, keys):
    """``(keys, virtual server mask)`` after QueryConverter0 (``%u`` the
    calling AE ``caller``), or None when its line said ``destroy``;
    WebError 403 when it said ``reject``.  A key read back asks for Empty
    Value Matching only where ``keys`` did (a search's ``""`` is otherwise
    matched as written)."""
    hook = archive.converterHooks.get("QueryConverter0")
    if hook is None:
        return keys, None
    identifier = findIdentifier(level, keys)
    identifier.SpecificCharacterSet = "ISO_IR 192"
    syntax = EXPLICIT_VR_LITTLE_ENDIAN
    try:
        data = await convertRequest(hook, archive.reactor, encodeDataset(identifier, syntax), syntax,
                                    caller, archive.aeTitle)
        if data is DESTROYED:
            return None
        _, request, mask, _ = await threads.deferToThreadPool(archive.reactor, archive.reactor.getThreadPool(),
                                                           readIdentifier, data, syntax, (level,))
        asked = {key.tag for key in keys if key.emptyValueMatching}
        return [key._replace(emptyValueMatching=key.emptyValueMatching and key.tag in asked)
                for key in request.keys], mask
    except RequestRejected as e:
        raise WebError(403, f"the search was {e}") from e
    except BadIdentifier as e:
        raise WebError(400, f"the search after {hook.script.key}: {e}") from e


def resultFilter(archive, caller):
    """``keep(dataset)`` of QueryResultConverter0 for the calling AE ``caller``, or None."""
    return resultFilterFor(archive.converterHooks.get("QueryResultConverter0"), caller, archive.aeTitle)


def keptRows(rows, keys, keep):
    """In a reader thread: the ``{tag: value}`` rows that ``keep``
    (``resultFilter``) keeps, with the values its line changed; ``keys``
    give the VRs."""
    if keep is None:
        return rows
    vrs = {key.tag: key.vr for key in keys}
    kept = []
    for row in rows:
        dataset = Dataset()
        for tag, value in row.items():
            if tag in vrs and vrs[tag] != "SQ":
                dataset.add_new(tag, vrs[tag], value)
        if keep(dataset):
            kept.append({tag: _text(dataset, tag) if tag in vrs else value for tag, value in row.items()})
    return kept


def _text(dataset, tag):
    """The value of ``tag`` in ``dataset`` as the index gives it (values joined by ``\\``)."""
    value = dataset[tag].value if tag in dataset else None
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(item) for item in value)
    return str(value)

