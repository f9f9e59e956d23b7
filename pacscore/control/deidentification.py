"""De-identification by the Basic Application Level Confidentiality Profile
(DICOM PS3.15 Annex E, table E.1-1, without its options), as WADO-URI's
``anonymize=yes`` asks for.

``basicProfile(uidMap)`` returns a ``change(dataset)`` for a decoded object
(``dgate --anonymize`` applies the same table through ``applyProfile``, but
to what its script did not set):

- every attribute the table lists (``pacscore.control.confidentiality``,
  and ``BEYOND``: the free text and identifiers pacs removes besides) is
  treated as its action says, in sequence items too: X removed, Z emptied,
  D given a dummy value, U a new UID; where the table leaves the choice to
  the attribute's type in the object's IOD (X/Z, X/D, Z/D, X/Z/D, X/Z/U*),
  which pacs does not know, the least destructive one that is valid
  whatever the type: a dummy (D) where it may, else empty (Z), a sequence
  of X/Z/U* kept with its items cleaned;
- names, dates, times and date-times the table does not list are emptied
  (no longitudinal information kept); private attributes, curves (50xx)
  and overlay data and comments (60xx,3000 / 60xx,4000) go;
- every UID that is not a registered DICOM one, apart from class, transfer
  syntax and coding scheme UIDs, is replaced through the archive's
  ``UIDMap`` (UIDMODS), made for the stage ``STAGE``: the same original
  gives the same new UID, so objects fetched one by one stay one study and
  series, and never the UIDs ``dgate --anonymize`` gives it under a Patient
  ID of its own (two patients would have the same instance);
- Patient ID and Patient Name become a pseudonym kept in the same map
  (``MODType`` PatientID): one patient stays one patient (a Patient ID in a
  sequence item goes);
- Patient Identity Removed, De-identification Method (and its code 113100)
  and Longitudinal Temporal Information Modified say what was done.

Objects with Burned In Annotation YES are refused (``DatasetError``): the
profile does not release their pixels uncleaned.  Runs in the I/O pool.
"""

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from pacscore.control.confidentiality import BASIC_PROFILE
from pacscore.storage.attributes import DatasetError

METHOD = "Basic Application Confidentiality Profile (DICOM PS3.15 E.1-1)"
METHOD_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

# What pacs removes (or replaces) besides the table: patient identifiers and
# free text a sequence item or an older table lists.
BEYOND = {tag_for_keyword(keyword): action for keyword, action in (
    ("GroupOfPatientsIdentificationSequence", "X"), ("SourcePatientGroupIdentificationSequence", "X"),
    ("IssuerOfPatientIDQualifiersSequence", "X"), ("PatientAlternativeCalendar", "X"),
    ("PatientBirthDateInAlternativeCalendar", "X"), ("PatientDeathDateInAlternativeCalendar", "X"),
    ("StorageMediaFileSetID", "X"), ("IssuerOfAccessionNumberSequence", "X"), ("ProcedureCodeSequence", "X"),
    ("TextValue", "X/D"),
)}
PATIENT_ID = tag_for_keyword("PatientID")
# The UID map's stage of the UIDs and pseudonyms made here: no Patient ID (LO holds no backslash) nor UID.
STAGE = "\\WADO anonymize=yes"

# UI attributes that name a class, a syntax or a scheme: never replaced.
KEPT_UIDS = frozenset(("CodingSchemeUID", "MappingResourceUID", "ContextGroupExtensionCreatorUID",
                       "TemplateExtensionCreatorUID"))
TEMPORAL = frozenset(("DA", "DT", "TM"))
# A D action's dummy value of each VR (a number 0, binary data two zero bytes).
DUMMIES = {"PN": "ANONYMIZED", "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y",
           "IS": "0", "DS": "0"}
STRINGS = frozenset(("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
                     "UR", "UT"))
BINARY = frozenset(("OB", "OD", "OF", "OL", "OV", "OW", "UN"))


def basicProfile(uidMap):
    """The change that de-identifies a data set; ``uidMap`` gives the new
    UIDs and the patient pseudonym."""

    def change(dataset):
        if str(dataset.get("BurnedInAnnotation", "")).strip().upper() == "YES":
            raise DatasetError("it has burned-in annotation (0028,0301 YES), which the "
                               "Basic Profile does not release")
        patientID = str(dataset.get("PatientID", "") or "").strip()
        applyProfile(dataset, lambda uid, keyword: uidMap.uidFor(uid, keyword, STAGE))
        pseudonym = uidMap.newFor(patientID, "PatientID", STAGE) if patientID else ""
        dataset.PatientID = dataset.PatientName = pseudonym
        dataset.PatientIdentityRemoved = "YES"
        dataset.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = METHOD_CODE
        dataset.DeidentificationMethodCodeSequence = [code]
        dataset.LongitudinalTemporalInformationModified = "REMOVED"
    return change


def applyProfile(dataset, newUID, kept=frozenset(), nested=False):
    """Apply the profile to ``dataset`` and the items of its sequences, but
    not to the top-level attributes of the tags ``kept``; ``newUID(uid,
    keyword)`` gives the UID that replaces ``uid``; ``nested``: an item,
    whose Patient ID goes."""
    for element in list(dataset):
        tag = element.tag
        if tag in kept:
            continue
        group = tag.group
        action = ACTIONS.get(tag)
        if (tag.is_private or action == "X" or 0x5000 <= group <= 0x50FF
                or (0x6000 <= group <= 0x60FF and tag.element in (0x3000, 0x4000)) or nested and tag == PATIENT_ID):
            del dataset[tag]
        elif action == "Z" or action is None and (element.VR == "PN" or element.VR in TEMPORAL):
            element.value = _empty(element.VR)
        elif element.VR == "SQ":
            for item in element.value:
                applyProfile(item, newUID, nested=True)
        elif element.VR == "UI":
            if element.value and (action is not None or _replaced(element.keyword)):
                _replaceUIDs(element, newUID)
        elif action == "D" and not element.is_empty:
            element.value = _dummy(element.VR)


def _chosen(action):
    """The one action of a table entry: of a combined one the least
    destructive, valid whatever the attribute's type (D, else U*, else Z:
    a Type 1 attribute keeps a value, a Type 2 one stays present, a
    sequence of X/Z/U* its items with new UIDs)."""
    if "/" not in action:
        return action
    for choice in ("D", "U*", "Z"):
        if choice in action.split("/"):
            return "U" if choice == "U*" else choice


# Each entry's one action, chosen once.
ACTIONS = {tag: _chosen(action) for tag, action in {**BASIC_PROFILE, **BEYOND}.items()}


def _empty(vr):
    return [] if vr == "SQ" else b"" if vr in BINARY else "" if vr in STRINGS else None


def _dummy(vr):
    if vr in BINARY:
        return b"\0\0"
    if vr in STRINGS:
        return DUMMIES.get(vr, "ANONYMIZED")
    return 0


def _replaceUIDs(element, newUID):
    """Each UID of ``element`` that is not a registered DICOM one replaced
    by ``newUID``."""
    values = element.value if isinstance(element.value, MultiValue) else [element.value]
    new = [newUID(str(v), element.keyword) if str(v) and UID(str(v)).is_private else v for v in values]
    element.value = new if isinstance(element.value, MultiValue) else new[0]


def _replaced(keyword):
    """Whether a UI attribute holds instance UIDs (not a class or syntax)."""
    return not (keyword.endswith("ClassUID") or keyword.endswith("TransferSyntaxUID") or keyword in KEPT_UIDS)
