"""What the commands that change stored objects do to a data set.

Each function here returns a ``change(dataset)`` that the I/O pool applies
to a decoded object before it is stored again (``pacscore.control.modify``).
New UIDs come from the archive's ``UIDMap`` (UIDMODS), as Conquest's
ChangeUID: the same original UID always gives the same new one, so the
objects of one study changed one by one stay one study, and
``changeuidback`` finds the originals.
"""

from pacscore.converters.context import ConverterContext, Outcome
from pacscore.storage.attributes import DatasetError

NEW_UIDS = (("StudyInstanceUID", "StudyUID"), ("SeriesInstanceUID", "SeriesUID"),
            ("SOPInstanceUID", "SOPInstanceUID"))

# The patient's own identifying attributes ``anonymize`` removes (its script may remove more).
IDENTIFYING = (
    "PatientBirthDate", "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName",
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress",
    "PatientTelephoneNumbers", "MedicalRecordLocator", "MilitaryRank", "BranchOfService",
    "PatientInsurancePlanCodeSequence", "PatientComments", "AdditionalPatientHistory",
    "ReferringPhysicianName", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName")


class ScriptRefused(Exception):
    """A converter script run by a command destroyed or rejected the object."""


def _renew(dataset, uidMap, pairs):
    """Replace the UIDs ``pairs`` (keyword, MODType) through ``uidMap``."""
    for keyword, modType in pairs:
        old = str(dataset.get(keyword, "") or "").strip()
        if not old:
            raise DatasetError(f"no {keyword}")
        setattr(dataset, keyword, uidMap.newFor(old, modType))


def newPatient(uidMap, patientID):
    """Conquest's ModifyPATIDofDDO: the Patient ID ``patientID`` and new
    Study, Series and SOP Instance UIDs."""

    def change(dataset):
        _renew(dataset, uidMap, NEW_UIDS)
        dataset.PatientID = patientID
    return change


def anonymized(uidMap, patientID, script=None, services=None):
    """``script`` (a converter ``Script``, or None) first, then the
    IDENTIFYING attributes go, ``patientID`` becomes Patient ID and Name,
    Patient Identity Removed is YES, and the UIDs are new (``newPatient``)."""

    def change(dataset):
        if script is not None:
            runScript(script, dataset, services, "anonymize")
        for keyword in IDENTIFYING:
            if keyword in dataset:
                delattr(dataset, keyword)
        dataset.PatientName = patientID
        dataset.PatientIdentityRemoved = "YES"
        newPatient(uidMap, patientID)(dataset)
    return change


def scripted(script, services):
    """``modifyimage``: the converter ``script``; the change returns whether
    it changed anything."""

    def change(dataset):
        return runScript(script, dataset, services, "modifyimage")
    return change


def runScript(script, dataset, services, name):
    """Run a converter ``Script`` on ``dataset`` as an import converter
    would; whether it changed it. ScriptRefused on destroy or reject."""
    context = ConverterContext("import", dataset, name, services.aeTitle, services=services, converterName=name)
    outcome = script.run(context)
    if outcome in (Outcome.DESTROY, Outcome.REJECT):
        raise ScriptRefused(context.rejectReason or f"the script says {outcome.name.lower()}")
    return context.changed


def mergedInto(uidMap, keyword, target):
    """``mergestudy`` / ``mergeseries``: the object joins the study or
    series ``target`` (``keyword`` StudyInstanceUID or SeriesInstanceUID);
    its lower UIDs are new (a merged study's series stay apart)."""
    lower = NEW_UIDS[[k for k, _ in NEW_UIDS].index(keyword) + 1:]

    def change(dataset):
        _renew(dataset, uidMap, lower)
        setattr(dataset, keyword, target)
    return change
