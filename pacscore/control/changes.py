"""What the commands that change stored objects do to a data set.

Each function here returns a ``change(dataset)`` that the I/O pool applies
to a decoded object before it is stored again (``pacscore.control.modify``).
New UIDs come from the archive's ``UIDMap`` (UIDMODS), as Conquest's
ChangeUID: the same original UID always gives the same new one, so the
objects of one study changed one by one stay one study, and
``changeuidback`` finds the originals.  A copy for a patient (a new Patient
ID) or an attachment to a patient, study or series gets them for that
target (ChangeUID's stage): copied to two patients, or attached to two
studies, one original gives two objects.  References in sequence items to
objects that get new UIDs follow them (``renewReferences``).
"""

from pydicom.dataset import Dataset

from pacscore.control.deidentification import applyProfile
from pacscore.converters.context import ConverterContext, Outcome
from pacscore.converters.elements import assign, ensureUnicode, textOf, walkElements
from pacscore.converters.newuids import uidsOf
from pacscore.storage.attributes import DatasetError

NEW_UIDS = (("StudyInstanceUID", "StudyUID"), ("SeriesInstanceUID", "SeriesUID"),
            ("SOPInstanceUID", "SOPInstanceUID"))
# Where the index's ``Instance`` holds them.
INSTANCE_FIELDS = {"StudyInstanceUID": "studyInstanceUID", "SeriesInstanceUID": "seriesInstanceUID",
                   "SOPInstanceUID": "sopInstanceUID"}

PATIENT_ID, PATIENT_NAME = 0x00100020, 0x00100010
METHOD = "pacs anonymize: PS3.15 E.1-1 Basic Profile, new instance UIDs"  # LO: at most 64


class ScriptRefused(Exception):
    """A converter script run by a command destroyed or rejected the object."""


class ScriptFailed(ScriptRefused):
    """A converter script run by a modify command failed (a Lua error):
    the object is not stored, as if the script had rejected it."""


# The UIDs by which sequence items reference other objects, series and studies.
REFERENCES = frozenset(("ReferencedSOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"))


def changing(instances, keyword="StudyInstanceUID"):
    """``{UID: MODType}`` of the indexed ``instances`` that a change gives
    new UIDs (those of ``keyword`` and below), for ``renewReferences``."""
    pairs = _uidsFrom(keyword)
    return {getattr(instance, INSTANCE_FIELDS[k]): modType for instance in instances for k, modType in pairs}


def _uidsFrom(keyword):
    """The ``NEW_UIDS`` pairs of ``keyword`` and the levels below it."""
    return NEW_UIDS[[k for k, _ in NEW_UIDS].index(keyword):]


def renewReferences(dataset, uidMap, stage="", changed=None):
    """Make the references in the sequence items of ``dataset`` (REFERENCES)
    to objects that get new UIDs name them by their new UIDs: those
    ``changed`` (``{UID: MODType}``, objects changed with this one) and
    those ``uidMap`` made for ``stage`` already; references to other
    objects stay.  Whether any changed."""
    changed = changed or {}
    renewed = False
    for parent, reference in walkElements(dataset):
        if parent is dataset or reference.keyword not in REFERENCES:
            continue
        old = str(reference.value or "").strip()
        new = uidMap.newFor(old, changed[old], stage) if old in changed else (old and uidMap.lookup(old, stage))
        if new and new != old:
            reference.value = new
            renewed = True
    return renewed


def referencesRenewed(uidMap, changed):
    """``renewReferences`` as a change: nothing else of the object changes
    (one that stays where objects it references were merged into)."""

    def change(dataset):
        return renewReferences(dataset, uidMap, changed=changed)
    return change


def _renew(dataset, uidMap, pairs, stage="", changed=None):
    """Replace the UIDs ``pairs`` (keyword, MODType) through ``uidMap``,
    made for the target ``stage`` when given, and the references to the
    objects that get new ones (``renewReferences``)."""
    for keyword, modType in pairs:
        old = str(dataset.get(keyword, "") or "").strip()
        if not old:
            raise DatasetError(f"no {keyword}")
        setattr(dataset, keyword, uidMap.newFor(old, modType, stage))
    renewReferences(dataset, uidMap, stage, changed)


def newPatient(uidMap, patientID, patient=None, changed=None):
    """Conquest's ModifyPATIDofDDO: the Patient ID ``patientID`` and new
    Study, Series and SOP Instance UIDs, made for that patient, references
    to the objects ``changed`` with it too (``renewReferences``); when that
    patient is stored already, ``patient`` (one of its objects) gives the
    patient attributes, so the patient keeps its name."""

    def change(dataset):
        _renew(dataset, uidMap, NEW_UIDS, patientID, changed)
        assign(dataset, PATIENT_ID, patientID, where="modifypatid")
        if patient is not None:
            _take(dataset, patient, PATIENT_ATTRIBUTES)
    return change


def anonymized(uidMap, patientID, script=None, services=None):
    """``script`` (a converter ``Script``, or None) first, then the Basic
    Profile of table E.1-1 as WADO's ``anonymize=yes`` applies it
    (``applyProfile``) to every attribute the script did not set (one it
    assigned is kept, its own value too; in
    sequence items too, private attributes gone), ``patientID`` becomes
    Patient ID and Name, Patient Identity Removed is YES with a
    De-identification Method, and every instance UID becomes new but those
    the script made in this run (its ``newuids`` are not made new twice, so
    references between objects hold; UIDs an earlier change made,
    modifypatid or a merge, are the identified object's and are made new)."""

    def change(dataset):
        if script is None:
            assigned = made = frozenset()
        else:
            before = uidsOf(dataset)
            assigned = runScript(script, dataset, services, "anonymize").assigned
            made = uidsOf(dataset) - before  # the script's newuids or changeuid, this run
        for keyword, _ in NEW_UIDS:
            if not str(dataset.get(keyword, "") or "").strip():
                raise DatasetError(f"no {keyword}")
        kept = {tag for tag in assigned if tag in dataset and dataset[tag].VR not in ("SQ", "UI")}
        applyProfile(dataset, lambda uid, keyword: uid if uid in made else uidMap.uidFor(uid, keyword), kept)
        assign(dataset, PATIENT_ID, patientID, where="anonymize")
        assign(dataset, PATIENT_NAME, patientID, where="anonymize")
        dataset.PatientIdentityRemoved = "YES"
        if not str(dataset.get("DeidentificationMethod", "") or "").strip():
            dataset.DeidentificationMethod = METHOD
    return change


def scripted(script, services):
    """``modifyimage``: the converter ``script``; the change returns whether
    it changed anything.  ScriptFailed when a Lua script of it failed: what
    it changed before is not stored, the command fails."""

    def change(dataset):
        context = runScript(script, dataset, services, "modifyimage")
        if context.failure:
            raise ScriptFailed(f"Lua script failed: {context.failure}")
        return context.changed
    return change


def runScript(script, dataset, services, name):
    """Run a converter ``Script`` on ``dataset`` as an import converter
    would; its ``ConverterContext`` (what it ``changed``, the elements it
    ``assigned``). ScriptRefused on destroy or reject."""
    context = ConverterContext("import", dataset, name, services.aeTitle, services=services, converterName=name)
    outcome = script.run(context)
    if outcome in (Outcome.DESTROY, Outcome.REJECT):
        raise ScriptRefused(context.rejectReason or f"the script says {outcome.name.lower()}")
    return context


PATIENT_ATTRIBUTES = ("PatientID", "PatientName", "PatientBirthDate", "PatientBirthTime", "PatientSex",
                      "OtherPatientIDs")
STUDY_ATTRIBUTES = ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                    "StudyDescription", "ReferringPhysicianName")
SERIES_ATTRIBUTES = ("SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality", "SeriesDate",
                     "SeriesTime", "BodyPartExamined", "ProtocolName")
LEVELS = ("PATIENT", "STUDY", "SERIES")


def _take(dataset, sample, names, kept=()):
    """``dataset`` gets the attributes ``names`` and ``kept`` of ``sample``;
    those of ``names`` that the sample lacks are removed."""
    copied = {keyword: sample.data_element(keyword) for keyword in names + kept if keyword in sample}
    if not all(textOf(element).isascii() for element in copied.values()):
        ensureUnicode(dataset)  # the sample's text in the object's character set could be lost
    for keyword in names + kept:
        if keyword in copied:
            setattr(dataset, keyword, copied[keyword].value)
        elif keyword in dataset and keyword not in kept:
            delattr(dataset, keyword)


def mergedInto(uidMap, keyword, target, sample=None, changed=None):
    """``mergestudy`` / ``mergeseries``: the object joins the study or
    series ``target`` (``keyword`` StudyInstanceUID or SeriesInstanceUID)
    and takes the study or series attributes of ``sample`` (an object of
    ``target``, when one is stored), so the target keeps its Accession
    Number, description ...; its lower UIDs are new (a merged study's
    series stay apart), references to the objects ``changed`` with it too."""
    lower = _uidsFrom(keyword)[1:]
    names = STUDY_ATTRIBUTES if keyword == "StudyInstanceUID" else SERIES_ATTRIBUTES

    def change(dataset):
        _renew(dataset, uidMap, lower, changed=changed)
        setattr(dataset, keyword, target)
        if sample is not None:
            _take(dataset, sample, names)
    return change


def attachedTo(uidMap, sample, level):
    """``attachanyto...``: the object joins the patient, study or series
    (``level``) of the data set ``sample``.  It takes the sample's patient
    attributes (and study ones, from STUDY; and Series Instance and Frame of
    Reference UID at SERIES), those the sample lacks removed (the Frame of
    Reference kept); the UIDs below the level are new, made for the
    sample's patient, study or series."""
    depth = LEVELS.index(level)
    stage = str(sample.get(("PatientID", "StudyInstanceUID", "SeriesInstanceUID")[depth], "") or "").strip()
    names = PATIENT_ATTRIBUTES + (STUDY_ATTRIBUTES if depth else ()) + (
        ("SeriesInstanceUID",) if depth == 2 else ())
    kept = ("FrameOfReferenceUID",) if depth == 2 else ()

    def change(dataset):
        _renew(dataset, uidMap, NEW_UIDS[depth:], stage)
        _take(dataset, sample, names, kept)
    return change


RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"


def planOnStructures(uidMap, structures):
    """``attachrtplantortstruct``: an RT Plan joins the study of the RT
    Structure Set ``structures`` (``attachedTo`` at STUDY), takes its Frame
    of Reference and references it in Referenced Structure Set Sequence."""
    attach = attachedTo(uidMap, structures, "STUDY")
    frames = structures.get("ReferencedFrameOfReferenceSequence") or []

    def change(dataset):
        if dataset.get("SOPClassUID") != RT_PLAN:
            raise DatasetError(f"it is not an RT Plan (SOP Class {dataset.get('SOPClassUID')})")
        attach(dataset)
        reference = Dataset()
        reference.ReferencedSOPClassUID = structures.SOPClassUID
        reference.ReferencedSOPInstanceUID = structures.SOPInstanceUID
        dataset.ReferencedStructureSetSequence = [reference]
        if frames and "FrameOfReferenceUID" in frames[0]:
            dataset.FrameOfReferenceUID = frames[0].FrameOfReferenceUID
    return change
