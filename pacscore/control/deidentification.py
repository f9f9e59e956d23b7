"""De-identification by the Basic Application Level Confidentiality Profile
(DICOM PS3.15 Annex E, table E.1-1, without its options), as WADO-URI's
``anonymize=yes`` asks for.

``basicProfile(uidMap)`` returns a ``change(dataset)`` for a decoded object:

- every person name, date, time and date-time is emptied (the profile's
  dates and names, whatever the module; no longitudinal information kept);
- the identifying attributes of ``REMOVED`` go and ``EMPTIED`` ones (type 2)
  stay without a value; private attributes, curves (50xx) and overlay data
  and comments (60xx,3000 / 60xx,4000) go;
- every UID that is not a registered DICOM one, apart from class, transfer
  syntax and coding scheme UIDs, is replaced through the archive's
  ``UIDMap`` (UIDMODS): the same original gives the same new UID, so objects
  fetched one by one stay one study and series;
- Patient ID and Patient Name become a pseudonym kept in the same map
  (``MODType`` PatientID): one patient stays one patient;
- Patient Identity Removed, De-identification Method (and its code 113100)
  and Longitudinal Temporal Information Modified say what was done.

Objects with Burned In Annotation YES are refused (``DatasetError``): the
profile does not release their pixels uncleaned.  Runs in the I/O pool.
"""

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from pacscore.storage.attributes import DatasetError

METHOD = "Basic Application Confidentiality Profile (DICOM PS3.15 E.1-1)"
METHOD_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

# Type 3 identifying attributes that go (action X of table E.1-1).
REMOVED = frozenset((
    "OtherPatientIDs", "OtherPatientIDsSequence", "PatientAddress", "PatientTelephoneNumbers",
    "PatientTelecomInformation", "PatientAge", "PatientSize", "PatientWeight", "EthnicGroup",
    "Occupation", "AdditionalPatientHistory", "PatientComments", "PatientReligiousPreference",
    "MilitaryRank", "BranchOfService", "CountryOfResidence", "RegionOfResidence",
    "MedicalRecordLocator", "MedicalAlerts", "Allergies", "SmokingStatus", "SpecialNeeds",
    "PatientState", "PatientInsurancePlanCodeSequence", "PatientPrimaryLanguageCodeSequence",
    "InsurancePlanIdentification", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "ResponsibleOrganization", "ReferencedPatientSequence", "ReferencedPatientPhotoSequence",
    "AdmissionID", "IssuerOfAdmissionIDSequence", "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence", "CurrentPatientLocation", "PatientInstitutionResidence",
    "ServiceEpisodeID", "ServiceEpisodeDescription", "VisitComments",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianIdentificationSequence",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorIdentificationSequence",
    "StationName", "StudyDescription", "SeriesDescription", "ProtocolName", "DerivationDescription",
    "ImageComments", "FrameComments", "AcquisitionComments", "RequestAttributesSequence",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "PerformedLocation",
    "PerformedStationName", "ScheduledStationName", "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID", "ScheduledProcedureStepLocation", "RequestedProcedureDescription",
    "RequestedProcedureID", "RequestedProcedureLocation", "ReasonForStudy",
    "ReasonForTheRequestedProcedure", "RequestingService", "RequestedContrastAgent",
    "PlacerOrderNumberImagingServiceRequest", "FillerOrderNumberImagingServiceRequest",
    "OrderEntererLocation", "OrderCallbackPhoneNumber", "OrderCallbackTelecomInformation",
    "ImagingServiceRequestComments", "RequestedProcedureComments", "TextComments", "TopicSubject",
    "TopicAuthor", "TopicKeywords", "TopicTitle", "DeviceSerialNumber", "PlateID", "DetectorID",
    "GantryID", "CassetteID", "SourceSerialNumber", "ContentSequence", "AuthorObserverSequence",
    "ParticipantSequence", "VerifyingOrganization", "PersonAddress", "PersonTelephoneNumbers",
    "PersonTelecomInformation", "PersonIdentificationCodeSequence", "DigitalSignaturesSequence",
    "DataSetTrailingPadding", "OriginalAttributesSequence", "ModifiedAttributesSequence",
    "ReferencedPerformedProcedureStepSequence", "ReferencedStudySequence", "IconImageSequence",
    "GraphicAnnotationSequence", "AcquisitionContextSequence", "StorageMediaFileSetID",
    "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID", "TimezoneOffsetFromUTC",
    "RTPlanName", "RTPlanDescription", "StructureSetName", "StructureSetDescription",
    "ROIGenerationDescription", "SourcePatientGroupIdentificationSequence",
    "GroupOfPatientsIdentificationSequence", "IdentifyingComments", "PatientBirthDateInAlternativeCalendar",
    "PatientDeathDateInAlternativeCalendar", "PatientAlternativeCalendar",
))
# In sequence items the patient's ID goes too (at the top it becomes the pseudonym).
NESTED_REMOVED = REMOVED | {"PatientID"}

# Type 2 attributes kept without a value (action Z).
EMPTIED = frozenset((
    "AccessionNumber", "StudyID", "PatientSex", "VerifyingObserverIdentificationCodeSequence",
    "ContentCreatorIdentificationCodeSequence",
))

# UI attributes that name a class, a syntax or a scheme: never replaced.
KEPT_UIDS = frozenset(("CodingSchemeUID", "MappingResourceUID", "ContextGroupExtensionCreatorUID",
                       "TemplateExtensionCreatorUID"))
TEMPORAL = frozenset(("DA", "DT", "TM"))


def basicProfile(uidMap):
    """The change that de-identifies a data set; ``uidMap`` gives the new
    UIDs and the patient pseudonym."""

    def change(dataset):
        if str(dataset.get("BurnedInAnnotation", "")).strip().upper() == "YES":
            raise DatasetError("it has burned-in annotation (0028,0301 YES), which the "
                               "Basic Profile does not release")
        patientID = str(dataset.get("PatientID", "") or "").strip()
        _clean(dataset, uidMap)
        pseudonym = uidMap.newFor(patientID, "PatientID") if patientID else ""
        dataset.PatientID = dataset.PatientName = pseudonym
        dataset.PatientIdentityRemoved = "YES"
        dataset.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = METHOD_CODE
        dataset.DeidentificationMethodCodeSequence = [code]
        dataset.LongitudinalTemporalInformationModified = "REMOVED"
    return change


def _clean(dataset, uidMap, removed=REMOVED):
    """Apply the profile to ``dataset`` and the items of its sequences."""
    for element in list(dataset):
        tag, keyword = element.tag, element.keyword
        group = tag.group
        if (tag.is_private or keyword in removed or 0x5000 <= group <= 0x50FF
                or (0x6000 <= group <= 0x60FF and tag.element in (0x3000, 0x4000))):
            del dataset[tag]
        elif keyword in EMPTIED or element.VR == "PN" or element.VR in TEMPORAL:
            element.value = [] if element.VR == "SQ" else ""
        elif element.VR == "SQ":
            for item in element.value:
                _clean(item, uidMap, NESTED_REMOVED)
        elif element.VR == "UI" and element.value and _replaced(keyword):
            values = element.value if isinstance(element.value, MultiValue) else [element.value]
            new = [uidMap.newFor(str(v), keyword) if str(v) and UID(str(v)).is_private else v for v in values]
            element.value = new if isinstance(element.value, MultiValue) else new[0]


def _replaced(keyword):
    """Whether a UI attribute holds instance UIDs (not a class or syntax)."""
    return not (keyword.endswith("ClassUID") or keyword.endswith("TransferSyntaxUID") or keyword in KEPT_UIDS)
