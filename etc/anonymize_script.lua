-- anonymize_script.lua: de-identifies every object pacs receives, before it is stored.
--
-- Use it as an import converter (the file sits next to dicom.ini):
--
--     ImportConverters = 1
--     ImportConverter0 = lua:anonymize_script.lua
--
-- It follows the spirit of the Basic Application Level Confidentiality
-- Profile (DICOM PS3.15, Annex E) for the usual attributes:
--   * Patient ID becomes a pseudonym derived from the original ID by a salted
--     hash, and Patient Name 'ANON^' followed by the same pseudonym: objects
--     of one patient still belong together, sent today or next year.
--     Change SALT below to a secret of your own, or pseudonyms of short IDs
--     can be recomputed by anyone who has this file.
--   * the birth date keeps its year only (YYYY0101);
--   * addresses, telephone numbers, other IDs and names, physicians,
--     operators, institution, department, station, device serial number,
--     request attributes and free-text comments are removed; the type 2
--     attributes (Accession Number, Referring Physician, Study ID) are blanked;
--   * every UID that is not a standard one (Study, Series and SOP Instance
--     UID, Frame of Reference, referenced instances ...) is replaced with
--     'newuids': the same original UID always gives the same new one, so the
--     objects of a study stay one study (the pairs are kept in the UIDMODS
--     table);
--   * Patient Identity Removed is set to YES with the method used.
-- Study dates and times, modality, descriptions and private attributes are
-- kept; remove what your site needs removed below.
--
-- Run by dgate --anonymize:, the PS3.15 basic profile then treats every
-- attribute this script did not assign: dates, times, descriptions and
-- private attributes go there; to keep one, assign it here, even to its own
-- value (Data.StudyDate = Data.StudyDate).

local SALT = 'pacs-anonymize-change-me'

-- FNV-1a, 64 bits (Lua 5.4 integers wrap around): a short hex pseudonym
local function pseudonym(text)
  local hash = -3750763034362895579          -- 0xcbf29ce484222325
  for i = 1, #text do
    hash = (hash ~ text:byte(i)) * 1099511628211
  end
  return string.format('%016x', hash):sub(1, 12):upper()
end

local original = Data.PatientID or ''    -- an absent element reads nil
if original == '' then original = Data.PatientName or '' end
local anonymous = pseudonym(SALT .. original)
Data.PatientID = anonymous
Data.PatientName = 'ANON^' .. anonymous

local birthDate = Data.PatientBirthDate or ''
if #birthDate >= 4 then
  Data.PatientBirthDate = birthDate:sub(1, 4) .. '0101'
end

local removed = {
  'PatientBirthTime', 'PatientAddress', 'PatientTelephoneNumbers', 'OtherPatientIDs',
  'OtherPatientNames', 'OtherPatientIDsSequence', 'PatientBirthName', 'PatientMotherBirthName',
  'IssuerOfPatientID', 'MilitaryRank', 'BranchOfService', 'MedicalRecordLocator', 'Occupation',
  'AdditionalPatientHistory', 'PatientComments', 'PatientInsurancePlanCodeSequence',
  'CountryOfResidence', 'RegionOfResidence', 'ResponsiblePerson', 'ResponsibleOrganization',
  'AdmissionID', 'ReferringPhysicianAddress', 'ReferringPhysicianTelephoneNumbers',
  'ReferringPhysicianIdentificationSequence', 'PerformingPhysicianName',
  'PerformingPhysicianIdentificationSequence', 'NameOfPhysiciansReadingStudy',
  'PhysiciansReadingStudyIdentificationSequence', 'PhysiciansOfRecord',
  'PhysiciansOfRecordIdentificationSequence', 'RequestingPhysician', 'OperatorsName',
  'OperatorIdentificationSequence', 'ScheduledPerformingPhysicianName', 'InstitutionName',
  'InstitutionAddress', 'InstitutionalDepartmentName', 'InstitutionCodeSequence', 'StationName',
  'DeviceSerialNumber', 'RequestAttributesSequence', 'RequestedProcedureID',
  'ScheduledProcedureStepID', 'PerformedProcedureStepID', 'ImageComments', 'StudyComments',
  'ContentCreatorName',
}
for _, keyword in ipairs(removed) do
  Data[keyword] = nil
end

for _, keyword in ipairs({'AccessionNumber', 'ReferringPhysicianName', 'StudyID'}) do
  local value = Data[keyword]
  if value and value ~= '' then Data[keyword] = '' end
end

Data.PatientIdentityRemoved = 'YES'
Data.DeidentificationMethod = 'pacs anonymize_script.lua: PS3.15 basic profile subset'

script('newuids')
