"""STOW-RS (PS3.18 section 10.5): ``POST /studies`` (or
``/studies/{study}``, whose objects must belong to that study) with a
``multipart/related; type="application/dicom"`` body of Part-10 objects
(their file meta with or without the preamble and DICM).

Each part is known by its data set's SOP Class and Instance UIDs, not by
a stale file meta's (``_identity``), and stored as a C-STORE data set is
(``StorageService``), when the DICOM service would take a C-STORE of its
SOP class in its transfer syntax (dgatesop.lst, as the association's
negotiation reads it): import converters, IncomingCompression, the file
on disk and its index row committed before the answer says it is stored;
the calling AE converters see is the name of the ``WebUsers`` user who
logged in.  The body, which twisted.web keeps in a temporary file when it
is large, is read part by part in 1 MB pieces, no faster than the spool
writes them.  The answer is Conquest-independent DICOM JSON
(``application/json`` when the Accept header prefers it, DICOM XML for
``application/dicom+xml``, also as ``multipart/related``, as Orthanc
answers; DICOM JSON when it takes none of them, RFC 9110 12.5.1, so that
the objects are stored all the same): the Referenced SOP Sequence of the
stored objects (with their RetrieveURL), the Failed SOP Sequence (with a
C-STORE failure status as Failure Reason) and the study's RetrieveURL;
200 when all were stored, 202 when some, 409 when none.  A body of more
than ``DICOMwebMaxParts`` parts is refused whole (413), none stored, and
only the first refused parts are logged one by one (``Outcome``).
``DICOMwebStore = 0`` in dicom.ini refuses every STOW-RS request (403),
and ``WebWriters``, when it lists users, those of the others.  Without
``WebUsers`` a browser's request from a page of another site is refused
(403: it could plant objects through any visitor inside the network);
with logins, a viewer served elsewhere stores with its user's.
"""

from pydicom.dataset import Dataset

from pacscore.db.query import SERIES_INSTANCE_UID, SOP_CLASS_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID
from pacscore.dicom.commands import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH, SOP_CLASS_NOT_SUPPORTED
from pacscore.dicom.storage import SUCCESS, StorageService
from pacscore.storage.attributes import DatasetError, readAttributes
from pacscore.storage.part10 import readFileMeta
from pacscore.storage.spool import spooledFrom
from pacscore.storage.store import IncomingObject
from pacscore.web.answers import Answer, WebError
from pacscore.web.crossorigin import refuseCrossOrigin
from pacscore.web.dicomweb import multipart
from pacscore.web.dicomweb.dicomjson import DICOM_JSON, JSON_TYPES, jsonBytes, jsonDataset
from pacscore.web.dicomweb.dicomxml import DICOM_XML, xmlBytes
from pacscore.web.dicomweb.search import RETRIEVE_URL
from pacscore.web.logins import callingAE, writerRefusal

DICOM = "application/dicom"
HEAD = 1 << 16
MEDIA_SOP_CLASS = 0x00020002
MEDIA_SOP_INSTANCE = 0x00020003
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
FAILED_SOP_SEQUENCE = 0x00081198
REFERENCED_SOP_SEQUENCE = 0x00081199
FAILURE_REASON = 0x00081197
ANSWER_TYPES = (*JSON_TYPES, DICOM_XML)
DEFAULT_MAX_PARTS = 10000  # DICOMwebMaxParts
LOGGED_REFUSALS = 10  # refused parts of a body logged one by one
# The data set's SOP Class and Instance UIDs, and the file meta's that name them when it has none.
_NAMED_BY = {SOP_CLASS_UID: MEDIA_SOP_CLASS, SOP_INSTANCE_UID: MEDIA_SOP_INSTANCE}


def storageOf(archive):
    """The StorageService that stores parts in ``archive`` as C-STOREs are
    (the virtual servers told of each, ``OwnRetrieves.storing``)."""
    return StorageService(archive.objectStore, archive.storageFailedStatus, archive.counters,
                          archive.incomingCompression, ownRetrieves=archive.ownRetrieves)


def storagePolicy(archive):
    """The AcceptorPolicy that C-STOREs are negotiated by: the DICOM
    service's (dgatesop.lst as last applied), else one read from it."""
    factory = archive.dicomServerFactory
    return factory.policy if factory is not None else archive.acceptorPolicy()


def _refusal(policy, sopClass, syntax):
    """``(status, why)`` when a C-STORE of ``sopClass`` in ``syntax``
    would not be negotiated under ``policy``; None when it would."""
    if not policy.storesClass(sopClass):
        return SOP_CLASS_NOT_SUPPORTED, f"its SOP class {sopClass} is not a storage class dgatesop.lst lists"
    if not policy.takesSyntax(syntax):
        return TRANSFER_SYNTAX_NOT_SUPPORTED, f"its transfer syntax {syntax} is not one dgatesop.lst lists"
    return None


def stowRefusal(ini, user):
    """Why the WebUsers ``user`` (None: no login) may not store over
    DICOMweb by dicom.ini's ``ini``, or None when they may."""
    if ini.getint("DICOMwebStore", 1) == 0:
        return "storing over DICOMweb is off (DICOMwebStore = 0)"
    return writerRefusal(ini, user, "store over DICOMweb")


def maxParts(ini):
    """``DICOMwebMaxParts``: the most parts a STOW-RS body may have (0: any number)."""
    return max(ini.getint("DICOMwebMaxParts", DEFAULT_MAX_PARTS), 0)


def answerType(request):
    """The media type of the answer: the first of ``ANSWER_TYPES`` the
    Accept header takes, else DICOM JSON."""
    return multipart.preferredType(request, ANSWER_TYPES) or DICOM_JSON


class Outcome:
    """What became of the parts: their references, the failures of those
    that name an object (the Failed SOP Sequence's items need its UIDs)
    and how many were refused (``refused``).  The refusals ``failure``
    logs on ``log`` are the first LOGGED_REFUSALS, and ``logUnlogged``
    counts the rest in one line: a body of a million tiny parts is no
    million lines."""

    def __init__(self, base, log):
        self.base = base
        self.log = log
        self.stored = []
        self.failed = []
        self.studies = set()
        self.refused = 0

    def failure(self, sopClass, sop, status, why=None, /, **fields):
        """A part refused with ``status``; ``why`` (a log format of
        ``fields``), when given, is logged."""
        if why is not None and self.refused < LOGGED_REFUSALS:
            self.log.warn(why, **fields)
        self.refused += 1
        if not sop:
            return
        item = Dataset()
        item.ReferencedSOPClassUID = sopClass
        item.ReferencedSOPInstanceUID = sop
        item.add_new(FAILURE_REASON, "US", status)
        self.failed.append(item)

    def logUnlogged(self):
        """Log how many parts were refused past the first LOGGED_REFUSALS."""
        if self.refused > LOGGED_REFUSALS:
            self.log.warn("STOW-RS: {count} more parts refused, not logged one by one",
                          count=self.refused - LOGGED_REFUSALS)

    def success(self, sopClass, sop, study, series):
        item = Dataset()
        item.ReferencedSOPClassUID = sopClass
        item.ReferencedSOPInstanceUID = sop
        item.add_new(RETRIEVE_URL, "UR", f"{self.base}/studies/{study}/series/{series}/instances/{sop}")
        self.stored.append(item)
        self.studies.add(study)

    def answer(self, kind):
        """The Answer, in the media type ``kind`` (one of ``ANSWER_TYPES``)."""
        dataset = Dataset()
        if len(self.studies) == 1:
            dataset.add_new(RETRIEVE_URL, "UR", f"{self.base}/studies/{next(iter(self.studies))}")
        if self.failed:
            dataset.add_new(FAILED_SOP_SEQUENCE, "SQ", self.failed)
        if self.stored:
            dataset.add_new(REFERENCED_SOP_SEQUENCE, "SQ", self.stored)
        status = 200 if not self.refused else 202 if self.stored else 409
        found = jsonDataset(dataset)
        return Answer(xmlBytes(found) if kind == DICOM_XML else jsonBytes(found), kind, status=status)


class UnreadableDataset(DatasetError):
    """A part whose file meta reads but whose data set does not: ``meta``
    still names the object in the answer's Failed SOP Sequence."""

    def __init__(self, meta, error):
        super().__init__(str(error))
        self.meta = meta


def _partObject(body, part):
    """In the I/O pool: ``(transfer syntax, meta, data set offset, {tag:
    value})`` of the Part-10 object in a part, with its study and series
    UIDs; its file meta may come without the preamble and DICM (as pydicom
    writes a data set in memory).  A part without file meta is refused,
    named by the SOP Class and Instance UIDs of its data set when they read."""
    view = multipart.PartFile(body, part.start, part.end)
    syntax, meta, offset = readFileMeta(view)
    view.seek(offset)
    try:
        attributes = readAttributes(view, syntax, {STUDY_INSTANCE_UID, SERIES_INSTANCE_UID} | set(_NAMED_BY))
    except DatasetError as e:
        raise UnreadableDataset(meta, e) from e
    if not meta:
        named = {metaTag: attributes[tag] for tag, metaTag in _NAMED_BY.items() if tag in attributes}
        raise UnreadableDataset(named, "not a DICOM Part-10 file (no file meta)")
    return syntax, meta, offset, attributes


def _identity(storage, meta, attributes):
    """``(SOP Class UID, SOP Instance UID)`` of a part: its data set's, as
    storescu puts them in the command and Orthanc stores them (the meta's
    where it has none); a file meta that names others (not updated after
    an edit or anonymisation: it is rewritten when stored) with a log line
    saying which the part is taken for (it may still be refused)."""
    named = tuple(attributes.get(tag) or meta.get(metaTag, "") for tag, metaTag in _NAMED_BY.items())
    stale = tuple(meta.get(metaTag, "") for metaTag in _NAMED_BY.values())
    if stale != named:
        storage.log.warn("STOW-RS: a part whose file meta names SOP Class {metaClass} and Instance {metaSop} is taken "
                         "as SOP Class {sopClass} and Instance {sop}, its data set's (the meta's where it has none)",
                         metaClass=stale[0], metaSop=stale[1], sopClass=named[0], sop=named[1])
    return named


async def storePart(archive, storage, body, part, rootType, study, outcome, callingAE="", converters=True):
    """Store one part of the multipart ``body`` (an open file) as a C-STORE
    from ``callingAE`` would be (without the import and export converters
    unless ``converters``), when it belongs to ``study`` (any: "");
    its outcome noted in ``outcome``."""
    kind = multipart.mediaType(part.headers.get("content-type", rootType)).name
    if kind != DICOM:
        return outcome.failure("", "", CANNOT_UNDERSTAND,
                               "STOW-RS: a part of type {kind!r} refused: only application/dicom is stored", kind=kind)
    try:
        syntax, meta, offset, attributes = await archive.workers.deferToWorker(_partObject, body, part)
    except DatasetError as e:
        meta = getattr(e, "meta", {})
        return outcome.failure(meta.get(MEDIA_SOP_CLASS, ""), meta.get(MEDIA_SOP_INSTANCE, ""), CANNOT_UNDERSTAND,
                               "STOW-RS: a part refused: {error}", error=e)
    sopClass, sop = _identity(storage, meta, attributes)
    partStudy, series = attributes.get(STUDY_INSTANCE_UID, ""), attributes.get(SERIES_INSTANCE_UID, "")
    if study and partStudy != study:
        return outcome.failure(sopClass, sop, DATASET_DOES_NOT_MATCH, "STOW-RS: {sop} refused: its study {study} is "
                               "not {target}", sop=sop, study=partStudy, target=study)
    refusal = _refusal(storagePolicy(archive), sopClass, syntax)
    if refusal is not None:
        return outcome.failure(sopClass, sop, refusal[0], "STOW-RS: {sop} refused: {why}", sop=sop, why=refusal[1])
    incoming = IncomingObject(sopClassUID=sopClass, sopInstanceUID=sop, transferSyntax=syntax, callingAE=callingAE,
                              calledAE=archive.aeTitle, compression=archive.incomingCompression, converters=converters)
    spool = await spooledFrom(archive.objectStore, incoming, body, part.start + offset, part.end,
                              archive.workers.deferToWorker)
    status, _ = await storage.storeIncoming(incoming, spool, "an empty part")
    if status != SUCCESS:
        return outcome.failure(sopClass, sop, status)
    outcome.success(sopClass, sop, partStudy, series)


async def storeInstances(archive, request, target, base):
    """The STOW-RS answer to a POSTed multipart body."""
    user = getattr(request, "webUser", None)
    refusal = stowRefusal(archive.configuration.ini, user)
    if refusal is not None:
        raise WebError(403, refusal)
    if user is None:  # no login to prove who stores: not for a page of another site (CSRF)
        refuseCrossOrigin(request)
    kind = answerType(request)
    contentType = multipart.mediaType((request.getHeader(b"content-type") or b"").decode("latin-1"))
    rootType = contentType.get("type", DICOM).lower()
    if contentType.name != "multipart/related" or rootType != DICOM:
        raise WebError(415, "pacs stores multipart/related; type=\"application/dicom\" bodies "
                            "(DICOM JSON and XML with bulk data are not taken)")
    boundary = contentType.get("boundary")
    if not boundary:
        raise WebError(400, "the Content-Type has no boundary")
    body = request.content
    most = maxParts(archive.configuration.ini)
    try:
        parts = await archive.workers.deferToWorker(multipart.splitParts, body, boundary, most)
    except multipart.TooManyParts as e:
        raise WebError(413, f"{e} (DICOMwebMaxParts); store them in several requests") from e
    except ValueError as e:
        raise WebError(400, f"the body is not multipart/related: {e}") from e
    if not parts:
        raise WebError(400, "the body has no parts")
    storage = storageOf(archive)
    outcome = Outcome(base, storage.log)
    for part in parts:
        await storePart(archive, storage, body, part, rootType, target.study, outcome, callingAE(request))
    outcome.logUnlogged()
    return outcome.answer(kind)
