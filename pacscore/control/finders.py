"""The finders and listers of the control port (manual appendix 6,
"Database options"): ``patientfinder``, ``studyfinder``, ``seriesfinder``,
``serieslister``, ``imagelister``, and Conquest's later ``imagefinder`` and
``imagefilelister``.

The server argument picks where to look: empty, ``(local)``, ``local`` or
our own AE title is this archive's index (``IndexQuery.find`` in a reader thread);
any other AE of acrnema.map gets C-FINDs through our DICOM client (Patient
Root at PATIENT level, Study Root below).  A finder lists the entities one
of whose searched attributes contains the text (case-insensitively: a
``*text*`` wildcard on each, the answers merged), and the studyfinder and
seriesfinder also those whose date is in a text that is a date (as the
manual's web pages say): ``yyyy``, ``yyyymm``, ``yyyymmdd``,
``yyyymmdd-yyyymmdd``, ``-yyyymmdd`` or ``yyyymmdd-`` in ASCII digits, a
``yyyy`` from 1901 to 2199, a ``yyyymm`` from 190001 to 219912, each
``yyyymmdd`` a real day from 1900 to 2199 (as Conquest's PatientStudyFinder
takes them: ``-12345678`` or ``0000`` is only searched as text); those whose study or series UID is a text that is
a UID; for ``=text``, as Conquest's web pages chain the finders (the
studyfinder given ``=PatientID``, the seriesfinder ``=StudyInstanceUID``),
those whose patient ID, study or series UID is that text exactly (a
``*`` or ``?`` in it as itself: another archive, which a C-FIND cannot ask
so, gets it as a wildcard and only its answers holding the text are kept);
an empty text lists all; the listers' study and series UIDs must be UIDs (digits and dots).
Each entity is one row formatted with ``fmt`` (its values tab-separated
without one), to ``file`` or the output.  The values, in order (the
listers', given a ``fmt``, are Conquest's instead: see ``SeriesLister`` and
``ImageLister``):

- patientfinder: PatientID, PatientName, PatientBirthDate, PatientSex
  (searched: PatientID, PatientName);
- studyfinder: PatientID, PatientName, StudyDate, ModalitiesInStudy,
  StudyDescription, StudyInstanceUID (searched: PatientID, PatientName,
  StudyDescription);
- seriesfinder: PatientID, PatientName, SeriesDate, Modality,
  SeriesDescription, StudyInstanceUID, SeriesInstanceUID (searched:
  PatientID, PatientName, SeriesDescription);
- imagefinder: PatientID, PatientName, StudyInstanceUID,
  SeriesInstanceUID, SOPInstanceUID, InstanceNumber, SliceLocation
  (searched: PatientID; ``=UID`` the images of that series, or of that
  study or patient ID);
- serieslister (the series of a study), without a ``fmt``:
  SeriesInstanceUID, SeriesNumber, Modality, SeriesDescription, SeriesDate,
  StudyInstanceUID, PatientID;
- imagelister (the images of a series), without a ``fmt``: locally the
  file as ``MAG0:relative/path``, SOPInstanceUID, SOPClassUID; remotely
  SOPInstanceUID, InstanceNumber, SOPClassUID.
"""

import calendar
import re

from pydicom.multival import MultiValue
from twisted.internet import defer
from twisted.logger import Logger

from pacscore.codecs.syntaxes import UNCOMPRESSED
from pacscore.control.arguments import ControlCommand
from pacscore.control.context import CommandError, Format
from pacscore.control.output import UrlReady, deliverRows, pipeFields
from pacscore.control.stored import exactValue, isLocal, storedName, uidValue
from pacscore.db.query import (
    PATIENT_ID, SERIES_INSTANCE_UID, SOP_CLASS_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, QueryKey, exactKey,
    numberKey)
from pacscore.dicom.client import associate, nodeEndpoint
from pacscore.dicom.datetimes import isSearchDate
from pacscore.dicom.find import CANCELLED
from pacscore.dicom.identifiers import findIdentifier
from pacscore.dicom.models import PATIENT_ROOT_FIND, STUDY_ROOT_FIND
from pacscore.dicom.uids import isUID
from pacscore.hostport import hostPort
from pacscore.storage.filenames import atoi

SUCCESS = 0x0000
PATIENT_NAME = (0x00100010, "PN")
PATIENT = (PATIENT_ID, "LO")
BIRTH_DATE = (0x00100030, "DA")
SEX = (0x00100040, "CS")
STUDY_DATE = (0x00080020, "DA")
MODALITIES = (0x00080061, "CS")
STUDY_DESCRIPTION = (0x00081030, "LO")
STUDY = (STUDY_INSTANCE_UID, "UI")
SERIES_DATE = (0x00080021, "DA")
MODALITY = (0x00080060, "CS")
SERIES_DESCRIPTION = (0x0008103E, "LO")
SERIES_NUMBER = (0x00200011, "IS")
SERIES = (SERIES_INSTANCE_UID, "UI")
SOP = (SOP_INSTANCE_UID, "UI")
SOP_CLASS = (SOP_CLASS_UID, "UI")
INSTANCE_NUMBER = (0x00200013, "IS")
FRAMES = (0x00280008, "IS")
SLICE_LOCATION = (0x00201041, "DS")
UNIQUE = {"PATIENT": PATIENT_ID, "STUDY": STUDY_INSTANCE_UID, "SERIES": SERIES_INSTANCE_UID,
          "IMAGE": SOP_INSTANCE_UID}
DATES = {"STUDY": STUDY_DATE[0], "SERIES": SERIES_DATE[0]}  # what a date-like text also searches
PATIENT_SEARCHED = (PATIENT_ID, PATIENT_NAME[0])  # the tags each finder's text is looked for in
STUDY_SEARCHED = (PATIENT_ID, PATIENT_NAME[0], STUDY_DESCRIPTION[0])
SERIES_SEARCHED = (PATIENT_ID, PATIENT_NAME[0], SERIES_DESCRIPTION[0])
IDENTIFIERS = (PATIENT_ID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID)  # what ``=text`` matches exactly
_DATE_TEXT = re.compile(r"([0-9]{4})([0-9]{2})?([0-9]{2})?(-[0-9]{8})?")
_DAYS = re.compile(r"[0-9]{8}")


def dateRange(text):
    """The DA range a finder's text stands for (``2004`` is all of 2004,
    ``200408`` all of August, ``20040826-20040901``, ``-20040901`` (up to
    that day) and ``20040826-`` (from that day) as they are), or None when
    it is no date: as Conquest's dgate takes them, ASCII digits only, a
    year from 1901 to 2199 (``atoi`` between 1900 and 2200), a month from
    190001 to 219912, a ``yyyymmdd`` a day ``isSearchDate``."""
    days = text.split("-")
    if len(days) == 2 and "" in days and _DAYS.fullmatch("".join(days)):
        return text if isSearchDate("".join(days)) else None
    match = _DATE_TEXT.fullmatch(text)
    if match is None or (match.group(4) and not match.group(3)):
        return None
    year, month, day, end = match.groups()
    if day:
        return text if all(isSearchDate(part) for part in days) else None
    if month:
        if not ("1900" <= year < "2200" and "01" <= month <= "12"):
            return None
        return f"{year}{month}01-{year}{month}{calendar.monthrange(int(year), int(month))[1]:02d}"
    return f"{year}0101-{year}1231" if "1900" < year < "2200" else None


class LocalIndex:
    """The archive's own index as a place to look."""

    def __init__(self, archive):
        self.archive = archive

    def find(self, level, keys, most=None):
        """Deferred of ``[{tag: value}]``, the first ``most`` (None: all)."""
        return self.archive.index.runQuery(self.archive.query.find, level, keys, most)

    def close(self):
        return defer.succeed(None)


class RemoteArchive:
    """An AE of acrnema.map asked with C-FINDs on one association; its
    matches are decoded in ``workers`` (the archive's I/O pool)."""

    log = Logger()

    def __init__(self, protocol, workers):
        self.protocol = protocol
        self.workers = workers

    @classmethod
    async def open(cls, archive, ae):
        node = archive.configuration.acrNemaMap.lookup(ae)
        if node is None:
            raise CommandError(f"{ae!r} is not in acrnema.map")
        contexts = [(PATIENT_ROOT_FIND, list(UNCOMPRESSED)), (STUDY_ROOT_FIND, list(UNCOMPRESSED))]
        try:
            protocol = await associate(archive.reactor, node.host, int(node.port), archive.aeTitle, node.ae,
                                       contexts, dimseTimeout=archive.idleTimeout,
                                       titleStyle=archive.titleStyle, endpoint=nodeEndpoint(archive.reactor, node))
        except Exception as e:
            raise CommandError(f"cannot associate with {node.ae} at {hostPort(node.host, node.port)}: {e}") from e
        return cls(protocol, archive.workers)

    async def find(self, level, keys, most=None):
        """``[{tag: value}]``: the matches of a C-FIND, the first ``most``
        (None: all; the C-FIND is cancelled once they came)."""
        identifier = findIdentifier(level, keys)
        tags = [key.tag for key in keys]
        model = PATIENT_ROOT_FIND if level == "PATIENT" else STUDY_ROOT_FIND
        try:
            status, matches = await self.protocol.findMatches(model, identifier, self.workers.deferToWorker, most=most)
        except Exception as e:
            raise CommandError(f"C-FIND on {self.protocol.association.calledAE} failed: {e}") from e
        if status != SUCCESS and not (status == CANCELLED and len(matches) == most):
            raise CommandError(f"C-FIND on {self.protocol.association.calledAE} ended with status 0x{status:04X}")
        return [{tag: _text(match.get(tag)) for tag in tags} for match in matches]

    def close(self):
        return self.protocol.release()


def _text(element):
    if element is None or element.value is None:
        return ""
    if isinstance(element.value, MultiValue):
        return "\\".join(str(value) for value in element.value)
    return str(element.value)


async def openSource(archive, server):
    """``LocalIndex`` or ``RemoteArchive`` for the server argument."""
    if isLocal(archive, server):
        return LocalIndex(archive)
    return await RemoteArchive.open(archive, server.strip())


class _Listing(ControlCommand):
    """``srv|...|fmt|file``: subclasses give ``rows(source, selection, fmt)``."""

    fieldCount = 4
    readOnly = True

    def run(self, arguments, context):
        server, *rest = pipeFields(arguments, self.fieldCount)
        *selection, fmt, path = rest
        return defer.ensureDeferred(self._list(context, server, selection, fmt, path))

    async def _list(self, context, server, selection, fmt, path):
        source = await openSource(context.archive, server)
        try:
            rows = await self.rows(source, selection, fmt)
        finally:
            await source.close()
        return await self.deliver(context, fmt, rows, path)

    def deliver(self, context, fmt, rows, path):
        return deliverRows(context, fmt, rows, path)


class BadSearch(CommandError):
    """A finder's text that cannot be searched for (the user's mistake,
    not the archive's)."""


async def findContaining(source, level, columns, searched, text, fixed=(), most=None, exact=None):
    """``[{tag: value}]`` of the ``columns`` ((tag, vr), ...) of the
    entities at ``level`` one of whose ``searched`` tags contains ``text``
    (all when it is empty), or whose study or series UID (``IDENTIFIERS``
    among the columns, not the patient ID) is ``text``, when that is a UID
    with a dot, or whose ID or UID, for ``=text``, is that text exactly
    (another archive is asked for it as a UID only when it is one: a C-FIND
    UI key holds a UID, no wildcard);
    each once, that also match the ``fixed`` keys and hold the values of
    ``exact`` ({tag: value}, a column's) exactly; the first ``most`` of
    them (None: all; no more are read)."""
    unique = UNIQUE[level]
    identifiers = [tag for tag, _ in columns if tag in IDENTIFIERS]
    if text.startswith("="):
        value = text[1:].strip()
        if not value:
            raise BadSearch("no ID or UID given after '='")
        searches = [(tag, value, False, True) for tag in identifiers
                    if tag == PATIENT_ID or isUID(value) or isinstance(source, LocalIndex)]
    else:
        searches = [(tag, f"*{text}*", True, False) for tag in searched] if text else [(None, "", False, False)]
        if searched and isUID(text) and "." in text:
            searches += [(tag, text, False, False) for tag in identifiers if tag != PATIENT_ID]
        dates = dateRange(text) if text and searched else None
        if dates is not None and DATES.get(level) in dict(columns):
            searches.append((DATES[level], dates, False, False))
    found = {}
    for searchedTag, value, foldCase, exactly in searches:
        keys = {tag: QueryKey(tag, vr, value if tag == searchedTag else "", foldCase=foldCase and tag == searchedTag)
                for tag, vr in columns}
        keys.update((key.tag, key) for key in fixed)
        held = {**(exact or {}), **({searchedTag: value} if exactly else {})}
        keys.update((tag, _exactKey(source, tag, dict(columns)[tag], wanted)) for tag, wanted in held.items())
        widened = not isinstance(source, LocalIndex) and any(c in v for v in held.values() for c in "*?")
        for match in await source.find(level, list(keys.values()), None if widened else most):
            if all(match.get(tag, "").strip() == wanted.strip() for tag, wanted in held.items()):
                found.setdefault(match.get(unique, ""), match)
        if most is not None and len(found) >= most:
            break
    return list(found.values())[:most]


def _exactKey(source, tag, vr, value):
    """The key of ``source`` matching ``value`` exactly, as far as it can:
    the index matches a ``*`` or ``?`` as itself (``exactKey``); a C-FIND
    has no escape for them, so another archive gets the value as it is, a
    wildcard then, and ``findContaining`` keeps the answers that hold it."""
    if isinstance(source, LocalIndex):
        return exactKey(tag, value)
    return QueryKey(tag, vr, value)


class Finder(_Listing):
    """The entities at ``level`` whose ``searched`` attributes contain a text."""

    def __init__(self, name, usage, level, columns, searched):
        super().__init__(name, usage)
        self.level = level
        self.columns = columns
        self.searched = searched

    async def rows(self, source, selection, fmt):
        found = await findContaining(source, self.level, self.columns, self.searched, selection[0].strip())
        return [[match.get(tag, "") for tag, _ in self.columns] for match in found]


class _Lister(_Listing):
    """serieslister and imagelister: without a ``fmt`` the ``listed`` rows
    (pacs's listing), with one Conquest's: a first character among
    ``prefixes`` picks the values (``conquestRows``) and is not printed,
    ``?`` prints the number of entities once, and a format ending in ``*``
    (or starting with ``$``) makes one line, the rows printed one after
    the other (the imagelister leaves the ``*`` out after the last)."""

    fieldCount = 5
    prefixes = "?"
    dropsLastStar = False

    async def rows(self, source, selection, fmt):
        if not fmt:
            return await self.listed(source, selection)
        rows = await self.conquestRows(source, selection, _prefix(fmt, self.prefixes))
        return [[len(rows)]] if fmt.startswith("?") else rows

    def deliver(self, context, fmt, rows, path):
        """The rows formatted by ``fmt`` without its prefix, an empty rest
        an empty format as in Conquest (``#`` prints an empty line per
        image, ``$`` nothing), not pacs's tab-separated listing."""
        if not fmt:
            return deliverRows(context, fmt, rows, path)
        prefix = _prefix(fmt, self.prefixes)
        body = fmt[len(prefix):]
        if prefix == "?":
            return deliverRows(context, Format(body, fmt), rows, path)
        starred = body.endswith("*")
        return deliverRows(context, Format(body, fmt), rows, path, together=starred or fmt.startswith("$"),
                           lastFmt=Format(body[:-1], fmt) if starred and self.dropsLastStar else None)


def _urlReady(patientID):
    """The patient ID as Conquest's imagelister writes it, its spaces ``%20`` (``UrlReady``)."""
    return UrlReady(patientID.replace(" ", "%20"), patientID)


def _prefix(fmt, prefixes):
    """The first character of ``fmt`` when it is one of ``prefixes``, else ''."""
    return fmt[0] if fmt and fmt[0] in prefixes else ""


class SeriesLister(_Lister):
    """With a format (Conquest's SeriesUIDLister) the values are the
    SeriesInstanceUID and the series' position from 0 (a number)."""

    name = "serieslister"
    usage = "--serieslister:srv|pat|stu|fmt|file  List series in a study"
    columns = (SERIES, SERIES_NUMBER, MODALITY, SERIES_DESCRIPTION, SERIES_DATE, STUDY, PATIENT)

    async def listed(self, source, selection):
        return [[match.get(tag, "") for tag, _ in self.columns] for match in await self._find(source, selection)]

    async def conquestRows(self, source, selection, prefix):
        return [[match.get(SERIES_INSTANCE_UID, ""), n] for n, match in enumerate(await self._find(source, selection))]

    def _find(self, source, selection):
        patientID, study = selection
        values = {STUDY_INSTANCE_UID: uidValue(study, "study UID"),
                  PATIENT_ID: exactValue(patientID, "patient ID") if patientID.strip() else ""}
        return source.find("SERIES", [QueryKey(tag, vr, values.get(tag, "")) for tag, vr in self.columns])


def imageOrder(match):
    """The sort key of an image's match ({tag: value}) in the imagelister's
    order: by series, then InstanceNumber (numbers first, by value), then
    SOP Instance UID."""
    return (match.get(SERIES_INSTANCE_UID, ""), numberKey(match.get(INSTANCE_NUMBER[0], "")),
            match.get(SOP_INSTANCE_UID, ""))


class ImageLister(_Lister):
    """With a format (Conquest's ImageFileLister) the images are in
    InstanceNumber order and the values, ``n`` and ``n1`` their positions
    from 0 and from 1 (as text): the file's absolute path, n, n1; after
    ``#`` its device, its name there, n, n1; after ``@`` the same with
    ``/`` for ``\\``; after ``:`` the patient ID (a space as ``%20``; the
    image's, where Conquest prints the pat argument), the SOP Instance
    UID, n, n1; after ``$`` the number of frames (0 when unknown).  The
    formats that name files are for this archive's images only.  Every
    format but ``?`` (which counts them all) leaves out (with a log line)
    an image of this archive whose device is no MAG device, its position
    counted still, as Conquest's."""

    name = "imagelister"
    usage = "--imagelister:srv|pat|ser|fmt|file  List files in a series (empty: of the patient, or all)"
    log = Logger()
    columns = (SOP, INSTANCE_NUMBER, SOP_CLASS, SERIES, PATIENT)
    prefixes = "?#@:$"
    dropsLastStar = True

    async def listed(self, source, selection):
        """The images of the series, or with an empty one of the patient,
        or with neither every image, as in Conquest."""
        keys = self._keys(selection)
        if isinstance(source, LocalIndex):
            archive = source.archive
            instances = await archive.index.runQuery(archive.query.instances, "IMAGE", keys)
            return [[storedName(i.deviceName, i.objectFile), i.sopInstanceUID, i.sopClassUID] for i in instances]
        matches = await self._find(source, keys, self.columns)
        return [[match.get(tag, "") for tag, _ in self.columns[:3]] for match in matches]

    async def conquestRows(self, source, selection, prefix):
        keys = self._keys(selection)
        if prefix in ("?", ":", "$"):
            matches = await self._find(source, keys, self.columns + (FRAMES,))
            matches.sort(key=imageOrder)
            kept = await self._onDevices(source, keys) if prefix != "?" and isinstance(source, LocalIndex) else None
            numbered = [(n, match) for n, match in enumerate(matches)
                        if kept is None or match.get(SOP_INSTANCE_UID, "") in kept]
            if prefix == "$":
                return [[atoi(match.get(FRAMES[0], ""))] for _, match in numbered]
            return [[_urlReady(match.get(PATIENT_ID, "")), match.get(SOP_INSTANCE_UID, ""), str(n), str(n + 1)]
                    for n, match in numbered]
        if not isinstance(source, LocalIndex):
            raise CommandError("another archive's images have no files here: list them with a format starting "
                               "with ':' (patient ID, SOP Instance UID), '$' (frames) or '?' (how many)")
        archive = source.archive
        reader = archive.objectReader
        instances = await archive.index.runQuery(archive.query.instances, "IMAGE", keys)
        found = [(n, i) for n, i in enumerate(instances) if self._onADevice(i, reader)]
        if prefix:
            return [[i.deviceName, i.objectFile.replace("\\", "/") if prefix == "@" else i.objectFile,
                     str(n), str(n + 1)] for n, i in found]
        paths = await archive.workers.deferToWorker(lambda: [reader.path(i.deviceName, i.objectFile) for _, i in found])
        return [[path, str(n), str(n + 1)] for (n, _), path in zip(found, paths)]

    async def _onDevices(self, source, keys):
        """The SOP Instance UIDs of the images ``keys`` select in this
        archive (``source``, a LocalIndex) that are on a MAG device."""
        archive = source.archive
        instances = await archive.index.runQuery(archive.query.instances, "IMAGE", keys)
        return {i.sopInstanceUID for i in instances if self._onADevice(i, archive.objectReader)}

    def _onADevice(self, instance, reader):
        """Whether the image's DeviceName is a MAG device: an image on
        another (one dropped from dicom.ini) is left out, as Conquest's
        ImageFileLister leaves it, and said so."""
        if instance.deviceName in reader.roots:
            return True
        self.log.warn("imagelister: {sop} left out: it is on {device!r}, which is no MAG device",
                      sop=instance.sopInstanceUID, device=instance.deviceName)
        return False

    @staticmethod
    def _keys(selection):
        return imageKeys(*selection)

    @staticmethod
    def _find(source, keys, columns):
        given = {key.tag: key.value for key in keys}
        return source.find("IMAGE", [QueryKey(tag, vr, given.get(tag, "")) for tag, vr in columns])


def imageKeys(patientID, series, study="", sop=""):
    """The keys of the images of a patient, series, study and SOP instance
    (each left out when empty)."""
    uids = ((SERIES_INSTANCE_UID, series, "series UID"), (STUDY_INSTANCE_UID, study, "study UID"),
            (SOP_INSTANCE_UID, sop, "SOP instance UID"))
    keys = [QueryKey(tag, "UI", uidValue(uid, what)) for tag, uid, what in uids if uid.strip()]
    if patientID.strip():
        keys.append(QueryKey(PATIENT_ID, "LO", exactValue(patientID, "patient ID")))
    return keys


class ImageFileLister(ImageLister):
    """Conquest's imagefilelister: ``pat|study|series|sop|file``, this
    archive's images (any empty field matches all) as the imagelister's
    ``%s`` lists them, the absolute path of each file one a line."""

    name = "imagefilelister"
    usage = "--imagefilelister:pat|stu|ser|sop|file  List files of images (empty: all)"
    fieldCount = 5

    def run(self, arguments, context):
        *selection, path = pipeFields(arguments, self.fieldCount)
        return defer.ensureDeferred(self._list(context, "", selection, "%s", path))

    @staticmethod
    def _keys(selection):
        patientID, study, series, sop = selection
        return imageKeys(patientID, series, study, sop)


def patientFinder():
    return Finder("patientfinder", "--patientfinder:srv|str|fmt|file  List patients on server", "PATIENT",
                  (PATIENT, PATIENT_NAME, BIRTH_DATE, SEX), PATIENT_SEARCHED)


def studyFinder():
    return Finder("studyfinder", "--studyfinder:srv|str|fmt|file  List studies on server", "STUDY",
                  (PATIENT, PATIENT_NAME, STUDY_DATE, MODALITIES, STUDY_DESCRIPTION, STUDY), STUDY_SEARCHED)


def imageFinder():
    """Conquest's PatientStudyFinder at IMAGE level: the text is searched in
    the Patient ID (``=UID``: the images of that series)."""
    return Finder("imagefinder", "--imagefinder:srv|str|fmt|file  List images on server", "IMAGE",
                  (PATIENT, PATIENT_NAME, STUDY, SERIES, SOP, INSTANCE_NUMBER, SLICE_LOCATION), (PATIENT_ID,))


def seriesFinder():
    return Finder("seriesfinder", "--seriesfinder:srv|str|fmt|file  List series on server", "SERIES",
                  (PATIENT, PATIENT_NAME, SERIES_DATE, MODALITY, SERIES_DESCRIPTION, STUDY, SERIES), SERIES_SEARCHED)
